"""``mimamori rechecks serve | run-once``: the re-check service of takedown URLs (issue 19).

``serve`` runs 24/7 beside the pipeline (the local stack, Compose and Helm each start it): it
serves its metrics, looks for due re-checks every ``rechecks.poll_interval_s``, and on SIGTERM
or SIGINT lets the fetches in flight finish and be recorded, then exits. A killed process loses
at most the checks in flight, which stay due and run again at the next start; a check already
recorded is never applied twice (services/rechecks.py).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading

from mimamori.core.config import Settings

log = logging.getLogger("mimamori.rechecks")


def _print_summary(summary, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"checked": summary.checked, "outcomes": dict(summary.outcomes),
                          "transitions": summary.transitions, "reappeared": summary.reappeared,
                          "repeats": summary.repeats, "record_errors": summary.record_errors,
                          "elapsed_s": round(summary.elapsed_s, 3)}))
        return
    outcomes = ", ".join(f"{name} {count}" for name, count in sorted(summary.outcomes.items())) or "nothing due"
    print(f"rechecks: {summary.checked} checked in {summary.elapsed_s:.1f} s ({outcomes}); "
          f"{summary.transitions} state change(s), {len(summary.reappeared)} reappeared"
          + (f"; {summary.record_errors} not recorded (database)" if summary.record_errors else ""))


def cmd_run_once(settings: Settings, args: argparse.Namespace) -> int:
    from mimamori.cli.context import workspace
    from mimamori.services.rechecks import recheck_due

    summary = recheck_due(workspace(settings))
    _print_summary(summary, args.json)
    return 1 if summary.record_errors else 0


def _serve_metrics(settings: Settings) -> int:
    from mimamori.core.metrics import serve_metrics
    from mimamori.core.scrape_targets import register_scrape_target

    host, port = settings.rechecks.metrics_bind(settings.stack.monitoring.exporter_address)
    bound = serve_metrics(port, host)
    targets = settings.scrape_targets_dir()
    if targets is not None and settings.rechecks.metrics_address is None and bound != port:
        log.warning("rechecks: metrics port %d was taken, serving on %d", port, bound)
    if targets is not None:
        register_scrape_target(targets, "mimamori-rechecks", bound, "127.0.0.1" if host == "0.0.0.0" else host)
    return bound


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    from mimamori.cli.context import workspace
    from mimamori.services.rechecks import fetcher_from, prepare_metrics, recheck_due

    logging.getLogger("mimamori").setLevel(logging.INFO)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    prepare_metrics()
    port = _serve_metrics(settings)
    work, fetcher = workspace(settings), fetcher_from(settings.rechecks)
    log.info("rechecks: serving metrics on %d, looking for due re-checks every %.0f s", port,
             settings.rechecks.poll_interval_s)
    while not stop.is_set():
        try:
            summary = recheck_due(work, fetcher=fetcher, stop=stop)
            if summary.checked:
                log.info("rechecks: %d checked (%s), %d state change(s), %d reappeared", summary.checked,
                         dict(summary.outcomes), summary.transitions, len(summary.reappeared))
        except Exception:  # the database down or not migrated yet: try again next time, never exit
            log.exception("rechecks: a pass failed; next try in %.0f s", settings.rechecks.poll_interval_s)
        if args.once:
            break
        stop.wait(settings.rechecks.poll_interval_s)
    log.info("rechecks: stopped")
    sys.exit(0)  # through Python: atexit removes the scrape target


def add_recheck_commands(commands, bind) -> None:
    rechecks = commands.add_parser("rechecks", help="re-check takedown URLs: is the content gone, still up, back?")
    actions = rechecks.add_subparsers(dest="rechecks_command", required=True, metavar="ACTION")
    serve = actions.add_parser("serve", help="the 24/7 re-check service (metrics, SIGTERM-safe)")
    serve.add_argument("--once", action="store_true", help="one pass, then exit (as serve: metrics, signals)")
    serve.set_defaults(func=bind(cmd_serve))
    once = actions.add_parser("run-once", help="check every due takedown now, then exit")
    once.add_argument("--json", action="store_true")
    once.set_defaults(func=bind(cmd_run_once))
