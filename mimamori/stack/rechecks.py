"""The re-check service of takedown URLs as a process of the local stack (issue 19).

Started as ``python -m mimamori.cli rechecks serve`` (the stack starts programs, it imports no
service), with exactly the stack's settings, like the exporter. Healthy when its metrics
endpoint answers with the re-check metrics. It needs only the case database: with no takedowns,
or a database not yet migrated, it waits and tries again (it never exits on its own).
"""

from __future__ import annotations

import sys

from mimamori.core.config import SOURCE_ROOT
from mimamori.stack.process import ManagedProcess, StackError
from mimamori.stack.service import Health, Service, http_health, settings_environment


class RechecksService(Service):
    name = "rechecks"
    # SIGTERM lets the fetches in flight finish (each ends within rechecks.timeout_s).
    stop_timeout_s = 45.0

    def _address(self) -> tuple[str, int]:
        return self.settings.rechecks.metrics_bind(self.settings.stack.monitoring.exporter_address)

    def ports(self) -> dict[str, int]:
        return {"metrics": self._address()[1]}

    def processes(self) -> list[ManagedProcess]:
        return [self.process("rechecks")]

    def install(self) -> None:
        return None  # part of mimamori

    def _launch(self) -> None:
        host, _port = self._address()
        if host != "127.0.0.1":
            raise StackError(f"the local stack serves the re-check service's metrics on loopback only, not {host}")
        self.processes()[0].start([sys.executable, "-m", "mimamori.cli", "rechecks", "serve"],
                                  env=settings_environment(self.settings, self.home / "settings.yaml"),
                                  cwd=SOURCE_ROOT)  # the service reads exactly the stack's settings

    def health(self) -> Health:
        host, port = self._address()
        return http_health(f"http://{host}:{port}/metrics", expect="mimamori_recheck_last_pass_timestamp_seconds",
                           timeout_s=5.0)
