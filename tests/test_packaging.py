"""The installed package must carry every data file the code reads (README command 1 runs
from a plain ``pip install .``, not from the source tree)."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_package_data_globs_cover_every_non_python_file_in_the_package() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    globs = config["tool"]["setuptools"]["package-data"]["sensord"]
    package = ROOT / "sensord"
    data_files = [
        p.relative_to(package).as_posix()
        for p in package.rglob("*")
        if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts
    ]
    assert "staging/stager_model.json" in data_files
    missing = [f for f in data_files if not any(fnmatch.fnmatch(f, g) for g in globs)]
    assert not missing, f"not shipped by pip install: {missing}"


def _can_build_without_isolation() -> bool:
    """The running venv's setuptools can build a wheel itself (bdist_wheel built in since
    setuptools 70.1, or the ``wheel`` package present)."""
    import importlib.util

    import setuptools

    major, minor = (int(x) for x in setuptools.__version__.split(".")[:2])
    return (major, minor) >= (70, 1) or importlib.util.find_spec("wheel") is not None


def test_a_built_wheel_runs_the_demo_outside_the_source_tree(tmp_path: Path) -> None:
    """README command 1 installs non-editable: build the wheel from a copy of the sources
    (pyproject.toml, README.md, sensord/), check it carries every file the package reads
    at run time, unpack it and run ``sensord demo`` from it in a directory outside the
    repository (dependencies from the running venv), so no source file can stand in for a
    missing one."""
    import os
    import shutil
    import subprocess
    import sys
    import zipfile

    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "sensord", src / "sensord",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = tmp_path / "dist"
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(src)]
    if _can_build_without_isolation():
        cmd.insert(4, "--no-build-isolation")
    built = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = dist.glob("sensord-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        site = tmp_path / "site"
        zf.extractall(site)
    package = ROOT / "sensord"
    needed = {
        "sensord/" + p.relative_to(package).as_posix()
        for p in package.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }
    for must in ("sensord/staging/stager_model.json", "sensord/data/demo.blelog",
                 "sensord/web/static/app.css", "sensord/py.typed", "sensord/__main__.py"):
        assert must in needed and must in names, must
    assert needed <= names, f"not in the wheel: {sorted(needed - names)}"
    entry = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "sensord = sensord.__main__:main" in (site / entry).read_text()

    run_dir = tmp_path / "elsewhere"
    run_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENSORD_")}
    env["PYTHONPATH"] = str(site)
    env["HOME"] = str(tmp_path / "home")
    where = subprocess.run([sys.executable, "-c", "import sensord; print(sensord.__file__)"],
                           cwd=run_dir, env=env, capture_output=True, text=True, timeout=60)
    assert Path(where.stdout.strip()).is_relative_to(site), where.stdout + where.stderr
    demo = subprocess.run([sys.executable, "-m", "sensord", "demo"], cwd=run_dir, env=env,
                          capture_output=True, text=True, timeout=600)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "demo.blelog" in demo.stdout and "TST" in demo.stdout and "hypnogram" in demo.stdout
