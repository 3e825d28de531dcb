"""The network-namespace bridge that keeps Milvus on loopback (needs root, as the stack does)."""

import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from mimamori.stack.netns import network_namespace_supported
from mimamori.stack.sockets import Listener, listeners

pytestmark = pytest.mark.skipif(not network_namespace_supported(), reason="needs CAP_SYS_ADMIN")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_server_on_all_interfaces_in_the_namespace_is_reached_only_through_loopback():
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mimamori.stack.netns", "exec", "--",
         sys.executable, "-m", "http.server", str(port), "--bind", "0.0.0.0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    bridge = None
    try:
        time.sleep(1.0)
        # The server listens on 0.0.0.0 in its own namespace: nothing of it is on the host.
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0
        bridge = subprocess.Popen([sys.executable, "-m", "mimamori.stack.netns", "bridge",
                                   "--pid", str(server.pid), "--inbound", str(port)])
        deadline = time.monotonic() + 10
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                    assert response.status == 200
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert listeners(bridge.pid) == [Listener(bridge.pid, "127.0.0.1", port)]
    finally:
        for proc in (bridge, server):
            if proc:
                proc.terminate()
                proc.wait(5)
