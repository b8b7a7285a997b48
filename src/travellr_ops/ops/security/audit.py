"""`security audit`: the backend's dependencies against every advisory source that answers.

Sources, in order: the live services (``npm audit``, ``pip-audit``) when enabled, then the
offline OSV database: ``security.advisories_dir`` when set (records kept by hand), else the
database ``security db update`` imported. Their findings are merged into one list (one row per
package copy and advisory, whichever sources reported it). When no source answered the result
is *unknown* — never "no vulnerabilities"; so it is when the only source that answered is an
imported database older than ``security.db_max_age_days``, unless the caller allows stale.

Production scope by default: development dependencies are left out (and counted), as
``npm audit --omit=dev`` does. Ignores in force hide their findings from the verdict, which
are then listed apart.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import cmp_to_key
from pathlib import Path

from travellr_ops.ops.security import deps as deps_mod
from travellr_ops.ops.security.deps import NPM, PYPI, Inventory
from travellr_ops.ops.security.ignores import Ignored, IgnoreUse, apply
from travellr_ops.ops.security.live import SourceStatus, npm_audit, pip_audit
from travellr_ops.ops.security.osv import Finding, comparator, load, severity_rank
from travellr_ops.ops.security.osvdb import EcosystemInfo, OsvDatabase
from travellr_ops.settings import SecuritySettings

OFFLINE = "osv-offline"


@dataclass
class DatabaseAge:
    """How current the imported database is for the ecosystems audited."""

    path: Path
    ecosystems: list[EcosystemInfo]
    #: the oldest archive among them, in seconds
    age_s: float
    max_age_s: float
    #: the latest ``modified`` time of any record
    newest: datetime | None

    @property
    def stale(self) -> bool:
        return self.age_s > self.max_age_s


@dataclass
class FixPlan:
    """What would fix the fixable findings: one upgrade per package, to the highest of the
    fixed versions its advisories name."""

    #: ``npm install name@version`` for packages installed at the top of node_modules
    npm: list[str] = field(default_factory=list)
    #: package.json ``overrides`` for copies nested under another package (npm >= 8.3)
    npm_overrides: dict[str, str] = field(default_factory=dict)
    #: requirement lines to pin instead, with the file:line now pinning the old version
    pip: list[str] = field(default_factory=list)


@dataclass
class AuditResult:
    directory: Path
    files: list[Path]
    packages: int
    level: str
    sources: list[SourceStatus]
    findings: list[Finding]
    #: requirements that name no exact version, so nothing could be matched against them
    unpinned: list[str] = field(default_factory=list)
    #: findings an ignore in force hides from the verdict
    ignored: list[Ignored] = field(default_factory=list)
    #: every configured ignore, in force or expired
    ignores: list[IgnoreUse] = field(default_factory=list)
    #: development dependencies left out of the audit (0 with include_dev)
    dev_left_out: int = 0
    include_dev: bool = False
    #: the imported database's age (None when it was not used)
    database: DatabaseAge | None = None
    allow_stale: bool = False

    @property
    def answered(self) -> bool:
        return any(s.state == "ok" for s in self.sources)

    @property
    def stale(self) -> bool:
        return self.database is not None and self.database.stale

    @property
    def answered_current(self) -> bool:
        """A source answered whose data counts: a live service, or a database that is not
        stale (or stale, and allowed)."""
        return any(
            s.state == "ok" and (s.name != OFFLINE or not self.stale or self.allow_stale)
            for s in self.sources
        )

    @property
    def fix_plan(self) -> FixPlan:
        return fix_plan(self.findings)

    @property
    def at_level(self) -> list[Finding]:
        return [f for f in self.findings if severity_rank(f.severity) >= severity_rank(self.level)]

    @property
    def status(self) -> str:
        """ "vulnerable" (findings at --level), "unknown" (no source answered, or only a stale
        database), else "ok"."""
        if self.at_level:
            return "vulnerable"
        return "ok" if self.answered_current else "unknown"


def audit(
    directory: Path,
    settings: SecuritySettings,
    *,
    level: str | None = None,
    only_fixable: bool = False,
    live: bool | None = None,
    database: Path | None = None,
    include_dev: bool | None = None,
    allow_stale: bool = False,
    now: datetime | None = None,
) -> AuditResult:
    """Audit ``directory``. ``database`` is the imported OSV database (``osvdb.location``),
    used when ``security.advisories_dir`` is unset."""
    now = now or datetime.now(UTC)
    everything = deps_mod.inventory(directory)
    dev = settings.include_dev if include_dev is None else include_dev
    inv = everything if dev else everything.production()
    sources: list[SourceStatus] = []
    if settings.live_audit if live is None else live:
        if inv.of(NPM):
            npm = npm_audit(directory, inv.of(NPM), settings.live_timeout_s)
            # npm audit reads the whole lock: keep the copies in scope
            in_scope = {d.location for d in inv.of(NPM)}
            npm.findings = [f for f in npm.findings if f.location in in_scope]
            sources.append(npm)
        requirements = [f for f in inv.files if f.suffix == ".txt"]
        if inv.of(PYPI):
            sources.append(pip_audit(requirements, settings.live_timeout_s))
    offline, age = _offline(inv, settings, database, now)
    sources.append(offline)
    found = merge(f for s in sources for f in s.findings)
    if only_fixable:
        found = [f for f in found if f.fixed_in]
    findings, ignored, ignores = apply(found, settings.ignore, now)
    return AuditResult(
        directory=directory,
        files=inv.files,
        packages=len(inv.dependencies),
        level=level or settings.audit_level,
        sources=sources,
        findings=findings,
        unpinned=inv.unpinned,
        ignored=ignored,
        ignores=ignores,
        dev_left_out=len(everything.dependencies) - len(inv.dependencies),
        include_dev=dev,
        database=age,
        allow_stale=allow_stale,
    )


def _offline(
    inv: Inventory, settings: SecuritySettings, database: Path | None, now: datetime
) -> tuple[SourceStatus, DatabaseAge | None]:
    advisories_dir = settings.advisories_dir
    if advisories_dir is None:
        if database is not None and database.is_file():
            return _imported(inv, database, settings.db_max_age_days * 86400, now)
        return SourceStatus(
            OFFLINE,
            "skipped",
            "no OSV database: run `travellr-ops security db update` "
            "(or set security.advisories_dir)",
        ), None
    if not advisories_dir.is_dir():
        return SourceStatus(
            OFFLINE, "unknown", f"advisory directory not found: {advisories_dir}"
        ), None
    db = load(advisories_dir)
    if db.count == 0:
        return SourceStatus(OFFLINE, "unknown", f"no OSV records in {advisories_dir}"), None
    findings = [f for dep in inv.dependencies for f in db.match(dep)]
    detail = f"{db.count} advisories in {advisories_dir}"
    if db.unreadable:
        detail += f"; {len(db.unreadable)} unreadable file(s) skipped ({db.unreadable[0]})"
    return SourceStatus(OFFLINE, "ok", detail, findings), None


def _imported(
    inv: Inventory, path: Path, max_age_s: float, now: datetime
) -> tuple[SourceStatus, DatabaseAge | None]:
    from travellr_ops.errors import UsageError

    try:
        db = OsvDatabase(path)
    except UsageError as exc:
        return SourceStatus(OFFLINE, "unknown", exc.message), None
    try:
        needed = {d.ecosystem for d in inv.dependencies}
        known = [e for e in db.ecosystems() if e.ecosystem in needed]
        missing = sorted(needed - {e.ecosystem for e in known})
        if not known:
            detail = f"no {' or '.join(missing)} advisories imported in {path}"
            return SourceStatus(OFFLINE, "unknown", detail), None
        covered = {e.ecosystem for e in known}
        findings = db.match_all([d for d in inv.dependencies if d.ecosystem in covered])
    finally:
        db.close()
    newest = max((e.newest for e in known if e.newest), default=None)
    age = DatabaseAge(path, known, max(e.age_s(now) for e in known), max_age_s, newest)
    detail = f"{sum(e.records for e in known)} advisories imported in {path}"
    if missing:
        detail += f"; none of {', '.join(missing)}: run `security db update` with its export"
    return SourceStatus(OFFLINE, "ok", detail, findings), age


def fix_plan(findings: Iterable[Finding]) -> FixPlan:
    best: dict[tuple[str, str, bool], str] = {}
    pinned_at: dict[tuple[str, str], set[str]] = {}
    for f in findings:
        if not f.fixed_in:
            continue
        nested = f.ecosystem == NPM and f.location.count("node_modules/") > 1
        slot = (f.ecosystem, f.package, nested)
        best[slot] = _higher(f.ecosystem, best.get(slot, ""), f.fixed_in)
        if f.ecosystem == PYPI:
            pinned_at.setdefault((f.ecosystem, f.package), set()).add(f.location)
    plan = FixPlan()
    for (ecosystem, package, nested), version in sorted(best.items()):
        if ecosystem == NPM and nested:
            plan.npm_overrides[package] = version
        elif ecosystem == NPM:
            plan.npm.append(f"npm install {package}@{version}")
        elif ecosystem == PYPI:
            where = ", ".join(sorted(pinned_at.get((ecosystem, package), set())))
            plan.pip.append(f"{package}=={version}" + (f"  # in {where}" if where else ""))
    return plan


def _higher(ecosystem: str, a: str, b: str) -> str:
    if not a:
        return b
    compare = comparator(ecosystem)
    if compare is None:
        return max(a, b)
    try:
        return max(a, b, key=cmp_to_key(compare))
    except ValueError:
        return max(a, b)


def merge(findings: Iterable[Finding]) -> list[Finding]:
    """One row per installed copy and advisory: a GHSA that npm audit and the OSV database
    both report (or one reports under its CVE alias) is one finding with both sources."""
    rows: list[Finding] = []
    # the rows of each installed copy: only those can be the same finding
    by_copy: dict[tuple[str, str, str, str], list[int]] = {}
    for new in findings:
        copy = (
            new.ecosystem,
            new.package,
            new.installed,
            new.location if new.ecosystem == NPM else "",
        )
        ids = {new.advisory, *new.aliases}
        for index in by_copy.get(copy, []):
            old = rows[index]
            if ids & {old.advisory, *old.aliases}:
                rows[index] = _combine(old, new)
                break
        else:
            by_copy.setdefault(copy, []).append(len(rows))
            rows.append(new)
    return sorted(
        rows,
        key=lambda f: (-severity_rank(f.severity), f.ecosystem, f.package, f.advisory, f.location),
    )


def _combine(old: Finding, new: Finding) -> Finding:
    known = old if old.severity != "unknown" else new
    chosen = old.advisory if old.advisory.startswith("GHSA-") else new.advisory
    ids = {old.advisory, new.advisory, *old.aliases, *new.aliases}
    return replace(
        old,
        advisory=chosen,
        severity=known.severity,
        fixed_in=old.fixed_in or new.fixed_in,
        summary=old.summary or new.summary,
        aliases=tuple(sorted(ids - {chosen})),
        sources=tuple(dict.fromkeys((*old.sources, *new.sources))),
        url=old.url or new.url,
    )
