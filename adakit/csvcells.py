"""Text cells of the CSV files adakit writes for people, safe to open in a spreadsheet.

A cell that begins with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is read as a formula by Excel,
LibreOffice and Google Sheets (CSV injection: a sample named ``=HYPERLINK(...)`` would run when an annotator
opens the export). Such text cells are written with a leading apostrophe, which spreadsheets show as a text
marker; `plain_cell` takes it off again when a file is read back, so every id round-trips exactly (a cell
saved back by a spreadsheet, without the apostrophe, reads the same). Numbers are written as they are.
"""

from __future__ import annotations

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _needs_mark(text: str) -> bool:
    """Whether ``text`` starts a formula, or is such a text already marked (so that marking is reversible)."""
    return text.startswith(FORMULA_START) or (text.startswith("'") and _needs_mark(text[1:]))


def safe_cell(value: object) -> object:
    """``value`` as a spreadsheet shows it literally: text that would start a formula gets a leading ``'``."""
    return "'" + value if isinstance(value, str) and _needs_mark(value) else value


def plain_cell(text: str) -> str:
    """The text `safe_cell` was given: the leading ``'`` it added is taken off (other text is unchanged)."""
    return text[1:] if text.startswith("'") and _needs_mark(text[1:]) else text
