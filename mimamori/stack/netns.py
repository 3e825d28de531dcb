"""Keep a server that listens on every interface reachable from loopback only.

The embedded Milvus 2.3.5 binds its gRPC and HTTP ports to ``*`` whatever its ``ip``
settings say, which would expose the face index to the machine's other addresses.
So the stack runs Milvus in a network namespace of its own, where the only interface
is ``lo``, and a small bridge process carries exactly the connections it needs:

* inbound: 127.0.0.1:PORT on the host  ->  127.0.0.1:PORT inside the namespace
  (clients reaching Milvus's gRPC and health ports);
* outbound: 127.0.0.1:PORT inside the namespace  ->  127.0.0.1:PORT on the host
  (Milvus reaching MinIO).

A socket belongs to the namespace of the thread that created it, and ``setns`` moves
only the calling thread, so one asyncio process can hold sockets on both sides.

Two entry points, both run as ``python -m mimamori.stack.netns``:

* ``exec -- PROGRAM ARGS``: unshare a new network namespace, bring ``lo`` up, exec PROGRAM;
* ``bridge --pid PID --inbound PORT... --outbound PORT...``: forward as above into PID's namespace.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import fcntl
import os
import socket
import struct
import sys
from collections.abc import Iterator

CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
LOOPBACK = "127.0.0.1"

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def unshare_network() -> None:
    """Move this process into a new network namespace and bring its loopback interface up."""
    _check(_libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))


def network_namespace_supported() -> bool:
    """True if this process may create network namespaces (root, or CAP_SYS_ADMIN)."""
    pid = os.fork()
    if pid == 0:  # try in a child, so this process stays where it is
        try:
            unshare_network()
            os._exit(0)
        except OSError:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def in_own_network_namespace(pid: int) -> bool:
    """True once ``pid`` lives in a network namespace other than ours."""
    try:
        return os.readlink(f"/proc/{pid}/ns/net") != os.readlink("/proc/self/ns/net")
    except FileNotFoundError:
        return False


@contextlib.contextmanager
def _in_namespace(target_fd: int, home_fd: int) -> Iterator[None]:
    """Run the block with this thread in the target namespace, then return it home."""
    _check(_libc.setns(target_fd, CLONE_NEWNET), "setns(target)")
    try:
        yield
    finally:
        _check(_libc.setns(home_fd, CLONE_NEWNET), "setns(home)")


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


class Bridge:
    """Forward loopback TCP ports between the host's namespace and one other namespace."""

    def __init__(self, target_pid: int):
        if not in_own_network_namespace(target_pid):
            # Forwarding into our own namespace would loop the ports back onto themselves.
            raise SystemExit(f"process {target_pid} is not in a network namespace of its own")
        self.home_fd = os.open("/proc/self/ns/net", os.O_RDONLY)
        self.target_fd = os.open(f"/proc/{target_pid}/ns/net", os.O_RDONLY)

    def _socket(self, in_target: bool) -> socket.socket:
        if not in_target:
            return socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        with _in_namespace(self.target_fd, self.home_fd):
            return socket.socket(socket.AF_INET, socket.SOCK_STREAM)

    async def _forward(self, port: int, listen_in_target: bool) -> asyncio.base_events.Server:
        listener = self._socket(in_target=listen_in_target)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((LOOPBACK, port))

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            upstream = self._socket(in_target=not listen_in_target)
            upstream.setblocking(False)
            try:
                await asyncio.get_running_loop().sock_connect(upstream, (LOOPBACK, port))
            except OSError:
                upstream.close()
                writer.close()
                return
            up_reader, up_writer = await asyncio.open_connection(sock=upstream)
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

        return await asyncio.start_server(handle, sock=listener, backlog=256)

    async def serve(self, inbound: list[int], outbound: list[int]) -> None:
        servers = [await self._forward(port, listen_in_target=False) for port in inbound]
        servers += [await self._forward(port, listen_in_target=True) for port in outbound]
        await asyncio.gather(*(server.serve_forever() for server in servers))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mimamori.stack.netns", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("exec", help="run a program in a new network namespace with only lo")
    run.add_argument("program", nargs=argparse.REMAINDER)
    bridge = commands.add_parser("bridge", help="forward loopback ports into another process's namespace")
    bridge.add_argument("--pid", type=int, required=True, help="a process inside the target namespace")
    bridge.add_argument("--inbound", type=int, nargs="*", default=[], help="host 127.0.0.1:P -> target P")
    bridge.add_argument("--outbound", type=int, nargs="*", default=[], help="target 127.0.0.1:P -> host P")
    args = parser.parse_args(argv)

    if args.command == "exec":
        program = args.program[1:] if args.program[:1] == ["--"] else args.program
        if not program:
            parser.error("exec needs a program to run")
        unshare_network()
        os.execvp(program[0], program)
    else:
        asyncio.run(Bridge(args.pid).serve(args.inbound, args.outbound))


if __name__ == "__main__":
    sys.exit(main())
