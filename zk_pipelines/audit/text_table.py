"""An aligned plain-text table for a terminal: one column shrinks (with an ellipsis) so that rows fit the
width; the others are never cut, because an id or a link cut short is useless."""

from __future__ import annotations

from collections.abc import Sequence

ELLIPSIS = "…"
GAP = "  "


def _one_line(value: str) -> str:
    return " ".join(value.split())


def _cut(value: str, width: int) -> str:
    return value if len(value) <= width else value[: max(width - 1, 0)] + ELLIPSIS


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
    lines = []
    for row in [list(headers), ["-" * w for w in widths], *cells]:
        padded = [_cut(value, widths[i]).ljust(widths[i]) for i, value in enumerate(row)]
        lines.append(GAP.join(padded).rstrip())
    return "\n".join(lines)
