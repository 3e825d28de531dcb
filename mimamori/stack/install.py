"""Install the stack's programs once, into a cache shared by every checkout on the machine.

Maven keeps its downloads in ``~/.m2``, Go its modules and build cache in ``~/go`` and
``~/.cache/go-build``; the results land under ``<cache_dir>`` keyed by version, so a
second ``stack up`` finds them and installs nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from mimamori.stack.process import StackError


def _run(argv: list[str], what: str, env: dict[str, str] | None = None) -> None:
    print(f"  installing {what}: {' '.join(argv)}", file=sys.stderr, flush=True)
    result = subprocess.run(argv, env={**os.environ, **(env or {})}, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-20:])
        raise StackError(f"installing {what} failed ({' '.join(argv)}):\n{tail}")


def require_tool(name: str, why: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise StackError(f"'{name}' is not on PATH; it is needed to {why}")
    return path


def maven_dependencies(pom: Path, dest: Path, properties: dict[str, str]) -> Path:
    """Copy the runtime jars a pom names into ``dest`` (once); return ``dest``."""
    marker = dest / ".complete"
    if marker.exists():
        return dest
    mvn = require_tool("mvn", "download the Kafka broker's jars from Maven Central")
    staging = Path(tempfile.mkdtemp(prefix=dest.name + ".", dir=dest.parent if dest.parent.exists() else None))
    argv = [mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
            f"-DoutputDirectory={staging}", "-DincludeScope=runtime"]
    argv += [f"-D{key}={value}" for key, value in properties.items()]
    _run(argv, f"jars for {pom.name}")
    (staging / ".complete").write_text("ok\n")
    shutil.rmtree(dest, ignore_errors=True)
    staging.rename(dest)
    return dest


def go_binary(module: str, version: str, binary: str, cache_dir: Path) -> Path:
    """``go install module@version`` into ``<cache_dir>/go/<binary>-<version>/`` (once)."""
    dest_dir = cache_dir / "go" / f"{binary}-{version}"
    path = dest_dir / binary
    if path.exists():
        return path
    go = require_tool("go", f"build {binary} from the Go module proxy")
    dest_dir.mkdir(parents=True, exist_ok=True)
    _run([go, "install", f"{module}@{version}"], f"{binary} {version} (a few minutes the first time)",
         env={"GOBIN": str(dest_dir)})
    if not path.exists():
        raise StackError(f"go install {module}@{version} produced no {path}")
    return path
