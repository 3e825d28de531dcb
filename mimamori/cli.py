"""The ``mimamori`` command line."""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
import warnings
from dataclasses import asdict

from mimamori.config import load_settings
from mimamori.stack.process import StackError


def _stack(args: argparse.Namespace):
    from mimamori.stack.stack import Stack

    return Stack(load_settings(args.profile, args.config))


def cmd_stack_up(args: argparse.Namespace) -> int:
    began = time.monotonic()
    started = _stack(args).up()
    what = f"started {', '.join(started)}" if started else "already running, nothing changed"
    print(f"stack up: {what} ({time.monotonic() - began:.1f} s)")
    return 0


def cmd_stack_down(args: argparse.Namespace) -> int:
    stopped = _stack(args).down(purge=args.purge)
    print(f"stack down: stopped {', '.join(stopped) if stopped else 'nothing (not running)'}"
          + ("; data deleted" if args.purge else "; data kept"))
    return 0


def cmd_stack_status(args: argparse.Namespace) -> int:
    report = _stack(args).status()
    if args.json:
        print(json.dumps([asdict(r) for r in report], indent=2))
    else:
        for r in report:
            pids = " ".join(f"{name}={pid}" for name, pid in r.pids.items())
            ports = " ".join(f"{purpose}=127.0.0.1:{port}" for purpose, port in r.ports.items())
            state = "healthy" if r.healthy else "DOWN"
            print(f"{r.name:<8} {state:<8} {pids:<32} {ports}\n         {r.detail}")
    return 0 if all(r.healthy for r in report) else 1


def cmd_stack_logs(args: argparse.Namespace) -> int:
    files = _stack(args).log_files(args.component)
    if not files:
        print("no logs yet", file=sys.stderr)
        return 1
    argv = ["tail", "-n", str(args.lines)] + (["-F"] if args.follow else []) + [str(f) for f in files]
    return subprocess.call(argv)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mimamori",
        description="Find every re-upload of a person's intimate images: ingest, index, search.",
    )
    parser.add_argument("--profile", help="configuration profile: local (default) or production "
                        "(or set MIMAMORI_PROFILE)")
    parser.add_argument("--config", help="a YAML file layered over the profile (or set MIMAMORI_CONFIG)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    stack = commands.add_parser("stack", help="the local stack: Kafka, MinIO, Milvus on 127.0.0.1")
    stack_commands = stack.add_subparsers(dest="stack_command", required=True, metavar="ACTION")
    up = stack_commands.add_parser("up", help="install what is missing, start, create topics/buckets/collections")
    up.set_defaults(func=cmd_stack_up)
    down = stack_commands.add_parser("down", help="stop the stack's own processes (data is kept)")
    down.add_argument("--purge", action="store_true", help="also delete all stack data")
    down.set_defaults(func=cmd_stack_down)
    status = stack_commands.add_parser("status", help="health and PID of each component (exit 1 if any is down)")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_stack_status)
    logs = stack_commands.add_parser("logs", help="show the components' logs")
    logs.add_argument("component", nargs="?", choices=["kafka", "minio", "milvus"])
    logs.add_argument("-n", "--lines", type=int, default=50)
    logs.add_argument("-f", "--follow", action="store_true")
    logs.set_defaults(func=cmd_stack_logs)
    return parser


def _quiet_libraries() -> None:
    """Keep third-party chatter (retries, deprecations) out of the CLI's output."""
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("kafka", "root"):
        logging.getLogger(name).setLevel(logging.CRITICAL if name == "kafka" else logging.ERROR)


def main(argv: list[str] | None = None) -> int:
    _quiet_libraries()
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except StackError as error:
        print(f"mimamori: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
