"""From what the checks saw to ranked causes: the runbook's decision trees as rules.

Each rule reads the facts of one or more checks and, when they point to a cause, says so with
the values it saw, the runbook section it follows, the commands to run next and the runbook's
escalation level. The score ranks the causes: a failing dependency (MongoDB, Redis) or a
change on the platform (a deploy, a crash loop, an OOM kill) ranks above the API symptoms it
produces, so that the first cause is the one to act on. A cause the asked symptom names gains
a bonus.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

from travellr_ops.ops.doctor.checks import SERIOUS_INDEX_FINDINGS
from travellr_ops.ops.doctor.model import Cause, Observation, Remedy
from travellr_ops.settings import Settings
from travellr_ops.vocab.timespec import format_duration
from travellr_ops.vocab.units import format_bytes

#: added to the score of a cause the asked symptom names
SYMPTOM_BONUS = 15
#: taken from the API's causes when a dependency cause explains them
CONSEQUENCE_PENALTY = 25

SERVICE_DOWN = "Emergency Procedures > Service Down"
DB_ISSUES = "Emergency Procedures > Database Connection Issues"
HIGH_MEMORY = "Emergency Procedures > High Memory Usage"
CACHE_ISSUES = "Emergency Procedures > Cache Issues"
HIGH_CPU = "Troubleshooting > High CPU Usage"
SLOW_API = "Troubleshooting > Slow API Responses"
MEMORY_LEAKS = "Troubleshooting > Memory Leaks"
ROLLBACK = "Deployment Procedures > Rollback Procedure"
AFTER_MAINTENANCE = "Checklists > After Maintenance"
RESOURCES = "Monitoring > Key Metrics (Disk usage < 80%)"

#: causes that sit below the API: the API's own trouble is what they produce
DEPENDENCY_AREAS = ("mongodb", "redis", "maintenance", "platform", "deploy", "disk")

Facts = dict[str, Any]


class _Found:
    """The causes found so far; one per id (a second finding adds its evidence)."""

    def __init__(self) -> None:
        self.causes: dict[str, Cause] = {}

    def add(self, cause: Cause) -> None:
        known = self.causes.get(cause.id)
        if known is None:
            self.causes[cause.id] = cause
            return
        known.evidence += [e for e in cause.evidence if e not in known.evidence]
        known.score = max(known.score, cause.score)


def _facts(observations: dict[str, Observation], name: str) -> Facts | None:
    o = observations.get(name)
    return o.facts if o is not None and o.state == "ok" else None


def _ago(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "?"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


# -- the rules ------------------------------------------------------------------------------------
def _maintenance(obs: dict[str, Observation], s: Settings, found: _Found, notes: _Found) -> None:
    m = _facts(obs, "maintenance")
    if not m or not m.get("on"):
        return
    flag = f"the maintenance flag {s.maintenance.key} is on since {m.get('since') or '?'}" + (
        f" by {m['by']}" if m.get("by") else ""
    )
    if m.get("message"):
        flag += f": {m['message']!r}"
    if not m.get("forgotten"):
        window = m.get("window") or {}
        until = window.get("until")
        notes.add(
            Cause(
                "maintenance_on",
                "maintenance mode is on, inside the window travellr-ops opened: the API"
                " answers 503 on purpose",
                0,
                1,
                AFTER_MAINTENANCE,
                [
                    flag,
                    f"window opened {_when(window.get('started'))}, until "
                    + (_when(until) if until else "`maintenance off`"),
                ],
                ["travellr-ops maintenance status", "travellr-ops maintenance off (when done)"],
                area="maintenance",
                symptoms=("down",),
                severity="info",
            )
        )
        return
    last = m.get("last_window")
    if last and last.get("end") is not None:
        why = f"its window (opened {_when(last['started'])}) ended at {_when(last['end'])}"
    else:
        why = "travellr-ops opened no maintenance window for it (set by hand, or left behind)"
    found.add(
        Cause(
            "maintenance_forgotten",
            "the maintenance flag was left on: the backend answers 503 to every request",
            96,
            1,
            f"{AFTER_MAINTENANCE} (Disable maintenance mode); {SERVICE_DOWN}",
            [flag, why],
            ["travellr-ops maintenance off", "travellr-ops health"],
            Remedy(1, "travellr-ops maintenance off", "maintenance_off"),
            area="maintenance",
            symptoms=("down", "cache"),
        )
    )


def _instances_problems(svc: Facts) -> tuple[bool, bool, bool, list[str]]:
    """(oom, crash loop, image not pulled, evidence) of one platform service."""
    oom = crash = pull = False
    evidence = []
    for i in svc.get("instances", []):
        state = str(i.get("state") or "")
        term = str(i.get("last_termination") or "")
        restarts = int(i.get("restarts") or 0)
        if "OOMKilled" in term or "OOMKilled" in state:
            oom = True
        if (
            state in ("restarting", "CrashLoopBackOff")
            or "CrashLoopBackOff" in term
            or (restarts >= 2 and not i.get("ready"))
        ):
            crash = True
        if state in ("ImagePullBackOff", "ErrImagePull", "InvalidImageName") or (
            "ImagePull" in term or "ErrImagePull" in term
        ):
            pull = True
        if state not in ("running", "Running") or term or restarts:
            evidence.append(
                f"{i.get('name')}: {state}, {restarts} restart(s)"
                + (f", last termination {term}" if term else "")
                + (f", image {i['image']}" if i.get("image") else "")
            )
    return oom, crash, pull, evidence


def _restart_command(s: Settings, service: str) -> str:
    return f"travellr-ops service restart {service}"


def _platform(obs: dict[str, Observation], s: Settings, found: _Found) -> None:
    p = _facts(obs, "platform")
    if not p:
        return
    for svc in p.get("services", []):
        name = str(svc["name"])
        oom, crash, pull, evidence = _instances_problems(svc)
        head = f"{p['platform']} {name}: {svc['ready']}/{svc['desired']} ready" + (
            f", image {svc['image']}" if svc.get("image") else ""
        )
        if svc.get("message"):
            head += f" ({svc['message']})"
        seen = [head, *evidence]
        logs = f"travellr-ops service logs {name} --tail 100"
        pod = next((str(i["name"]) for i in svc.get("instances", [])), name)
        restart = Remedy(1, _restart_command(s, name), "restart", name)
        if pull:
            found.add(
                Cause(
                    f"{name}_image",
                    f"{name}'s image cannot be pulled: its pods never start",
                    94,
                    2,
                    f"{ROLLBACK}; {SERVICE_DOWN}",
                    seen,
                    ["travellr-ops deploy rollback", f"travellr-ops service status {name}"],
                    Remedy(2, "travellr-ops deploy rollback"),
                    area="platform",
                    symptoms=("down",),
                )
            )
        elif oom:
            found.add(
                Cause(
                    f"{name}_oom",
                    f"{name} is killed for running out of memory (OOMKilled)",
                    93,
                    1,
                    f"{HIGH_MEMORY}; {MEMORY_LEAKS}",
                    seen,
                    [
                        restart.command,
                        "travellr-ops service stats",
                        logs,
                        f"travellr-ops service profile {name} --leak 10m"
                        " (Level 2 if memory keeps growing)",
                    ],
                    restart,
                    area="platform",
                    symptoms=("memory", "leak", "down"),
                )
            )
        elif crash:
            found.add(
                Cause(
                    f"{name}_crashloop",
                    f"{name} keeps crashing and restarting (crash loop)",
                    92,
                    1,
                    SERVICE_DOWN,
                    seen,
                    [
                        f"{logs} --previous",
                        restart.command,
                        f"travellr-ops service describe {pod}",
                    ],
                    restart,
                    area="platform",
                    symptoms=("down",),
                )
            )
        elif any(i.get("state") == "Pending" for i in svc.get("instances", [])):
            found.add(
                Cause(
                    f"{name}_pending",
                    f"{name}'s pods are pending: never scheduled or started",
                    88,
                    1,
                    SERVICE_DOWN,
                    seen,
                    [f"travellr-ops service describe {pod}", f"travellr-ops service status {name}"],
                    None,
                    area="platform",
                    symptoms=("down",),
                )
            )
        elif svc.get("stopped"):
            found.add(
                Cause(
                    f"{name}_stopped",
                    f"{name} is stopped on the platform",
                    91,
                    1,
                    SERVICE_DOWN
                    if name == "backend"
                    else DB_ISSUES
                    if name == "mongodb"
                    else CACHE_ISSUES,
                    seen,
                    [f"travellr-ops service up {name}", f"travellr-ops service status {name}"],
                    None,
                    area="platform",
                    symptoms=("down", "db") if name == "mongodb" else ("down",),
                )
            )
        elif not svc.get("available"):
            found.add(
                Cause(
                    f"{name}_unhealthy",
                    f"{name} runs but is not healthy/ready",
                    80,
                    1,
                    SERVICE_DOWN,
                    seen,
                    [logs, restart.command],
                    restart,
                    area="platform",
                    symptoms=("down",),
                )
            )


def _backend_in_trouble(obs: dict[str, Observation], s: Settings) -> list[str]:
    """Why the backend looks broken, from the platform, health and the sample (empty: fine)."""
    why: list[str] = []
    p = _facts(obs, "platform")
    for svc in (p or {}).get("services", []):
        if svc["name"] == "backend" and not svc.get("available"):
            why.append(
                f"backend {svc['ready']}/{svc['desired']} ready"
                + (f": {svc['message']}" if svc.get("message") else "")
            )
    h = _facts(obs, "health")
    for c in (h or {}).get("checks", []):
        if c["name"] == "api" and c["verdict"] in ("fail", "down"):
            why.append(f"health {c['target']}: {c['detail']}")
    a = _facts(obs, "api")
    for m in (a or {}).get("metrics", []):
        if m["name"] == "error_rate_pct" and m["verdict"] == "breach":
            why.append(f"{m['value']:g} % of requests answered 5xx ({m['detail']})")
    return why


def _deploy(obs: dict[str, Observation], s: Settings, found: _Found, notes: _Found) -> None:
    d = _facts(obs, "deploy")
    if not d or not d.get("recent"):
        return
    newest = d["recent"][0]
    seen = (
        f"{newest['kind']} #{newest['id']} of {newest['service']} {_ago(newest['ago_s'])} ago"
        f" by {newest['user']}: {newest['image_from'] or '?'} -> {newest['image_to'] or '?'}"
        f" ({newest['outcome']})"
    )
    trouble = _backend_in_trouble(obs, s) if newest["service"] == "backend" else []
    landed = newest["outcome"] in ("succeeded", "running", "failed", "rollback_failed")
    if trouble and landed:
        found.add(
            Cause(
                "bad_deploy",
                f"the {newest['kind']} of {newest['image_to'] or 'a new image'}"
                f" {_ago(newest['ago_s'])} ago broke the backend",
                97,
                2,
                ROLLBACK,
                [seen, *trouble],
                [
                    "travellr-ops deploy rollback",
                    "travellr-ops service logs backend --tail 100",
                    "travellr-ops deploy history",
                ],
                Remedy(2, "travellr-ops deploy rollback"),
                area="deploy",
                symptoms=("down", "slow", "cpu", "memory", "leak"),
            )
        )
    else:
        notes.add(
            Cause(
                "recent_deploy",
                "a deploy in the last hour",
                0,
                1,
                ROLLBACK,
                [seen],
                ["travellr-ops deploy history"],
                area="deploy",
                severity="info",
            )
        )


def _mongodb(obs: dict[str, Observation], s: Settings, found: _Found) -> None:
    m = _facts(obs, "mongodb")
    if not m or "problem" not in m:
        return
    p = m["problem"]
    kind = p["kind"]
    seen = [f"db ping {m['uri']}: {kind}: {p['message']}"]
    h = _facts(obs, "health")
    for c in (h or {}).get("checks", []):
        if c["name"] == "api" and "mongodb" in str(c["detail"]):
            seen.append(f"health {c['target']}: {c['detail']}")
    restart = (
        Remedy(1, _restart_command(s, "mongodb"), "restart", "mongodb")
        if s.platform != "none"
        else None
    )
    start = restart.command if restart else "start the MongoDB server"
    if kind in ("stopped", "refused", "closed", "dns"):
        title = (
            "MongoDB is not running: connections are refused"
            if kind != "dns"
            else ("MongoDB's host name does not resolve")
        )
        found.add(
            Cause(
                "mongodb_down",
                title,
                90,
                1,
                DB_ISSUES,
                seen,
                [start, "travellr-ops db ping", "travellr-ops service status mongodb"],
                restart,
                area="mongodb",
                symptoms=("db", "down"),
            )
        )
    elif kind == "timeout":
        found.add(
            Cause(
                "mongodb_hung",
                "MongoDB accepts connections but does not answer (hung or overloaded)",
                90,
                1,
                DB_ISSUES,
                seen,
                [start, "travellr-ops db status", "travellr-ops db ping"],
                restart,
                area="mongodb",
                symptoms=("db", "down", "slow"),
            )
        )
    elif kind == "auth":
        found.add(
            Cause(
                "mongodb_auth",
                "MongoDB refuses the configured credentials (user, password or authSource)",
                86,
                2,
                DB_ISSUES,
                seen,
                [
                    "check the user and password in mongo.uri (TRAVELLR_MONGO__URI)",
                    "travellr-ops db ping",
                ],
                Remedy(2, "fix mongo.uri's credentials"),
                area="mongodb",
                symptoms=("db", "down"),
            )
        )
    elif kind == "tls":
        found.add(
            Cause(
                "mongodb_tls",
                "the TLS handshake with MongoDB fails",
                86,
                2,
                DB_ISSUES,
                seen,
                ["check tls and tlsCAFile in mongo.uri", "travellr-ops db ping"],
                Remedy(2, "fix mongo.uri's TLS settings"),
                area="mongodb",
                symptoms=("db", "down"),
            )
        )
    elif kind == "no_primary":
        seen += [_member_line(mm) for mm in m.get("members") or []]
        found.add(
            Cause(
                "mongodb_no_primary",
                "MongoDB's replica set has no primary",
                88,
                3,
                DB_ISSUES,
                seen,
                ["travellr-ops db ping", "rs.status() in mongosh"],
                Remedy(3, "restore a primary (rs.status())"),
                area="mongodb",
                symptoms=("db", "down"),
            )
        )
    else:
        found.add(
            Cause(
                "mongodb_unreachable",
                f"MongoDB cannot be used ({kind})",
                84,
                1,
                DB_ISSUES,
                seen,
                ["travellr-ops db ping", start],
                restart,
                area="mongodb",
                symptoms=("db", "down"),
            )
        )


#: the member states of a working replica set (anything else: down, recovering, starting...)
HEALTHY_STATES = ("PRIMARY", "SECONDARY", "ARBITER")


def _member_line(member: Facts) -> str:
    health = member.get("health")
    return (
        f"member {member['name']}{' (this one)' if member.get('self') else ''}:"
        f" {member['state']}, health {'?' if health is None else f'{health:g}'}"
        + ("" if member.get("lag_s") is None else f", {member['lag_s']:g} s behind the primary")
    )


def _replication(obs: dict[str, Observation], s: Settings, found: _Found) -> None:
    """The replica set's members as `db ping` read them (replSetGetStatus): a member down
    or in a state that serves nothing, a secondary lagging. A set without a primary is
    `mongodb_no_primary` (the ping's own problem), whose evidence lists the members."""
    m = _facts(obs, "mongodb")
    if not m or "problem" in m or not m.get("members"):
        return
    members = m["members"]
    name = m.get("set_name") or "the replica set"
    bad = [
        mm
        for mm in members
        if mm["state"] not in HEALTHY_STATES or (mm.get("health") is not None and mm["health"] != 1)
    ]
    if bad:
        healthy = len(members) - len(bad)
        found.add(
            Cause(
                "mongodb_member_unhealthy",
                f"{len(bad)} member(s) of replica set {name} down or not serving",
                74,
                2,
                DB_ISSUES,
                [
                    f"db ping {m['uri']}: {healthy} of {len(members)} members healthy"
                    f" (PRIMARY/SECONDARY/ARBITER with health 1)",
                    *(_member_line(mm) for mm in bad),
                ],
                [
                    "travellr-ops db ping",
                    "rs.status() in mongosh (the member's state, health and lastHeartbeatMessage)",
                    "travellr-ops db status",
                ],
                Remedy(2, "bring the member back (rs.status(): why it is down or not in sync)"),
                area="mongodb",
                symptoms=("db",),
            )
        )
    limit = s.doctor.replication_lag_s
    lagging = [
        mm
        for mm in members
        if mm["state"] == "SECONDARY" and mm.get("lag_s") is not None and mm["lag_s"] > limit
    ]
    if lagging:
        worst = max(mm["lag_s"] for mm in lagging)
        found.add(
            Cause(
                "mongodb_replication_lag",
                f"a secondary of {name} lags {worst:g} s behind the primary",
                66,
                2,
                DB_ISSUES,
                [
                    *(_member_line(mm) for mm in lagging),
                    f"lagging: more than {limit:g} s behind (doctor.replication_lag_s); reads"
                    " from secondaries are that stale, and majority writes wait for them",
                ],
                [
                    "travellr-ops db ping",
                    "rs.printSecondaryReplicationInfo() in mongosh",
                    "travellr-ops db status",
                ],
                Remedy(2, "find what slows the secondary (its disk, network or load)"),
                area="mongodb",
                symptoms=("db", "slow"),
            )
        )


def _redis(obs: dict[str, Observation], s: Settings, found: _Found) -> None:
    c = _facts(obs, "cache")
    if not c:  # not measured: whether it answers, health says
        h = _facts(obs, "health")
        down = [x for x in (h or {}).get("checks", []) if x["name"] == "redis"]
        if down and down[0]["verdict"] == "down":
            c = {"reachable": False, "error": f"{down[0]['target']}: {down[0]['detail']}"}
        else:
            return
    restart = (
        Remedy(1, "travellr-ops service restart redis", "restart", "redis")
        if s.platform != "none"
        else None
    )
    if not c.get("reachable"):
        seen = [f"Redis {c['error']}"]
        h = _facts(obs, "health")
        for chk in (h or {}).get("checks", []):
            if chk["name"] == "api" and "redis" in str(chk["detail"]):
                seen.append(f"health {chk['target']}: {chk['detail']}")
        start = restart.command if restart else "start the Redis server"
        found.add(
            Cause(
                "redis_down",
                "Redis does not answer",
                90,
                1,
                f"{CACHE_ISSUES}; {SERVICE_DOWN}",
                seen,
                [start, "travellr-ops cache stats", "travellr-ops service status redis"],
                restart,
                area="redis",
                symptoms=("cache", "down"),
            )
        )
        return
    used, limit, policy = c["used_memory"], c["maxmemory"], c["policy"]
    oom = c.get("oom_errors_window", 0)
    if limit and policy == "noeviction" and (used >= 0.9 * limit or oom):
        top = next((p for p in c.get("prefixes", []) if p["prefix"] != "(no prefix)"), None)
        pattern = f"{top['prefix']}*" if top else "*"
        seen = [
            f"used {format_bytes(used)} of maxmemory {format_bytes(limit)}"
            f" ({used * 100 / limit:.0f} %), policy noeviction: writes are refused"
        ]
        if oom:
            seen.append(
                f"{oom} writes refused with OOM in the last {c['window_s']:g} s"
                f" ({c['oom_errors']} since Redis started; INFO errorstats)"
            )
        if top:
            seen.append(
                f"the key family holding most memory: {top['prefix']}* (about"
                f" {top['estimated_keys']:,} keys, {format_bytes(top['estimated_bytes'])})"
            )
        for k in c.get("bigkeys", [])[:1]:
            seen.append(f"biggest sampled key {k['key']} ({format_bytes(k['bytes'] or 0)})")
        found.add(
            Cause(
                "redis_full",
                "Redis is full and evicts nothing: writes fail",
                82,
                1,
                f"{CACHE_ISSUES}; {HIGH_MEMORY}",
                seen,
                [
                    f"travellr-ops cache clear '{pattern}'",
                    "redis-cli CONFIG SET maxmemory-policy allkeys-lru (Level 2: make it"
                    " a cache that evicts)",
                    "travellr-ops cache stats",
                ],
                Remedy(1, f"travellr-ops cache clear '{pattern}'", "clear", pattern),
                area="redis",
                symptoms=("cache", "memory", "slow"),
            )
        )
    rate, lookups = c.get("window_hit_rate_pct"), c.get("window_lookups", 0)
    overall = c.get("hit_rate_pct")
    threshold = c["threshold_pct"]
    if rate is None or lookups < s.monitor.cache_min_lookups or rate >= threshold:
        return
    # "collapsed": much lower now than usual (the monitor's last hour, or Redis's life)
    usual = c.get("usual_hit_rate_pct")
    before = [v for v in (usual, overall) if v is not None and v - rate >= 25]
    if not before:
        return
    seen = [
        f"hit rate {rate:g} % over the last {c['window_s']:g} s ({lookups} lookups),"
        f" threshold {threshold:g} %"
    ]
    if usual is not None:
        seen.append(f"{usual:g} % usually (median of the monitor's last hour)")
    if overall is not None:
        seen.append(f"{overall:g} % since Redis started")
    seen.append(f"the cache holds {c['keys']} keys")
    found.add(
        Cause(
            "cache_cold",
            "the cache hit rate collapsed (flushed or restarted cache)",
            60,
            1,
            CACHE_ISSUES,
            seen,
            ["travellr-ops cache warm", "travellr-ops cache stats"],
            Remedy(1, "travellr-ops cache warm"),
            area="redis",
            symptoms=("cache", "slow"),
        )
    )


def _api(obs: dict[str, Observation], s: Settings, found: _Found) -> None:
    h = _facts(obs, "health")
    for c in (h or {}).get("checks", []):
        if c["name"] != "api":
            continue
        restart = (
            Remedy(1, "travellr-ops service restart backend", "restart", "backend")
            if s.platform != "none"
            else None
        )
        if c["verdict"] == "down":
            found.add(
                Cause(
                    "backend_down",
                    "the API does not answer",
                    89,
                    1,
                    SERVICE_DOWN,
                    [f"health {c['target']}: {c['detail']}"],
                    [
                        restart.command if restart else "start the backend",
                        "travellr-ops service logs backend --tail 100",
                    ],
                    restart,
                    area="api",
                    symptoms=("down",),
                )
            )
        elif c["verdict"] == "fail":
            found.add(
                Cause(
                    "backend_unhealthy",
                    "the API answers its health check with an error",
                    75,
                    1,
                    SERVICE_DOWN,
                    [f"health {c['target']}: {c['detail']}"],
                    [
                        "travellr-ops service logs backend --tail 100",
                        restart.command if restart else "restart the backend",
                    ],
                    restart,
                    area="api",
                    symptoms=("down",),
                )
            )
    a = _facts(obs, "api")
    for m in (a or {}).get("metrics", []):
        if m["verdict"] != "breach":
            continue
        value = f"{m['value']:g} {m['unit']}"
        seen = [
            f"monitor {m['key']}: {value} (threshold {m['threshold']:g} {m['unit']}); {m['detail']}"
        ]
        name = m["name"]
        if name == "error_rate_pct":
            found.add(
                Cause(
                    "api_errors",
                    "the API answers with server errors (5xx)",
                    78,
                    2,
                    SERVICE_DOWN,
                    seen,
                    [
                        "travellr-ops service logs backend --level error --tail 100",
                        "travellr-ops monitor once",
                    ],
                    Remedy(2, "fix the failing code path (see the ERROR lines)"),
                    area="api",
                    symptoms=("down",),
                )
            )
        elif name == "api_response_p95_ms":
            found.add(
                Cause(
                    "slow_api",
                    "API responses are slow",
                    65,
                    2,
                    SLOW_API,
                    seen,
                    [
                        "travellr-ops monitor once",
                        "travellr-ops db indexes analyze",
                        "travellr-ops cache stats",
                        "travellr-ops service profile backend",
                    ],
                    Remedy(2, "optimize the slow endpoint (profile it)"),
                    area="api",
                    symptoms=("slow", "cpu"),
                )
            )
        elif name == "cpu_pct":
            subject = m["subject"] or "host"
            found.add(
                Cause(
                    f"high_cpu_{subject}",
                    f"{subject} uses too much CPU",
                    60,
                    2,
                    HIGH_CPU,
                    seen,
                    [
                        "travellr-ops service top " + (m["subject"] or "backend"),
                        "travellr-ops db indexes analyze",
                    ],
                    Remedy(2, "optimize queries, add indexes, scale horizontally"),
                    area="api",
                    symptoms=("cpu", "slow"),
                )
            )
        elif name == "memory_pct":
            subject = m["subject"] or "host"
            restart = (
                Remedy(1, f"travellr-ops service restart {subject}", "restart", subject)
                if (s.platform != "none" and m["subject"])
                else None
            )
            found.add(
                Cause(
                    f"high_memory_{subject}",
                    f"{subject} uses too much memory",
                    62,
                    1,
                    HIGH_MEMORY,
                    seen,
                    [
                        restart.command if restart else "travellr-ops service stats",
                        f"travellr-ops service profile {m['subject'] or 'backend'} --leak 10m",
                    ],
                    restart,
                    area="api",
                    symptoms=("memory", "leak"),
                )
            )
        elif name == "disk_pct":
            _disk(found, m["subject"], seen)


def _disk(found: _Found, subject: str, seen: list[str]) -> None:
    backups = subject == "backups"
    found.add(
        Cause(
            "disk_full",
            "a file system is (nearly) full",
            87,
            1,
            RESOURCES + "; Routine Tasks > Wednesday (Check disk space)",
            seen,
            (
                ["travellr-ops backup clean", "travellr-ops backup list"]
                if backups
                else ["df -h", "travellr-ops backup clean"]
            )
            + ["travellr-ops health"],
            None,
            area="disk",
            symptoms=("down", "db", "slow"),
        )
    )


def _health_disks(obs: dict[str, Observation], found: _Found) -> None:
    h = _facts(obs, "health")
    for c in (h or {}).get("checks", []):
        if c["name"] == "disk" and c["verdict"] != "ok":
            _disk(found, c["target"], [f"health disk {c['target']}: {c['detail']}"])


def _indexes(obs: dict[str, Observation], found: _Found) -> None:
    i = _facts(obs, "indexes")
    for f in (i or {}).get("findings", []):
        if f["kind"] not in SERIOUS_INDEX_FINDINGS:
            continue
        command = f["command"] or "travellr-ops db indexes ensure"
        found.add(
            Cause(
                "missing_index",
                "MongoDB answers a declared query without its index",
                70,
                2,
                f"{SLOW_API} (Add database indexes); {HIGH_CPU}",
                [
                    f"db indexes analyze: {f['kind']} on {f['collection']}: {f['subject']}:"
                    f" {f['detail']}"
                ],
                [
                    "travellr-ops db indexes ensure" if f["declared"] else command,
                    "travellr-ops db indexes analyze",
                ],
                Remedy(2, "travellr-ops db indexes ensure" if f["declared"] else command),
                area="mongodb",
                symptoms=("slow", "cpu", "db"),
            )
        )


def _slow_line(op: Facts) -> str:
    query = op["query"]
    if op["collection"] and not query.startswith(f"{op['collection']}."):
        query = f"{op['collection']} {query}"  # an aggregate, an update: no find shape
    parts = [f"{op['millis']:g} ms {query} ({op['op']})"]
    parts.append(f"plan {op['plan']}" if op.get("plan") else "plan not recorded by the server")
    for key, label in (
        ("docs_examined", "docs examined"),
        ("keys_examined", "keys examined"),
        ("returned", "returned"),
    ):
        if op.get(key) is not None:
            parts.append(f"{op[key]:,} {label}")
    return ", ".join(parts)


#: the slowest operations a slow-operations cause shows
SLOWEST_SHOWN = 3


def _slow_ops(obs: dict[str, Observation], s: Settings, found: _Found, notes: _Found) -> None:
    """The profiler's slow operations of the last doctor.slow_ops_window_s.

    Operations on a collection `db indexes analyze` found an index missing on are put down to
    that index: they become the evidence of `missing_index` (one cause, whose remedy names
    the index), not a second cause. The rest make `slow_operations`.
    """
    f = _facts(obs, "slow_ops")
    if f is None:
        return
    if not f["readable"]:
        notes.add(
            Cause(
                "profiler_unreadable",
                "the MongoDB profiler cannot be read: doctor cannot see slow operations",
                0,
                2,
                f"{HIGH_CPU} (Check slow queries)",
                [f["error"]],
                ["grant the user dbAdmin on the database (the profile command)"],
                area="mongodb",
                severity="info",
            )
        )
        return
    window = format_duration(f["window_s"])
    profiler = f["profiler"]
    if profiler["level"] == 0:
        notes.add(
            Cause(
                "profiler_off",
                "the MongoDB profiler is off: doctor cannot see slow operations",
                0,
                2,
                f"{HIGH_CPU} (Check slow queries)",
                [f"profiler level 0 (slowms {profiler['slowms']}): db slow reads nothing new"],
                [f"travellr-ops db profile on --slowms {f['min_ms']:g}"],
                area="mongodb",
                severity="info",
            )
        )
    elif f["notes"]:
        notes.add(
            Cause(
                "profiler_slowms",
                "the MongoDB profiler records only some of the slow operations",
                0,
                2,
                f"{HIGH_CPU} (Check slow queries)",
                list(f["notes"]),
                [f"travellr-ops db profile on --slowms {f['min_ms']:g}"],
                area="mongodb",
                severity="info",
            )
        )
    ops = f["operations"]
    if not ops:
        return
    i = _facts(obs, "indexes")
    indexed = {
        x["collection"]
        for x in (i or {}).get("findings", [])
        if x["kind"] in SERIOUS_INDEX_FINDINGS
    }
    missing = found.causes.get("missing_index")
    slow_cmd = f"travellr-ops db slow --since {window}"
    rest = ops
    if missing is not None:
        rest = [op for op in ops if op["collection"] not in indexed]
        for collection in sorted(indexed):
            mine = [op for op in ops if op["collection"] == collection]
            if mine:
                missing.evidence.append(
                    f"db slow: the profiler recorded {len(mine)} operation(s) over"
                    f" {f['min_ms']:g} ms on {collection} in the last {window}, the slowest"
                    f" {_slow_line(mine[0])}"
                )
        if len(rest) < len(ops) and slow_cmd not in missing.commands:
            missing.commands.append(slow_cmd)
    if not rest:
        return
    by_collection = Counter(op["collection"] or "(no collection)" for op in rest)
    count = f"{len(rest)}{'+' if f['limited'] else ''}"
    found.add(
        Cause(
            "slow_operations",
            f"MongoDB ran {count} slow operation(s) in the last {window}",
            68,
            2,
            f"{HIGH_CPU} (Check slow queries); {SLOW_API} (Check database performance)",
            [
                f"db slow: the profiler recorded {count} operation(s) over {f['min_ms']:g} ms"
                f" in the last {window} ("
                + ", ".join(f"{n} on {c}" for c, n in sorted(by_collection.items()))
                + ")",
                *(f"slowest: {_slow_line(op)}" for op in rest[:SLOWEST_SHOWN]),
            ],
            [slow_cmd, "travellr-ops db indexes analyze"],
            Remedy(2, "optimize the slow queries; an index for each shape (db indexes analyze)"),
            area="mongodb",
            symptoms=("slow", "cpu"),
        )
    )


def _memory_trend(obs: dict[str, Observation], s: Settings, found: _Found, notes: _Found) -> None:
    """Memory growing over the monitor's samples (runbook: Memory Leaks): a cause when the
    line rises faster than a leak (as `service profile --leak` judges); too few samples is
    one note, never a verdict."""
    f = _facts(obs, "memory_trend")
    if f is None:
        return
    window = format_duration(f["window_s"])
    short = [t for t in f["services"] if t["verdict"] == "insufficient"]
    if short or not f["services"]:
        seen = (
            ", ".join(
                f"{t['service']} {t['samples']} over {format_duration(t['minutes'] * 60)}"
                for t in short
            )
            or "none"
        )
        notes.add(
            Cause(
                "memory_trend_insufficient",
                "too few memory samples to tell whether memory grows",
                0,
                1,
                MEMORY_LEAKS,
                [
                    f"the monitor's memory samples in the last {window}: {seen} (a trend"
                    f" needs 5 at least, over {format_duration(f['min_span_s'])} at least)"
                ],
                ["travellr-ops monitor (records a sample every interval)"],
                area="memory",
                severity="info",
            )
        )
    for t in f["services"]:
        if t["verdict"] != "growing":
            continue
        name = t["service"]
        fitted = (
            f"least squares over {t['samples']} samples in {t['minutes']:g} min:"
            f" {t['first']:g} -> {t['last']:g} {t['value_unit']} ({t['base']}),"
            f" {t['rate']:g} {t['unit']}, R² {t['r_squared']:g}"
        )
        if not t["leak"]:
            notes.add(
                Cause(
                    f"memory_grows_{name}",
                    f"memory of {name} grows slowly ({t['rate']:g} {t['unit']})",
                    0,
                    1,
                    MEMORY_LEAKS,
                    [fitted, f"under the {t['threshold']:g} {t['unit']} of a leak"],
                    [f"travellr-ops service profile {name} --leak 10m"],
                    area="memory",
                    severity="info",
                )
            )
            continue
        restart = (
            Remedy(1, _restart_command(s, name), "restart", name) if s.platform != "none" else None
        )
        found.add(
            Cause(
                f"memory_leak_{name}",
                f"memory of {name} grows {t['rate']:g} {t['unit']} (R² {t['r_squared']:g})"
                " over the monitor's samples",
                66,
                1,
                f"{MEMORY_LEAKS} (Restart service periodically)",
                [
                    fitted,
                    f"a leak: over {t['threshold']:g} {t['unit']}"
                    + (
                        " (thresholds.leak_mb_per_h)"
                        if t["unit"] == "MB/h"
                        else " (doctor.leak_pct_per_h)"
                    ),
                ],
                [
                    restart.command if restart else f"restart {name}",
                    f"travellr-ops service profile {name} --leak 10m",
                ],
                restart,
                area="memory",
                symptoms=("leak", "memory"),
            )
        )


def rank(
    observations: list[Observation], settings: Settings, symptom: str | None
) -> tuple[list[Cause], list[Cause]]:
    """(ranked causes, notes) from what the checks saw."""
    obs = {o.check: o for o in observations}
    found, notes = _Found(), _Found()
    _maintenance(obs, settings, found, notes)
    _platform(obs, settings, found)
    _deploy(obs, settings, found, notes)
    _mongodb(obs, settings, found)
    _replication(obs, settings, found)
    _redis(obs, settings, found)
    _api(obs, settings, found)
    _memory_trend(obs, settings, found, notes)
    _health_disks(obs, found)
    _indexes(obs, found)
    _slow_ops(obs, settings, found, notes)  # after _indexes: it joins missing_index's evidence
    incidents = _facts(obs, "incident")
    for item in (incidents or {}).get("open", []):
        notes.add(
            Cause(
                f"incident_{item['id']}",
                f"incident {item['id']} is open",
                0,
                item["severity"],
                "Security Operations > Incident Response",
                [
                    f"{item['id']} (severity {item['severity']}) since {item['opened']}:"
                    f" {item['title']}"
                ],
                [f"travellr-ops incident show {item['id']}"],
                area="incident",
                severity="info",
            )
        )
    causes = list(found.causes.values())
    below = any(c.area in DEPENDENCY_AREAS for c in causes)
    for c in causes:
        if below and c.area == "api":
            c.score -= CONSEQUENCE_PENALTY
        if symptom is not None and symptom in c.symptoms:
            c.score += SYMPTOM_BONUS
    causes.sort(key=lambda c: (-c.score, c.id))
    return causes, list(notes.causes.values())
