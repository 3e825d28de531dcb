"""``mimamori takedowns ...``: the takedown work of the workbench, from a shell on the server.

The same services as the workbench and the API (services/takedowns.py, notices.py, hosts.py);
commands act as ``cli:<user>`` with the role ``operator`` and leave the same audit rows.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import sys
from pathlib import Path
from typing import Any

from mimamori.cli.arguments import aware_time
from mimamori.cli.context import operator, workspace
from mimamori.core.config import Settings
from mimamori.core.errors import InvalidInput

REPORT_BY = ("host", "platform", "country", "month")


def _plain(value: Any) -> Any:
    """A service's dataclasses as JSON-ready values (times ISO 8601)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _plain(v) for k, v in dataclasses.asdict(value).items()}
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json", exclude_none=True)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return value


def _print_json(value: Any) -> None:
    print(json.dumps(_plain(value), indent=2, ensure_ascii=False))


def _write(path: Path | None, data: bytes | str, what: str) -> None:
    """To stdout, or a new file readable by its owner only (it may list URLs of clients' images)."""
    raw = data.encode() if isinstance(data, str) else data
    if path is None:
        sys.stdout.buffer.write(raw)
        sys.stdout.flush()
        return
    path.unlink(missing_ok=True)
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as file:
        file.write(raw)
    print(f"{what} written to {path}", file=sys.stderr)


