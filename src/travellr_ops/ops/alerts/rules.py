"""What in a sample is worth an alert, and which component is to blame.

Each metric speaks for a component: the API (probes, error rate, the backend's CPU and
memory), MongoDB (timed queries, the business queries, its CPU, memory and data disk), Redis
(the hit rate, its CPU and memory), the host (the other disks). A component is *down* when
the metric that reaches it has no answer (unknown, or a ``down`` verdict), and *breaching* when
one of its metrics breaches. ``insufficient``, ``idle``, ``info`` never count: too little
traffic is no problem. A component whose dependency (``alerts.depends_on``) is down is a
symptom of it: its problems are listed under the dependency, in one alert.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from travellr_ops.ops.monitor.metrics import Metric, Sample
from travellr_ops.settings import Settings
from travellr_ops.vocab.verdict import Verdict

Kind = Literal["down", "breach"]

_BY_NAME = {
    "api_response_p95_ms": "api",
    "api_response_p50_ms": "api",
    "api_response_max_ms": "api",
    "error_rate_pct": "api",
    "db_query_ms": "mongodb",
    "db_op_latency_ms": "mongodb",
    "active_users": "mongodb",
    "booking_conversion_pct": "mongodb",
    "cache_hit_rate_pct": "redis",
}
#: the metric that reaches each component: no answer there means the component is down
_REACHES = {"api": "api_response_p95_ms", "mongodb": "db_query_ms", "redis": "cache_hit_rate_pct"}
NAMES = {"api": "the API", "mongodb": "MongoDB", "redis": "Redis", "host": "the host"}
_NO_ANSWER = (Verdict.UNKNOWN, Verdict.DOWN)


def label(component: str) -> str:
    return NAMES.get(component, component)


def _services(settings: Settings) -> dict[str, str]:
    """The platform's service names (CPU and memory subjects) -> the component."""
    c, k = settings.compose, settings.kubernetes
    return {
        "backend": "api",
        c.backend_service: "api",
        k.backend_deployment: "api",
        "mongodb": "mongodb",
        c.mongodb_service: "mongodb",
        k.mongodb_deployment: "mongodb",
        "redis": "redis",
        c.redis_service: "redis",
        k.redis_deployment: "redis",
    }


def component_of(metric: Metric, services: dict[str, str]) -> str:
    if metric.subject and metric.subject in services:
        return services[metric.subject]
    if metric.name in _BY_NAME:
        return _BY_NAME[metric.name]
    return "host" if metric.name == "disk_pct" else metric.name


def _breaching(metric: Metric) -> bool:
    """Checked and found wrong: breach, fail, warn... (never insufficient, idle or unknown)."""
    verdict = Verdict(metric.verdict)
    return verdict.exit_code == Verdict.BREACH.exit_code


@dataclass
class Problem:
    """What is wrong with one component in a sample, and what it causes elsewhere."""

    component: str
    kind: Kind
    #: its own metrics that are wrong (breaching, or without an answer when it is down)
    metrics: list[Metric]
    #: component -> its wrong metrics, folded here because this component is their cause
    symptoms: dict[str, list[Metric]] = field(default_factory=dict)

    #: the component answers again, but what it caused is not over yet (still its episode)
    lingering: bool = False

    @property
    def headline(self) -> str:
        name = label(self.component)
        if self.lingering:
            return f"{name} is back; what it caused is not over yet"
        if self.kind == "down":
            reason = next((m.detail for m in self.metrics if m.verdict in _NO_ANSWER), "")
            return f"{name} is down" + (f": {reason}" if reason else "")
        keys = ", ".join(dict.fromkeys(m.key for m in self.metrics))
        return f"{name} breaches {keys}"


def problems(sample: Sample, settings: Settings) -> dict[str, Problem]:
    """The sample's problems by root-cause component (a symptom never has its own)."""
    services = _services(settings)
    by_component: dict[str, list[Metric]] = {}
    for m in sample.metrics:
        by_component.setdefault(component_of(m, services), []).append(m)
    found: dict[str, Problem] = {}
    for component, metrics in by_component.items():
        reaches = _REACHES.get(component)
        down = any(
            m.verdict == Verdict.DOWN or (m.name == reaches and m.verdict in _NO_ANSWER)
            for m in metrics
        )
        if down:
            wrong = [m for m in metrics if m.verdict in _NO_ANSWER or _breaching(m)]
            found[component] = Problem(component, "down", wrong)
            continue
        wrong = [m for m in metrics if _breaching(m)]
        if wrong:
            found[component] = Problem(component, "breach", wrong)
    return _fold(found, settings.alerts.depends_on)


def _fold(found: dict[str, Problem], depends_on: dict[str, list[str]]) -> dict[str, Problem]:
    def root(component: str, seen: frozenset[str]) -> str | None:
        """The deepest dependency that is down (None: none is)."""
        for dep in depends_on.get(component, []):
            if dep in seen:
                continue  # a cycle in the map: stop there
            deeper = root(dep, seen | {dep})
            if deeper is not None:
                return deeper
            if dep in found and found[dep].kind == "down":
                return dep
        return None

    roots = {c: root(c, frozenset({c})) for c in found}
    kept = {c: p for c, p in found.items() if roots[c] is None}
    for component, cause in roots.items():
        if cause is not None:
            problem = found[component]
            if cause not in kept:  # a cycle in the map: the problem stands on its own
                kept[component] = problem
                continue
            kept[cause].symptoms[component] = problem.metrics
            for deeper, metrics in problem.symptoms.items():
                kept[cause].symptoms.setdefault(deeper, metrics)
    return kept


def dependents(component: str, depends_on: dict[str, list[str]]) -> set[str]:
    """Every component that depends on this one, directly or through others."""
    found: set[str] = set()
    todo = [component]
    while todo:
        current = todo.pop()
        for other, deps in depends_on.items():
            if current in deps and other not in found and other != component:
                found.add(other)
                todo.append(other)
    return found


def linger(
    found: dict[str, Problem], open_causes: list[str], depends_on: dict[str, list[str]]
) -> dict[str, Problem]:
    """Problems of a component whose cause has an open episode but answers again are still
    that episode's: the error rate of the last minutes, say, still holds the 503s MongoDB's
    outage caused. Listed under the cause, they keep its episode open until they are over,
    instead of opening one of their own just as the cause recovers."""
    kept = dict(found)
    for cause in open_causes:
        if cause in kept:
            continue
        after = {d: kept.pop(d) for d in sorted(dependents(cause, depends_on)) if d in kept}
        if after:
            symptoms = {d: p.metrics for d, p in after.items()}
            for p in after.values():
                symptoms.update(p.symptoms)
            kept[cause] = Problem(cause, "breach", [], symptoms, lingering=True)
    return kept
