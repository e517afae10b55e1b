"""`netcheck token`: make the session tokens agents and watchers present to the hub.

Thin, like cli.py. The secret comes from NETCHECK_SECRET or the config's secret_file, never
from argv, where other users of the machine could read it.
"""

from enum import Enum
from typing import Annotated

import typer

from netcheck.errors import ConfigError, UsageError
from netcheck.parse import parse_duration_s

token_app = typer.Typer(help="Session tokens for the hub (`netcheck serve` with a secret).", no_args_is_help=True)


class TokenRole(str, Enum):
    client = "client"
    therapist = "therapist"
    check = "check"


@token_app.command("create")
def create(
    session: Annotated[str, typer.Option(help="Opaque session id: 1–128 of A-Z a-z 0-9 . _ - (no names).")],
    role: Annotated[TokenRole, typer.Option(help="client: measures and posts its leg's events; therapist: may also watch; check: only measures (a check link).")],
    ttl: Annotated[str, typer.Option(help="How long the token is valid, 1m … 7d, e.g. 2h.")] = "2h",
) -> int:
    """Print a token for one session and role, alone on stdout (signed with NETCHECK_SECRET or secret_file)."""
    from netcheck.config import load_config
    from netcheck.tokens import MAX_TTL_S, MIN_TTL_S, check_session_id, create_token

    ttl_s = parse_duration_s(ttl, "--ttl")
    if not MIN_TTL_S <= ttl_s <= MAX_TTL_S:
        raise UsageError(f"--ttl {ttl!r} outside 1m … 7d")
    try:
        check_session_id(session)
    except UsageError as error:
        raise UsageError(f"--session {session[:140]!r}: {error}") from None
    secret = load_config().secret
    if secret is None:
        raise ConfigError("no secret: set NETCHECK_SECRET or secret_file (mode 0600) in the config, "
                          "the same as on the server")
    print(create_token(secret, session, role.value, ttl_s))
    return 0


session_app = typer.Typer(help="After a session: what the connection did to it.", no_args_is_help=True)


@session_app.command("report")
def report(
    session_id: Annotated[str, typer.Argument(help="The session id, as given to `agent --session` and `watch`.")],
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON for machines instead of text.")] = False,
) -> int:
    """The session's pre-session checks, its warnings in time order and the minutes each cue spent at each level.

    Read from the local store: what this machine's agent measured, what `netcheck watch` received, and
    (on the server's machine) the browser checks made with the session's check link.
    """
    from netcheck.cli.common import open_store, print_json, stdout_console
    from netcheck.config import load_config
    from netcheck.cli.render import render_session_report
    from netcheck.session.report import build_report, report_to_dict

    with open_store(load_config()) as store:
        events = store.session_events(session_id)
        checks = store.session_checks(session_id)
    if not events and not checks:
        raise UsageError(f"no events or checks of session {session_id[:140]!r} in the local store "
                         "(run `netcheck agent --session` or `netcheck watch` with the same NETCHECK_HOME, "
                         "or read the report where `netcheck serve` stores the session's browser checks)")
    session_report = build_report(session_id, events, checks)
    if json_output:
        print_json(report_to_dict(session_report))
    else:
        render_session_report(session_report, stdout_console())
    return 0


@session_app.command("bind-room")
def bind_room_command(
    session_id: Annotated[str, typer.Argument(help="The session id (as given to `token create --session`).")],
    room: Annotated[str, typer.Argument(help="The video app's room (Jitsi Meet: the conference name, as in its URL).")],
    node: Annotated[str, typer.Option(help="The node the video app sends its rtcstats to, e.g. https://node.example-clinic.org.")],
    expires: Annotated[str, typer.Option(help="How long the node follows the room, 1m … 7d.")] = "2h",
    therapist_name: Annotated[str | None, typer.Option(help="The therapist's display name in the room (Jitsi: enableDisplayNameInStats).")] = None,
    client_name: Annotated[str | None, typer.Option(help="The client's display name in the room; anyone else is a participant, not judged.")] = None,
) -> int:
    """Let the node follow ROOM's call as SESSION's call leg (the rtcstats door), until it expires.

    Signs the session's therapist token with NETCHECK_SECRET (as `token create` does); the binding expires
    with it. A participant whose display name is not one given here is never judged as the client.
    """
    from netcheck.config import load_config
    from netcheck.session.room_client import bind_room
    from netcheck.tokens import MAX_TTL_S, create_token

    expires_s = parse_duration_s(expires, "--expires")
    if not 60.0 <= expires_s <= MAX_TTL_S:
        raise UsageError(f"--expires {expires!r} outside 1m … 7d")
    secret = load_config().secret
    if secret is None:
        raise ConfigError("no secret: set NETCHECK_SECRET or secret_file (mode 0600) in the config, "
                          "the same as on the server")
    names = {role: name for role, name in (("therapist", therapist_name), ("client", client_name)) if name}
    answer = bind_room(node, session_id, room, create_token(secret, session_id, "therapist", expires_s), expires_s,
                       names)
    named = ", ".join(answer.get("roles_named") or []) or "no one (every participant unjudged)"
    print(f"room {answer.get('room')} bound to session {session_id} for {answer.get('expires_in_s')} s; named: {named}")
    return 0
