"""Signing keys: ``"kid:secret,kid2:secret2"`` (newest first: it signs; all verify) or a mapping."""

from __future__ import annotations

import hmac
import re
import secrets
import warnings
from collections.abc import Mapping

import attrs

from ._errors import ConfigError

ENV_VAR = "VOICESTATE_SIGNING_KEYS"
_KID = re.compile(r"^[A-Za-z0-9._-]{1,16}$")
MIN_SECRET_BYTES = 16


class EphemeralKeyWarning(UserWarning):
    """No signing keys were configured: packets are signed with a per-process key."""


@attrs.frozen
class KeyRing:
    """Signing keys by id; ``current`` signs, every key verifies (rotation)."""

    keys: Mapping[str, bytes]
    current: str
    ephemeral: bool = False

    def secret(self, kid: str) -> bytes | None:
        return self.keys.get(kid)

    def sign(self, data: bytes, kid: str | None = None) -> bytes:
        return hmac.digest(self.keys[kid or self.current], data, "sha256")

    @property
    def configured(self) -> bool:
        """False when no keys were configured: the ring holds only a random per-process key (or none)."""
        return bool(self.keys) and not self.ephemeral

    def missing_key(self, what: str, kid: str) -> str:
        """Why a ``what`` ("packet", "token") signed with ``kid`` cannot be verified here, and what to configure."""
        example = kid if isinstance(kid, str) and _KID.match(kid) else "kid"
        how = f'open_store(signing_keys="{example}:<secret>") or {ENV_VAR}="{example}:<secret>"'
        if not self.configured:
            own = (
                f" (only its random per-process key {self.current!r}, which no other process has)" if self.keys else ""
            )
            return (
                f"{what} signed with key {kid!r:.60}, but this receiver has no signing keys configured{own}: "
                f"configure the sender's keys here too, {how}"
            )
        return (
            f"{what} signed with key {kid!r:.60}, which this receiver does not have (it knows {sorted(self.keys)}); "
            f"add the sender's key to this receiver's keys: {how}"
        )


def parse_keys(spec: str | Mapping[str, str | bytes] | KeyRing) -> KeyRing:
    """Parse a key specification; raise ConfigError saying what is wrong."""
    if isinstance(spec, KeyRing):
        return spec
    pairs: list[tuple[str, bytes]] = []
    if isinstance(spec, str):
        for part in spec.split(","):
            part = part.strip()
            if not part:
                continue
            kid, sep, text = part.partition(":")
            if not sep:
                raise ConfigError(f"signing key {kid!r} has no secret: write keys as 'kid:secret,kid2:secret2'")
            pairs.append((kid.strip(), text.encode()))
    elif isinstance(spec, Mapping):
        for name, value in spec.items():
            if not isinstance(name, str):
                raise ConfigError(f"signing key id {name!r} must be a string")
            if isinstance(value, str):
                value = value.encode()
            elif not isinstance(value, (bytes, bytearray)):
                raise ConfigError(f"signing key {name!r}: the secret must be str or bytes, not {type(value).__name__}")
            pairs.append((name, bytes(value)))
    else:
        raise ConfigError(f"signing keys must be a 'kid:secret,...' string or a mapping, not {type(spec).__name__}")
    if not pairs:
        raise ConfigError("no signing keys given: write keys as 'kid:secret,kid2:secret2'")
    seen: dict[str, bytes] = {}
    for kid, secret in pairs:
        if not _KID.match(kid):
            raise ConfigError(f"signing key id {kid!r}: use 1 to 16 characters of A-Z a-z 0-9 . _ -")
        if kid in seen:
            raise ConfigError(f"signing key id {kid!r} appears twice")
        if len(secret) < MIN_SECRET_BYTES:
            raise ConfigError(
                f"signing key {kid!r} is {len(secret)} bytes; use at least {MIN_SECRET_BYTES} "
                "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        seen[kid] = secret
    return KeyRing(seen, pairs[0][0])


def ephemeral_keys() -> KeyRing:
    """A random per-process key, with a warning: packets will not verify elsewhere."""
    kid = "tmp-" + secrets.token_hex(4)
    warnings.warn(
        f"voicestate: no signing keys configured; packets are signed with the per-process key {kid!r} "
        f"and will fail to verify in any other process. Set {ENV_VAR}='kid:secret' or pass "
        "open_store(signing_keys=...).",
        EphemeralKeyWarning,
        stacklevel=3,
    )
    return KeyRing({kid: secrets.token_bytes(32)}, kid, ephemeral=True)
