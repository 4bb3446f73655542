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
