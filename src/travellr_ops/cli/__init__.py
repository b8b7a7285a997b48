"""The command line. Typer 0.16 imports, with itself, rich's Markdown and Traceback renderers
(about 60 ms: markdown-it, pygments' lexers) for two features this app turns off: help in
Markdown mode and pretty tracebacks. Both load on first use instead, so that every command
reaches its first server sooner (bench/startup)."""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any


def _real(module: str) -> types.ModuleType:
    """The real module, imported in place of its stand-in on first use."""
    if getattr(sys.modules.get(module), "_travellr_deferred", False):
        del sys.modules[module]
    return importlib.import_module(module)


def _defer(module: str, name: str, *classmethods: str) -> None:
    if module in sys.modules:
        return

    class Deferred:
        def __new__(cls, *args: Any, **kwargs: Any) -> Any:
            return getattr(_real(module), name)(*args, **kwargs)

    for method in classmethods:

        def forward(cls: type, /, *args: Any, _method: str = method, **kwargs: Any) -> Any:
            return getattr(getattr(_real(module), name), _method)(*args, **kwargs)

        setattr(Deferred, method, classmethod(forward))
    Deferred.__name__ = Deferred.__qualname__ = name
    stand_in = types.ModuleType(module)
    stand_in._travellr_deferred = True  # type: ignore[attr-defined]
    setattr(stand_in, name, Deferred)
    sys.modules[module] = stand_in


_defer("rich.markdown", "Markdown")
_defer("rich.traceback", "Traceback", "from_exception")
