"""CSV cells that a spreadsheet opens as text, never as a formula.

Excel, LibreOffice and Google Sheets run a cell that starts with ``=``, ``+``, ``-`` or ``@``
(a tab or carriage return first works too) as a formula, so an account named
``=HYPERLINK(...)`` would become a link, or worse, in the file a colleague opens. Such a cell is
written with a leading apostrophe, which those programs read as "this is text" and do not show.

Reading it back strips that one apostrophe, so an export imports as exactly what was exported.
A value that itself starts with apostrophes before such a character gets one more on the way
out, so it too comes back unchanged.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from typing import Any

_ESCAPED = re.compile(r"'+[=+\-@\t\r]")
_RISKY = re.compile(r"'*[=+\-@\t\r]")


def safe_cell(value: str) -> str:
    """The value as written to a CSV file: a leading apostrophe when a spreadsheet would run it."""
    return "'" + value if _RISKY.match(value) else value


def read_cell(value: str) -> str:
    """The value a cell written by :func:`safe_cell` held."""
    return value[1:] if _ESCAPED.match(value) else value


class SafeWriter:
    """A ``csv.writer`` whose text cells go through :func:`safe_cell`."""

    def __init__(self, out: Any, **options: Any) -> None:
        self._writer = csv.writer(out, **options)

    def writerow(self, row: Iterable[object]) -> None:
        self._writer.writerow([safe_cell(v) if isinstance(v, str) else v for v in row])

    def writerows(self, rows: Iterable[Iterable[object]]) -> None:
        for row in rows:
            self.writerow(row)


def writer(out: Any, **options: Any) -> SafeWriter:
    """Like ``csv.writer(out, **options)``, for files people open in a spreadsheet."""
    return SafeWriter(out, **options)
