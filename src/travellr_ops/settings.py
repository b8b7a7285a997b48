"""One settings object for every URI, name and threshold the runbook uses.

Sources, highest first: command-line flags (passed as overrides), the environment
(``TRAVELLR_`` prefix, nested with ``__``: ``TRAVELLR_MONGO__URI``), the selected environment's
``[env.NAME]`` table of the config file, the rest of that TOML config file (``--config``, else
``TRAVELLR_CONFIG``, else the first file of ``CONFIG_SEARCH_PATH``), defaults.

This is the only module that reads ``os.environ``. Tests build ``Settings(...)`` directly;
that reads the environment but never a config file.
"""

from __future__ import annotations

import functools
import os
import tomllib
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from travellr_ops.errors import ConfigError, UsageError

ENV_PREFIX = "TRAVELLR_"
ENV_NESTED = "__"
CONFIG_ENV = "TRAVELLR_CONFIG"
#: the variable that selects a named environment (as --env does)
SELECT_ENV = "TRAVELLR_ENV"
#: the config file's keys that name environments rather than set a setting
ENV_TABLES = "env"
DEFAULT_ENV = "default_env"

#: old setting names that still work, each with the name that replaced it
RENAMED = {
    "monitor.store_timeout_s": "store.timeout_s",
    "kubernetes.deployment": "kubernetes.backend_deployment",
    "deploy.webhook_url": "deploy.webhook_urls",
    "deploy.error_source": "logs.access_source",
    "deploy.container_access_log": "logs.access_log",
}
# the old names met while a Settings is built (load_settings turns them into warnings)
_renamed_seen: ContextVar[list[str] | None] = ContextVar("_renamed_seen", default=None)


def _renamed(section: str, data: Any, old: str, new: str, move: Any = None) -> Any:
    """Take the old key ``old`` of a section's raw ``data`` as ``new`` (``move`` merges it,
    e.g. into a list), noting the old name for the warning."""
    if not isinstance(data, dict) or old not in data:
        return data
    data = dict(data)
    value = data.pop(old)
    seen = _renamed_seen.get()
    if seen is not None:
        seen.append(f"{section}.{old}")
    if value is not None:
        data[new] = move(data.get(new), value) if move else data.get(new, value)
    return data


def _default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "travellr-ops"


def _config_search_path() -> list[Path]:
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return [
        Path("travellr-ops.toml"),
        Path(config_home) / "travellr-ops" / "config.toml",
        Path("/etc/travellr-ops/config.toml"),
    ]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MongoSettings(_Section):
    uri: str = "mongodb://localhost:27017/travellr"
    #: how long to wait for a server before giving up (pymongo's own default is 30 s)
    timeout_s: float = 5.0
    #: the app's required indexes and important query shapes (db indexes ensure/analyze);
    #: unset: the indexes.toml shipped inside the package (travellr_ops/data)
    indexes_file: Path | None = None
    # db helper's fields (db indexes analyze/ensure):
    #: scans of fewer documents than this are not findings (an index would not pay off)
    analyze_min_docs: int = 1000
    #: keys/documents examined per document returned above which a plan is a finding
    analyze_max_ratio: float = 10.0
    #: how many recent profiler records `db indexes analyze` reads for query shapes
    profile_sample: int = 1000
    #: index builds over collections with at least this many documents are named as long builds
    ensure_confirm_docs: int = 100_000

    @property
    def database(self) -> str:
        name = urlsplit(self.uri).path.lstrip("/")
        return name or "travellr"


class RedisSettings(_Section):
    url: str = "redis://localhost:6379/0"
    timeout_s: float = 5.0


class ApiSettings(_Section):
    url: str = "http://localhost:5000"
    health_path: str = "/api/health"
    timeout_s: float = 5.0
    #: further URLs that `health` checks alongside the API's own health endpoint
    extra_health_urls: list[str] = Field(default_factory=list)


class CacheSettings(_Section):
    #: backend paths that `cache warm` requests (relative to api.url)
    warm_paths: list[str] = Field(default_factory=list)
    warm_concurrency: int = 8
    #: SCAN COUNT hint (keys looked at per round trip) of `cache clear/keys/bigkeys`; each
    #: round trip UNLINKs what the previous one found
    scan_count: int = Field(default=1000, ge=1)
    #: how many keys `cache stats` samples for its per-prefix breakdown (and `cache bigkeys`)
    sample_size: int = Field(default=1000, ge=1)
    #: `cache clear` counts matching keys exactly (one extra SCAN pass) up to this many keys
    #: in the database; above it, it estimates the count from a random sample
    clear_exact_limit: int = Field(default=100_000, ge=0)


