"""Template validation and rendering in the sandbox: declared names only, inert escapes, measuring."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crisisdesk.comms import service
from crisisdesk.comms.templates import Renderer, parse_variables, render_all, social_length
from crisisdesk.kit.errors import InvalidInput
from tests.fixtures.comms import template_fields


def _refused(**overrides: object) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        service.validate(template_fields(**overrides))
    return caught.value


def test_the_factory_template_is_valid() -> None:
    names = [v.name for v in service.validate(template_fields())]
    assert names == ["components", "start_time", "next_update_at", "workaround", "incident_url"]


def test_an_undeclared_variable_is_refused_naming_the_variant_and_the_variable() -> None:
    error = _refused(sms="Down since {{ start_time|time }}; ETA {{ eta }}")
    assert error.field == "sms" and "'eta'" in error.message and "not a declared variable" in error.message


def test_a_syntax_error_names_the_variant_and_the_line() -> None:
    error = _refused(email_text="Hello\nworld\n{% if workaround %}no end")
    assert error.field == "email_text" and "line 3" in error.message


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ workaround.__init__.__globals__ }}",
        "{{ components.__class__.__base__ }}",
        "{{ 'x' * 10000000 }}",
        "{{ 9 ** 99999999 }}",
        "{{ '{0.__class__}'.format(workaround) }}",
    ],
)
def test_sandbox_escapes_are_refused_at_save(source: str) -> None:
    error = _refused(body=source)
    assert error.field == "body"


# Each of these, before the sandbox bounded its cost, ran for minutes or allocated gigabytes on
# the web process's event loop (or, for the macro, answered 500 with a RecursionError).
@pytest.mark.parametrize(
    ("source", "why"),
    [
        ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "calls itself"),
        ("{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(40) }}", "steps"),
        ("{% for a in 'x'*1000 %}{% for b in 'x'*1000 %}{% endfor %}{% endfor %}", "steps"),
        ("{{ ('x'*1000*1000*1000)|length }}", "too large"),
        ("{{ (((10**64)**64)**64)**64 }}", "too large"),
        ("{{ 'x'|center(10**9) }}", "too large"),
        ("{{ 'x'.ljust(10**9)|length }}", "too large"),
        ("{{ '{:>999999999}'.format('x')|length }}", "too large"),
        ("{{ '{:>{}}'.format('x', 10**9)|length }}", "too large"),
        ("{{ ('%*s' % (10**9, 'x'))|length }}", "too large"),
        ("{{ ((('x'*1000)|join('y'*1000))|join('y'*1000))|length }}", "too large"),
        ("{% set a = 'x'*1000 %}" + "{% set a = a ~ a %}" * 30 + "{{ a|length }}", "too large"),
        ("{% for a in 'x'*1000 %}{{ 'y'*1000 }}{% endfor %}", "more than 50000 characters"),
        ("{{ 'x'|truncate(-5) }}", "cannot be rendered"),
    ],
)
def test_a_template_that_would_exhaust_the_process_is_refused_quickly(source: str, why: str) -> None:
    started = time.monotonic()
    error = _refused(email_text=source)
    assert error.field == "email_text" and why in error.message
    assert time.monotonic() - started < 5


def test_the_bounds_leave_ordinary_templates_alone() -> None:
    source = (
        "{% for c in components %}{{ loop.index }}. {{ c|upper }}{% if not loop.last %}, {% endif %}{% endfor %} "
        "{{ '%s-%02d' % ('a', 5) }} {{ '{} x'.format(3) }} {{ ('ab' ~ 'cd')|truncate(255) }} {{ 'x'|center(9) }}"
    )
    rendered = Renderer().render("email_text", source, {"components": ["Web", "API"]})
    assert rendered == "1. WEB, 2. API a-05 3 x abcd     x    "


@pytest.mark.parametrize("source", ["{{ cycler.__init__ }}", "{{ range(10) }}", "{{ lipsum() }}", "{{ config }}"])
def test_globals_are_not_reachable(source: str) -> None:
    error = _refused(social=source)
    assert error.field == "social" and "not a declared variable" in error.message


def _settings(zone: str = "Etc/UTC"):  # type: ignore[no-untyped-def]
    from crisisdesk.config import Settings

    return Settings(demo=True, page_time_zone=zone)


@pytest.mark.parametrize(
    ("variables", "field"),
    [
        ([{"name": "Bad Name"}], "variables.0.name"),
        ([{"name": "start_time", "type": "text"}], "variables.0.type"),
        ([{"name": "customer", "type": "datetime"}], "variables.0.type"),
        ([{"name": "x"}, {"name": "x"}], "variables.1.name"),
    ],
)
def test_variable_declarations_are_checked(variables: list[dict[str, object]], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_variables(variables)
    assert caught.value.field == field


def test_required_variants_must_not_be_empty() -> None:
    assert _refused(body="  ").field == "body"
    assert _refused(title="").field == "title"


def test_times_render_in_the_page_time_zone() -> None:
    renderer = Renderer("Europe/Berlin")
    moment = datetime(2026, 7, 1, 12, 5, tzinfo=UTC)
    assert renderer.render("body", "{{ t|time }} / {{ t|datetime }}", {"t": moment}) == (
        "14:05 CEST / 01 Jul 2026, 14:05 CEST"
    )
    assert Renderer("Etc/UTC").render("body", "{{ t|time }}", {"t": moment}) == "12:05 UTC"


def test_only_the_html_variant_escapes() -> None:
    renderer = Renderer()
    values = {"workaround": "<b>Use SSO & passwords</b>"}
    assert renderer.render("email_html", "<p>{{ workaround }}</p>", values) == (
        "<p>&lt;b&gt;Use SSO &amp; passwords&lt;/b&gt;</p>"
    )
    assert renderer.render("email_text", "{{ workaround }}", values) == "<b>Use SSO & passwords</b>"


def test_operator_html_cannot_run_script() -> None:
    html = Renderer().render("email_html", '<p onclick="x()">Hi</p><script>alert(1)</script>', {})
    assert "script" not in html and "onclick" not in html and "Hi" in html


def test_preview_measures_sms_segments_and_social_length() -> None:
    long_sms = "Sign-in failures. " * 12  # 216 GSM-7 characters: two segments
    fields = template_fields(sms=long_sms, social="x" * 281, email_subject="a\nb " + "s" * 210)
    rendered = service.preview(_settings(), fields)
    sms = rendered.variants["sms"]
    assert sms.sms == {"encoding": "GSM-7", "units": 216, "segments": 2, "per_segment": 153}
    assert any("2 segments" in w for w in sms.warnings)
    assert rendered.variants["social"].length == 281 and rendered.variants["social"].warnings
    subject = rendered.variants["email_subject"]
    assert "\n" not in subject.text and any("several lines" in w for w in subject.warnings)
    assert any("at most 200" in w for w in subject.warnings)
    assert len(rendered.warnings) == 4


def test_one_emoji_turns_the_sms_into_ucs2() -> None:
    rendered = service.preview(_settings(), template_fields(sms="We are on it 🚒 " + "a" * 60))
    assert rendered.variants["sms"].sms["encoding"] == "UCS-2"  # type: ignore[index]
    assert rendered.variants["sms"].sms["segments"] == 2  # type: ignore[index]


def test_links_count_23_in_a_social_post() -> None:
    url = "https://status.example.com/incidents/" + "x" * 200
    assert social_length(f"Down. {url}") == len("Down. ") + 23


# Surrogates cannot be encoded and NUL is refused (see test_api); any other character must render.
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=300)


@settings(max_examples=150, deadline=None)
@given(workaround=TEXT, label=TEXT)
def test_any_text_value_renders_and_is_escaped_in_html(workaround: str, label: str) -> None:
    fields = template_fields(
        email_html="<p>{{ workaround }}</p><p>{{ note }}</p>",
        variables=[*template_fields()["variables"], {"name": "note", "type": "text"}],
    )
    variables = service.validate(fields)
    values = {v.name: None for v in variables} | {
        "components": ["Web app"],
        "start_time": datetime(2026, 1, 1, tzinfo=UTC),
        "next_update_at": datetime(2026, 1, 1, 1, tzinfo=UTC),
        "workaround": workaround,
        "note": label,
        "incident_url": "https://status.example.com/i/1",
    }
    from crisisdesk.comms.templates import coerce_values

    typed = coerce_values(variables, values)
    rendered = render_all(Renderer(), {k: str(fields.get(k) or "") for k in service.VARIANTS}, typed)
    html = rendered.text("email_html")
    assert "<script" not in html.lower() or "<" not in workaround
    for value in (typed["workaround"], typed["note"]):
        if "<" in value:
            assert "&lt;" in html
    assert typed["workaround"] in rendered.text("email_text")
