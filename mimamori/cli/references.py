"""The reference-media commands of the CLI (issue 20): references add, list, export, import.

Thin calls into services/references.py, as the API's routes are; the local operator acts, audited.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from mimamori.cli.cases import _photo
from mimamori.cli.context import operator, workspace
from mimamori.core.config import Settings
from mimamori.services.hash_lists import FORMATS


def cmd_references_add(settings: Settings, args: argparse.Namespace) -> int:
    from mimamori.services.references import add_references

    result = add_references(workspace(settings), operator(), args.case, [_photo(p) for p in args.media], args.label)
    for view in result.references:
        print(f"reference {view.id}: {view.kind}, {view.frames} frame(s), {view.hashes} PDQ hash(es), "
              f"lowest quality {view.min_quality}, {view.face_vectors} face vector(s), "
              f"original {'kept' if view.original_kept else 'not kept'}")
    print(f"case {result.case_id}: {result.retro_matches} new match(es) among the media indexed before")
    return 0


def cmd_references_list(settings: Settings, args: argparse.Namespace) -> int:
    from mimamori.services.references import list_references

    for view in list_references(workspace(settings), operator(), args.case):
        print(f"{view.id:>5} {view.kind:<9} {view.sha256[:16]} frames={view.frames} hashes={view.hashes} "
              f"quality>={view.min_quality} faces={view.face_vectors} added {view.added_at:%Y-%m-%d %H:%M} "
              f"{view.label or ''}")
    return 0


def cmd_references_export(settings: Settings, args: argparse.Namespace) -> int:
    from mimamori.services.references import export_hash_list

    text = export_hash_list(workspace(settings), operator(), args.case, args.format)
    if args.output is None:
        sys.stdout.write(text)
    else:
        descriptor = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as out:
            out.write(text)
        print(f"{len(text.splitlines())} line(s) written to {args.output}", file=sys.stderr)
    return 0


def cmd_references_import(settings: Settings, args: argparse.Namespace) -> int:
    from mimamori.services.references import import_hash_list

    result = import_hash_list(workspace(settings), operator(), args.case, args.list.read_text(), args.label)
    [view] = result.references
    skipped = ", ".join(f"{count} {kind}" for kind, count in result.skipped.items())
    print(f"case {result.case_id}: {view.hashes} PDQ hash(es) imported{f' (skipped: {skipped})' if skipped else ''}, "
          f"{result.retro_matches} new match(es) among the media indexed before")
    return 0


def add_reference_commands(commands, bind) -> None:
    """Register ``references``; ``bind(function)`` adapts a (settings, args) command for the CLI."""
    references = commands.add_parser("references", help="a case's reference media (the known originals) and "
                                                         "their hash lists (ThreatExchange/HMA)")
    actions = references.add_subparsers(dest="references_command", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="enrol known images or videos of the client (kept as hashes, a face "
                                         "vector and a blurred thumbnail; consent required)")
    add.add_argument("--case", required=True)
    add.add_argument("--label", help="your own words for it (no client name needed)")
    add.add_argument("media", nargs="+", type=Path, metavar="FILE")
    add.set_defaults(func=bind(cmd_references_add))
    listing = actions.add_parser("list", help="a case's reference media")
    listing.add_argument("--case", required=True)
    listing.set_defaults(func=bind(cmd_references_list))
    export = actions.add_parser("export", help="the case's PDQ hashes as a hash list (no image; consent for "
                                               "takedown required)")
    export.add_argument("--case", required=True)
    export.add_argument("--format", choices=FORMATS, default="te",
                        help="te: 'pdq <hex>' lines (threatexchange/HMA file exchange); csv: with quality")
    export.add_argument("--output", type=Path, help="write here (mode 0600) instead of standard output")
    export.set_defaults(func=bind(cmd_references_export))
    imported = actions.add_parser("import", help="a partner's hash list as references of the case")
    imported.add_argument("--case", required=True)
    imported.add_argument("--label")
    imported.add_argument("list", type=Path, metavar="FILE")
    imported.set_defaults(func=bind(cmd_references_import))
