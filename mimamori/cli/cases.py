"""The case commands of the CLI: cases (create, assign, withdraw), enroll, search, export, matches, review, keys.

A shell on the server is full access, so these act as ``cli:<user>`` with the role
``operator``; every action still leaves an audit row.
"""

from __future__ import annotations

import argparse
import json
import mimetypes
import os
import sys
from pathlib import Path

from mimamori.cli.arguments import aware_time
from mimamori.cli.context import operator, workspace
from mimamori.core.config import Settings
from mimamori.core.errors import InvalidInput
from mimamori.stores.cases import REVIEW_STATUSES


def _photo(path: str) -> tuple[str, bytes, str]:
    file = Path(path)
    if not file.is_file():
        raise InvalidInput("no_such_file", f"{path}: no such file")
    return file.name, file.read_bytes(), mimetypes.guess_type(file.name)[0] or "application/octet-stream"


def load_consent(path: Path):
    import yaml
    from pydantic import ValidationError

    from mimamori.services.consent import ConsentRecord

    try:
        return ConsentRecord.model_validate(yaml.safe_load(path.read_text()))
    except (OSError, yaml.YAMLError) as error:
        raise InvalidInput("unreadable_consent", f"cannot read consent record {path}: {error}") from None
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'record'}: {e['msg']}" for e in error.errors())
        raise InvalidInput("invalid_consent", f"consent record {path} is not valid: {problems}") from None


def cmd_cases_create(settings: Settings, args: argparse.Namespace) -> int:
    from mimamori.services.cases import create_case

    create_case(workspace(settings), operator(), args.case_id, args.name, args.threshold)
    print(f"case {args.case_id} created")
    return 0


def cmd_cases_withdraw(settings: Settings, args: argparse.Namespace) -> int:
    from mimamori.services.cases import withdraw

    if not args.yes:
        raise InvalidInput("not_confirmed", "withdrawal deletes the case's photos, vectors and matches for good; "
                                            "add --yes")
    report = withdraw(workspace(settings), operator(), args.case_id)
    print(f"case {report.case_id} withdrawn: {report.vectors} vectors, {report.objects} objects, "
          f"{report.photos} photos, {report.matches} matches deleted")
    return 0


def cmd_cases_assign(settings: Settings, args: argparse.Namespace) -> int:
    from mimamori.services.access import assign

    assign(workspace(settings), operator(), args.case_id, args.user)
    print(f"case {args.case_id} assigned to {args.user}")
    return 0


def cmd_cases_unassign(settings: Settings, args: argparse.Namespace) -> int:
    from mimamori.services.access import unassign

    unassign(workspace(settings), operator(), args.case_id, args.user)
    print(f"case {args.case_id} no longer assigned to {args.user}")
    return 0


def cmd_enroll(settings: Settings, args: argparse.Namespace) -> int:
    from mimamori.services.enrolment import enroll

    consent = load_consent(args.consent) if args.consent else None
    result = enroll(workspace(settings), operator(), args.case, [_photo(p) for p in args.photos], consent)
    print(f"case {result.case_id}: {len(result.photos)} photo(s) enrolled, "
          f"{result.retro_matches} new match(es) among the faces already indexed")
    return 0


def cmd_search(settings: Settings, args: argparse.Namespace) -> int:
    from mimamori.services.search import SearchFilters, check_query, search_faces

    filters = SearchFilters(args.top_k, args.offset, args.platform, args.posted_from, args.posted_to)
    if (args.photo is None) == (args.case is None):
        raise InvalidInput("photo_or_case", "give a PHOTO or --case ID")
    check_query(args.photo is not None, args.case, filters)
    photo = _photo(args.photo) if args.photo else None
    hits = search_faces(workspace(settings), operator(), photo=photo, case_id=args.case, filters=filters)
    if args.json:
        print(json.dumps([hit.to_dict() for hit in hits], indent=2))
        return 0
    for rank, hit in enumerate(hits, start=args.offset + 1):
        print(f"{rank:3d}. {hit.similarity:.3f}  face {hit.face_id}  {hit.platform}  {hit.source_url}")
        for sighting in hit.sightings:
            print(f"       seen {sighting.scraped_at} on {sighting.platform}: {sighting.source_url} ({sighting.match})")
    if not hits:
        print("no faces found")
    return 0


