"""ASCII tables shaped like etcdctl's ``-w table`` (olekukonko/tablewriter, right-aligned).

Headers are centered; cells are right-aligned; a cell wider than 30 columns is wrapped at
spaces into several lines, choosing the breaks that make the lines most even (minimum
raggedness), as the tablewriter etcdctl 3.4 is built with does.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

WRAP_WIDTH = 30
_TOO_LONG_PENALTY = 100_000


def display_width(text: str) -> int:
    """Terminal columns ``text`` takes: wide East Asian characters count 2, marks 0."""
    width = 0
    for char in text:
        if unicodedata.combining(char):
            continue
        width += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return width


def wrap_words(words: Sequence[str], limit: int) -> list[str]:
    """Split words into lines of at most ``limit`` columns with the most even line lengths."""
    n = len(words)
    widths = [display_width(w) for w in words]
    # cost[i]: the best total cost of laying out words[i:]; breaks[i]: where its line ends.
    cost = [0] * (n + 1)
    breaks = [n] * (n + 1)
    for i in range(n - 1, -1, -1):
        line = sum(widths[i:]) + (n - i - 1)
        if line <= limit:
            cost[i], breaks[i] = 0, n
            continue
        best = None
        line = widths[i]
        for j in range(i + 1, n):
            slack = limit - line
            candidate = slack * slack + cost[j] + (_TOO_LONG_PENALTY if line > limit else 0)
            if best is None or candidate < best:
                best, breaks[i] = candidate, j
            line += 1 + widths[j]
        cost[i] = best if best is not None else 0
    lines, i = [], 0
    while i < n:
        lines.append(" ".join(words[i : breaks[i]]))
        i = breaks[i]
    return lines


def _wrap_cell(text: str, limit: int) -> list[str]:
    words = text.replace("\n", " ").split(" ")
    return wrap_words(words, max(limit, *(display_width(w) for w in words)))


def _pad_left(text: str, width: int) -> str:
    return " " * (width - display_width(text)) + text


def _center(text: str, width: int) -> str:
    gap = width - display_width(text)
    return " " * (gap // 2) + text + " " * (gap - gap // 2)


def render_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """The whole table as text, ending with a newline.

    Column widths grow as cells are met, header first: a cell counts for at most
    WRAP_WIDTH columns, is wrapped to the column's width so far, and a word longer than
    that widens the column. (So widths follow tablewriter's, cell order included.)
    """
    widths = [min(display_width(h), WRAP_WIDTH) for h in header]
    cells = []
    for row in rows:
        lines_of_row = []
        for column, text in enumerate(row):
            widths[column] = max(widths[column], min(display_width(text), WRAP_WIDTH))
            lines = _wrap_cell(text, widths[column])
            widths[column] = max(widths[column], *(display_width(line) for line in lines))
            lines_of_row.append(lines)
        cells.append(lines_of_row)
    border = "+" + "+".join("-" * (w + 2) for w in widths) + "+\n"
    heading = "|".join(f" {_center(h, w)} " for h, w in zip(header, widths, strict=True))
    out = [border, f"|{heading}|\n", border]
    for row in cells:
        for index in range(max(len(lines) for lines in row)):
            parts = []
            for lines, width in zip(row, widths, strict=True):
                text = lines[index] if index < len(lines) else ""
                parts.append(f" {_pad_left(text, width)} ")
            out.append("|" + "|".join(parts) + "|\n")
    out.append(border)
    return "".join(out)
