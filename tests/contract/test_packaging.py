"""What ``pip install .`` lays down: one top-level package, ``mimamori``, with its data files.

The data-flow folders at the top of the repository (streams, transforms, models, stores)
are installed inside it (setup.py's package_dir); nothing with a generic name lands in
site-packages, and a Beam worker installing the sdist gets the same tree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAPPED = ("streams", "transforms", "models", "stores")


@pytest.fixture(autouse=True)
def no_build_output_left() -> Iterator[None]:
    """setuptools builds in the checkout (build/, mimamori.egg-info/): removed unless there before."""
    outputs = [ROOT / "build", ROOT / "mimamori.egg-info"]
    existed = {path: path.exists() for path in outputs}
    yield
    for path in outputs:
        if not existed[path]:
            shutil.rmtree(path, ignore_errors=True)


def build_wheel(out: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(out), str(ROOT)], check=True, capture_output=True, cwd=out)
    return next(out.glob("mimamori-*.whl"))


def test_the_wheel_holds_one_top_level_package_with_its_data(tmp_path):
    wheel = build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        info = next(n for n in names if n.endswith(".dist-info/top_level.txt"))
        assert archive.read(info).decode().split() == ["mimamori"]
        record = archive.read(next(n for n in names if n.endswith(".dist-info/RECORD"))).decode()
    tops = {line.split(",")[0].split("/")[0] for line in record.splitlines() if line}
    assert tops == {"mimamori", wheel.name.split("-py3")[0] + ".dist-info"}, tops
    for folder in MAPPED:
        assert f"mimamori/{folder}/__init__.py" in names, folder
    for data in ("mimamori/core/profiles/local.yaml", "mimamori/stores/migrations/alembic.ini",
                 "mimamori/streams/schemas/dead_letter.v1.json", "mimamori/stack/kafka-broker.pom.xml"):
        assert data in names, data
    assert not [n for n in names if n.startswith("mimamori/tests/") or "/support/edits.py" in n]
    # Every data file the package keeps (templates, catalogs, schemas...) is in the wheel: a file
    # left out of setup.py's package_data works in the checkout and fails only when installed.
    tracked = subprocess.run(["git", "ls-files", "mimamori", *MAPPED], capture_output=True, text=True, cwd=ROOT,
                             check=True).stdout.split()
    data_files = [path if path.startswith("mimamori/") else f"mimamori/{path}"
                  for path in tracked if not path.endswith(".py")]
    assert data_files and not [path for path in data_files if path not in names]


def test_the_installed_tree_imports_outside_the_checkout(tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-compile",
                    "-q", "--target", str(target), str(ROOT)], check=True, capture_output=True, cwd=tmp_path)
    code = ("import mimamori.streams.events as e, mimamori.transforms.pipeline, mimamori.cli.main, sys;"
            "print(e.__file__); import streams")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(target)})
    assert result.stdout.strip().startswith(str(target / "mimamori" / "streams")), result.stderr
    assert "ModuleNotFoundError: No module named 'streams'" in result.stderr  # no generic top-level name


def test_a_bare_import_from_the_checkout_is_refused():
    result = subprocess.run([sys.executable, "-c", "import streams.events"], capture_output=True, text=True,
                            cwd=ROOT)
    assert result.returncode != 0 and "import mimamori.streams, not streams" in result.stderr


def test_the_sdist_beam_ships_to_workers_installs_the_same_tree(tmp_path):
    """``--setup_file ./setup.py``: Beam builds an sdist and its workers pip-install it."""
    subprocess.run([sys.executable, "setup.py", "-q", "sdist", "--dist-dir", str(tmp_path)], check=True,
                   capture_output=True, cwd=ROOT)
    sdist = next(tmp_path.glob("mimamori-*.tar.gz"))
    target = tmp_path / "worker"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-compile",
                    "-q", "--target", str(target), str(sdist)], check=True, capture_output=True, cwd=tmp_path)
    assert sorted(p.name for p in target.iterdir() if not p.name.endswith((".dist-info", "bin"))) == ["mimamori"]
    for data in ("core/profiles/production.yaml", "streams/schemas/match.v1.json",
                 "stores/migrations/versions/0001_cases.py", "transforms/pipeline.py"):
        assert (target / "mimamori" / data).is_file(), data
