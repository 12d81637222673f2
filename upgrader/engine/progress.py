"""Telling the operator what is happening: a live table on a terminal, lines otherwise, or JSON lines."""

from __future__ import annotations

import json
import sys
import threading
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from rich.live import Live
    from rich.table import Table

# rich is imported only for the live view: ~0.15 s of start-up that plain and JSON output (logs, CI,
# an emergency rollback piped to a file) do not need.

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


class Progress:
    """Events in, output out.  ``host_state`` feeds the live table and the final summary."""

    def __init__(self, fmt: str = "auto", stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        if fmt == "auto":
            fmt = "rich" if self.stream.isatty() else "plain"
        self.fmt = fmt
        self.states: dict[str, tuple[str, str]] = {}
        self._lock = threading.Lock()
        self._live: Live | None = None
        self._console = None
        if fmt == "rich":
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

    def event(self, kind: str, message: str, host: str | None = None, **data: Any) -> None:
        with self._lock:
            if self.fmt == "json":
                record = {
                    "at": datetime.now(UTC).isoformat(timespec="milliseconds"),
                    "event": kind,
                    "host": host,
                    "message": message,
                    **data,
                }
                self.stream.write(json.dumps(record, sort_keys=True, default=str) + "\n")
                self.stream.flush()
            elif self._console is not None and self._live is not None:
                self._live.console.print(
                    f"[dim]{_now()}[/] {(host + ': ') if host else ''}{message}", markup=True, highlight=False
                )
            else:
                self.stream.write(f"{_now()} {(host + ': ') if host else ''}{message}\n")
                self.stream.flush()

    def host_state(self, host: str, state: str, detail: str = "") -> None:
        with self._lock:
            self.states[host] = (state, detail)
            if self._live is not None:
                self._live.update(self._table())

    def _table(self) -> Table:
        from rich.table import Table

        table = Table(box=None, show_header=True, header_style="bold")
        table.add_column("host")
        table.add_column("state")
        table.add_column("detail", overflow="fold")
        for host, (state, detail) in self.states.items():
            style = _STYLE.get(state, "cyan")
            table.add_row(host, f"[{style}]{state}[/]", detail)
        return table

    def summary(self, title: str, rows: list[tuple[str, str, str, str]]) -> None:
        """rows: host, datacenter, end state, detail."""
        if self.fmt == "json":
            self.event(
                "summary",
                title,
                rows=[dict(zip(("host", "datacenter", "state", "detail"), r, strict=True)) for r in rows],
            )
            return
        if self._console is None:
            self.stream.write(_plain_table(title, rows))
            self.stream.flush()
            return
        from rich.table import Table

        table = Table(title=title, title_justify="left")
        for col in ("host", "dc", "state", "detail"):
            table.add_column(col, overflow="fold")
        for host, dc, state, detail in rows:
            table.add_row(host, dc, f"[{_STYLE.get(state, 'cyan')}]{state}[/]", detail)
        self._console.print(table)


def _plain_table(title: str, rows: list[tuple[str, str, str, str]]) -> str:
    """The summary for logs and pipes: aligned columns, no box drawing, one line per host."""
    header = ("host", "dc", "state", "detail")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
    lines = [
        title,
        *("  ".join(c.ljust(w) for c, w in zip(r[:3], widths, strict=True)) + "  " + r[3] for r in [header, *rows]),
    ]
    return "\n".join(line.rstrip() for line in lines) + "\n"


def _now() -> str:
    return datetime.now(UTC).strftime("%H:%M:%S")
