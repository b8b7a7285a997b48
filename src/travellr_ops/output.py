"""Human (Rich), JSON and quiet output. Data goes to stdout; everything else to stderr."""

from __future__ import annotations

import dataclasses
import enum
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Any, Protocol

from rich.console import Console
from rich.table import Table

from travellr_ops.redact import mask


class Mode(enum.StrEnum):
    HUMAN = "human"
    JSON = "json"
    QUIET = "quiet"


def to_jsonable(value: Any) -> Any:
    """Plain JSON types from the dataclasses, enums, paths and times that ops return."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


class ProgressTask(Protocol):
    def advance(self, amount: float = 1) -> None: ...
    def update(self, *, total: float | None = None, description: str | None = None) -> None: ...


class _NoProgress:
    def advance(self, amount: float = 1) -> None:
        pass

    def update(self, *, total: float | None = None, description: str | None = None) -> None:
        pass


#: what long work is given to show its progress: ``progress(description, total)``
ProgressFactory = Callable[[str, float | None], AbstractContextManager[ProgressTask]]


@contextmanager
def no_progress(description: str, total: float | None = None) -> Iterator[ProgressTask]:
    """Progress that shows nothing (tests, and work run without a person watching)."""
    yield _NoProgress()


class _RichTask:
    def __init__(self, progress: Any, task_id: Any) -> None:
        self._progress = progress
        self._task_id = task_id

    def advance(self, amount: float = 1) -> None:
        self._progress.advance(self._task_id, amount)

    def update(self, *, total: float | None = None, description: str | None = None) -> None:
        kwargs: dict[str, Any] = {}
        if total is not None:
            kwargs["total"] = total
        if description is not None:
            kwargs["description"] = description
        self._progress.update(self._task_id, **kwargs)


class Output:
    """Where a command's results and messages go, in one of three modes."""

    def __init__(
        self,
        mode: Mode = Mode.HUMAN,
        stdout: Console | None = None,
        stderr: Console | None = None,
    ) -> None:
        self.mode = mode
        #: a result document is on stdout already (--json prints one document, never two)
        self.wrote_result = False
        self.stdout = stdout or WholeConsole(file=sys.stdout, highlight=False, soft_wrap=False)
        self.stderr = stderr or Console(file=sys.stderr, highlight=False, soft_wrap=True)

    @property
    def json(self) -> bool:
        return self.mode is Mode.JSON

    @property
    def quiet(self) -> bool:
        return self.mode is Mode.QUIET

    def result(self, data: Any, render: Callable[[Console], None] | None = None) -> None:
        """A command's result: JSON document in --json mode, ``render`` for people."""
        if self.mode is Mode.JSON:
            self._write_json(to_jsonable(data))
        elif self.mode is Mode.HUMAN and render is not None:
            render(self.stdout)

    def info(self, message: str) -> None:
        if self.mode is not Mode.QUIET:
            self.stderr.print(mask(message), markup=False)

    def success(self, message: str) -> None:
        if self.mode is not Mode.QUIET:
            self.stderr.print(f"[green]✓[/] {escape(mask(message))}")

    def warn(self, message: str) -> None:
        self.stderr.print(f"[yellow]warning:[/] {escape(mask(message))}")

    def error(self, message: str, hint: str | None = None) -> None:
        self.stderr.print(f"[bold red]error:[/] {escape(mask(message))}")
        if hint:
            self.stderr.print(f"[dim]hint:[/] {escape(mask(hint))}")

    def failure(self, message: str, hint: str | None, *, exit_code: int, kind: str) -> None:
        """The error a command ended with: one line and a hint on stderr, and with --json
        the error document on stdout."""
        self.error(message, hint)
        self.error_document(message, hint, exit_code=exit_code, kind=kind)

    def error_document(self, message: str, hint: str | None, *, exit_code: int, kind: str) -> None:
        """With --json: ``{"ok": false, "exit_code", "error": {"message", "hint", "kind"}}`` on
        stdout, unless the command printed its result document before it failed."""
        if self.mode is Mode.JSON and not self.wrote_result:
            error = {"message": mask(message), "hint": mask(hint) if hint else None, "kind": kind}
            self._write_json({"ok": False, "exit_code": exit_code, "error": error})

    def _write_json(self, document: Any) -> None:
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
        sys.stdout.flush()
        self.wrote_result = True

    @contextmanager
    def progress(self, description: str, total: float | None = None) -> Iterator[ProgressTask]:
        """A progress bar on stderr for people at a terminal; a no-op for cron, JSON and pipes."""
        if self.mode is not Mode.HUMAN or not self.stderr.is_terminal:
            yield _NoProgress()
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        columns = (
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=self.stderr, transient=True) as progress:
            yield _RichTask(progress, progress.add_task(description, total=total))


