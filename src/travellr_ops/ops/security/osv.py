"""The offline advisory database: OSV records (https://ossf.github.io/osv-schema/) on disk.

A directory of ``*.json`` records, or OSV's per-ecosystem ``all.zip`` exports, as
``osv-scanner --offline`` reads them (``security.advisories_dir``); the imported database of
``security db update`` (:mod:`.osvdb`) matches with the same rules. Versions are compared by
the ecosystem's own rules: PEP 440 (``packaging``) for PyPI, node-semver for npm. Withdrawn
records never match. An advisory without a severity label gets one from its CVSS vector.
"""

from __future__ import annotations

import json
import zipfile
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cmp_to_key, lru_cache
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
    #: the CVSS base score of the advisory's vector, when it has one
    cvss_score: float | None = None
    #: installed only as a development dependency (devDependencies, requirements-dev.txt)
    dev: bool = False


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
        return match(self.records.get((dep.ecosystem, key(dep.ecosystem, dep.name)), []), dep)

    def newest(self) -> str:
        """The latest ``modified`` time of the records ("" when none says)."""
        return max(
            (str(r.get("modified") or "") for rs in self.records.values() for r in rs), default=""
        )


def match(records: Iterable[dict[str, Any]], dep: Dependency) -> list[Finding]:
    """The findings of ``dep`` among the records filed under its package name."""
    found = []
    for record in records:
        for affected in record.get("affected") or []:
            package = affected.get("package") or {}
            if package.get("ecosystem") != dep.ecosystem:
                continue
            if key(dep.ecosystem, str(package.get("name", ""))) != key(dep.ecosystem, dep.name):
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
            (str(a["package"].get("ecosystem")), key(str(a["package"].get("ecosystem")), n))
            for a in record.get("affected") or []
            if isinstance(a, dict)
            and isinstance(a.get("package"), dict)
            and isinstance(n := a["package"].get("name"), str)
        }
        for filed_under in keys:
            db.records[filed_under].append(record)
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


def key(ecosystem: str, name: str) -> str:
    """The name a package is filed under: PyPI names canonicalised (PEP 503), npm's as is."""
    if ecosystem == PYPI:
        from packaging.utils import canonicalize_name

        return str(canonicalize_name(name))
    return name


def affects(affected: dict[str, Any], ecosystem: str, version: str) -> tuple[bool, str]:
    """Whether ``version`` is affected by one OSV ``affected`` entry, and its fixed version."""
    if version in (affected.get("versions") or []):
        return True, _any_fixed(affected)
    compare = comparator(ecosystem)
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


def comparator(ecosystem: str) -> Callable[[str, str], int] | None:
    """How ``ecosystem`` orders versions (ValueError for one it cannot parse); None when the
    audit does not know its rules."""
    if ecosystem == NPM:
        return _npm_compare
    if ecosystem == PYPI:
        return _pep440_compare
    return None


# An audit compares the same few versions thousands of times (each installed version against
# every event of every advisory of its package): each is parsed once.
@lru_cache(maxsize=1 << 16)
def _npm_version(text: str) -> Any:
    import nodesemver

    return nodesemver.make_semver(text, True)


def _npm_compare(a: str, b: str) -> int:
    return int(_npm_version(a).compare(_npm_version(b)))


@lru_cache(maxsize=1 << 16)
def _pep440_version(text: str) -> Any:
    from packaging.version import InvalidVersion, Version

    try:
        return Version(text)
    except InvalidVersion as exc:
        raise ValueError(str(exc)) from None


def _pep440_compare(a: str, b: str) -> int:
    va, vb = _pep440_version(a), _pep440_version(b)
    return int((va > vb) - (va < vb))


def _finding(record: dict[str, Any], dep: Dependency, fixed: str) -> Finding:
    specific = record.get("database_specific") or {}
    severity = normalise_severity(specific.get("severity") if isinstance(specific, dict) else "")
    score = cvss_score(record.get("severity"))
    if severity == "unknown" and score is not None:
        severity = severity_of_score(score)
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
        cvss_score=score,
        dev=dep.dev,
    )


#: OSV severity types, the most expressive first: when a record has several, that one counts
_CVSS_TYPES = ("CVSS_V4", "CVSS_V3", "CVSS_V2")


def cvss_score(severities: object) -> float | None:
    """The base score of a record's CVSS vector (its ``severity`` list), computed by the
    ``cvss`` library; None without a vector it can read."""
    if not isinstance(severities, list):
        return None
    vectors = {
        str(s.get("type")): str(s.get("score") or "")
        for s in severities
        if isinstance(s, dict) and s.get("type") in _CVSS_TYPES
    }
    for kind in _CVSS_TYPES:
        if kind not in vectors:
            continue
        from cvss import CVSS2, CVSS3, CVSS4
        from cvss.exceptions import CVSSError

        cls = {"CVSS_V4": CVSS4, "CVSS_V3": CVSS3, "CVSS_V2": CVSS2}[kind]
        try:
            return float(cls(vectors[kind]).base_score)
        except (CVSSError, ValueError, KeyError, IndexError):
            continue
    return None


def severity_of_score(score: float) -> str:
    """CVSS's qualitative rating (v3/v4: 0.1-3.9 low, 4.0-6.9 medium, 7.0-8.9 high, 9.0+
    critical), in the audit's words (medium is npm's "moderate"); 0.0 "none" counts as low."""
    if score >= 9.0:
        return "critical"
    if score >= 7.0:
        return "high"
    if score >= 4.0:
        return "moderate"
    return "low"
