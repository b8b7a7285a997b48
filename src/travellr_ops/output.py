"""Human (Rich), JSON and quiet output. Data goes to stdout; everything else to stderr."""

from __future__ import annotations

import dataclasses
import enum
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
        self.stdout = stdout or Console(file=sys.stdout, highlight=False, soft_wrap=False)
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


def table(title: str | None, columns: list[str], rows: list[list[Any]]) -> Table:
    """A plain Rich table, the house look for every listing."""
    tbl = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        tbl.add_column(column)
    for row in rows:
        tbl.add_row(*("" if cell is None else str(cell) for cell in row))
    return tbl


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
