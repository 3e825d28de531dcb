"""Beam's Flink job server, built from Maven Central jars, for ``mimamori run --runner flink``.

Beam's FlinkRunner starts the job server itself from ``flink_job_server_jar``. We give it
a small launcher jar: a manifest whose ``Class-Path`` lists the jars resolved from
``flink-job-server.pom.xml`` and whose ``Main-Class`` is the job server driver. Flink's
own listeners (REST, RPC) are bound to 127.0.0.1 through a generated ``flink-conf.yaml``
found with ``FLINK_CONF_DIR``. Beam's job, artifact and Fn API servers bind every
interface (Beam's Java ``ServerFactory`` takes no host); see docs/runners.md.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

from mimamori.core.config import Settings
from mimamori.stack.install import maven_dependencies

POM = Path(__file__).parent / "flink-job-server.pom.xml"
BEAM_JAVA_VERSION = "2.62.0"
MAIN_CLASS = "org.apache.beam.runners.flink.FlinkJobServerDriver"
FLINK_CONF = """\
rest.bind-address: 127.0.0.1
rest.address: 127.0.0.1
jobmanager.bind-host: 127.0.0.1
taskmanager.bind-host: 127.0.0.1
taskmanager.host: 127.0.0.1
"""


def _manifest(libs: list[str]) -> bytes:
    """A jar manifest; lines are at most 72 bytes, continued with a leading space."""
    def wrap(line: str) -> list[str]:
        out, rest = [line[:72]], line[72:]
        while rest:
            out.append(" " + rest[:71])
            rest = rest[71:]
        return out

    lines = ["Manifest-Version: 1.0", f"Main-Class: {MAIN_CLASS}"]
    lines += wrap("Class-Path: " + " ".join(f"libs/{name}" for name in libs))
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def flink_home(settings: Settings) -> Path:
    return settings.stack.cache_dir / f"flink-job-server-{BEAM_JAVA_VERSION}"


def flink_job_server_jar(settings: Settings) -> Path:
    """Resolve the jars (once, cached) and return the launcher jar; set FLINK_CONF_DIR."""
    home = flink_home(settings)
    home.mkdir(parents=True, exist_ok=True)
    libs = maven_dependencies(POM, home / "libs", {})
    launcher = home / "job-server-launcher.jar"
    if not launcher.exists():
        names = sorted(p.name for p in libs.glob("*.jar"))
        staging = launcher.with_suffix(".tmp")
        with zipfile.ZipFile(staging, "w") as jar:
            jar.writestr("META-INF/MANIFEST.MF", _manifest(names))
        staging.rename(launcher)
    conf_dir = home / "conf"
    conf_dir.mkdir(exist_ok=True)
    (conf_dir / "flink-conf.yaml").write_text(FLINK_CONF)
    os.environ["FLINK_CONF_DIR"] = str(conf_dir)  # read by the job server that Beam starts
    return launcher
