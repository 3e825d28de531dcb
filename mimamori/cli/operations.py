"""The operating commands of the CLI: replay, collections promote/rollback/list, dlq replay."""

from __future__ import annotations

import argparse
import getpass

from mimamori.cli.arguments import aware_time
from mimamori.core.config import Settings


def cmd_replay(settings: Settings, args: argparse.Namespace, beam_args: list[str]) -> int:
    import apache_beam as beam

    from mimamori.cli.runner import pipeline_options
    from mimamori.models.registry import embedder_spec
    from mimamori.streams.replay import ReplayProgress, plan_replay
    from mimamori.transforms.pipeline import SourceOptions, build_pipeline
    from mimamori.transforms.totals import run_totals

    if args.model:
        embedder_spec(args.model)  # an unknown model is an error before anything runs
        settings.models.embedder.name = args.model
    settings.pipeline.reprocess_indexed = args.reprocess
    topic = args.topic or settings.kafka.topics.media_scraped.name
    plan = plan_replay(settings, topic, args.start, args.stop)
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
    totals = run_totals(result)  # counted by the workers, wherever they ran
    media = sum(v for k, v in totals.items() if k.startswith("media."))
    sightings = sum(v for k, v in totals.items() if k.startswith("media.sighting"))
    letters = {k.split(".", 1)[1]: v for k, v in totals.items() if k.startswith("dead_letters.")}
    print(f"replay done: {media} media ({sightings} sightings), {totals.get('faces', 0)} faces "
          f"written, {sum(letters.values())} dead letters" + (f" {letters}" if letters else ""))
    return 0


def cmd_collections_list(settings: Settings, args: argparse.Namespace) -> int:
    from pymilvus import Collection, utility

    from mimamori.stores.faces import alias_target, search_alias
    from mimamori.stores.milvus import connect, count_entities

    alias, target = connect(settings), alias_target(settings)
    prefix = f"{settings.milvus.collection_prefix}_"
    for name in sorted(utility.list_collections(using=alias)):
        if name.startswith(prefix):
            marker = f"  <- {search_alias(settings)}" if name == target else ""
            print(f"{name}: {count_entities(Collection(name, using=alias))} faces{marker}")
    if target is None:
        print(f"no search alias yet: search reads {settings.face_collection()} (the configured model)")
    return 0


def _record_alias(settings: Settings, collection: str, model: str) -> None:
    from mimamori.services import audit
    from mimamori.services.audit import Actor
    from mimamori.stores.cases import AliasChange, open_database
    from mimamori.stores.faces import search_alias

    sessions = open_database(settings.database_url())
    actor = Actor(f"cli:{getpass.getuser()}", "operator")
    with sessions.begin() as session:
        session.add(AliasChange(alias=search_alias(settings), collection=collection, model=model, actor=actor.name))
    audit.record(sessions, actor, "point_search_alias", target=collection, model=model)


def cmd_collections_promote(settings: Settings, args: argparse.Namespace) -> int:
    from mimamori.models.registry import embedder_spec
    from mimamori.stores.faces import ensure_face_collection, point_search_alias, search_alias, search_collection
    from mimamori.stores.media import ensure_media_collections
    from mimamori.stores.milvus import count_entities

    embedder_spec(args.model)
    collection = ensure_face_collection(settings, args.model)
    if count_entities(collection, consistency_level="Strong") == 0 and not args.force:
        raise SystemExit(f"mimamori: {collection.name} holds no faces: replay with --model {args.model} first "
                         "(or --force)")
    # A backfill that has not reached every media item would make search miss what the current
    # model finds: compare how many media each model has processed.
    current_model = search_collection(settings)[1]
    if current_model != args.model and not args.force:
        new_media = count_entities(ensure_media_collections(settings, args.model)[0], consistency_level="Strong")
        old_media = count_entities(ensure_media_collections(settings, current_model)[0], consistency_level="Strong")
        if new_media < old_media:
            raise SystemExit(f"mimamori: {args.model} has processed {new_media} media, {current_model} (which search "
                             f"reads now) {old_media}: finish the backfill (mimamori replay --model {args.model}) "
                             "first (or --force)")
    point_search_alias(settings, collection.name)
    _record_alias(settings, collection.name, args.model)
    print(f"{search_alias(settings)} -> {collection.name}: search now reads {args.model} vectors")
    return 0


def cmd_collections_rollback(settings: Settings, args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from mimamori.stores.cases import AliasChange, open_database
    from mimamori.stores.faces import alias_target, point_search_alias, search_alias

    sessions = open_database(settings.database_url())
    with sessions() as session:
        changes = list(session.scalars(select(AliasChange).where(AliasChange.alias == search_alias(settings))
                                       .order_by(AliasChange.id.desc()).limit(2)))
    if len(changes) < 2:
        raise SystemExit("mimamori: nothing to roll back to (the search alias was set once or never)")
    current, previous = alias_target(settings), changes[1]
    point_search_alias(settings, previous.collection)
    _record_alias(settings, previous.collection, previous.model)
    print(f"{search_alias(settings)} -> {previous.collection} (was {current})")
    return 0


def cmd_dlq_replay(settings: Settings, args: argparse.Namespace) -> int:
    from mimamori.streams.dlq import redrive_dead_letters

    counts = redrive_dead_letters(settings, args.reason, args.dry_run, args.again)
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


