"""travellr-ops as the image and the CI example install it: built into a wheel, installed into
a fresh virtualenv outside the checkout, run from there against a real MongoDB-wire server.

What a source checkout has and a wheel lacks (a file read at run time, beside the code rather
than in the package) shows up here and nowhere else in the suite.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

pytestmark = pytest.mark.mongo

REPO = Path(__file__).resolve().parents[1]


def _setuptools_builds_here() -> bool:
    """Whether the setuptools beside this interpreter can build the project without an
    isolated build environment (which pip fills from the package index)."""
    try:
        from importlib.metadata import version

        major = int(version("setuptools").split(".")[0])
    except Exception:
        return False
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["build-system"]["requires"]
    floor = next(r for r in requires if r.startswith("setuptools"))
    return major >= int(floor.split(">=")[1].split(".")[0])


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from a copy of the checkout (no stale build/ directory can lend it
    files the sources no longer name)."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "dist")
    shutil.copytree(REPO / "src", source / "src", ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    isolation = ["--no-build-isolation"] if _setuptools_builds_here() else []
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation,
         "--wheel-dir", str(root / "dist"), str(source)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    [found] = (root / "dist").glob("travellr_ops-*.whl")
    return found


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding the wheel. Its dependencies are those already installed beside
    this interpreter (a path entry, so the suite needs no index): the package itself comes
    from the wheel alone, never from the checkout."""
    venv = tmp_path_factory.mktemp("venv") / "travellr-ops"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    # a plain path line: the directory's own .pth files (the checkout's editable install)
    # are not run, so `import travellr_ops` can only find the wheel's copy
    (Path(site) / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
         "--no-index", str(wheel)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr[-2000:]
    return venv


def _clean_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a fresh shell: no PYTHONPATH into the checkout, no TRAVELLR_*."""
    keep = ("PATH", "LANG", "LC_ALL", "TMPDIR", "CI")
    env = {k: v for k, v in os.environ.items() if k in keep}
    return {**env, "HOME": str(home), "NO_COLOR": "1", **extra}


def test_the_installed_wheel_analyses_the_shipped_index_shapes(
    venv: Path, seeded_mongo_uri: str, tmp_path: Path
) -> None:
    env = _clean_env(tmp_path, TRAVELLR_MONGO__URI=seeded_mongo_uri)
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import travellr_ops; print(travellr_ops.__file__)"],
        capture_output=True, text=True, cwd=tmp_path, env=env, check=True,
    ).stdout.strip()  # fmt: skip
    assert Path(where).is_relative_to(venv), where

    result = subprocess.run(
        [str(venv / "bin" / "travellr-ops"), "--json", "db", "indexes", "analyze"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120, check=False,
    )  # fmt: skip
    # the seed lacks bookings {tripId, status} on purpose: one finding, exit 1
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert Path(report["index_file"]).is_relative_to(venv)
    assert report["source"] == "config"

    shipped = tomllib.loads((Path(where).parent / "data" / "indexes.toml").read_text())
    analysed = [q["why"] for q in report["queries"]]
    assert analysed == [q["why"] for q in shipped["query"]]
    assert all(q["plan"] is not None for q in report["queries"]), report["queries"]
    [finding] = report["findings"]
    assert finding["collection"] == "bookings"
    assert finding["fix"]["index"] == "{tripId: 1, status: 1}"
    assert finding["fix"]["declared"] is True

    shown = subprocess.run(
        [str(venv / "bin" / "travellr-ops"), "--json", "config", "show"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60, check=True,
    )  # fmt: skip
    [row] = [r for r in json.loads(shown.stdout)["settings"] if r["key"] == "mongo.indexes_file"]
    assert row["value"] == report["index_file"]
