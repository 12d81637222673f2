"""Tables for people: rich on a terminal, plain aligned columns otherwise — never a column cut.

Output that goes to a log, a ticket or a pipe must keep every column: a status table whose last
columns were folded away in the demo's log hid exactly the column that said what needed attention.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def print_table(
    title: str, header: Sequence[str], rows: Sequence[Sequence[str]], attention: Sequence[bool] | None = None
) -> None:
    """``attention[i]`` marks row i (bold red on a terminal, a leading '!' otherwise)."""
    marks = list(attention) if attention is not None else [False] * len(rows)
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title, title_justify="left")
        for col in header:
            table.add_column(col, overflow="fold")
        for row, bad in zip(rows, marks, strict=True):
            table.add_row(*row, style="bold red" if bad else "")
        Console(highlight=False).print(table)
        return
    print(plain(header, rows, marks))


def plain(header: Sequence[str], rows: Sequence[Sequence[str]], marks: Sequence[bool]) -> str:
    """Aligned columns; the last one is never padded, so nothing trails and nothing is cut."""
    lines = [("  ", list(header))] + [("! " if bad else "  ", list(row)) for row, bad in zip(rows, marks, strict=True)]
    widths = [max(len(cells[i]) for _, cells in lines) for i in range(len(header) - 1)]
    out = []
    for mark, cells in lines:
        out.append(mark + "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=False)) + "  " + cells[-1])
    return "\n".join(line.rstrip() for line in out)
