"""What a backend directory depends on: npm's package-lock.json and Python requirements files.

Only exact versions can be audited: a requirement without ``==`` is reported as unpinned
rather than guessed at.

Development dependencies are marked (``Dependency.dev``) so that the audit can leave them out:
a package-lock entry with ``"dev": true`` (npm's own rule for ``npm audit --omit=dev``: a
``devOptional`` package may be needed in production and counts as production), and every pin
of a requirements file named for development, ``requirements-dev.txt``, ``-test``,
``-tests``, ``-testing``, ``-lint``, ``-docs``, ``-ci`` (``_`` or ``.`` work as the separator).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from travellr_ops.errors import UsageError

NPM = "npm"
PYPI = "PyPI"

_DEV_REQUIREMENTS = re.compile(r"requirements[-_.](dev|tests?|testing|lint|docs|ci)\b.*\.txt")


def is_dev_requirements(path: Path) -> bool:
    """Whether a requirements file holds development tools only, by its name."""
    return _DEV_REQUIREMENTS.fullmatch(path.name.lower()) is not None


@dataclass(frozen=True)
class Dependency:
    name: str
    version: str
    ecosystem: str
    #: where it was found: the lockfile path of the package, or requirements file:line
    location: str
    dev: bool = False


@dataclass
class Inventory:
    """Every installed package of a backend directory, and what could not be audited."""

    directory: Path
    dependencies: list[Dependency] = field(default_factory=list)
    #: the files read (package-lock.json, requirements*.txt)
    files: list[Path] = field(default_factory=list)
    #: lines that name no exact version ("requirements.txt:3 flask>=2")
    unpinned: list[str] = field(default_factory=list)

    def of(self, ecosystem: str) -> list[Dependency]:
        return [d for d in self.dependencies if d.ecosystem == ecosystem]

    def production(self) -> Inventory:
        """The same inventory without development dependencies and dev requirements files."""
        return Inventory(
            self.directory,
            [d for d in self.dependencies if not d.dev],
            [f for f in self.files if not is_dev_requirements(f)],
            [u for u in self.unpinned if not is_dev_requirements(Path(u.split(":", 1)[0]))],
        )


def inventory(directory: Path) -> Inventory:
    """Read the lockfile and requirements files of ``directory``; UsageError if there are none."""
    if not directory.is_dir():
        raise UsageError(
            f"backend directory not found: {directory}",
            hint="pass --path DIR, or set security.backend_dir",
        )
    inv = Inventory(directory)
    lock = directory / "package-lock.json"
    if lock.is_file():
        inv.files.append(lock)
        inv.dependencies += npm_lock(lock)
    for req in sorted(directory.glob("requirements*.txt")):
        inv.files.append(req)
        deps, unpinned = requirements(req)
        inv.dependencies += deps
        inv.unpinned += unpinned
    if not inv.files:
        hint = (
            "run `npm install --package-lock-only` there to write one"
            if (directory / "package.json").is_file()
            else "pass --path to the backend's source directory (security.backend_dir)"
        )
        raise UsageError(
            f"nothing to audit in {directory}: no package-lock.json or requirements*.txt",
            hint=hint,
        )
    return inv


def npm_lock(path: Path) -> list[Dependency]:
    """Installed packages of a package-lock.json: v2/v3 ``packages``, or v1 ``dependencies``."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path} is not a package-lock.json (not a JSON object)")
    packages = data.get("packages")
    if isinstance(packages, dict):
        return sorted(_lock_packages(packages), key=lambda d: (d.name, d.location))
    deps = data.get("dependencies")
    if isinstance(deps, dict):
        return sorted(_lock_v1(deps, "node_modules"), key=lambda d: (d.name, d.location))
    raise UsageError(
        f"{path}: neither 'packages' (lockfile v2/v3) nor 'dependencies' (v1)",
        hint="regenerate it with `npm install --package-lock-only`",
    )


def _lock_packages(packages: dict[str, Any]) -> Iterator[Dependency]:
    for location, meta in packages.items():
        if not location or not isinstance(meta, dict) or meta.get("link"):
            continue  # "" is the project itself; links point at another entry
        if "node_modules/" not in location:
            continue  # a workspace's own folder, not an installed package
        version = meta.get("version")
        if not isinstance(version, str):
            continue
        # "node_modules/a/node_modules/@s/b" -> "@s/b"; an alias names its real package
        name = meta.get("name") or location.rsplit("node_modules/", 1)[1]
        yield Dependency(str(name), version, NPM, location, bool(meta.get("dev")))


def _lock_v1(deps: dict[str, Any], prefix: str) -> Iterator[Dependency]:
    for name, meta in deps.items():
        if not isinstance(meta, dict):
            continue
        location = f"{prefix}/{name}"
        version = meta.get("version")
        if isinstance(version, str) and not version.startswith(("file:", "git", "http")):
            yield Dependency(name, version, NPM, location, bool(meta.get("dev")))
        nested = meta.get("dependencies")
        if isinstance(nested, dict):
            yield from _lock_v1(nested, f"{location}/node_modules")


def requirements(path: Path) -> tuple[list[Dependency], list[str]]:
    """Pinned (``name==version``) requirements of a pip requirements file, and the others."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    dev = is_dev_requirements(path)
    deps: list[Dependency] = []
    unpinned: list[str] = []
    try:
        text = path.read_text()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    for number, line in _logical_lines(text):
        where = f"{path.name}:{number}"
        if line.startswith("-"):  # -r other.txt, -e ., --index-url ...: not a package pin
            continue
        spec = line.split(" --", 1)[0].strip()  # drop --hash=... options
        try:
            req = Requirement(spec)
        except InvalidRequirement:
            unpinned.append(f"{where} {spec} (not a requirement)")
            continue
        pins = [s for s in req.specifier if s.operator in ("==", "===")]
        if len(pins) != 1 or pins[0].version.endswith(".*"):
            unpinned.append(f"{where} {spec}")
            continue
        deps.append(Dependency(canonicalize_name(req.name), pins[0].version, PYPI, where, dev))
    return deps, unpinned


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """(first line number, line) with comments dropped and backslash continuations joined."""
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = (pending + line).strip()
        pending = ""
        if line:
            yield start, line
    if pending.strip():
        yield start, pending.strip()
