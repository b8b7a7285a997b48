"""Pod logs: read whole (every pod at once, merged by time) or followed as they are written."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from travellr_ops.adapters.kubernetes.client import REQUEST_TIMEOUT, KubeClient, status_message
from travellr_ops.adapters.log_streams import follow_all, split_lines, stamped_line
from travellr_ops.adapters.platform_types import LogLine
from travellr_ops.errors import OperationFailed, TravellrError


@dataclass
class PodLog:
    """One container's log in one pod, as ``kubectl logs --timestamps`` reads it."""

    client: KubeClient
    pod: str
    container: str | None = None
    tail: int | None = None
    since_s: int | None = None
    previous: bool = False
    follow: bool = False
    #: the name its lines carry: the pod, or pod/container when pods have several
    source: str = ""
    _stop: threading.Event = field(default_factory=threading.Event, init=False, repr=False)

    def __post_init__(self) -> None:
        self.source = self.source or self.pod

    def lines(self) -> Iterator[LogLine]:
        from kubernetes.client.exceptions import ApiException

        query: dict[str, Any] = {
            "timestamps": True,
            "container": self.container,
            "tailLines": self.tail,
            "sinceSeconds": self.since_s,
            "previous": self.previous or None,
            "follow": self.follow or None,
        }
        # following: no read timeout, a quiet pod may say nothing for long
        timeout = (REQUEST_TIMEOUT[0], None) if self.follow else REQUEST_TIMEOUT
        doing = f"reading the log of pod {self.pod!r}"
        with self.client.errors(doing):
            try:
                response = self.client.request(
                    "GET",
                    self.client.core_path("pods", self.pod, "log"),
                    query,
                    timeout=timeout,
                    stream=True,
                )
            except ApiException as exc:
                if exc.status != 400:
                    raise
                # the kubelet's own word: waiting to start, no previous container...
                raise OperationFailed(
                    f"no log from pod {self.pod!r}: {status_message(exc)}",
                    hint="--previous shows the log of the container that last crashed",
                ) from None
        try:
            with self.client.errors(doing):
                for raw in split_lines(response.stream(4096, decode_content=True)):
                    yield stamped_line(self.source, raw)
                    if self._stop.is_set():
                        return
        finally:
            # a stream left before its end still has the server writing to it: closed, not
            # handed back to the pool, where the next request would wait on its unread events
            response.close()
            response.release_conn()

    def close(self) -> None:
        self._stop.set()


def read_logs(
    client: KubeClient,
    pods: list[tuple[str, str]],
    *,
    tail: int | None,
    since: datetime | None,
    follow: bool,
    previous: bool,
) -> Iterator[LogLine]:
    """The log of each (pod, container): followed, or read whole and merged by time."""
    multi = len({c for _, c in pods}) > 1
    since_s = max(1, int((datetime.now(UTC) - since).total_seconds())) if since else None
    logs = [
        PodLog(
            client,
            pod,
            container,
            tail=tail,
            since_s=since_s,
            previous=previous,
            follow=follow,
            source=f"{pod}/{container}" if multi else pod,
        )
        for pod, container in pods
    ]
    if follow:
        return follow_all(logs)
    return _read_whole(logs)


def _read_whole(logs: list[PodLog]) -> Iterator[LogLine]:
    def fetch(log: PodLog) -> list[LogLine] | TravellrError:
        try:
            return list(log.lines())
        except TravellrError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=min(8, len(logs))) as pool:
        results = list(pool.map(fetch, logs))
    errors = [r for r in results if isinstance(r, TravellrError)]
    if errors and len(errors) == len(results):
        raise errors[0]
    notes = [
        LogLine(None, log.pod, f"[no logs: {r.message}]")
        for log, r in zip(logs, results, strict=True)
        if isinstance(r, TravellrError)
    ]
    merged = [line for r in results if isinstance(r, list) for line in r]
    epoch = datetime.min.replace(tzinfo=UTC)
    merged.sort(key=lambda line: line.time or epoch)  # stable: a pod's order is kept
    return iter(notes + merged)


def last_lines(client: KubeClient, pod: str, lines: int, previous: bool) -> list[LogLine]:
    """The last ``lines`` of a pod's log (of its crashed container with ``previous``)."""
    return list(PodLog(client, pod, tail=lines, previous=previous).lines())
