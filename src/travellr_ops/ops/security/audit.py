"""`security audit`: the backend's dependencies against every advisory source that answers.

Sources, in order: the live services (``npm audit``, ``pip-audit``) when enabled, then the
offline OSV database (``security.advisories_dir``). Their findings are merged into one list
(one row per package copy and advisory, whichever sources reported it). When no source
answered the result is *unknown* — never "no vulnerabilities".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from travellr_ops.ops.security import deps as deps_mod
from travellr_ops.ops.security.deps import NPM, PYPI, Inventory
from travellr_ops.ops.security.live import SourceStatus, npm_audit, pip_audit
from travellr_ops.ops.security.osv import Finding, load, severity_rank
from travellr_ops.settings import SecuritySettings


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

    @property
    def answered(self) -> bool:
        return any(s.state == "ok" for s in self.sources)

    @property
    def at_level(self) -> list[Finding]:
        return [f for f in self.findings if severity_rank(f.severity) >= severity_rank(self.level)]

    @property
    def status(self) -> str:
        """ "vulnerable" (findings at --level), "unknown" (no source answered), else "ok"."""
        if self.at_level:
            return "vulnerable"
        return "ok" if self.answered else "unknown"


def audit(
    directory: Path,
    settings: SecuritySettings,
    *,
    level: str | None = None,
    only_fixable: bool = False,
    live: bool | None = None,
) -> AuditResult:
    inv = deps_mod.inventory(directory)
    sources: list[SourceStatus] = []
    if settings.live_audit if live is None else live:
        if inv.of(NPM):
            sources.append(npm_audit(directory, inv.of(NPM), settings.live_timeout_s))
        requirements = [f for f in inv.files if f.suffix == ".txt"]
        if inv.of(PYPI):
            sources.append(pip_audit(requirements, settings.live_timeout_s))
    sources.append(_offline(inv, settings.advisories_dir))
    findings = merge(f for s in sources for f in s.findings)
    if only_fixable:
        findings = [f for f in findings if f.fixed_in]
    return AuditResult(
        directory=directory,
        files=inv.files,
        packages=len(inv.dependencies),
        level=level or settings.audit_level,
        sources=sources,
        findings=findings,
        unpinned=inv.unpinned,
    )


def _offline(inv: Inventory, advisories_dir: Path | None) -> SourceStatus:
    name = "osv-offline"
    if advisories_dir is None:
        return SourceStatus(name, "skipped", "security.advisories_dir is not set")
    if not advisories_dir.is_dir():
        return SourceStatus(name, "unknown", f"advisory directory not found: {advisories_dir}")
    db = load(advisories_dir)
    if db.count == 0:
        return SourceStatus(name, "unknown", f"no OSV records in {advisories_dir}")
    findings = [f for dep in inv.dependencies for f in db.match(dep)]
    detail = f"{db.count} advisories in {advisories_dir}"
    if db.unreadable:
        detail += f"; {len(db.unreadable)} unreadable file(s) skipped ({db.unreadable[0]})"
    return SourceStatus(name, "ok", detail, findings)


def merge(findings: Iterable[Finding]) -> list[Finding]:
    """One row per installed copy and advisory: a GHSA that npm audit and the OSV database
    both report (or one reports under its CVE alias) is one finding with both sources."""
    rows: list[Finding] = []
    for new in findings:
        ids = {new.advisory, *new.aliases}
        for index, old in enumerate(rows):
            if (
                (old.ecosystem, old.package, old.installed)
                == (new.ecosystem, new.package, new.installed)
                and (old.ecosystem != NPM or old.location == new.location)
                and ids & {old.advisory, *old.aliases}
            ):
                rows[index] = _combine(old, new)
                break
        else:
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
