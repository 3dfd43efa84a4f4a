"""Aligned plain-text columns for a terminal, written once for every command that prints a table: the settings
check's and the push plan's columns (`aligned_columns`), and the audit log's table (`text_table`), where one column
shrinks (with an ellipsis) so that rows fit the width; the others are never cut, because an id or a link cut short
is useless."""

from __future__ import annotations

from collections.abc import Sequence, Set

ELLIPSIS = "…"
GAP = "  "


def _one_line(value: str) -> str:
    return " ".join(value.split())


def _cut(value: str, width: int) -> str:
    return value if len(value) <= width else value[: max(width - 1, 0)] + ELLIPSIS


def aligned_columns(rows: Sequence[Sequence[str]], indent: str = "  ", right: Set[int] = frozenset()) -> list[str]:
    """Each row a line, each column as wide as its widest cell (a row may have fewer cells than others), the
    columns in `right` aligned right; no trailing blanks."""
    widths = [max(len(row[i]) for row in rows if i < len(row)) for i in range(max(len(row) for row in rows))]
    return [indent + GAP.join(cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
                              for i, cell in enumerate(row)).rstrip() for row in rows]


def text_table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, width: int, shrinkable: int,
               min_shrunk: int = 40) -> str:
    """Columns as wide as their widest cell; when the table is wider than `width`, column `shrinkable` is
    narrowed (to `min_shrunk` at least) and its longer cells end in an ellipsis. The last column is not
    padded, so a long link does not leave trailing blanks."""
    cells = [[_one_line(str(c)) for c in row] for row in rows]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(headers)]
    overflow = sum(widths) + len(GAP) * (len(widths) - 1) - width
    if overflow > 0:
        widths[shrinkable] = max(min_shrunk, min(widths[shrinkable], widths[shrinkable] - overflow))
    cut = [[_cut(value, widths[i]) for i, value in enumerate(row)]
           for row in [list(headers), ["-" * w for w in widths], *cells]]
    return "\n".join(aligned_columns(cut, indent=""))