def _when(value: dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else "-"


def _line(t) -> str:
    return (f"takedown {t.id}: {t.state:<12} case {t.case_id or '-'}  {t.host_key}  {t.page_url or '(withdrawn)'}  "
            f"next step {_when(t.next_escalation_at)}")


def cmd_list(settings: Settings, args: argparse.Namespace) -> int:
    from mimamori.services.takedowns import list_takedowns

    rows = list_takedowns(workspace(settings), operator(), case_id=args.case, state=args.state, host_key=args.host,
                          needs_action=args.needs_action, limit=args.limit)
    if args.json:
        _print_json(rows)
    else:
        for t in rows:
            print(_line(t))
        if not rows:
            print("no takedowns")
    return 0


def cmd_show(settings: Settings, args: argparse.Namespace) -> int:
    from mimamori.services.takedowns import get_takedown

    detail = get_takedown(workspace(settings), operator(), args.takedown_id)
    if args.json:
        _print_json(detail)
        return 0
    t = detail.takedown
    print(_line(t))
    print(f"  media {t.media_url or '-'}  sha256 {t.media_sha256 or '-'}  pHash {t.media_phash or '-'}  "
          f"PDQ {t.media_pdq or '-'}")
    print(f"  found {_when(t.found_at)} on {t.platform or '-'}; country {t.country or '-'}; escalation step "
          f"{t.escalation_step}; next check {_when(t.next_check_at)}")
    for tr in detail.transitions:
        print(f"  {_when(tr.at)}  {tr.from_state} -> {tr.to_state}  by {tr.actor}"
              + (f"  check {tr.check_id}" if tr.check_id else "") + (f"  notice {tr.notice_id}" if tr.notice_id else "")
              + (f"  ({tr.note})" if tr.note else ""))
    for check in detail.checks:
        print(f"  checked {_when(check.checked_at)}: {check.outcome} ({check.check_id})")
    for notice in detail.notices:
        print(f"  notice {notice.id}: {notice.method} to {notice.recipient or '-'} at {_when(notice.sent_at)}")
    return 0


def cmd_create(settings: Settings, args: argparse.Namespace) -> int:
    from mimamori.services.takedowns import create_takedown

    made = create_takedown(workspace(settings), operator(), args.case, args.page_url, media_url=args.media_url,
                           media_sha256=args.sha256, media_phash=args.phash, media_pdq=args.pdq,
                           platform=args.platform, found_at=args.found_at, note=args.note)
    print(f"takedown {made.id} ({made.state}) on {made.host_key}"
          + ("" if made.host_known else ": unknown host, add a contact (mimamori takedowns hosts import)"))
    return 0


def cmd_transition(settings: Settings, args: argparse.Namespace) -> int:
    from mimamori.services.takedowns import transition

    moved = transition(workspace(settings), operator(), args.takedown_id, args.state, note=args.note)
    print(f"takedown {moved.id}: {moved.state}")
    return 0


def cmd_escalate(settings: Settings, args: argparse.Namespace) -> int:
    from mimamori.services.takedowns import escalate

    for t in escalate(workspace(settings), operator(), args.takedown_ids, note=args.note):
        print(f"takedown {t.id}: escalated (step {t.escalation_step} taken), next due {_when(t.next_escalation_at)}")
    return 0


def cmd_notice(settings: Settings, args: argparse.Namespace) -> int:
    from mimamori.services import notices

    work, actor = workspace(settings), operator()
    options = {"language": args.language, "step": args.step}
    if args.notice_command == "preview":
        draft = notices.preview_notice(work, actor, args.takedown_ids, **options)
        if args.json:
            _print_json(draft)
            return 0
        print(f"To: {draft.recipient or '(no contact: add one to the host directory)'} ({draft.channel})")
        print(f"Subject: {draft.subject}\n\n{draft.body}", end="")
        for warning in draft.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        return 0
    if args.notice_command == "eml":
        view, raw = notices.download_eml(work, actor, args.takedown_ids, **options)
        _write(args.output, raw, f"notice {view.id} (.eml)")
        print(f"notice {view.id} stored as sent ({len(view.takedown_ids)} URL(s)); send the .eml from your mail "
              "program", file=sys.stderr)
        return 0
    if args.notice_command == "web-form":
        view = notices.record_web_form(work, actor, args.takedown_ids, **options)
        print(f"notice {view.id} recorded as typed into {view.recipient or 'the host web form'}")
        return 0
    view = notices.send_notice(work, actor, args.takedown_ids, **options)
    print(f"notice {view.id} sent to {view.recipient} ({view.message_id})")
    return 0


def cmd_hosts(settings: Settings, args: argparse.Namespace) -> int:
    from mimamori.services import hosts

    work, actor = workspace(settings), operator()
    if args.hosts_command == "import":
        try:
            text = args.file.read_text()
        except OSError as error:
            raise InvalidInput("unreadable_hosts", f"cannot read {args.file}: {error}") from None
        result = hosts.import_hosts(work, actor, text)
        print(f"host directory: {result.created} created, {result.updated} updated, {result.rehomed_takedowns} "
              "takedown(s) moved to their host")
        return 0
    if args.hosts_command == "export":
        _write(args.output, hosts.export_hosts(work, actor), "host directory")
        return 0
    if args.hosts_command == "unknown":
        for unknown in hosts.unknown_hosts(work, actor):
            print(f"unknown host: add a contact  {unknown.registrable_domain}  ({unknown.takedowns} takedown(s))")
        return 0
    for entry in hosts.list_hosts(work, actor):
        print(f"{entry.key:<24} {entry.operator:<30} {entry.country or '--'} {entry.channel:<8} "
              f"{entry.contact() or '-'}  {'verified' if entry.verified else 'NOT VERIFIED'}  "
              f"{', '.join(entry.domains)}")
    return 0


def cmd_due(settings: Settings, args: argparse.Namespace) -> int:
    from mimamori.services.takedowns import due

    items = due(workspace(settings), operator())
    if args.json:
        _print_json(items)
        return 0
    for item in items:
        step = f"step {item.next_step_index}: {item.next_step.kind}" if item.next_step else "ladder exhausted"
        when = f"OVERDUE {item.days_overdue} day(s)" if item.overdue else "due today"
        print(f"takedown {item.takedown.id}: {when} ({_when(item.due_at)}), {item.takedown.host_key}, {step}")
    if not items:
        print("nothing due")
    return 0


def cmd_report(settings: Settings, args: argparse.Namespace) -> int:
    from mimamori.services.takedowns import report, report_csv

    rows = report(workspace(settings), operator(), by=args.by, since=args.since, until=args.until)
    if args.csv:
        _write(args.output, report_csv(rows), "report")
        return 0
    if args.json:
        _print_json(rows)
        return 0

    def share(value: float | None) -> str:
        return "-" if value is None else f"{value:.0%}"

    print(f"{'month':<8} {args.by if args.by != 'month' else '':<28} {'requested':>9} {'removed':>8} {'rate':>5} "
          f"{'median d':>8} {'up 7d':>6} {'up 30d':>6} {'back':>5}")
    for r in rows:
        median = "-" if r.median_days_to_removal is None else f"{r.median_days_to_removal:.1f}"
        print(f"{r.month:<8} {r.group:<28} {r.requested:>9} {r.removed:>8} {share(r.removal_rate):>5} {median:>8} "
              f"{share(r.still_up_7d):>6} {share(r.still_up_30d):>6} {r.reappeared:>5}")
    return 0


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def add_takedown_commands(commands, bind) -> None:
    """Register ``mimamori takedowns``; ``bind(function)`` adapts a (settings, args) command for the CLI."""
    from mimamori.stores.takedowns import STATES

    takedowns = commands.add_parser("takedowns", help="takedown requests: URLs, notices, hosts, escalation, reports")
    actions = takedowns.add_subparsers(dest="takedowns_command", required=True, metavar="ACTION")

    listing = actions.add_parser("list", help="takedowns, newest first")
    listing.add_argument("--case", metavar="ID")
    listing.add_argument("--state", choices=STATES)
    listing.add_argument("--host", metavar="KEY", help="a directory key, or unknown:<domain>")
    listing.add_argument("--needs-action", action="store_true", help="drafts, reappeared, refused, no response")
    listing.add_argument("--limit", type=int, default=100)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=bind(cmd_list))

    show = actions.add_parser("show", help="one takedown with its transitions, re-checks and notices")
    show.add_argument("takedown_id", type=int, metavar="ID")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=bind(cmd_show))

    create = actions.add_parser("create", help="a takedown for a URL found elsewhere (idempotent)")
    create.add_argument("--case", required=True, metavar="ID")
    create.add_argument("--page-url", required=True, metavar="URL")
    create.add_argument("--media-url", metavar="URL")
    create.add_argument("--sha256", metavar="HEX", help="the media's SHA-256, if you have the file")
    create.add_argument("--phash", metavar="HEX", help="its pHash (16 hex digits)")
    create.add_argument("--pdq", metavar="HEX", help="its PDQ hash (64 hex digits)")
    create.add_argument("--platform")
    create.add_argument("--found-at", type=aware_time, metavar="TIME", help="when it was found (ISO 8601)")
    create.add_argument("--note")
    create.set_defaults(func=bind(cmd_create))

    move = actions.add_parser("transition", help="record a change of state (audited)")
    move.add_argument("takedown_id", type=int, metavar="ID")
    move.add_argument("state", choices=STATES, metavar="STATE", help=", ".join(STATES))
    move.add_argument("--note", help="why; for removed: your statement (what you saw, when)")
    move.set_defaults(func=bind(cmd_transition))

    escalate = actions.add_parser("escalate", help="record that the next step of the host's ladder was taken")
    escalate.add_argument("takedown_ids", type=int, nargs="+", metavar="ID")
    escalate.add_argument("--note")
    escalate.set_defaults(func=bind(cmd_escalate))
    _add_notice_and_host_commands(actions, bind)
    _add_report_commands(actions, bind)


