"""Operator-written message templates: typed variables, a sandbox, validation and measuring.

Templates are Jinja2 run in a :class:`~jinja2.sandbox.SandboxedEnvironment` with
``StrictUndefined``: a name that was not declared, an attribute the sandbox hides
(``''.__class__``) or a missing value fails loudly at save time instead of rendering blank in
front of customers. Only the email HTML variant autoescapes; the other variants are plain text
or Markdown, where escaping would show ``&amp;`` to readers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import nh3
from jinja2 import StrictUndefined, Template, TemplateError, TemplateSyntaxError, meta
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from crisisdesk.comms.sandbox import BoundedSandbox, Budget
from crisisdesk.kit.errors import InvalidInput
from crisisdesk.notify.smstext import measure

# The variables every template may declare, and their types; operators add their own text ones.
# Where an incident is known, workaround, eta and eta_at come from its current workaround and ETA;
# account, affected_components and impact_start are filled per account by proactive outreach.
KNOWN_VARIABLES: dict[str, str] = {
    "components": "components",
    "start_time": "datetime",
    "workaround": "text",
    "next_update_at": "datetime",
    "eta": "eta",
    "eta_at": "text",
    "incident_url": "url",
    "status_page_url": "url",
    "incident_name": "text",
    "account": "account",
    "affected_components": "components",
    "impact_start": "datetime",
}
VARIABLE_TYPES = ("components", "datetime", "text", "url", "eta", "account")
# What an ``account`` variable holds: ``{{ account.name }}``, ``{{ account.tier }}`` …
ACCOUNT_FIELDS = ("name", "tier", "external_id", "regions", "csm_owner")
CUSTOM_TYPE = "text"
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
MAX_VARIABLES = 30
MAX_VALUE = 2000

# Every variant a template has, in the order forms and previews show them.
VARIANTS: dict[str, str] = {
    "title": "Incident title",
    "body": "Status page (Markdown)",
    "email_subject": "Email subject",
    "email_html": "Email HTML",
    "email_text": "Email plain text",
    "sms": "SMS",
    "slack": "Slack",
    "teams": "Microsoft Teams",
    "social": "Social post",
}
REQUIRED_VARIANTS = ("title", "body")
MAX_SOURCE = 20_000
MAX_OUTPUT = 50_000
SOCIAL_LIMIT = 280
SOCIAL_URL_WEIGHT = 23  # X and Mastodon count every link as 23 characters
SUBJECT_LIMIT = 200
TITLE_LIMIT = 300
_URL = re.compile(r"https?://\S+")


def _tz(settings_zone: str) -> ZoneInfo:
    try:
        return ZoneInfo(settings_zone)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("Etc/UTC")


def _zone_label(value: datetime) -> str:
    name = value.tzname() or "UTC"
    return "UTC" if name in ("UTC", "GMT") else name


def format_datetime(value: datetime, zone: ZoneInfo) -> str:
    """A time as the ``datetime`` filter writes it, in ``zone``: 05 Mar 2026, 14:30 CET."""
    moment = (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(zone)
    return f"{moment:%d %b %Y, %H:%M} {_zone_label(moment)}"


def page_datetime(value: datetime, time_zone: str) -> str:
    """A time in the page's time zone (an unknown zone name falls back to UTC)."""
    return format_datetime(value, _tz(time_zone))


def _make_env(*, autoescape: bool, zone: ZoneInfo) -> BoundedSandbox:
    env = BoundedSandbox(undefined=StrictUndefined, autoescape=autoescape)
    # No globals: range(), lipsum() and cycler() are of no use in a message and only widen the surface.
    env.globals.clear()

    def local(value: Any) -> datetime | None:
        if isinstance(value, datetime):
            aware = value if value.tzinfo else value.replace(tzinfo=UTC)
            return aware.astimezone(zone)
        return None

    def as_time(value: Any) -> str:
        moment = local(value)
        return f"{moment:%H:%M} {_zone_label(moment)}" if moment else str(value or "")

    def as_datetime(value: Any) -> str:
        return format_datetime(value, zone) if isinstance(value, datetime) else str(value or "")

    def as_date(value: Any) -> str:
        moment = local(value)
        return f"{moment:%d %b %Y}" if moment else str(value or "")

    env.filters["time"] = as_time
    env.filters["datetime"] = as_datetime
    env.filters["date"] = as_date
    return env


@dataclass(frozen=True)
class Variable:
    name: str
    type: str
    label: str
    required: bool

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "label": self.label, "required": self.required}


