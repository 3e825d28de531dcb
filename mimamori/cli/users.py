"""The staff account commands of the CLI: users create, list, disable, enable, reset.

``users create`` is how the first admin gets in: it prints a one-time invitation link to
set a password and a TOTP second factor in the workbench. Like every command here it acts
as the local operator (``cli:<user>``), and is audited.
"""

from __future__ import annotations

import argparse
import sys

from mimamori.cli.context import operator, workspace
from mimamori.core.config import Settings
from mimamori.services.auth import ROLES


def _print_invitation(settings: Settings, invitation) -> None:
    from mimamori.services.users import invitation_url

    print(invitation_url(settings, invitation.token))
    print(f"(the invitation of {invitation.username}, {invitation.role}: shown once, only its hash is kept; "
          f"it expires {invitation.expires_at:%Y-%m-%d %H:%M} UTC)", file=sys.stderr)


def cmd_users_create(settings: Settings, args: argparse.Namespace) -> int:
    from mimamori.services.users import create_user

    _print_invitation(settings, create_user(workspace(settings), operator(), args.name, args.role))
    return 0


def cmd_users_reset(settings: Settings, args: argparse.Namespace) -> int:
    from mimamori.services.users import reset_user

    _print_invitation(settings, reset_user(workspace(settings), operator(), args.name))
    return 0


def cmd_users_list(settings: Settings, args: argparse.Namespace) -> int:
    from mimamori.services.users import list_users

    for user in list_users(workspace(settings), operator()):
        seen = f"{user.last_seen_at:%Y-%m-%d %H:%M}" if user.last_seen_at else "never"
        print(f"{user.username:<24} {user.role:<9} {user.status:<9} last seen {seen:<16} "
              f"cases: {', '.join(user.cases) or '-'}")
    return 0


def cmd_users_disable(settings: Settings, args: argparse.Namespace) -> int:
    from mimamori.services.users import disable_user

    disable_user(workspace(settings), operator(), args.name)
    print(f"user {args.name} disabled; their sessions have ended")
    return 0


def cmd_users_enable(settings: Settings, args: argparse.Namespace) -> int:
    from mimamori.services.users import enable_user

    enable_user(workspace(settings), operator(), args.name)
    print(f"user {args.name} enabled")
    return 0


def add_user_commands(commands, bind) -> None:
    """Register ``users``; ``bind(function)`` adapts a (settings, args) command for the CLI."""
    users = commands.add_parser("users", help="staff accounts of the workbench (password + TOTP)")
    actions = users.add_subparsers(dest="users_command", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="create a user and print their one-time invitation link")
    create.add_argument("name", metavar="NAME", help="the username (lower-case letters, digits, . _ @ -)")
    create.add_argument("--role", required=True, choices=ROLES)
    create.set_defaults(func=bind(cmd_users_create))
    listing = actions.add_parser("list", help="every user: role, state, last seen, assigned cases")
    listing.set_defaults(func=bind(cmd_users_list))
    for name, command, text in [
            ("disable", cmd_users_disable, "stop a user from signing in and end their sessions now"),
            ("enable", cmd_users_enable, "let a disabled user sign in again"),
            ("reset", cmd_users_reset, "forget a user's password and TOTP and print a new invitation link")]:
        action = actions.add_parser(name, help=text)
        action.add_argument("name", metavar="NAME")
        action.set_defaults(func=bind(command))
