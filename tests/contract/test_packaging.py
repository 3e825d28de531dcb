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
def no_build_folder_left() -> Iterator[None]:
    """setuptools builds in the checkout's build/: remove it afterwards unless it was there before."""
    existed = (ROOT / "build").exists()
    yield
    if not existed:
        shutil.rmtree(ROOT / "build", ignore_errors=True)


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
