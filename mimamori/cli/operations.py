"""The operating commands of the CLI: replay, collections promote/rollback/list, dlq replay."""

from __future__ import annotations

import argparse

from mimamori.cli.arguments import aware_time
from mimamori.cli.context import operator, workspace
from mimamori.core.config import Settings


def cmd_replay(settings: Settings, args: argparse.Namespace, beam_args: list[str]) -> int:
    import apache_beam as beam

    from mimamori.cli.runner import pipeline_options
    from mimamori.services.replay import ReplayRequest, describe_totals, prepare_replay
    from mimamori.streams.replay import ReplayProgress
    from mimamori.transforms.pipeline import SourceOptions, build_pipeline
    from mimamori.transforms.totals import run_totals

    request = ReplayRequest(args.start, args.stop, args.topic, args.model, args.reprocess)
    settings, plan, topic = prepare_replay(settings, request)
    print(plan.describe())
    print(f"model: {settings.models.embedder.name} (collection {settings.face_collection()})"
          + ("; media already indexed is processed again" if args.reprocess else ""))
    if args.dry_run or plan.total == 0:
        return 0
    # A replay's reads end at the range's stop offsets; bounded=True lets a streaming runner
    # (Flink) end the job then, after a last checkpoint has committed the offsets.
    options = pipeline_options(settings, args.runner or settings.runner.default, beam_args, bounded=True)
    pipeline = beam.Pipeline(options=options)
    build_pipeline(pipeline, settings, SourceOptions(group_id=plan.group_id, start_time_ms=plan.from_ms,
                                                     stop_time_ms=plan.to_ms, topic=topic))
    with ReplayProgress(settings, plan):
        result = pipeline.run()
        result.wait_until_finish()
    print(describe_totals(run_totals(result)))  # counted by the workers, wherever they ran
    return 0


def cmd_collections_list(settings: Settings, args: argparse.Namespace) -> int:
    from mimamori.services.collections import list_collections
    from mimamori.stores.faces import alias_target, search_alias

    for found in list_collections(workspace(settings)):
        print(f"{found.name}: {found.faces} faces" + (f"  <- {search_alias(settings)}" if found.searched else ""))
    if alias_target(settings) is None:
        print(f"no search alias yet: search reads {settings.face_collection()} (the configured model)")
    return 0


def cmd_collections_promote(settings: Settings, args: argparse.Namespace) -> int:
    from mimamori.services.collections import promote

    moved = promote(workspace(settings), operator(), args.model, args.force)
    print(f"{moved.alias} -> {moved.collection}: search now reads {moved.model} vectors")
    return 0


def cmd_collections_rollback(settings: Settings, args: argparse.Namespace) -> int:
    from mimamori.services.collections import rollback

    moved = rollback(workspace(settings), operator())
    print(f"{moved.alias} -> {moved.collection} (was {moved.previous})")
    return 0


def cmd_dlq_replay(settings: Settings, args: argparse.Namespace) -> int:
    from mimamori.services.dead_letters import redrive

    counts = redrive(workspace(settings), operator(), args.reason, args.dry_run, args.again)
    verb = "would republish" if args.dry_run else "republished"
    print(f"dlq: {verb} {sum(counts.values())} dead letter(s)" +
          "".join(f"\n  {reason}: {count}" for reason, count in counts.most_common()))
    return 0


def add_ops_commands(commands, bind, bind_beam) -> None:
    replay = commands.add_parser(
        "replay", help="run the pipeline again over a time range (own consumer group; idempotent)",
        description="Replay a topic between two times: offsets from offsets_for_times on every partition, a "
                    "consumer group of its own (the live group's offsets never move), progress with an ETA, "
                    "and a summary. Arguments this command does not know go to Beam.")
    replay.add_argument("--from", dest="start", required=True, type=aware_time, metavar="TIME",
                        help="ISO 8601 with a zone, e.g. 2026-11-20T00:00:00Z")
    replay.add_argument("--to", dest="stop", required=True, type=aware_time, metavar="TIME", help="ISO 8601, or now")
    replay.add_argument("--topic", help="default: the media.scraped topic")
    replay.add_argument("--model", metavar="NAME", help="embed with this model from the registry (its own collection)")
    replay.add_argument("--runner", choices=["prism", "flink", "direct"])
    replay.add_argument("--reprocess", action="store_true",
                        help="process media that is already indexed again (after a fix of detection or alignment): "
                             "its faces are rewritten, and faces no longer found are deleted")
    replay.add_argument("--dry-run", action="store_true", help="print the offset ranges and counts only")
    replay.set_defaults(func=bind_beam(cmd_replay), takes_beam_args=True)

    collections = commands.add_parser("collections", help="face collections and the search alias")
    actions = collections.add_subparsers(dest="collections_command", required=True, metavar="ACTION")
    actions.add_parser("list", help="face collections, their sizes, and where search points").set_defaults(
        func=bind(cmd_collections_list))
    promote = actions.add_parser("promote", help="point search at a model's collection (no downtime)")
    promote.add_argument("model", metavar="MODEL", help="a model name from the registry, e.g. dlib-resnet")
    promote.add_argument("--force", action="store_true",
                         help="even if its collection is empty or it has processed fewer media than the current one")
    promote.set_defaults(func=bind(cmd_collections_promote))
    actions.add_parser("rollback", help="point search back where it pointed before").set_defaults(
        func=bind(cmd_collections_rollback))

    dlq = commands.add_parser("dlq", help="dead letters")
    dlq_actions = dlq.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")
    redrive = dlq_actions.add_parser("replay", help="republish dead letters' original messages after a fix "
                                                    "(each once: later runs take only newer letters)")
    redrive.add_argument("--reason", help="only dead letters of this reason code")
    redrive.add_argument("--again", action="store_true",
                         help="every letter on the topic, also those an earlier re-drive with this filter took")
    redrive.add_argument("--dry-run", action="store_true")
    redrive.set_defaults(func=bind(cmd_dlq_replay))