def parse_variables(raw: Sequence[Mapping[str, Any]] | None) -> list[Variable]:
    """Check the declared variables: known names keep their type, custom names are text."""
    items = list(raw or [])
    if len(items) > MAX_VARIABLES:
        raise InvalidInput(f"at most {MAX_VARIABLES} variables", field="variables")
    seen: set[str] = set()
    parsed = []
    for index, item in enumerate(items):
        name = str(item.get("name", "")).strip()
        where = f"variables.{index}"
        if not NAME_PATTERN.match(name):
            raise InvalidInput(
                f"{name!r} is not a variable name: use lower-case letters, digits and _ (at most 40)",
                field=f"{where}.name",
            )
        if name in seen:
            raise InvalidInput(f"variable {name!r} is declared twice", field=f"{where}.name")
        seen.add(name)
        known = KNOWN_VARIABLES.get(name)
        kind = str(item.get("type") or known or CUSTOM_TYPE)
        if known is not None and kind != known:
            raise InvalidInput(f"{name!r} is a {known} variable, not {kind!r}", field=f"{where}.type")
        if known is None and kind != CUSTOM_TYPE:
            raise InvalidInput(
                f"custom variable {name!r} must be text; typed variables are: {', '.join(KNOWN_VARIABLES)}",
                field=f"{where}.type",
            )
        label = str(item.get("label") or name.replace("_", " ").capitalize())[:120]
        refuse_nul(label, label="the label", field=f"{where}.label")
        parsed.append(Variable(name, kind, label, bool(item.get("required", False))))
    return parsed


def sample_values(variables: Sequence[Variable], *, now: datetime | None = None) -> dict[str, Any]:
    """Typed stand-ins for a trial render and for the preview of an empty form."""
    moment = (now or datetime.now(UTC)).replace(second=0, microsecond=0)
    samples: dict[str, Any] = {
        "components": ["Sign-in (SSO)", "Web app"],
        "start_time": moment - timedelta(minutes=20),
        "next_update_at": moment + timedelta(minutes=30),
        "eta": moment + timedelta(hours=2),
        "incident_url": "https://status.example.com/incidents/inc_example",
        "status_page_url": "https://status.example.com/",
        "incident_name": "Sign-in failures for SSO users",
        "workaround": "Sign in with a password instead.",
        "eta_at": format_datetime(moment + timedelta(hours=2), ZoneInfo("Etc/UTC")),
        "account": {
            "name": "Example Corp",
            "tier": "Enterprise",
            "external_id": "CRM-0001",
            "regions": "eu-west",
            "csm_owner": "csm@example.com",
        },
        "affected_components": ["Sign-in (SSO)"],
        "impact_start": moment - timedelta(minutes=20),
    }
    return {v.name: samples.get(v.name, f"[{v.label}]") for v in variables}


def empty_value(kind: str) -> Any:
    if kind == "components":
        return []
    if kind == "account":
        return dict.fromkeys(ACCOUNT_FIELDS, "")
    if kind in ("datetime", "eta"):
        return None
    return ""


def coerce_values(variables: Sequence[Variable], values: Mapping[str, Any]) -> dict[str, Any]:
    """Check values against the declared types; missing optional ones render empty."""
    declared = {v.name for v in variables}
    unknown = sorted(set(values) - declared)
    if unknown:
        raise InvalidInput(f"{unknown[0]!r} is not a variable of this template", field=f"values.{unknown[0]}")
    result: dict[str, Any] = {}
    for var in variables:
        where = f"values.{var.name}"
        raw = values.get(var.name)
        if raw is None or raw == "" or raw == []:
            if var.required:
                raise InvalidInput(f"{var.label} is required", field=where)
            result[var.name] = empty_value(var.type)
            continue
        result[var.name] = _coerce(var, raw, where)
    return result


