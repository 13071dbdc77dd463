"""The bearer token that guards streamable HTTP, checked through the MCP SDK's auth support."""

from __future__ import annotations

import hmac
import os
from pathlib import Path

from mcp.server.auth.provider import AccessToken

import voicestate as vs

TOKEN_ENV = "VOICESTATE_MCP_TOKEN"
MIN_TOKEN_CHARS = 16


class StaticBearer:
    """A ``TokenVerifier`` that accepts one shared secret, compared in constant time."""

    def __init__(self, token: str) -> None:
        check_token(token, "the bearer token")
        self._token = token.encode()

    async def verify_token(self, token: str) -> AccessToken | None:
        if hmac.compare_digest(token.encode(), self._token):
            return AccessToken(token=token, client_id="voicestate-mcp", scopes=[])
        return None


def check_token(token: str, where: str) -> str:
    if not isinstance(token, str) or len(token.strip()) < MIN_TOKEN_CHARS or token != token.strip():
        raise vs.ConfigError(
            f"{where} must be at least {MIN_TOKEN_CHARS} characters with no surrounding spaces; make one with "
            "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    return token


def load_token(token_file: str | None) -> str | None:
    """The token from ``--token-file`` (its first line), else $VOICESTATE_MCP_TOKEN, else None."""
    if token_file:
        try:
            text = Path(token_file).read_text()
        except OSError as exc:
            raise vs.ConfigError(f"cannot read the token file {token_file!r}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise vs.ConfigError(
                f"the token file {token_file!r} is not text: write the token on its first line"
            ) from None
        lines = text.splitlines()
        return check_token(lines[0].strip() if lines else "", f"the first line of {token_file!r}")
    env = os.environ.get(TOKEN_ENV)
    if env:
        return check_token(env.strip(), f"${TOKEN_ENV}")
    return None
