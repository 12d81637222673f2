"""The operator's live view of a run: a ``rich`` table on a terminal, else the engine's plain or JSON lines.

rich is imported only here, and only for the live view: ~0.15 s of start-up that plain and JSON output
(logs, CI, an emergency rollback piped to a file) do not need, and that the engine never pays.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TextIO

from upgrader.engine.progress import Lines, Row

if TYPE_CHECKING:
    from rich.console import Console
    from rich.live import Live
    from rich.table import Table

_STYLE = {
    "done": "green",
    "verified": "green",
    "rolled-back": "yellow",
    "failed": "red",
    "rollback-failed": "bold red",
    "unreachable": "bold red",
    "skipped": "dim",
    "held": "bold magenta",
}


class Progress(Lines):
    """``fmt``: rich (a live table of the hosts), plain, json, or auto (rich on a terminal, else plain)."""

    def __init__(self, fmt: str = "auto", stream: TextIO | None = None) -> None:
        super().__init__(fmt, stream)
        if self.fmt == "auto":
            self.fmt = "rich" if self.stream.isatty() else "plain"
        self._live: Live | None = None
        self._console: Console | None = None
        if self.fmt == "rich":
            from rich.console import Console

            self._console = Console(file=self.stream, highlight=False)

    def __enter__(self) -> Progress:
        if self._console is not None:
            from rich.live import Live

            self._live = Live(self._table(), console=self._console, refresh_per_second=8, transient=True)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)
            self._live = None

    def write(self, line: str) -> None:
        if self._live is not None:
            stamp, _, rest = line.partition(" ")
            self._live.console.print(f"[dim]{stamp}[/] {rest}", markup=True, highlight=False)
        else:
            super().write(line)

    def host_state(self, host: str, state: str, detail: str = "") -> None:
        super().host_state(host, state, detail)
        with self._lock:
            if self._live is not None:
                self._live.update(self._table())

    def _table(self) -> Table:
        from rich.table import Table

        table = Table(box=None, show_header=True, header_style="bold")
        table.add_column("host")
        table.add_column("state")
        table.add_column("detail", overflow="fold")
        for host, (state, detail) in self.states.items():
            table.add_row(host, f"[{_STYLE.get(state, 'cyan')}]{state}[/]", detail)
        return table

    def summary(self, title: str, rows: list[Row]) -> None:
        if self._console is None:
            super().summary(title, rows)
            return
        from rich.table import Table

        table = Table(title=title, title_justify="left")
        for col in ("host", "dc", "state", "detail"):
            table.add_column(col, overflow="fold")
        for host, dc, state, detail in rows:
            table.add_row(host, dc, f"[{_STYLE.get(state, 'cyan')}]{state}[/]", detail)
        self._console.print(table)