def cmd_export(settings: Settings, args: argparse.Namespace) -> int:
    from mimamori.services.export import export_case

    document = export_case(workspace(settings), operator(), args.case, None if args.status == "all" else args.status)
    text = json.dumps(document, indent=2)
    if args.output:
        args.output.unlink(missing_ok=True)  # created anew, readable by its owner only from the start
        with os.fdopen(os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
            file.write(text + "\n")
        print(f"case {args.case}: {len(document['matches'])} match(es) written to {args.output}")
    else:
        print(text)
    return 0


def cmd_matches(settings: Settings, args: argparse.Namespace) -> int:
    from mimamori.services.matches import list_matches

    for m in list_matches(workspace(settings), operator(), args.case, args.status, args.limit):
        print(f"match {m.id}: case {m.case_id}, face {m.face_id}, similarity {m.similarity:.3f}, {m.status}, "
              f"{m.source}, {m.created_at:%Y-%m-%d %H:%M:%S}")
    return 0


def cmd_review(settings: Settings, args: argparse.Namespace) -> int:
    from mimamori.services.matches import review

    decided = review(workspace(settings), operator(), args.match_id, args.status, args.note)
    print(f"match {decided.id} (case {decided.case_id}): {decided.status}")
    return 0


def cmd_keys_create(settings: Settings, args: argparse.Namespace) -> int:
    from mimamori.services.keys import create_key

    key = create_key(workspace(settings), operator(), args.name, args.role)
    print(key)
    print(f"(the {args.role} key of {args.name}; shown once, only its hash is kept)", file=sys.stderr)
    return 0


def cmd_keys_revoke(settings: Settings, args: argparse.Namespace) -> int:
    from mimamori.services.keys import revoke_key

    count = revoke_key(workspace(settings), operator(), args.name)
    print(f"{count} key(s) of {args.name} revoked")
    return 0


def cmd_cases_train_model(settings: Settings, args: argparse.Namespace) -> int:
    from mimamori.services.case_models import train

    result = train(workspace(settings), operator(), args.case_id)
    print(f"case {result.case_id}: model v{result.version} trained ({result.report['positives']} positives, "
          f"{result.report['negatives']} hard negatives, {result.report['rejected']} rejected); effective threshold "
          f"{result.threshold:.4f} (case threshold {result.base_threshold:.4f}); {result.rescored} open matches "
          f"rescored")
    return 0


def cmd_cases_models(settings: Settings, args: argparse.Namespace) -> int:
    from mimamori.services.case_models import versions

    for view in versions(workspace(settings), operator(), args.case_id):
        print(f"v{view.version}  {view.trained_at}  {view.reason:<9}  threshold {view.threshold:.4f} "
              f"(case {view.base_threshold:.4f})  {view.positives} positives, {view.negatives} negatives, "
              f"{view.rejected} rejected, after {view.decisions} decisions, by {view.trained_by}")
    return 0


def add_case_commands(commands, bind) -> None:
    """Register the case commands; ``bind(function)`` adapts a (settings, args) command for the CLI."""
    cases = commands.add_parser("cases", help="create, assign and withdraw cases")
    actions = cases.add_subparsers(dest="cases_command", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="open a case")
    create.add_argument("case_id", metavar="ID")
    create.add_argument("--name", required=True, help="display name (a pseudonym is enough)")
    create.add_argument("--threshold", type=float, help="match threshold (default: the model's)")
    create.set_defaults(func=bind(cmd_cases_create))
    withdraw = actions.add_parser("withdraw", help="delete a case's photos, vectors and matches everywhere")
    withdraw.add_argument("case_id", metavar="ID")
    withdraw.add_argument("--yes", action="store_true", help="confirm")
    withdraw.set_defaults(func=bind(cmd_cases_withdraw))
    for name, command, text in [("assign", cmd_cases_assign, "let a reviewer see and review the case"),
                                ("unassign", cmd_cases_unassign, "take the case away from a reviewer")]:
        action = actions.add_parser(name, help=text)
        action.add_argument("case_id", metavar="CASE")
        action.add_argument("user", metavar="USER", help="a staff user, or the name of an API key")
        action.set_defaults(func=bind(command))

    # Issue 20: the per-case model (also retrained by itself after reviewer decisions; docs/matching.md).
    for name, command, text in [("train-model", cmd_cases_train_model,
                                 "train the case's next model version and rescore its candidates"),
                                ("models", cmd_cases_models, "list the case's model versions")]:
        action = actions.add_parser(name, help=text)
        action.add_argument("case_id", metavar="ID")
        action.set_defaults(func=bind(command))

    enroll = commands.add_parser("enroll", help="enrol a client's reference photos (consent required)")
    enroll.add_argument("--case", required=True, metavar="ID")
    enroll.add_argument("--consent", type=Path, metavar="FILE",
                        help="the consent record (YAML/JSON: given_by, given_at, scope, expires_at, recorded_by); "
                             "needed unless one in force is already recorded")
    enroll.add_argument("photos", nargs="+", metavar="PHOTO", help="photos with exactly one face each")
    enroll.set_defaults(func=bind(cmd_enroll))

    _add_review_commands(commands, bind)
    _add_key_commands(commands, bind)



def _add_review_commands(commands, bind) -> None:
    """search, export, matches, review: what reviewers do."""
    search = commands.add_parser("search", help="find indexed faces like a photo's face or a case's faces")
    search.add_argument("photo", nargs="?", metavar="PHOTO")
    search.add_argument("--case", metavar="ID", help="search with the case's enrolled faces instead of a photo")
    search.add_argument("--top-k", type=int, default=10)
    search.add_argument("--offset", type=int, default=0)
    search.add_argument("--platform")
    search.add_argument("--posted-from", type=aware_time, metavar="TIME", help="posted at or after (ISO 8601)")
    search.add_argument("--posted-to", type=aware_time, metavar="TIME", help="posted at or before (ISO 8601)")
    search.add_argument("--json", action="store_true")
    search.set_defaults(func=bind(cmd_search))

    export = commands.add_parser("export", help="a case's matches with every sighting's URL, for takedown requests "
                                                "(needs consent for takedown; audited)")
    export.add_argument("--case", required=True, metavar="ID")
    export.add_argument("--status", choices=["confirmed", "pending_review", "rejected", "all"], default="confirmed",
                        help="which matches (default: confirmed)")
    export.add_argument("--output", type=Path, metavar="FILE", help="write the JSON here (mode 0600), not to stdout")
    export.set_defaults(func=bind(cmd_export))

    matches = commands.add_parser("matches", help="list watchlist matches")
    matches.add_argument("--case", metavar="ID")
    matches.add_argument("--status", choices=REVIEW_STATUSES)
    matches.add_argument("--limit", type=int, default=50)
    matches.set_defaults(func=bind(cmd_matches))

    review = commands.add_parser("review", help="record a decision on a match (audited with your name)")
    review.add_argument("match_id", type=int, metavar="MATCH", help="the match's id (from mimamori matches)")
    review.add_argument("status", choices=REVIEW_STATUSES, metavar="STATUS",
                        help=f"the decision: {', '.join(REVIEW_STATUSES[1:])}, or {REVIEW_STATUSES[0]} to undo one")
    review.add_argument("--note", help="why (kept with the decision in the decision log)")
    review.set_defaults(func=bind(cmd_review))



def _add_key_commands(commands, bind) -> None:
    keys = commands.add_parser("keys", help="API keys")
    key_actions = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    key_create = key_actions.add_parser("create", help="create a key (printed once)")
    key_create.add_argument("--name", required=True)
    key_create.add_argument("--role", required=True, choices=["admin", "reviewer", "auditor"])
    key_create.set_defaults(func=bind(cmd_keys_create))
    key_revoke = key_actions.add_parser("revoke", help="revoke every key of a name")
    key_revoke.add_argument("--name", required=True)
    key_revoke.set_defaults(func=bind(cmd_keys_revoke))
