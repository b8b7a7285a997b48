"""The offline advisory database: OSV records (https://ossf.github.io/osv-schema/) on disk.

A directory of ``*.json`` records, or OSV's per-ecosystem ``all.zip`` exports, as
``osv-scanner --offline`` reads them. Versions are compared by the ecosystem's own rules:
PEP 440 (``packaging``) for PyPI, node-semver for npm. Withdrawn records never match.
"""

from __future__ import annotations

import json
import zipfile
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cmp_to_key
from pathlib import Path
from typing import Any

from travellr_ops.ops.security.deps import NPM, PYPI, Dependency

SEVERITIES = ("low", "moderate", "high", "critical")
_SEVERITY_WORDS = {"medium": "moderate", "moderate": "moderate", "low": "low", "high": "high"}


def normalise_severity(word: object) -> str:
    text = str(word or "").strip().lower()
    if text == "critical":
        return "critical"
    return _SEVERITY_WORDS.get(text, "unknown")


def severity_rank(word: str) -> int:
    """low 0 .. critical 3; an unknown severity ranks as critical, so it is never waved by."""
    return SEVERITIES.index(word) if word in SEVERITIES else len(SEVERITIES) - 1


@dataclass(frozen=True)
class Finding:
    package: str
    ecosystem: str
    installed: str
    advisory: str
    severity: str
    summary: str
    #: the first version without the flaw ("" when no fix is published)
    fixed_in: str = ""
    aliases: tuple[str, ...] = ()
    location: str = ""
    #: the services that reported it: "osv-offline", "npm audit", "pip-audit"
    sources: tuple[str, ...] = ()
    url: str = ""