def escape(text: str) -> str:
    from rich.markup import escape as rich_escape

    return rich_escape(text)


#: a column whose cells are all this short never wraps: "12.5 MiB" stays on one line
SHORT_CELL = 20


def table(title: str | None, columns: list[str], rows: list[list[Any]]) -> Table:
    """A plain Rich table, the house look for every listing."""
    from rich.cells import cell_len

    cells = [["" if cell is None else str(cell) for cell in row] for row in rows]
    tbl = Table(title=title, title_justify="left", header_style="bold")
    for index, column in enumerate(columns):
        short = all(cell_len(row[index]) <= SHORT_CELL for row in cells if index < len(row))
        tbl.add_column(column, no_wrap=short)
    for row in cells:
        tbl.add_row(*row)
    return tbl


class WholeConsole(Console):
    """A console that never cuts an identifier in a table: the one output rule of every table.

    Off a terminal (a pipe, cron mail, a CI log) with no width given, a table takes the width
    its content needs, one line a row, as kubectl prints when piped. At a terminal, or with a
    width given, Rich's even cutting of the widest columns (which cut URLs and backup names) is
    replaced: only columns of several words wrap, at word boundaries, none narrower than its
    longest word (short columns, values with their units, do not wrap at all); when even that
    does not fit and the output is not a terminal, the table is printed wider instead.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._width_given = kwargs.get("width") is not None

    def print(self, *objects: Any, **kwargs: Any) -> None:
        tables = [o for o in objects if isinstance(o, Table)]
        if not tables:
            super().print(*objects, **kwargs)
            return
        if self.is_terminal or self._width_given:
            needed = max(_fit(self, t) for t in tables)
        else:
            needed = max(_natural(self, t) for t in tables)
        if needed <= self.width or self.is_terminal:
            super().print(*objects, **kwargs)
            return
        width = self._width
        self.width = needed
        try:
            super().print(*objects, **kwargs)
        finally:
            self._width = width


def _natural(console: Console, tbl: Table) -> int:
    """The width ``tbl`` takes with no column wrapped."""
    from rich.measure import Measurement

    return Measurement.get(console, console.options.update_width(1_000_000), tbl).maximum


def _fit(console: Console, tbl: Table) -> int:
    """Cap the wrapping columns of ``tbl`` so that it fits the console without a word cut
    (the widest columns give up width first, none below its longest word); return the width
    the table then needs."""
    from rich.measure import Measurement

    wide = console.options.update_width(1_000_000)
    natural = Measurement.get(console, wide, tbl).maximum
    if natural <= console.width:
        return natural
    floors, tops = [], []
    for column in tbl.columns:
        sizes = [Measurement.get(console, wide, cell) for cell in [column.header, *column.cells]]
        top = max(size.maximum for size in sizes)
        tops.append(top)
        floors.append(top if column.no_wrap else max(size.minimum for size in sizes))
    chrome = natural - sum(tops)  # borders and padding
    budget = console.width - chrome

    def widths(cap: int) -> list[int]:
        return [max(lo, min(hi, cap)) for lo, hi in zip(floors, tops, strict=True)]

    low, high = 0, max(tops)  # the largest cap whose widths fit the budget
    while low < high:
        middle = (low + high + 1) // 2
        if sum(widths(middle)) <= budget:
            low = middle
        else:
            high = middle - 1
    fitted = widths(low)
    for column, width, top in zip(tbl.columns, fitted, tops, strict=True):
        if width < top:
            column.max_width = width
    return sum(fitted) + chrome


VERDICT_STYLE = {
    "ok": "green",
    "healthy": "green",
    "pass": "green",
    "warn": "yellow",
    "degraded": "yellow",
    "maintenance": "cyan",
    "fail": "red",
    "down": "bold red",
    "unhealthy": "red",
}


def verdict(word: str) -> str:
    """A verdict word coloured for people (``ok`` green, ``fail`` red...)."""
    style = VERDICT_STYLE.get(word.lower(), "")
    return f"[{style}]{word}[/]" if style else word
