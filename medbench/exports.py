"""Safe text exports: CSV cells a spreadsheet will not run, Markdown cells that carry no HTML.

    from medbench.exports import csv_text, md_cell
    csv_text([["model", "value"], ["=HYPERLINK(...)", 0.4]])   # -> "model,value\\r\\n'=HYPERLINK(...),0.4\\r\\n"
    md_cell("a|b <img src=x>")                                  # -> "a\\|b &lt;img src=x&gt;"

Spreadsheets (Excel, LibreOffice, Google Sheets) evaluate a cell that starts with ``= + - @``, a tab
or a carriage return as a formula (OWASP "CSV injection"); such text cells get a leading ``'``.
Numbers are written as numbers (a negative value is not text and is left alone).
"""
from __future__ import annotations

import csv
import html
import io
import math
from typing import Any, Iterable

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """A value for csv.writer: text that a spreadsheet would run as a formula is prefixed with '."""
    if value is None:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return ""
    if isinstance(value, (bool, int, float)):
        return value
    text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def csv_text(rows: Iterable[Iterable[Any]]) -> str:
    """CSV text of rows (RFC 4180: CRLF line ends, so a cell holding CR or LF is quoted), every cell
    through `csv_cell`."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    for row in rows:
        writer.writerow([csv_cell(v) for v in row])
    return buf.getvalue()


def md_cell(value: Any) -> str:
    """Text for one Markdown table cell: HTML escaped, pipes and backslashes escaped, one line."""
    text = "" if value is None else str(value)
    text = html.escape(text, quote=False).replace("\\", "\\\\").replace("|", "\\|").replace("`", "\\`")
    return " ".join(text.split())
