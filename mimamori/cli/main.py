"""The ``mimamori`` command line."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import subprocess
import sys
import time
import warnings
from dataclasses import asdict

from mimamori.cli.backup import add_backup_commands
from mimamori.cli.cases import add_case_commands
from mimamori.cli.operations import add_ops_commands
from mimamori.cli.rechecks import add_recheck_commands
from mimamori.cli.references import add_reference_commands
from mimamori.cli.takedowns import add_takedown_commands
from mimamori.cli.users import add_user_commands
from mimamori.core.config import load_settings
from mimamori.core.errors import MimamoriError, Misconfigured, Unavailable


def _stack(args: argparse.Namespace):
    from mimamori.stack.stack import Stack

    return Stack(load_settings(args.profile, args.config))


def cmd_stack_up(args: argparse.Namespace) -> int:
    began = time.monotonic()
    started = _stack(args).up()
    what = f"started {', '.join(started)}" if started else "already running, nothing changed"
    print(f"stack up: {what} ({time.monotonic() - began:.1f} s)")
    return 0


def cmd_stack_init(args: argparse.Namespace) -> int:
    """Resources on services that run elsewhere (Docker Compose, a cluster): nothing is started."""
    from mimamori.stores.cases import open_database
    from mimamori.stores.objects import ensure_buckets

    settings = _settings(args)
    ensure_buckets(settings)
    _stack(args).create_resources()
    open_database(settings.database_url())
    print("stack init: topics, buckets, collections and the case database's schema are in place")
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
        down = [r for r in report if not r.healthy]
        print("stack: every service is healthy" if not down else
              "stack: DOWN: " + "; ".join(f"{r.name} ({r.detail})" for r in down))
    return 0 if all(r.healthy for r in report) else 1


def cmd_stack_logs(args: argparse.Namespace) -> int:
    files = _stack(args).log_files(args.component)
    if not files:
        print("no logs yet", file=sys.stderr)
        return 1
    argv = ["tail", "-n", str(args.lines)] + (["-F"] if args.follow else []) + [str(f) for f in files]
    return subprocess.call(argv)


def _settings(args: argparse.Namespace):
    return load_settings(args.profile, args.config)


def cmd_ingest(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mimamori.stores.objects import object_client
    from mimamori.streams.ingest import ingest
    from mimamori.streams.producer import shared_producer

    settings = _settings(args)

    def progress(count: int, path: Path) -> None:
        if count % 100 == 0 or args.verbose:
            print(f"  {count} published ({path.name})", file=sys.stderr, flush=True)

    uploads = ingest(settings, [Path(p) for p in args.paths], args.platform, args.source_url,
                     shared_producer(settings.kafka), object_client(settings), progress=progress)
    print(f"ingest: stored and published {len(uploads)} media item(s) to "
          f"{settings.kafka.topics.media_scraped.name}")
    return 0


def cmd_run(args: argparse.Namespace, beam_args: list[str]) -> int:
    import apache_beam as beam

    from mimamori.cli.runner import pipeline_options
    from mimamori.transforms.pipeline import SourceOptions, build_pipeline

    settings = _settings(args)
    options = pipeline_options(settings, args.runner or settings.runner.default, beam_args, args.until_idle)
    began = time.monotonic()
    with beam.Pipeline(options=options) as pipeline:
        build_pipeline(pipeline, settings, SourceOptions(until_idle_s=args.until_idle))
    print(f"run: pipeline finished after {time.monotonic() - began:.1f} s")
    from mimamori.core.retry import OUTAGES  # the LOOPBACK workers' waits, in this process

    for line in OUTAGES.summary():
        print(f"run: {line}")
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    from mimamori.services.stats import collect_stats

    stats = collect_stats(_settings(args))
    if args.json:
        print(json.dumps(stats, indent=2))
        return 0
    for model, counts in stats["models"].items():
        print(f"model {model}: {counts.get('media', 0)} media ({counts.get('media_without_faces', 0)} without "
              f"faces), {counts.get('faces', 0)} faces in {counts.get('collection', '-')}")
    print("sightings: " + ", ".join(f"{k} {v}" for k, v in stats["sightings"].items()))
    letters = stats["dead_letters"]
    print(f"dead letters: {sum(letters.values())}" + "".join(f"\n  {k}: {v}" for k, v in letters.items()))
    return 0


def cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    from mimamori.api.app import create_app
    from mimamori.api.logs import install_access_log_filter, uvicorn_log_config
    from mimamori.core.scrape_targets import register_scrape_target

    settings = _settings(args)
    port = args.port or settings.api.port
    targets = settings.scrape_targets_dir()
    if targets is not None:  # the local Prometheus finds the API here
        register_scrape_target(targets, "mimamori-api", port, settings.api.bind_address)
    # uvicorn shuts down gracefully on SIGTERM, then raises the signal again: leave through
    # Python then, so the atexit handlers (the scrape target's removal) run.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    # The access log stays on, without invitation tokens or sign-in queries (mimamori/api/logs.py).
    install_access_log_filter()
    uvicorn.run(create_app(settings), host=settings.api.bind_address, port=port, log_level="info",
                log_config=uvicorn_log_config())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mimamori",
        description="Find every re-upload of a person's intimate images: ingest, index, search.",
        epilog=EPILOG,
    )
    parser.add_argument("--profile", help="configuration profile: local (default) or production "
                        "(or set MIMAMORI_PROFILE)")
    parser.add_argument("--config", help="a YAML file layered over the profile (or set MIMAMORI_CONFIG)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    _add_stack_commands(commands)

    ingest = commands.add_parser("ingest", help="store media files in MinIO and publish them to media.scraped")
    ingest.add_argument("paths", nargs="+", metavar="PATH_OR_DIR")
    ingest.add_argument("--platform", default="local", help="platform recorded with each item (default: local)")
    ingest.add_argument("--source-url", help="source URL recorded with each item (default: the file's URI)")
    ingest.add_argument("-v", "--verbose", action="store_true", help="report every file")
    ingest.set_defaults(func=cmd_ingest)

    run = commands.add_parser(
        "run", help="run the face pipeline (further arguments go to Beam)",
        description="Run the pipeline: media.scraped -> decode, dedupe, detect, align, embed -> Milvus, MinIO. "
                    "Arguments this command does not know are passed to Beam as pipeline options.")
    run.add_argument("--runner", choices=["prism", "flink", "direct"], help="default: from configuration (prism)")
    run.add_argument("--until-idle", type=float, metavar="SECONDS",
                     help="stop once the topic has had no new message for this long (default: run forever)")
    run.set_defaults(func=cmd_run, takes_beam_args=True)

    stats = commands.add_parser("stats", help="media, faces, sightings and dead letters, per model")
    stats.add_argument("--json", action="store_true")
    stats.set_defaults(func=cmd_stats)

    api = commands.add_parser("api", help="serve the HTTP API (on api.bind_address, 127.0.0.1 locally)")
    api.add_argument("--port", type=int)
    api.set_defaults(func=cmd_api)

    # The command modules: each registers its subcommands, given how to bind a command to the settings.
    def with_settings(command):
        return lambda args: command(_settings(args), args)

    for add_commands in (add_case_commands, add_user_commands, add_reference_commands, add_recheck_commands,
                         add_takedown_commands, add_backup_commands):
        add_commands(commands, with_settings)
    add_ops_commands(commands, with_settings, lambda command: lambda args, extra: command(_settings(args), args, extra))
    return parser


def _add_stack_commands(commands) -> None:
    """``mimamori stack up|init|down|status|logs``: the local stack's processes."""
    stack = commands.add_parser("stack", help="the local stack: Kafka, MinIO, Milvus on 127.0.0.1")
    stack_commands = stack.add_subparsers(dest="stack_command", required=True, metavar="ACTION")
    up = stack_commands.add_parser("up", help="install what is missing, start, create topics/buckets/collections")
    up.set_defaults(func=cmd_stack_up)
    init = stack_commands.add_parser("init", help="create topics, buckets, collections and the case database's "
                                     "schema on the configured services, starting nothing (idempotent)")
    init.set_defaults(func=cmd_stack_init)
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