def _add_notice_and_host_commands(actions, bind) -> None:
    """``takedowns notice preview|eml|web-form|send`` and ``takedowns hosts ...``."""
    notice = actions.add_parser("notice", help="the removal request for takedowns of one host")
    kinds = notice.add_subparsers(dest="notice_command", required=True, metavar="HOW")
    for name, text in (("preview", "print it (nothing is stored)"),
                       ("eml", "write it as an .eml for your mail program (stored as sent)"),
                       ("web-form", "record that you typed it into the host's web form (stored as sent)"),
                       ("send", "send it over SMTP (takedowns.smtp; a verified contact)")):
        kind = kinds.add_parser(name, help=text)
        kind.add_argument("takedown_ids", type=int, nargs="+", metavar="ID")
        kind.add_argument("--language", choices=("en", "ja"), help="default: the host's")
        kind.add_argument("--step", type=int, metavar="N", help="the escalation step (mimamori takedowns due)")
        if name == "preview":
            kind.add_argument("--json", action="store_true")
        if name == "eml":
            kind.add_argument("--output", type=Path, metavar="FILE", help="write here (mode 0600), not to stdout")
        kind.set_defaults(func=bind(cmd_notice))

    directory = actions.add_parser("hosts", help="the host directory")
    host_actions = directory.add_subparsers(dest="hosts_command", required=True, metavar="ACTION")
    host_import = host_actions.add_parser("import", help="add or replace the entries of a YAML file")
    host_import.add_argument("file", type=Path, metavar="FILE")
    host_export = host_actions.add_parser("export", help="the directory as YAML")
    host_export.add_argument("--output", type=Path, metavar="FILE")
    host_actions.add_parser("list", help="the entries")
    host_actions.add_parser("unknown", help="domains with takedowns but no entry")
    for action in (host_import, host_export, *host_actions.choices.values()):
        action.set_defaults(func=bind(cmd_hosts))


def _add_report_commands(actions, bind) -> None:
    """``takedowns due`` (what is due today) and ``takedowns report``."""
    due = actions.add_parser("due", help="escalation steps due today and overdue")
    due.add_argument("--json", action="store_true")
    due.set_defaults(func=bind(cmd_due))

    report = actions.add_parser("report", help="requested, removed, time to removal, still up, reappeared")
    report.add_argument("--by", choices=REPORT_BY, default="host")
    report.add_argument("--since", type=_date, metavar="DATE", help="first requested on or after (YYYY-MM-DD)")
    report.add_argument("--until", type=_date, metavar="DATE", help="first requested before")
    report.add_argument("--csv", action="store_true", help="as CSV (for a spreadsheet)")
    report.add_argument("--json", action="store_true")
    report.add_argument("--output", type=Path, metavar="FILE", help="with --csv: write here")
    report.set_defaults(func=bind(cmd_report))
