"""The live advisory services: ``npm audit --json`` and ``pip-audit --format json``.

Each answers with findings, or does not answer (missing, unreachable, an error report): then
its status says why, and the audit treats it as unknown, never as "nothing found".
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from travellr_ops.ops.security.deps import NPM, PYPI, Dependency
from travellr_ops.ops.security.osv import Finding, normalise_severity


@dataclass
class SourceStatus:
    name: str
    #: "ok" (answered), "unknown" (should have answered and did not), "skipped" (not asked)
    state: str
    detail: str = ""
    findings: list[Finding] = field(default_factory=list)


def npm_audit(directory: Path, deps: list[Dependency], timeout_s: float) -> SourceStatus:
    name = "npm audit"
    npm = shutil.which("npm")
    if npm is None:
        return SourceStatus(name, "unknown", "npm is not installed")
    try:
        proc = subprocess.run(
            [npm, "audit", "--json", "--package-lock-only"],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return SourceStatus(name, "unknown", f"no answer within {timeout_s:g} s")
    except OSError as exc:
        return SourceStatus(name, "unknown", f"could not run npm: {exc.strerror or exc}")
    return parse_npm_audit(proc.stdout, proc.stderr, deps)


def parse_npm_audit(stdout: str, stderr: str, deps: list[Dependency]) -> SourceStatus:
    """npm exits 1 both for findings and for failures: only the report's shape tells which."""
    name = "npm audit"
    try:
        report = json.loads(stdout) if stdout.strip() else None
    except ValueError:
        report = None
    if not isinstance(report, dict) or "vulnerabilities" not in report:
        reason = ""
        if isinstance(report, dict):
            reason = str(report.get("message") or (report.get("error") or {}).get("summary", ""))
        reason = reason or _last_line(stderr) or "no report"
        return SourceStatus(name, "unknown", f"the audit endpoint did not answer: {reason}")
    versions = {d.location: d for d in deps if d.ecosystem == NPM}
    findings: list[Finding] = []
    for entry in (report.get("vulnerabilities") or {}).values():
        if not isinstance(entry, dict):
            continue
        for via in entry.get("via") or []:
            if not isinstance(via, dict) or via.get("name") != entry.get("name"):
                continue  # a string names the dependency it inherits the flaw from
            url = str(via.get("url") or "")
            advisory = url.rstrip("/").rsplit("/", 1)[-1] if url else str(via.get("source", ""))
            for node in entry.get("nodes") or []:
                dep = versions.get(node)
                findings.append(
                    Finding(
                        package=str(entry["name"]),
                        ecosystem=NPM,
                        installed=dep.version if dep else "",
                        advisory=advisory,
                        severity=normalise_severity(via.get("severity")),
                        summary=str(via.get("title") or ""),
                        location=str(node),
                        sources=(name,),
                        url=url,
                    )
                )
    return SourceStatus(name, "ok", f"{len(findings)} finding(s)", findings)


def pip_audit(requirements: list[Path], timeout_s: float) -> SourceStatus:
    name = "pip-audit"
    sibling = Path(sys.executable).parent / "pip-audit"
    binary = shutil.which("pip-audit") or (str(sibling) if sibling.exists() else None)
    if binary is None:
        return SourceStatus(name, "unknown", "pip-audit is not installed")
    findings: list[Finding] = []
    for req in requirements:
        argv = [binary, "-r", str(req), "--format", "json", "--progress-spinner", "off"]
        try:
            proc = subprocess.run(
                [*argv, "--no-deps", "--disable-pip"],
                capture_output=True,
                text=True,
                timeout=timeout_s,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            return SourceStatus(name, "unknown", f"no answer within {timeout_s:g} s ({req.name})")
        except OSError as exc:
            return SourceStatus(name, "unknown", f"could not run pip-audit: {exc}")
        try:
            report: Any = json.loads(proc.stdout)
        except ValueError:
            return SourceStatus(
                name, "unknown", f"{req.name}: {_last_line(proc.stderr) or 'no report'}"
            )
        for dep in report.get("dependencies", []) if isinstance(report, dict) else []:
            for vuln in dep.get("vulns") or []:
                fixes = vuln.get("fix_versions") or []
                findings.append(
                    Finding(
                        package=str(dep.get("name")),
                        ecosystem=PYPI,
                        installed=str(dep.get("version")),
                        advisory=str(vuln.get("id")),
                        severity="unknown",  # pip-audit's JSON carries no severity
                        summary=str(vuln.get("description") or "")[:200],
                        fixed_in=str(fixes[0]) if fixes else "",
                        aliases=tuple(vuln.get("aliases") or []),
                        location=req.name,
                        sources=(name,),
                    )
                )
    return SourceStatus(name, "ok", f"{len(findings)} finding(s)", findings)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""