class MaintenanceSettings(_Section):
    #: the Redis key the backend honours; its value is JSON {message, by, reason, since, until}
    key: str = "travellr:maintenance"


class ComposeSettings(_Section):
    project: str = "travellr"
    file: Path | None = None
    backend_service: str = "backend"
    mongodb_service: str = "mongodb"
    redis_service: str = "redis"
    # compose helper's fields (service on compose, issue 6):
    #: the Docker Engine, e.g. unix:///var/run/docker.sock or tcp://127.0.0.1:2375;
    #: unset: the standard Docker environment (DOCKER_HOST...), else /var/run/docker.sock
    docker_host: str | None = None
    #: how long one Docker Engine API call may take
    timeout_s: float = 30.0
    #: the compose binary, e.g. ["docker", "compose"]; empty: v2 if present, else docker-compose
    command: list[str] = Field(default_factory=list)
    #: how long `service up/down/scale` wait for the compose binary
    command_timeout_s: float = 300.0
    #: variables for the compose binary on top of the environment (TRAVELLR_BACKEND_TAG...)
    env: dict[str, str] = Field(default_factory=dict)
    #: how long `service restart` waits for a service to be running and healthy again
    restart_timeout_s: float = 120.0


class KubernetesSettings(_Section):
    kubeconfig: Path | None = None
    context: str | None = None
    namespace: str = "default"
    backend_deployment: str = "travellr-backend"
    mongodb_deployment: str = "mongodb"
    redis_deployment: str = "redis"
    #: how long `service restart` waits for the rollout to finish (Helm's default is 5 min)
    rollout_timeout_s: float = Field(default=300.0, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _old_names(cls, data: Any) -> Any:
        return _renamed("kubernetes", data, "deployment", "backend_deployment")


class BackupSettings(_Section):
    dir: Path = Path("backups")
    retention_days: int = 7
    #: how many of the newest backups `backup clean` always keeps, whatever their age
    keep_last: int = 1
    #: collections dumped/restored at once; unset: chosen from the server's and this
    #: machine's cores (`backup create/restore` report the choice)
    parallelism: int | None = Field(default=None, ge=1)
    # backup helper's fields:
    #: gzip level of backup files (1 fastest .. 9 smallest); the dump waits on the server, so
    #: a fast level keeps compression off the critical path on small machines
    compression_level: int = Field(default=1, ge=1, le=9)
    #: where `backup restore --until` finds the continuously archived oplog
    #: (`backup oplog-archive`); unset: <dir>/oplog-archive
    oplog_archive_dir: Path | None = None
    #: seconds between oplog reads of `backup oplog-archive --follow` (the recovery point)
    oplog_poll_s: float = 10.0
    #: entries per archive file of `backup oplog-archive` (a file is also cut at each poll)
    oplog_file_entries: int = 50_000
    #: `backup list` flags a gap when the newest backup is older than this many hours
    max_age_hours: float = 24.0
    #: how long one server-side read of a backup may take (the oplog scan of a busy server
    #: can take many seconds); mongo.timeout_s stays the limit for reaching the server
    read_timeout_s: float = Field(default=600.0, gt=0)
    #: `backup restore --with-downtime`: how long the health check may take to pass after
    #: the backend is started again
    restore_health_timeout_s: float = Field(default=60.0, gt=0)
    # recovery helper's fields:
    #: the recovery point objective: `backup list`, the monitor (`backup_rpo_s`) and
    #: `checklist morning` report a breach when a crash now would lose more seconds of writes
    rpo_target_s: float = Field(default=300.0, gt=0)
    #: `checklist monthly` fails when the newest restore test is older than this many days
    drill_max_age_days: float = Field(default=35.0, gt=0)


LogSourceKind = Literal["file", "container", "service"]


class LogSettings(_Section):
    """Where the backend's access log (combined format) and app log are: the one place the
    monitor, the deploy gate, `security logs`, incident evidence and the checklists read."""

    #: the access log: a file on this machine (source "file"), or inside each container
    #: (source "container"); unset: logs/access.log, or /var/log/travellr/access.log inside
    #: the container (the compose file's LOG_DIR)
    access_log: Path | None = None
    #: "file": access_log on this machine (platform "none", or a volume mounted from the
    #: container); "container": access_log inside each running container of the backend,
    #: read through the platform (compose); "service": the backend's standard output (the
    #: container or pod logs); unset: "file" with platform "none" or when access_log is set,
    #: else "container" on compose and "service" on Kubernetes
    access_source: LogSourceKind | None = None
    #: the app log, as access_log (default file name app.log)
    app_log: Path | None = None
    #: as access_source; unset: "file" with platform "none" or when app_log is set, else
    #: "service" (the backend writes its app log to its standard output too)
    app_source: LogSourceKind | None = None
    #: the most read of one file per look (its tail on the first look), so that no read
    #: ever takes a whole large log
    read_bytes: int = Field(default=16 << 20, ge=4096)


class Thresholds(_Section):
    """The runbook's "Key Metrics to Watch"."""

    api_response_ms: float = 200.0
    db_query_ms: float = 50.0
    cache_hit_rate_pct: float = 80.0
    cpu_pct: float = 70.0
    memory_pct: float = 80.0
    disk_pct: float = 80.0
    error_rate_pct: float = 1.0
    #: `service profile --leak`: memory growing faster than this is a leak (exit 1)
    leak_mb_per_h: float = 50.0


class MonitorQuery(_Section):
    """A MongoDB query the monitor runs: a find (timed), a count, or a distinct count."""

    name: str
    collection: str
    filter: dict[str, Any] = Field(default_factory=dict)
    sort: dict[str, int] = Field(default_factory=dict)
    limit: int = Field(default=0, ge=0)
    #: count the distinct non-null values of this field instead of the documents
    distinct: str | None = None
    #: with ``within_h``: only documents whose ``time_field`` lies in the last ``within_h`` hours
    time_field: str | None = None
    within_h: float | None = Field(default=None, gt=0)


@functools.cache
def _app_defaults() -> dict[str, Any]:
    """The Travellr app's own defaults (its representative queries), shipped beside the code
    as ``travellr_ops/data/app.toml``: what the app is lives in data, not in code."""
    from importlib.resources import files

    return tomllib.loads(files("travellr_ops").joinpath("data/app.toml").read_text())


def _app_query(name: str) -> MonitorQuery:
    return MonitorQuery(**_app_defaults()["monitor"][name])


def _default_db_queries() -> list[MonitorQuery]:
    return [MonitorQuery(**q) for q in _app_defaults()["monitor"]["db_queries"]]


class MonitorSettings(_Section):
    """`monitor`: how the runbook's key metrics are sampled and kept."""

    #: seconds one `monitor once` sample spans (API probes, cache and CPU deltas)
    window_s: float = Field(default=2.0, gt=0, le=300)
    #: probes of each API endpoint per sample (p50/p95/max over them)
    api_probes: int = Field(default=5, ge=1, le=1000)
    #: endpoints probed besides api.url + api.health_path (paths relative to api.url, or URLs)
    api_paths: list[str] = Field(default_factory=list)
    #: the app's representative queries, each timed (database query time)
    db_queries: list[MonitorQuery] = Field(default_factory=_default_db_queries)
    #: timed runs of each representative query per sample
    db_query_runs: int = Field(default=3, ge=1, le=100)
    #: error rate: the 5xx share of the access log's requests in the last this many seconds
    error_window_s: float = Field(default=300.0, gt=0)
    #: hit rates over fewer lookups than this are shown but not judged ("insufficient")
    cache_min_lookups: int = Field(default=20, ge=0)
    #: error rates over fewer requests than this (travellr-ops's own requests and maintenance
    #: 503s not counted) are shown with their counts but not judged ("insufficient")
    min_requests: int = Field(default=50, ge=0)
    #: API p95s over fewer answered probes than this are "insufficient"
    min_probes: int = Field(default=5, ge=0)
    #: a live monitor times the representative queries at most this often (between, it shows
    #: the last figure and its age): the monitor's database work must not slow what it measures
    query_every_s: float = Field(default=60.0, ge=0)
    #: ... and takes serverStatus, dbStats and the business queries at most this often
    stats_every_s: float = Field(default=300.0, ge=0)
    #: ... and each of those parts later still when it took long: it keeps the database busy
    #: at most this share of the time (a 3 s part at 0.5 %: every 600 s)
    db_budget_pct: float = Field(default=0.5, gt=0, le=100)
    #: active users: distinct users with activity in the last 24 h
    active_users: MonitorQuery = Field(default_factory=lambda: _app_query("active_users"))
    #: booking conversion: bookings / searches made in the same window
    conversion_bookings: MonitorQuery = Field(
        default_factory=lambda: _app_query("conversion_bookings")
    )
    conversion_searches: MonitorQuery = Field(
        default_factory=lambda: _app_query("conversion_searches")
    )
    #: samples older than this are deleted from the history store
    retention_days: float = Field(default=30.0, gt=0)


class StoreSettings(_Section):
    """`store`: the SQLite file in the state directory that keeps every history."""

    #: how long a write waits for the store while another writer holds it
    timeout_s: float = Field(default=5.0, ge=0)


Severity = Literal["low", "moderate", "high", "critical"]
_Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class AuditIgnore(_Section):
    """One accepted finding of `security audit`: why, and until when. Both are required, so
    that no ignore becomes permanent by forgetting it."""

    #: the advisory's ID or any alias of it (GHSA-..., CVE-..., PYSEC-...)
    id: _Text
    reason: _Text
    #: from then on the finding counts again (a date: 00:00 UTC of that day)
    expires: datetime | date
    #: only this package's finding (unset: the advisory in any package)
    package: _Text | None = None


class SecuritySettings(_Section):
    """`security`: dependency audit, log review and posture checks."""

    #: the backend's source directory: package-lock.json and requirements*.txt are audited
    backend_dir: Path = Path(".")
    #: an offline advisory database: a directory of OSV JSON files (or OSV's per-ecosystem
    #: all.zip exports), as `osv-scanner --offline` uses; unset: live services only
    advisories_dir: Path | None = None
    #: ask the live services too (`npm audit --json`, `pip-audit`) when they are installed
    live_audit: bool = True
    #: how long one live audit service may take
    live_timeout_s: float = Field(default=120.0, gt=0)
    #: `security audit` exits 1 for findings at or above this severity
    audit_level: Severity = "high"
    #: a brute-force suspect: at least this many failed logins from one IP ...
    bruteforce_failures: int = Field(default=10, ge=1)
    #: ... within this many seconds
    bruteforce_window_s: float = Field(default=300.0, gt=0)
    #: how many rows the log review's "top" tables show
    top: int = Field(default=10, ge=1)
    #: `security db update` without --from: OSV's export of each ecosystem the backend uses
    db_urls: list[str] = Field(
        default_factory=lambda: [
            "https://osv-vulnerabilities.storage.googleapis.com/npm/all.zip",
            "https://osv-vulnerabilities.storage.googleapis.com/PyPI/all.zip",
        ]
    )
    #: an imported database older than this is stale: a warning, and exit 3 when it was the
    #: only source that answered (`security audit --allow-stale` accepts it)
    db_max_age_days: float = Field(default=7.0, gt=0)
    #: findings accepted for now: [{id, reason, expires, package?}]
    ignore: list[AuditIgnore] = Field(default_factory=list)
    #: audit devDependencies and requirements-dev files too (`security audit --include-dev`)
    include_dev: bool = False


class IncidentContact(_Section):
    level: int = Field(ge=1, le=3)
    name: str
    contact: str = ""


def _default_contacts() -> list[IncidentContact]:
    return [
        IncidentContact(level=1, name="Operations team (on call)"),
        IncidentContact(level=2, name="Engineering team"),
        IncidentContact(level=3, name="Senior engineering / CTO"),
    ]


class IncidentSettings(_Section):
    """`incident`: where records live and whom each escalation level calls."""

    #: where incident records are kept; unset: <state_dir>/incidents
    dir: Path | None = None
    #: the runbook's escalation levels: severity N calls level N
    contacts: list[IncidentContact] = Field(default_factory=_default_contacts)
    #: the "Identify" evidence captured at `incident open`: lines of each service's log
    evidence_log_lines: int = Field(default=50, ge=0, le=1000)
    #: how long capturing the evidence may take in all (a down source never blocks it)
    evidence_timeout_s: float = Field(default=15.0, gt=0)


class ChecklistSettings(_Section):
    """`checklist`: the runbook's daily, weekly, monthly and maintenance routines."""

    #: `checklist morning` warns when the weekly routine last ran longer ago than this
    weekly_overdue_days: float = Field(default=8.0, gt=0)
    #: ... and the monthly routine longer ago than this
    monthly_overdue_days: float = Field(default=32.0, gt=0)
    #: how many of the backend's newest log lines the morning checklist reads for ERRORs
    log_tail_lines: int = Field(default=100, ge=1, le=100_000)
    #: more ERROR lines than this in those lines fail the step
    max_error_lines: int = Field(default=0, ge=0)
    #: how many of the newest ERROR lines are shown
    show_error_lines: int = Field(default=3, ge=0, le=100)
    #: seconds the cache hit rate is measured over (as `cache stats --window`)
    cache_window_s: float = Field(default=2.0, gt=0, le=3600)
    #: monthly performance review: a metric that breached in more than this share of the
    #: month's samples (outside maintenance) fails it
    monthly_breach_pct: float = Field(default=5.0, ge=0, le=100)


class DoctorSettings(_Section):
    """`doctor`: from a symptom to its cause, every check at once, each cut at its timeout."""

    #: a check still running after this many seconds is cut and reported unknown
    check_timeout_s: float = Field(default=5.0, gt=0, le=300)
    #: how long doctor waits for any one server (shortens mongo/redis/api timeout_s): a hung
    #: server is then classified ("timeout") before its check is cut
    client_timeout_s: float = Field(default=2.0, gt=0, le=60)
    #: seconds the API probes, the cache hit rate and CPU are measured over
    window_s: float = Field(default=1.0, gt=0, le=60)
    #: keys `cache stats` breakdown and `cache bigkeys --sample` measure
    cache_sample: int = Field(default=200, ge=1)
    #: a deploy that started less than this many seconds ago is suspect
    deploy_recent_s: float = Field(default=3600.0, gt=0)
    #: the API's error rate is taken over this many seconds of the access log at most
    error_window_s: float = Field(default=60.0, gt=0)
    #: the profiler's slow operations (`db slow`) of the last this many seconds are a cause
    slow_ops_window_s: float = Field(default=900.0, gt=0)
    #: ... when slower than this; unset: thresholds.db_query_ms (the runbook's < 50 ms)
    slow_ops_min_ms: float | None = Field(default=None, ge=0)
    #: ... reading at most this many of them (the newest first)
    slow_ops_limit: int = Field(default=100, ge=1, le=10_000)
    #: a secondary further behind the primary's last write than this is lagging
    replication_lag_s: float = Field(default=10.0, gt=0)
    #: the monitor's stored memory samples of the last this many seconds give each
    #: service's memory trend (least squares, as `service profile --leak`)
    leak_window_s: float = Field(default=3600.0, gt=0)
    #: ... spanning this many seconds at least: memory read over a few minutes is warm-up
    #: and allocator noise, not a trend (fewer or closer samples are "insufficient")
    leak_min_span_s: float = Field(default=1800.0, ge=0)
    #: a leak, where the monitor stored memory as a share of a container's or pod's limit
    #: (the limit itself is not stored, so no MB/h): percentage points per hour
    leak_pct_per_h: float = Field(default=5.0, gt=0)


class DeploySettings(_Section):
    """`deploy`: the runbook's Deployment procedure, its health gate and its notifications."""

    @model_validator(mode="before")
    @classmethod
    def _old_names(cls, data: Any) -> Any:
        return _renamed(
            "deploy", data, "webhook_url", "webhook_urls", lambda urls, url: [url, *(urls or [])]
        )

    #: how long the health gate watches a new release (the runbook's "monitor for 10 minutes")
    watch_s: float = Field(default=600.0, gt=0)
    #: seconds between two samples of the health gate
    sample_interval_s: float = Field(default=10.0, gt=0)
    #: consecutive failing samples that make a failure (one slow probe is not a rollback)
    fail_after: int = Field(default=3, ge=1)
    #: probes of each endpoint per sample (the p95 is over them)
    probes: int = Field(default=5, ge=1, le=100)
    #: endpoints the gate probes besides api.url + api.health_path (relative to api.url)
    smoke_paths: list[str] = Field(default_factory=lambda: ["/api/trips/popular"])
    #: the error rate is judged over at least this many requests per sample (the gate's own
    #: probes count), else "insufficient"
    min_requests: int = Field(default=5, ge=1)
    #: the API p95 is judged over at least this many answered probes per sample
    min_probes: int = Field(default=5, ge=1)
    #: a watch that ends on an insufficient sample goes on up to this much longer
    extend_s: float = Field(default=300.0, ge=0)
    #: no sample could be judged even then: "rollback" (the safe choice for a CI that cannot
    #: ask a person) or "keep" the new release; either way the history says "inconclusive"
    on_inconclusive: Literal["rollback", "keep"] = "rollback"
    #: the compose file's variable that holds the backend's image tag
    tag_variable: str = "TRAVELLR_BACKEND_TAG"
    #: where a deployed tag is kept for later `docker-compose up`s; unset: .env next to the
    #: compose file (compose reads it from the project directory)
    env_file: Path | None = None
    #: the runbook's pre-deployment tests (e.g. "npm test"); preflight runs it when set
    test_command: str | None = None
    #: the test command's working directory (unset: the current one)
    test_dir: Path | None = None
    #: how long the test command may run
    test_timeout_s: float = Field(default=600.0, gt=0)
    #: how preflight checks that an image exists where the platform cannot tell before the
    #: rollout (Kubernetes: the nodes pull): a registry's URL, asked as the Docker Registry
    #: HTTP API v2 does (GET /v2/<repository>/manifests/<tag>); unset: preflight warns that
    #: it cannot check, and an image that never pulls is rolled back at the rollout's deadline
    image_check: str | None = None
    #: how long a rollout (and a rollback) may take before it counts as failed
    rollout_timeout_s: float = Field(default=300.0, gt=0)
    #: Slack-compatible incoming webhooks told of start, success, failure and rollback
    webhook_urls: list[str] = Field(default_factory=list)
    webhook_timeout_s: float = Field(default=3.0, gt=0, le=30)


class AlertWebhook(_Section):
    """One receiver of `monitor --alert`'s messages."""

    #: an http(s) URL that takes a POST
    url: str
    #: "slack": Slack-compatible {"text": ...} (Slack, Mattermost, Rocket.Chat, Teams'
    #: Slack-style hooks); "json": the episode as a plain JSON document
    format: Literal["slack", "json"] = "slack"

    @model_validator(mode="before")
    @classmethod
    def _bare_url(cls, data: Any) -> Any:
        return {"url": data} if isinstance(data, str) else data


def _default_depends_on() -> dict[str, list[str]]:
    return {"api": ["mongodb", "redis"]}


class AlertSettings(_Section):
    """`monitor --alert` / `monitor once --alert`: episodes, their webhooks and root causes."""

    #: where messages go: [{url, format = "slack" | "json"}] (a bare URL string is "slack")
    webhooks: list[AlertWebhook] = Field(default_factory=list)
    #: an episode still open this long after its last message is sent again (a reminder)
    repeat_s: float = Field(default=3600.0, gt=0)
    #: samples in a row that must breach before an episode opens (one slow probe is noise);
    #: a source that does not answer opens one at the first sample
    open_after: int = Field(default=2, ge=1)
    #: samples in a row that must be clean before an open episode resolves
    resolve_after: int = Field(default=1, ge=1)
    #: component -> the components it depends on: while one of those is down, the
    #: component's own breaches are listed under that root cause instead of alerting apart
    depends_on: dict[str, list[str]] = Field(default_factory=_default_depends_on)
    #: how long one webhook POST may take (live: sent beside the sampling, never delaying it)
    timeout_s: float = Field(default=3.0, gt=0, le=30)
    #: a message no webhook took is retried at each later run for this long, then dropped
    retry_for_s: float = Field(default=86400.0, gt=0)


# The TOML file's contents while `load_settings` builds a Settings; empty otherwise, so that
# `Settings(...)` built directly (by tests) never picks up a config file lying around.
_toml_data: ContextVar[dict[str, Any]] = ContextVar("_toml_data", default={})  # noqa: B039


class _TomlSource(PydanticBaseSettingsSource):
    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return _toml_data.get().get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_toml_data.get())


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED,
        extra="forbid",
        validate_default=True,
    )

    #: where the services run: "compose", "kubernetes", or "none" (plain processes, e.g. the
    #: sandbox: `service` commands are then unavailable and `health` skips its platform check)
    platform: Literal["compose", "kubernetes", "none"] = "compose"
    #: audit log, locks, history
    state_dir: Path = Field(default_factory=_default_state_dir)
    #: refuse every mutating command
    read_only: bool = False
    #: the named environment these settings are for (`--env` / TRAVELLR_ENV; unset: none named)
    environment: str | None = None
    #: a protected environment (production): a change needs its name typed, or
    #: `--yes --confirm-env NAME` without a terminal; `service exec` needs a `--reason`
    protected: bool = False
    #: `--env a,b` / `--env all`: how long the reading command may take in this environment
    #: before it is reported as not answering (exit 3) while the others are shown
    fanout_timeout_s: float = Field(default=30.0, gt=0)
    #: file systems whose usage `health` checks (besides the backup and state directories)
    disk_paths: list[Path] = Field(default_factory=lambda: [Path("/")])

    mongo: MongoSettings = Field(default_factory=MongoSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    maintenance: MaintenanceSettings = Field(default_factory=MaintenanceSettings)
    compose: ComposeSettings = Field(default_factory=ComposeSettings)
    kubernetes: KubernetesSettings = Field(default_factory=KubernetesSettings)
    backup: BackupSettings = Field(default_factory=BackupSettings)
    logs: LogSettings = Field(default_factory=LogSettings)
    thresholds: Thresholds = Field(default_factory=Thresholds)
    monitor: MonitorSettings = Field(default_factory=MonitorSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    incident: IncidentSettings = Field(default_factory=IncidentSettings)
    checklist: ChecklistSettings = Field(default_factory=ChecklistSettings)
    deploy: DeploySettings = Field(default_factory=DeploySettings)
    doctor: DoctorSettings = Field(default_factory=DoctorSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)

    @model_validator(mode="before")
    @classmethod
    def _old_names(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("deploy"), dict):
            data = _deploy_log_names(data)
        if not isinstance(data, dict) or not isinstance(data.get("monitor"), dict):
            return data
        monitor = data["monitor"]
        if "store_timeout_s" not in monitor:
            return data
        data = dict(data)
        store = dict(data.get("store") or {})
        data["monitor"] = _renamed("monitor", monitor, "store_timeout_s", "_store_timeout_s")
        store.setdefault("timeout_s", data["monitor"].pop("_store_timeout_s", 5.0))
        data["store"] = store
        return data

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlSource(settings_cls))


def _deploy_log_names(data: dict[str, Any]) -> dict[str, Any]:
    """The deploy gate's own log settings, now the one [logs] every group reads:
    ``error_source = "access_log"`` is ``logs.access_source = "file"`` ("service" is what an
    unset source does); ``container_access_log`` is ``logs.access_log`` read inside the
    container."""
    deploy = data["deploy"]
    if "error_source" not in deploy and "container_access_log" not in deploy:
        return data
    data = dict(data)
    logs = dict(data.get("logs") or {})
    deploy = _renamed("deploy", deploy, "error_source", "_error_source")
    deploy = _renamed("deploy", deploy, "container_access_log", "_container_access_log")
    source = deploy.pop("_error_source", None)
    path = deploy.pop("_container_access_log", None)
    if source == "access_log":
        logs.setdefault("access_source", "file")
    elif path is not None and "access_log" not in logs:
        logs.setdefault("access_source", "container")
        logs["access_log"] = path
    data["deploy"], data["logs"] = deploy, logs
    return data


@dataclass
class LoadedSettings:
    """Settings plus where each value came from, for `config show`."""

    settings: Settings
    config_file: Path | None
    sources: dict[str, str] = field(default_factory=dict)
    #: old setting names in use, each "old: use new instead"
    deprecations: list[str] = field(default_factory=list)
    #: the names of the config file's environments ([env.NAME] tables)
    environments: list[str] = field(default_factory=list)


def find_config_file(explicit: Path | None) -> Path | None:
    """The config file to read: --config, else $TRAVELLR_CONFIG, else the search path."""
    if explicit is None and os.environ.get(CONFIG_ENV):
        explicit = Path(os.environ[CONFIG_ENV])
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError(
                f"config file not found: {explicit}",
                hint="pass an existing file to --config (or fix TRAVELLR_CONFIG)",
            )
        return explicit
    for candidate in _config_search_path():
        try:
            if candidate.is_file():
                return candidate
        except OSError:  # an unreadable directory on the search path is not "our" file
            continue
    return None


def read_config(path: Path | None) -> dict[str, Any]:
    """The TOML file's contents (empty without a file)."""
    if path is None:
        return {}
    try:
        return tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None


@dataclass
class Environments:
    """The named environments of a config file: its ``[env.NAME]`` tables."""

    path: Path | None
    tables: dict[str, dict[str, Any]]
    #: the file's ``default_env``: the one used when none is selected
    default: str | None = None

    @classmethod
    def of(cls, path: Path | None, data: Mapping[str, Any]) -> Environments:
        tables = data.get(ENV_TABLES, {})
        if not isinstance(tables, dict) or not all(isinstance(t, dict) for t in tables.values()):
            raise ConfigError(
                f"{path}: [{ENV_TABLES}] must hold one table per environment ([env.NAME])"
            )
        default = data.get(DEFAULT_ENV)
        if default is not None and default not in tables:
            raise ConfigError(
                f"{path}: default_env names {default!r}, which has no [env.{default}] table",
                hint=_known_hint(path, tables),
            )
        return cls(path, tables, default)

    @property
    def names(self) -> list[str]:
        return list(self.tables)

    def table(self, name: str) -> dict[str, Any]:
        if name not in self.tables:
            raise UsageError(f"no environment {name!r}", hint=_known_hint(self.path, self.tables))
        return self.tables[name]

    def select(self, spec: str) -> list[str]:
        """The environments of ``--env a,b`` or ``--env all``, each checked."""
        if spec.strip() == "all":
            if not self.tables:
                raise UsageError(
                    "--env all: no environments are configured",
                    hint=_known_hint(self.path, self.tables),
                )
            return self.names
        names = list(dict.fromkeys(n.strip() for n in spec.split(",") if n.strip()))
        if not names:
            raise UsageError(
                f"--env {spec!r} names no environment", hint=_known_hint(self.path, self.tables)
            )
        for name in names:
            self.table(name)
        return names


def _known_hint(path: Path | None, tables: Mapping[str, Any]) -> str:
    if not tables:
        where = f"{path}" if path else "a config file (--config)"
        return f"no environments are configured: add [env.NAME] tables to {where}"
    return f"known environments: {', '.join(tables)} (the [env.NAME] tables of {path})"


def environments(config_file: Path | None = None) -> Environments:
    """The named environments of the config file that ``load_settings`` would read."""
    path = find_config_file(config_file)
    return Environments.of(path, read_config(path))


def _deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def selected_environment(envs: Environments, explicit: str | None = None) -> tuple[str | None, str]:
    """The environment to use and what chose it: --env, else $TRAVELLR_ENV, else default_env."""
    if explicit:
        return explicit, "flag --env"
    if os.environ.get(SELECT_ENV):
        return os.environ[SELECT_ENV], f"env {SELECT_ENV}"
    if envs.default:
        return envs.default, f"file {envs.path} ({DEFAULT_ENV})"
    return None, "default"


def load_settings(
    config_file: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environment: str | None = None,
) -> LoadedSettings:
    """Build the effective settings from flags (``overrides``), environment, the selected
    environment's table (``environment``, else $TRAVELLR_ENV, else the file's default_env),
    file, defaults."""
    path = find_config_file(config_file)
    file_data = read_config(path)
    envs = Environments.of(path, file_data)
    data = {k: v for k, v in file_data.items() if k not in (ENV_TABLES, DEFAULT_ENV)}
    name, name_source = selected_environment(envs, environment)
    table: dict[str, Any] = {}
    overrides = dict(overrides or {})
    pinned: dict[str, Any] = {}
    if name is not None:
        table = envs.table(name)
        data = _deep_merge(data, table)
        # An environment's protection is its table's to give: no variable or flag lifts it.
        pinned = {k: True for k in ("protected", "read_only") if table.get(k) is True}
        pinned["environment"] = name
    token = _toml_data.set(data)
    seen: list[str] = []
    seen_token = _renamed_seen.set(seen)
    try:
        settings = Settings(**{**overrides, **pinned})
    except ValidationError as exc:
        raise ConfigError(_describe_validation_error(exc), hint=_config_hint(path)) from None
    finally:
        _toml_data.reset(token)
        _renamed_seen.reset(seen_token)
    sources = _value_sources(settings, overrides, data, path)
    if name is not None and "state_dir" not in table:
        # Locks, deploy and monitor history are about one environment's servers: a staging
        # backup must not hold production's lock, nor staging's deploy be production's last.
        settings = settings.model_copy(update={"state_dir": settings.state_dir / "env" / name})
        sources["state_dir"] += f", + env/{name}"
    table_source = f"env table {name} ({path})"
    for key, _ in flatten(table):
        if sources.get(key, "").startswith("file "):
            sources[key] = table_source
    for key in pinned:
        sources[key] = table_source
    if name is not None:
        sources["environment"] = name_source
    deprecations = [
        f"{old} is deprecated: use {RENAMED[old]} instead" for old in dict.fromkeys(seen)
    ]
    return LoadedSettings(settings, path, sources, deprecations, envs.names)


def _config_hint(path: Path | None) -> str:
    where = f"{path}, " if path else ""
    return f"check {where}TRAVELLR_* variables and flags; see config/travellr-ops.example.toml"


def _describe_validation_error(exc: ValidationError) -> str:
    problems = []
    for err in exc.errors():
        loc = ".".join(str(part) for part in err["loc"])
        problems.append(f"{loc}: {err['msg']}")
    return "invalid configuration: " + "; ".join(problems)


def flatten(data: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Dotted keys of a nested mapping: {"mongo": {"uri": u}} -> ("mongo.uri", u)."""
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from flatten(value, dotted + ".")
        else:
            yield dotted, value


def _env_keys() -> set[str]:
    keys = set()
    for name in os.environ:
        if name.startswith(ENV_PREFIX) and name != CONFIG_ENV:
            keys.add(name[len(ENV_PREFIX) :].lower().replace(ENV_NESTED, "."))
    return keys


def _value_sources(
    settings: Settings,
    overrides: Mapping[str, Any],
    file_data: Mapping[str, Any],
    path: Path | None,
) -> dict[str, str]:
    flag_keys = {k for k, _ in flatten(overrides)}
    env_keys = _env_keys()
    file_keys = {k for k, _ in flatten(file_data)}
    sources = {}
    for key, _ in flatten(settings.model_dump()):
        if key in flag_keys:
            sources[key] = "flag"
        elif key in env_keys:
            sources[key] = f"env {ENV_PREFIX}{key.upper().replace('.', ENV_NESTED)}"
        elif key in file_keys:
            sources[key] = f"file {path}"
        else:
            sources[key] = "default"
    return sources
