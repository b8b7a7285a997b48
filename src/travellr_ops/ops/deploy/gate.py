"""The health gate: samples a new release every deploy.sample_interval_s, as Argo Rollouts'
analysis does, on either platform.

Each sample: the service ready on its platform; the API's health endpoint answering 2xx;
the p95 (nearest-rank) of the gate's own probes (health endpoint + deploy.smoke_paths) under
thresholds.api_response_ms; the 5xx share of the requests the service logged since the
previous sample under thresholds.error_rate_pct; no new container/pod restarts. A failure
counts once deploy.fail_after consecutive samples fail.

The gate sends traffic of its own: every sample, deploy.probes GETs to the health endpoint and
to each of deploy.smoke_paths (User-Agent "travellr-ops/<version> deploy-gate"); the service
logs them, so they count in the error rate beside its users' requests. A rate over fewer than
deploy.min_requests requests, or a p95 over fewer than deploy.min_probes answers, is
"insufficient": neither a pass nor a failure. When the watch ends on an insufficient sample it
goes on, up to deploy.extend_s longer, until a sample can be judged; if none can, the result
is inconclusive and deploy.on_inconclusive decides (roll back, the default; or keep).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from travellr_ops import __version__
from travellr_ops.adapters.http import HttpAdapter
from travellr_ops.adapters.platform_types import LogLine, ServicePlatform
from travellr_ops.errors import TravellrError
from travellr_ops.ops import logsource
from travellr_ops.settings import Settings
from travellr_ops.vocab.logformat import request_status
from travellr_ops.vocab.stats import percentile
from travellr_ops.vocab.verdict import Verdict

#: the gate's own probes say what sent them (they are counted: see the module docstring)
GATE_AGENT = f"travellr-ops/{__version__} deploy-gate"


@dataclass
class GateSample:
    at: str
    elapsed_s: float
    ok: bool
    ready: str
    health: str
    p95_ms: float | None
    requests: int
    errors: int
    error_rate_pct: float | None
    new_restarts: int
    failures: list[str] = field(default_factory=list)
    #: what could not be judged for too few events (with the counts)
    insufficient: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> Verdict:
        if not self.ok:
            return Verdict.FAIL
        return Verdict.INSUFFICIENT if self.insufficient else Verdict.OK


@dataclass
class GateResult:
    passed: bool
    samples: list[GateSample]
    #: what failed, sustained over fail_after samples, or why nothing could be decided
    #: (None when it passed)
    failure: str | None = None
    failed_at: str | None = None
    #: the watch (extended) ended without a sample that could be judged
    inconclusive: bool = False


def count_requests(lines: list[LogLine]) -> tuple[int, int]:
    """(requests, 5xx) among log lines, combined or short form; lines that are no request are
    left out."""
    statuses = [status for line in lines if (status := request_status(line.text)) is not None]
    return len(statuses), sum(500 <= status < 600 for status in statuses)


class Gate:
    def __init__(
        self,
        settings: Settings,
        platform: ServicePlatform,
        http: HttpAdapter,
        service: str,
        since: datetime,
    ) -> None:
        self.settings = settings
        self.platform = platform
        self.http = http
        self.service = service
        self._since = since
        self._restarts: int | None = None
        self._started = time.monotonic()
        self._access_log: logsource.Reader | None = None
        base = settings.api.url.rstrip("/")
        self.health_url = base + settings.api.health_path
        self.urls = [self.health_url] + [
            p if "://" in p else base + "/" + p.lstrip("/") for p in settings.deploy.smoke_paths
        ]

    def sample(self) -> GateSample:
        now = datetime.now(UTC)
        failures: list[str] = []
        limits = self.settings.thresholds
        # the service on its platform
        try:
            (status,) = self.platform.status(self.service)
            ready = f"{status.ready}/{status.desired}"
            restarts = sum(i.restarts for i in status.instances)
            if not status.available:
                failures.append(f"{self.service} not ready: {status.message or ready}")
        except TravellrError as exc:
            ready, restarts = "?", 0
            failures.append(f"platform: {exc.message}")
        if self._restarts is None:
            self._restarts = restarts
        new_restarts = max(0, restarts - self._restarts)
        if new_restarts:
            failures.append(f"{new_restarts} new restart(s)")
        # the gate's own probes
        latencies: list[float] = []
        health: str = Verdict.OK
        for url in self.urls:
            for _ in range(self.settings.deploy.probes):
                try:
                    answer = self.http.get(url, headers={"User-Agent": GATE_AGENT})
                except TravellrError as exc:
                    if url == self.health_url:
                        health = Verdict.DOWN
                    failures.append(exc.message)
                    break
                latencies.append(answer.latency_ms)
                if url == self.health_url and not 200 <= answer.status < 300:
                    health = f"HTTP {answer.status}"
        if health not in (Verdict.OK, Verdict.DOWN):
            failures.append(f"health {self.health_url}: {health}")
        insufficient: list[str] = []
        cfg = self.settings.deploy
        p95 = percentile(latencies, 95)
        if len(latencies) < cfg.min_probes:
            insufficient.append(f"API p95 over {len(latencies)} answers (< {cfg.min_probes})")
        elif p95 is not None and p95 > limits.api_response_ms:
            failures.append(f"API p95 {p95:.0f} ms > {limits.api_response_ms:g} ms")
        # the error rate of what the service logged since the previous sample
        requests, errors = self._requests(failures)
        rate = errors * 100 / requests if requests else None
        judged = rate is not None and requests >= cfg.min_requests
        if judged and rate is not None and rate > limits.error_rate_pct:
            failures.append(
                f"error rate {rate:.1f} % ({errors}/{requests} requests 5xx)"
                f" > {limits.error_rate_pct:g} %"
            )
        elif not judged:
            insufficient.append(
                f"error rate over {requests} requests (< {cfg.min_requests}): {errors} 5xx"
            )
        return GateSample(
            at=now.isoformat(timespec="seconds"),
            elapsed_s=round(time.monotonic() - self._started, 1),
            ok=not failures,
            ready=ready,
            health=health,
            p95_ms=round(p95, 1) if p95 is not None else None,
            requests=requests,
            errors=errors,
            error_rate_pct=round(rate, 2) if rate is not None else None,
            new_restarts=new_restarts,
            failures=failures,
            insufficient=insufficient,
        )

    def _requests(self, failures: list[str]) -> tuple[int, int]:
        try:
            if self._access_log is None:
                self._access_log = logsource.reader(
                    self.settings, "access", self.platform, since=self._since
                )
            lines = self._access_log.read()
            requests, errors = count_requests(lines)
            if lines and not requests:
                raise self._access_log.source.nothing_found(len(lines))
            return requests, errors
        except TravellrError as exc:
            failures.append(f"error rate unknown: {exc.message}")
            return 0, 0

    def close(self) -> None:
        if self._access_log is not None:
            self._access_log.close()


def watch(
    gate: Gate,
    watch_s: float,
    interval_s: float,
    fail_after: int,
    on_sample: Callable[[GateSample], None],
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    extend_s: float = 0.0,
) -> GateResult:
    """Sample until ``watch_s`` has passed (pass) or ``fail_after`` samples in a row fail.
    A watch that ends on an insufficient sample goes on, up to ``extend_s`` longer, until a
    sample can be judged (pass); none can: inconclusive."""
    samples: list[GateSample] = []
    deadline = clock() + watch_s
    streak = 0
    while True:
        started = clock()
        sample = gate.sample()
        samples.append(sample)
        on_sample(sample)
        streak = 0 if sample.ok else streak + 1
        if streak >= fail_after:
            failing = samples[-fail_after:]
            what = "; ".join(sample.failures)  # the latest figures; the samples hold the rest
            return GateResult(
                False,
                samples,
                failure=f"{what} ({fail_after} samples in a row from {failing[0].at})",
                failed_at=sample.at,
            )
        if started + interval_s >= deadline:
            if not (sample.ok and sample.insufficient):
                return GateResult(True, samples)
            if started + interval_s >= deadline + extend_s:
                why = "; ".join(sample.insufficient or sample.failures)
                return GateResult(
                    False,
                    samples,
                    failure=f"too little data to judge the release after the watch and"
                    f" {extend_s:g} s more: {why}",
                    failed_at=sample.at,
                    inconclusive=True,
                )
        sleep(max(0.0, started + interval_s - clock()))
