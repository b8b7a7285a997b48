"""A proxy in front of a real server whose connections a test can cut all at once: a
connection lost mid-exec, without touching the server itself."""

from __future__ import annotations

import contextlib
import socket
import threading
from pathlib import Path
from typing import Any


class CuttableProxy:
    """Forwards every connection it accepts to ``upstream``; ``cut`` ends them all and stops
    accepting (what a dropped network or a dead bastion looks like to a client)."""

    def __init__(self, family: int, listen_on: Any, upstream: Any) -> None:
        self.family = family
        self.upstream = upstream
        self.listener = socket.socket(family)
        self.listener.bind(listen_on)
        self.listener.listen(16)
        self.address = self.listener.getsockname()
        self.open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @classmethod
    def unix(cls, upstream: str, path: Path) -> CuttableProxy:
        return cls(socket.AF_UNIX, str(path), upstream)

    @classmethod
    def tcp(cls, upstream_port: int) -> CuttableProxy:
        return cls(socket.AF_INET, ("127.0.0.1", 0), ("127.0.0.1", upstream_port))

    @property
    def port(self) -> int:
        return int(self.address[1])

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = self.listener.accept()
                server = socket.socket(self.family)
                server.connect(self.upstream)
                self.open += [client, server]
                for a, b in ((client, server), (server, client)):
                    threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)

    def cut(self) -> None:
        for s in [self.listener, *self.open]:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