def _parse_time(raw: Any, where: str) -> datetime:
    if isinstance(raw, datetime):
        moment = raw
    else:
        try:
            moment = datetime.fromisoformat(str(raw).strip().replace("Z", "+00:00"))
        except ValueError:
            raise InvalidInput(f"{raw!r} is not a time; use ISO 8601, e.g. 2026-01-01T12:00Z", field=where) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _coerce(var: Variable, raw: Any, where: str) -> Any:
    if var.type == "account":
        # Outreach passes the account's fields; a form passes a name typed by hand.
        given = raw if isinstance(raw, Mapping) else {"name": raw}
        unknown = sorted(set(given) - set(ACCOUNT_FIELDS))
        if unknown:
            raise InvalidInput(f"{var.label} has no field {unknown[0]!r}", field=where)
        return {key: _text(var, given.get(key) or "", where) for key in ACCOUNT_FIELDS}
    if var.type == "components":
        items = [raw] if isinstance(raw, str) else list(raw) if isinstance(raw, list | tuple) else None
        if items is None:
            raise InvalidInput(f"{var.label} must be a list of component names", field=where)
        names = [str(i).strip() for i in items if str(i).strip()]
        if any(len(n) > 300 for n in names) or len(names) > 100:
            raise InvalidInput(f"{var.label}: at most 100 names of 300 characters", field=where)
        return names
    if var.type == "datetime":
        return _parse_time(raw, where)
    if var.type == "eta":
        if isinstance(raw, datetime):
            return _parse_time(raw, where)
        text = str(raw).strip()
        try:
            return _parse_time(text, where) if re.match(r"^\d{4}-\d\d-\d\d", text) else _text(var, text, where)
        except InvalidInput:
            return _text(var, text, where)
    text = _text(var, raw, where)
    if var.type == "url" and not re.match(r"^https?://[^\s/]+", text):
        raise InvalidInput(f"{var.label} must be an http(s) URL", field=where)
    return text


def refuse_nul(value: str, *, label: str, field: str) -> None:
    """Refuse a NUL character: PostgreSQL cannot store one in text, and no message needs it."""
    if "\x00" in value:
        raise InvalidInput(f"{label} contains a NUL character (\\0)", field=field)


def _text(var: Variable, raw: Any, where: str) -> str:
    text = str(raw).strip()
    refuse_nul(text, label=var.label, field=where)
    if len(text) > MAX_VALUE:
        raise InvalidInput(f"{var.label} is {len(text)} characters; at most {MAX_VALUE}", field=where)
    return text


def render_bounded(template: Template, values: Mapping[str, Any], *, limit: int = MAX_OUTPUT) -> str | None:
    """The output, or None once it passes ``limit``: streamed so a runaway loop cannot fill memory first."""
    parts: list[str] = []
    size = 0
    with Budget():
        for chunk in template.generate(dict(values)):
            size += len(chunk)
            if size > limit:
                return None
            parts.append(chunk)
    return "".join(parts)


class Renderer:
    """Compiles and renders template variants in the sandbox, in the page's time zone."""

    def __init__(self, time_zone: str = "Etc/UTC") -> None:
        zone = _tz(time_zone)
        self.text_env = _make_env(autoescape=False, zone=zone)
        self.html_env = _make_env(autoescape=True, zone=zone)

    def env_for(self, variant: str) -> SandboxedEnvironment:
        return self.html_env if variant == "email_html" else self.text_env

    def check_source(self, variant: str, source: str, declared: set[str]) -> None:
        """Syntax and declared names of one variant; raises naming the field (and line)."""
        if len(source) > MAX_SOURCE:
            raise InvalidInput(f"{VARIANTS[variant]} is {len(source)} characters; at most {MAX_SOURCE}", field=variant)
        refuse_nul(source, label=VARIANTS[variant], field=variant)
        env = self.env_for(variant)
        try:
            tree = env.parse(source)
        except TemplateSyntaxError as exc:
            raise InvalidInput(
                f"{VARIANTS[variant]}: syntax error on line {exc.lineno}: {exc.message}", field=variant
            ) from None
        undeclared = sorted(meta.find_undeclared_variables(tree) - declared)
        if undeclared:
            raise InvalidInput(
                f"{VARIANTS[variant]} uses {undeclared[0]!r}, which is not a declared variable: "
                "declare it, or remove it",
                field=variant,
            )

    @staticmethod
    def _bounded(template: Template, values: Mapping[str, Any]) -> str | None:
        return render_bounded(template, values)

    def render(self, variant: str, source: str, values: Mapping[str, Any]) -> str:
        """One variant with these values; any failure is a 422 naming the variant."""
        return self.compile(variant, source)(values)

    def compile(self, variant: str, source: str) -> Callable[[Mapping[str, Any]], str]:
        """One variant compiled once, to render for many sets of values (outreach renders per account)."""
        if not source:
            return lambda values: ""
        compiled: list[Template] = []

        def render(values: Mapping[str, Any]) -> str:
            return self._render_compiled(variant, source, compiled, values)

        return render

    def _render_compiled(self, variant: str, source: str, compiled: list[Template], values: Mapping[str, Any]) -> str:
        try:
            if not compiled:
                # Compiled at the first render, inside the same error handling as rendering.
                compiled.append(self.env_for(variant).from_string(source))
            output = self._bounded(compiled[0], values)
        except SecurityError as exc:
            raise InvalidInput(f"{VARIANTS[variant]}: not allowed in a template ({exc})", field=variant) from None
        except TemplateSyntaxError as exc:
            raise InvalidInput(
                f"{VARIANTS[variant]}: syntax error on line {exc.lineno}: {exc.message}", field=variant
            ) from None
        except TemplateError as exc:
            # StrictUndefined lands here for hidden attributes such as ''.__class__.
            raise InvalidInput(f"{VARIANTS[variant]} cannot be rendered: {exc}", field=variant) from None
        # Jinja's own filters check their arguments with assert (``truncate(-5)``).
        except (TypeError, ValueError, ArithmeticError, LookupError, AttributeError, AssertionError) as exc:
            raise InvalidInput(f"{VARIANTS[variant]} cannot be rendered: {exc}", field=variant) from None
        except RecursionError:
            # A macro that calls itself: Python's own limit stops it, the form gets the blame.
            raise InvalidInput(f"{VARIANTS[variant]} calls itself without end", field=variant) from None
        if output is None:
            raise InvalidInput(f"{VARIANTS[variant]} renders to more than {MAX_OUTPUT} characters", field=variant)
        if variant == "email_html":
            output = nh3.clean(output)
        return output


