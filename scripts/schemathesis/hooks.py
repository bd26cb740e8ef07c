"""schemathesis hooks for lct: the v2 bearer tokens.

An organiser token belongs to one tournament and a player token to one player of one tournament;
both are shown once, in the answers that create them (`organiserToken`, `playerToken`). The
document's links carry them to the next call, but schemathesis counts a credential that came
through a link as generated, and would take a success with it for an API that ignores
authentication. So the tokens are remembered here from every answer that shows one, and an
auth provider sends the right one for the tournament in the path of each operation that
requires it (by the name of its security scheme). schemathesis then knows the credential is
real and checks that the operation refuses the request without it (401) and with a wrong one
(403).
"""

import schemathesis

# Tournament id -> organiser token; tournament id -> player tokens in the order they were issued.
organisers: dict[str, str] = {}
players: dict[str, list[str]] = {}


@schemathesis.hook
def after_call(context, case, response):
    if not 200 <= response.status_code < 300:
        return
    try:
        body = response.json()
    except ValueError:
        return
    if not isinstance(body, dict):
        return
    tournament = str((case.path_parameters or {}).get("id") or body.get("id") or "")
    if isinstance(body.get("organiserToken"), str) and tournament:
        organisers[tournament] = body["organiserToken"]
    if isinstance(body.get("playerToken"), str) and tournament:
        players.setdefault(tournament, []).append(body["playerToken"])


def schemes(case):
    """The security schemes the operation requires (`organiser`, `player`)."""
    return {name for requirement in case.operation.definition.raw.get("security", []) for name in requirement}


@schemathesis.auth(refresh_interval=None)
class TournamentTokens:
    def get(self, case, context):
        tournament = str((case.path_parameters or {}).get("id") or "")
        required = schemes(case)
        if "organiser" in required and tournament in organisers:
            return organisers[tournament]
        if "player" in required and players.get(tournament):
            # The latest player: the one the stateful phase has just joined.
            return players[tournament][-1]
        return None

    def set(self, case, data, context):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"


@schemathesis.deserializer("image/png")
def png(context, response):
    """A PNG answer must be a PNG; its bytes are then validated as the string the schema says."""
    if not response.content.startswith(b"\x89PNG\r\n\x1a\n"):
        raise ValueError("the body is not a PNG image")
    return response.content.decode("latin-1")
