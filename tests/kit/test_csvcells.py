"""CSV cells a spreadsheet opens as text: made safe on the way out, read back exactly."""

from __future__ import annotations

import csv
import io

from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from crisisdesk.kit import csvcells

RISKY = "=+-@\t\r"
# Values that start the way a formula does, or with apostrophes before that, and any others.
values = st.one_of(
    st.text(),
    st.builds(lambda quotes, first, rest: "'" * quotes + first + rest,
              st.integers(0, 3), st.sampled_from(RISKY), st.text(max_size=20)),
)  # fmt: skip


def test_formula_cells_get_an_apostrophe_and_others_stay() -> None:
    assert csvcells.safe_cell('=HYPERLINK("http://x.example","Click")') == '\'=HYPERLINK("http://x.example","Click")'
    assert [csvcells.safe_cell(v) for v in ["+1", "-2", "@SUM(A1)", "\tx", "\rx"]] == [
        "'+1",
        "'-2",
        "'@SUM(A1)",
        "'\tx",
        "'\rx",
    ]
    assert csvcells.safe_cell("'=x") == "''=x" and csvcells.safe_cell("''@x") == "'''@x"
    for plain in ["", "Acme", "'quoted'", "'", "a=b", " =x", "1-2", "120000.50"]:
        assert csvcells.safe_cell(plain) == plain and csvcells.read_cell(plain) == plain
    assert csvcells.read_cell("'=x") == "=x" and csvcells.read_cell("''=x") == "'=x"  # fmt: skip


@hypothesis_settings(max_examples=500, deadline=None)
@given(value=values)
def test_a_cell_reads_back_as_written_and_never_starts_like_a_formula(value: str) -> None:
    written = csvcells.safe_cell(value)
    assert not written.startswith(tuple(RISKY))
    assert csvcells.read_cell(written) == value


@hypothesis_settings(max_examples=200, deadline=None)
@given(row=st.lists(values, min_size=1, max_size=5))
def test_a_row_survives_a_csv_file(row: list[str]) -> None:
    out = io.StringIO()
    csvcells.writer(out).writerow([*row, 7])  # "\r\n" lines, so a cell's own "\r" is quoted
    [read] = list(csv.reader(io.StringIO(out.getvalue(), newline="")))
    assert all(not cell.startswith(tuple(RISKY)) for cell in read)
    assert [csvcells.read_cell(cell) for cell in read] == [*row, "7"]