def social_length(text: str) -> int:
    """Characters as X and Mastodon count them: every link is 23."""
    links = _URL.findall(text)
    return len(_URL.sub("", text)) + SOCIAL_URL_WEIGHT * len(links)


def one_line(text: str) -> str:
    return " ".join(text.split())


@dataclass
class ChannelPreview:
    """One channel's rendering and what it measures."""

    variant: str
    label: str
    text: str
    length: int
    limit: int | None = None
    sms: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass
class Rendered:
    """Every variant rendered for one set of values, with the overruns found."""

    variants: dict[str, ChannelPreview]
    values: dict[str, Any]

    @property
    def warnings(self) -> list[str]:
        return [w for p in self.variants.values() for w in p.warnings]

    def text(self, variant: str) -> str:
        return self.variants[variant].text


def measure_all(outputs: Mapping[str, str]) -> dict[str, ChannelPreview]:
    """Measure each rendered variant against its channel's limit."""
    previews: dict[str, ChannelPreview] = {}
    for variant, label in VARIANTS.items():
        text = outputs.get(variant, "")
        preview = ChannelPreview(variant, label, text, len(text))
        if variant == "title":
            preview.text = one_line(text)
            preview.length, preview.limit = len(preview.text), TITLE_LIMIT
            if preview.length > TITLE_LIMIT:
                preview.warnings.append(f"Incident title is {preview.length} characters; at most {TITLE_LIMIT}.")
        elif variant == "email_subject":
            if "\n" in text.strip():
                preview.warnings.append("Email subject spans several lines; it is sent as one.")
            preview.text = one_line(text)
            preview.length, preview.limit = len(preview.text), SUBJECT_LIMIT
            if preview.length > SUBJECT_LIMIT:
                preview.warnings.append(f"Email subject is {preview.length} characters; at most {SUBJECT_LIMIT}.")
        elif variant == "sms" and text:
            info = measure(text)
            preview.sms = {
                "encoding": info.encoding,
                "units": info.units,
                "segments": info.segments,
                "per_segment": info.per_segment,
            }
            preview.limit = info.per_segment
            if info.segments > 1:
                preview.warnings.append(
                    f"SMS is {info.units} {info.encoding} units: {info.segments} segments of {info.per_segment} "
                    "(one segment is 160 GSM-7 or 70 UCS-2 characters)."
                )
        elif variant == "social" and text:
            preview.length, preview.limit = social_length(text), SOCIAL_LIMIT
            if preview.length > SOCIAL_LIMIT:
                preview.warnings.append(f"Social post is {preview.length} characters; at most {SOCIAL_LIMIT}.")
        previews[variant] = preview
    return previews


def render_all(
    renderer: Renderer, sources: Mapping[str, str], values: Mapping[str, Any], *, variants: Sequence[str] | None = None
) -> Rendered:
    """Render every variant (or the ones named) and measure them."""
    chosen = list(variants or VARIANTS)
    outputs = {v: renderer.render(v, sources.get(v) or "", values) for v in chosen}
    return Rendered(measure_all(outputs), dict(values))
