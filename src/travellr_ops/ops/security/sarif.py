"""`security audit` as SARIF 2.1.0, the format CI code-scanning pages read.

One rule per advisory, one result per installed copy it affects, located at the lockfile or
requirements line that installs it (so the page points at the line to change). An ignored
finding is a result with an external, accepted suppression carrying its reason: it is shown
as dismissed, not lost. Levels: critical/high (and unknown) -> error, moderate -> warning,
low -> note; ``security-severity`` (the CVSS score, else the lowest score of the label's band)
is what GitHub ranks alerts by.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from travellr_ops.ops.security.deps import NPM
from travellr_ops.ops.security.osv import Finding

if TYPE_CHECKING:
    from travellr_ops.ops.security.audit import AuditResult

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
TOOL = "travellr-ops security audit"
_LEVELS = {"critical": "error", "high": "error", "moderate": "warning", "low": "note"}
_BAND_FLOOR = {"critical": 9.0, "high": 7.0, "moderate": 4.0, "low": 0.1}
_LOCK_ENTRY = re.compile(r'^\s*"(node_modules/[^"]+)"\s*:\s*\{')


def document(result: AuditResult, version: str, base: Path | None = None) -> dict[str, Any]:
    """The SARIF log of ``result``; artifact paths relative to ``base`` (default: the current
    directory, where a CI job runs from its checkout) when the files lie under it."""
    base = base or Path.cwd()
    rows = [(f, None) for f in result.findings] + [(i.finding, i) for i in result.ignored]
    lines = _LockLines()
    rules: dict[str, dict[str, Any]] = {}
    results = []
    for finding, ignored in rows:
        rules.setdefault(finding.advisory, _rule(finding))
        artifact, line = _artifact(result, finding, lines)
        entry: dict[str, Any] = {
            "ruleId": finding.advisory,
            "level": _LEVELS.get(finding.severity, "error"),
            "message": {"text": _message(finding)},
            "locations": [
                {
                    "physicalLocation": {
                        "artifactLocation": {"uri": _uri(artifact, base)},
                        "region": {"startLine": line},
                    },
                    "logicalLocations": [
                        {"name": f"{finding.package}@{finding.installed}", "kind": "package"}
                    ],
                }
            ],
            "partialFingerprints": {
                "packageCopy/v1": f"{finding.ecosystem}:{finding.location}:{finding.advisory}"
            },
            "properties": {
                "package": finding.package,
                "ecosystem": finding.ecosystem,
                "installed": finding.installed,
                "fixedIn": finding.fixed_in,
                "severity": finding.severity,
                "dev": finding.dev,
            },
        }
        if ignored is not None:
            entry["suppressions"] = [
                {
                    "kind": "external",
                    "status": "accepted",
                    "justification": f"{ignored.reason} (until {ignored.expires.date()})",
                }
            ]
        results.append(entry)
    return {
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": TOOL,
                        "version": version,
                        "informationUri": "https://osv.dev",
                        "rules": list(rules.values()),
                    }
                },
                "results": results,
            }
        ],
    }


def _rule(finding: Finding) -> dict[str, Any]:
    score = finding.cvss_score
    if score is None:
        score = _BAND_FLOOR.get(finding.severity, 9.0)
    rule: dict[str, Any] = {
        "id": finding.advisory,
        "shortDescription": {"text": finding.summary or finding.advisory},
        "defaultConfiguration": {"level": _LEVELS.get(finding.severity, "error")},
        "help": {"text": _help(finding)},
        "properties": {
            "security-severity": f"{score:.1f}",
            "tags": ["security", "dependency", finding.ecosystem],
        },
    }
    if finding.aliases:
        rule["name"] = finding.aliases[0]
    if finding.url:
        rule["helpUri"] = finding.url
    return rule


def _message(f: Finding) -> str:
    fix = f"fixed in {f.fixed_in}" if f.fixed_in else "no fixed version published"
    return (
        f"{f.package} {f.installed} ({f.ecosystem}) is affected by {f.advisory} "
        f"({f.severity}, {fix}): {f.summary}"
    )


def _help(f: Finding) -> str:
    if not f.fixed_in:
        return "No fixed version is published: remove the package or accept it with an ignore."
    if f.ecosystem == NPM:
        return f"Upgrade: npm install {f.package}@{f.fixed_in}"
    return f"Pin {f.package}=={f.fixed_in} in the requirements file."


def _artifact(result: AuditResult, f: Finding, lines: _LockLines) -> tuple[Path, int]:
    """The file that installs the finding's copy, and the line of it."""
    if f.ecosystem == NPM:
        lock = result.directory / "package-lock.json"
        return lock, lines.line(lock, f.location)
    name, _, number = f.location.partition(":")
    return result.directory / name, int(number) if number.isdigit() else 1


class _LockLines:
    """The line of each package entry of a package-lock.json, read once per file."""

    def __init__(self) -> None:
        self._files: dict[Path, dict[str, int]] = {}

    def line(self, lock: Path, location: str) -> int:
        if lock not in self._files:
            found: dict[str, int] = {}
            try:
                for number, text in enumerate(lock.read_text().splitlines(), 1):
                    if m := _LOCK_ENTRY.match(text):
                        found.setdefault(m.group(1), number)
            except OSError:
                pass
            self._files[lock] = found
        return self._files[lock].get(location, 1)


def _uri(path: Path, base: Path) -> str:
    absolute = path.resolve()
    try:
        relative = absolute.relative_to(base.resolve())
    except ValueError:
        return absolute.as_uri()
    return relative.as_posix() if relative.parts else absolute.as_uri()