def _quiet_libraries() -> None:
    """Keep third-party chatter (retries, deprecations) out of the CLI's output."""
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("kafka", "root"):
        logging.getLogger(name).setLevel(logging.CRITICAL if name == "kafka" else logging.ERROR)
    # Ours at WARNING: with the root logger at ERROR (its name is "root"), every warning of the
    # pipeline's workers (LOOPBACK on Prism: threads of this process) was dropped, outages too.
    logging.getLogger("mimamori").setLevel(logging.WARNING)
    # pymilvus logs each failed RPC of an outage at ERROR; mimamori.outages says what it waits for.
    logging.getLogger("pymilvus").setLevel(logging.CRITICAL)


# How a refusal or failure ends the command: the one mapping of the error family to exit codes.
EXIT_CODES: tuple[tuple[type[MimamoriError], int], ...] = ((Unavailable, 3), (Misconfigured, 4), (MimamoriError, 2))
EPILOG = ("exit status: 0 done; 2 refused (bad input, unknown or existing case, no consent in force, ...); "
          "3 a service is unreachable or not ready; 4 misconfigured (missing weights, a bad setting)")


def exit_code(error: MimamoriError) -> int:
    return next(code for kind, code in EXIT_CODES if isinstance(error, kind))


def main(argv: list[str] | None = None) -> int:
    _quiet_libraries()
    args, extra = build_parser().parse_known_args(argv)
    if extra and not getattr(args, "takes_beam_args", False):
        build_parser().error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        if getattr(args, "takes_beam_args", False):
            return args.func(args, extra)
        return args.func(args)
    except MimamoriError as error:
        print(f"mimamori: {error}", file=sys.stderr)
        return exit_code(error)


if __name__ == "__main__":
    sys.exit(main())