@dataclass
class AdvisoryDB:
    """The records of an OSV directory, indexed by (ecosystem, package name)."""

    path: Path
    records: dict[tuple[str, str], list[dict[str, Any]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    count: int = 0
    #: files that could not be read as OSV JSON ("name: reason"); they are skipped
    unreadable: list[str] = field(default_factory=list)

    def match(self, dep: Dependency) -> list[Finding]:
        found = []
        for record in self.records.get((dep.ecosystem, _key(dep.ecosystem, dep.name)), []):
            for affected in record.get("affected") or []:
                package = affected.get("package") or {}
                if package.get("ecosystem") != dep.ecosystem:
                    continue
                if _key(dep.ecosystem, str(package.get("name", ""))) != _key(
                    dep.ecosystem, dep.name
                ):
                    continue
                hit, fixed = affects(affected, dep.ecosystem, dep.version)
                if hit:
                    found.append(_finding(record, dep, fixed))
                    break
        return found


def load(path: Path) -> AdvisoryDB:
    """Read every OSV record under ``path`` (recursively; ``.json`` and ``.zip``)."""
    db = AdvisoryDB(path)
    for name, raw in _documents(path, db.unreadable):
        try:
            record = json.loads(raw)
        except ValueError as exc:
            db.unreadable.append(f"{name}: {exc}")
            continue
        if not isinstance(record, dict) or "id" not in record:
            db.unreadable.append(f"{name}: not an OSV record")
            continue
        if record.get("withdrawn"):
            continue
        db.count += 1
        keys = {
            (str(a["package"].get("ecosystem")), _key(str(a["package"].get("ecosystem")), n))
            for a in record.get("affected") or []
            if isinstance(a, dict)
            and isinstance(a.get("package"), dict)
            and isinstance(n := a["package"].get("name"), str)
        }
        for key in keys:
            db.records[key].append(record)
    return db


def _documents(path: Path, unreadable: list[str]) -> Iterator[tuple[str, bytes]]:
    for file in sorted(path.rglob("*")):
        try:
            if file.suffix == ".json" and file.is_file():
                yield str(file.relative_to(path)), file.read_bytes()
            elif file.suffix == ".zip" and file.is_file():
                with zipfile.ZipFile(file) as archive:
                    for member in archive.namelist():
                        if member.endswith(".json"):
                            yield f"{file.name}:{member}", archive.read(member)
        except (OSError, zipfile.BadZipFile) as exc:
            unreadable.append(f"{file.relative_to(path)}: {exc}")


def _key(ecosystem: str, name: str) -> str:
    if ecosystem == PYPI:
        from packaging.utils import canonicalize_name

        return str(canonicalize_name(name))
    return name


def affects(affected: dict[str, Any], ecosystem: str, version: str) -> tuple[bool, str]:
    """Whether ``version`` is affected by one OSV ``affected`` entry, and its fixed version."""
    if version in (affected.get("versions") or []):
        return True, _any_fixed(affected)
    compare = _comparator(ecosystem)
    if compare is None:
        return False, ""
    for rng in affected.get("ranges") or []:
        if rng.get("type") not in ("SEMVER", "ECOSYSTEM"):
            continue  # GIT ranges name commits, not released versions
        hit, fixed = _in_range(rng.get("events") or [], version, compare)
        if hit:
            return True, fixed
    return False, ""


def _any_fixed(affected: dict[str, Any]) -> str:
    for rng in affected.get("ranges") or []:
        for event in rng.get("events") or []:
            if "fixed" in event:
                return str(event["fixed"])
    return ""


def _in_range(
    events: list[dict[str, str]], version: str, compare: Callable[[str, str], int]
) -> tuple[bool, str]:
    """OSV's evaluation over the events sorted by version: affected when the last event at or
    below it is ``introduced`` (``fixed``/``limit`` end a range exclusively, ``last_affected``
    inclusively). The fix is the first ``fixed`` above the version."""
    try:
        pairs: list[tuple[str, str]] = [(k, str(v)) for e in events for k, v in e.items()]

        def by_version(a: tuple[str, str], b: tuple[str, str]) -> int:
            return _cmp_zero(a[1], b[1], compare)

        def at_or_below(v: str) -> bool:
            return v == "0" or compare(v, version) <= 0

        def ends_before(kind: str, v: str) -> bool:
            if kind in ("fixed", "limit"):
                return at_or_below(v)
            return kind == "last_affected" and v != "0" and compare(v, version) < 0

        ordered = sorted(pairs, key=cmp_to_key(by_version))
        affected = False
        for kind, v in ordered:
            if kind == "introduced" and at_or_below(v):
                affected = True
            elif ends_before(kind, v):
                affected = False
        if not affected:
            return False, ""
        return True, next((v for k, v in ordered if k == "fixed" and not at_or_below(v)), "")
    except ValueError:  # a version the ecosystem's rules cannot parse: no verdict
        return False, ""


def _cmp_zero(a: str, b: str, compare: Callable[[str, str], int]) -> int:
    if a == b:
        return 0
    if a == "0":
        return -1
    if b == "0":
        return 1
    return compare(a, b)


def _comparator(ecosystem: str) -> Callable[[str, str], int] | None:
    if ecosystem == NPM:
        import nodesemver

        def npm(a: str, b: str) -> int:
            return int(nodesemver.compare(a, b, True))

        return npm
    if ecosystem == PYPI:
        from packaging.version import InvalidVersion, Version

        def pep440(a: str, b: str) -> int:
            try:
                va, vb = Version(a), Version(b)
            except InvalidVersion as exc:
                raise ValueError(str(exc)) from None
            return (va > vb) - (va < vb)

        return pep440
    return None


def _finding(record: dict[str, Any], dep: Dependency, fixed: str) -> Finding:
    specific = record.get("database_specific") or {}
    severity = normalise_severity(specific.get("severity") if isinstance(specific, dict) else "")
    url = next(
        (
            str(r.get("url"))
            for r in record.get("references") or []
            if isinstance(r, dict) and "github.com/advisories" in str(r.get("url", ""))
        ),
        "",
    )
    return Finding(
        package=dep.name,
        ecosystem=dep.ecosystem,
        installed=dep.version,
        advisory=str(record["id"]),
        severity=severity,
        summary=str(record.get("summary") or record.get("details") or "")[:200],
        fixed_in=fixed,
        aliases=tuple(str(a) for a in record.get("aliases") or []),
        location=dep.location,
        sources=("osv-offline",),
        url=url,
    )
