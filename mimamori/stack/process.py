"""Start, find and stop the local stack's own processes, by pidfile.

A pidfile records the PID and the process's start time (from ``/proc``), so a PID
that the kernel has since given to another program is never mistaken for ours and
never signalled.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from mimamori.core.errors import MimamoriError
from mimamori.core.waiting import wait_until


class StackError(MimamoriError):
    """A clear, user-facing failure of the local stack (port taken, install failed, unhealthy)."""


def _split_stat(text: str) -> tuple[str, list[str]]:
    """``/proc/<pid>/stat`` as (command name, the fields after it: state, ppid, ...)."""
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    return text[text.index("(") + 1 : text.rindex(")")], text[text.rindex(")") + 2 :].split()


def _proc_start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, or None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    _name, fields = _split_stat(stat)
    if fields[0] == "Z":  # a zombie has exited
        return None
    return int(fields[19])


@dataclass(frozen=True)
class ProcessStat:
    name: str
    parent: int
    cpu_seconds: float  # user + system, all threads, so far


def process_table() -> dict[int, ProcessStat]:
    """Every process this user can read in ``/proc``: what benchmarks and tests measure CPU with."""
    table = {}
    tick = os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # the process ended meanwhile
            continue
        name, fields = _split_stat(text)  # utime and stime are the 12th and 13th fields
        table[int(stat.parent.name)] = ProcessStat(
            name=name,
            parent=int(fields[1]),
            cpu_seconds=(int(fields[11]) + int(fields[12])) / tick,
        )
    return table


def tree_cpu_seconds(table: dict[int, ProcessStat], pid: int) -> float:
    """CPU seconds of ``pid`` and every process under it that is still running."""
    children: dict[int, list[int]] = {}
    for child, stat in table.items():
        children.setdefault(stat.parent, []).append(child)
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += table[current].cpu_seconds if current in table else 0.0
        todo.extend(children.get(current, []))
    return total


def children_named(table: dict[int, ProcessStat], name: str, parent: int | None = None) -> list[int]:
    """PIDs of the processes called ``name`` that ``parent`` (default: this process) started."""
    parent = os.getpid() if parent is None else parent
    return [pid for pid, stat in table.items() if stat.parent == parent and stat.name == name]


def children_cpu_seconds(table: dict[int, ProcessStat], name: str) -> float:
    """CPU seconds of the processes called ``name`` that this process started, with their children."""
    return sum(tree_cpu_seconds(table, pid) for pid in children_named(table, name))


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (the system picks it): for a server a test or a benchmark starts."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def port_in_use(host: str, port: int) -> bool:
    """True if something accepts TCP connections on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


@dataclass
class ManagedProcess:
    """One long-running process of the stack, tracked by ``<run_dir>/<name>.pid``."""

    name: str
    run_dir: Path
    log_dir: Path

    @property
    def pidfile(self) -> Path:
        return self.run_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.log_dir / f"{self.name}.log"

    def pid(self) -> int | None:
        """Our process's PID if it is running, else None (a stale pidfile is removed)."""
        try:
            record = json.loads(self.pidfile.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        pid, started = int(record["pid"]), int(record["start_time"])
        if _proc_start_time(pid) != started:
            self.pidfile.unlink(missing_ok=True)
            return None
        return pid

    def running(self) -> bool:
        return self.pid() is not None

    def start(
        self,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> int:
        """Start ``argv`` detached (its own session, output to the log file) and record its PID."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            log.write(f"\n--- {time.strftime('%Y-%m-%dT%H:%M:%S')} starting {' '.join(argv)}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                cwd=cwd,
                start_new_session=True,
            )
        started = _proc_start_time(proc.pid)
        self.pidfile.write_text(json.dumps({"pid": proc.pid, "start_time": started, "argv": list(argv)}))
        # The child outlives us by design; forget it so Python does not warn or reap it.
        proc.returncode = 0
        return proc.pid

    def exited_early(self) -> str | None:
        """If the process died, the tail of its log, to put in an error message."""
        if self.running():
            return None
        try:
            tail = self.log_file.read_text(errors="replace").splitlines()[-15:]
        except FileNotFoundError:
            tail = []
        return "\n".join(tail)

    def stop(self, timeout_s: float = 30.0) -> bool:
        """SIGTERM our process (and its process group), SIGKILL after ``timeout_s``. True if it ran."""
        pid = self.pid()
        if pid is None:
            return False
        self._signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.pid() is not None:
            time.sleep(0.1)
        if self.pid() is not None:
            self._signal(pid, signal.SIGKILL)
            wait_until(lambda: self.pid() is None, 10, f"{self.name} (pid {pid}) to exit")
        self.pidfile.unlink(missing_ok=True)
        return True

    @staticmethod
    def _signal(pid: int, sig: signal.Signals) -> None:
        # The process leads its own session (start_new_session), so its group id is its pid:
        # signalling the group also reaches helpers it forked, and nothing outside it.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
