"""``mimamori backup key|create|list|restore|prune``: the CLI door to services/backup.py."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from mimamori.cli.context import operator, workspace
from mimamori.core.config import Settings


def cmd_backup_key(settings: Settings, args: argparse.Namespace) -> int:
    from mimamori.stores.backups import create_key

    if args.path.exists():
        print(f"backup key: {args.path} exists; not overwritten")
        return 1
    create_key(args.path)
    print(f"backup key: wrote {args.path} (mode 0600). Set backup.key_file to it, and keep a copy off this machine")
    return 0


def cmd_backup_create(settings: Settings, args: argparse.Namespace) -> int:
    from mimamori.services.backup import backup_target, create_backup

    began = time.monotonic()
    manifest, pruned = create_backup(workspace(settings), operator())
    print(f"backup {manifest.id} -> {backup_target(settings).describe()} in {time.monotonic() - began:.1f} s")
    for part in manifest.parts:
        print(f"  {part.name}: {part.count} {'rows' if part.kind != 'bucket' else 'objects'}, {part.bytes} bytes")
    if pruned:
        print(f"  pruned (older than {settings.backup.retention_days} days): {', '.join(pruned)}")
    return 0


def cmd_backup_list(settings: Settings, args: argparse.Namespace) -> int:
    from mimamori.services.backup import describe, list_backups

    backups = list_backups(settings)
    for manifest in backups:
        if args.json:
            print(json.dumps(describe(manifest)))
            continue
        size = sum(part.bytes for part in manifest.parts)
        print(f"{manifest.id}  {manifest.created_at}  by {manifest.created_by}  {size / 2**20:.1f} MiB  "
              + ", ".join(f"{part.what}: {part.count}" for part in manifest.parts))
    if not backups and not args.json:
        print("no backups")
    return 0


def cmd_backup_restore(settings: Settings, args: argparse.Namespace) -> int:
    from mimamori.services.backup import restore_backup

    began = time.monotonic()
    report = restore_backup(workspace(settings), operator(), args.backup_id)
    print(f"restored {report.backup_id} in {time.monotonic() - began:.1f} s: "
          f"{sum(report.table_rows.values())} database rows, "
          + ", ".join(f"{name}: {rows} rows" for name, rows in report.collections.items())
          + "".join(f", {bucket}: {count} objects" for bucket, count in report.objects.items()))
    print("  seconds: " + ", ".join(f"{step} {s:.1f}" for step, s in report.seconds.items()))
    if report.withdrawn_again:
        print(f"  withdrawn again (a newer backup records their withdrawal): {', '.join(report.withdrawn_again)}")
    return 0


def cmd_backup_prune(settings: Settings, args: argparse.Namespace) -> int:
    from mimamori.services.backup import prune_backups

    pruned = prune_backups(workspace(settings), operator())
    print(f"pruned {len(pruned)} backup(s) older than {settings.backup.retention_days} days"
          + (f": {', '.join(pruned)}" if pruned else ""))
    return 0


def add_backup_commands(commands, bind) -> None:
    backup = commands.add_parser("backup", help="encrypted backups of what cannot be recomputed, and restore")
    actions = backup.add_subparsers(dest="backup_command", required=True, metavar="ACTION")
    key = actions.add_parser("key", help="write a new random backup key (mode 0600)")
    key.add_argument("path", type=Path, metavar="FILE")
    key.set_defaults(func=bind(cmd_backup_key))
    actions.add_parser("create", help="back up the case database, the configured collections and buckets "
                                      "(then prune those past retention)").set_defaults(func=bind(cmd_backup_create))
    listing = actions.add_parser("list", help="the backups at the destination")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=bind(cmd_backup_list))
    restore = actions.add_parser("restore", help="restore a backup into an empty stack (after `stack up`)")
    restore.add_argument("backup_id", metavar="ID", help="from `mimamori backup list`")
    restore.set_defaults(func=bind(cmd_backup_restore))
    actions.add_parser("prune", help="delete backups older than backup.retention_days").set_defaults(
        func=bind(cmd_backup_prune))
