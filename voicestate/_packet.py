"""HandoffPacket: the signed, portable unit of a handoff, and its ``vs1.`` token.

The signature is HMAC-SHA256 over the canonical msgpack of every field except
the inline events; those are bound by the chain value, which is signed. So
inline events are verified by re-hashing the stored bytes they reuse, and the
packet never has to encode the call again. Decoding never executes code
(msgpack without extension types, JSON without hooks) and refuses anything
that is not the one canonical encoding.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import json
import math
import re
import struct
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from ._backend import StoredEvent
from ._codec import CHAIN_BYTES, canonical, chain_next, decode_event, genesis, packb, unpackb
from ._errors import InvalidEvent, PacketError
from ._events import JSON_MAP, check_field, text_ok
from ._keys import KeyRing, parse_keys
from ._state import CallState, Folder

if TYPE_CHECKING:
    from ._events import HandedOff

PACKET_VERSION = 1
TOKEN_PREFIX = "vs1."
TOKEN_MAX_CHARS = 256
TOKEN_MAC_BYTES = 16
TOKEN_MAX_EXPIRY = 2**32 - 1
"""The latest expiry a token can carry (4 bytes of Unix seconds: early 2106)."""
TOKEN_WHITESPACE = " \t\r\n\x0b\x0c"
"""Stripped from both ends of a token (one read from a SIP header may keep its CRLF)."""
MAX_SEQ = 2**63 - 1
"""The largest seq or epoch a packet may name (what every backend can store)."""
DEFAULT_MAX_BYTES = 16 * 1024 * 1024
DEFAULT_SKEW = 5.0
"""Seconds of clock skew allowed between the sender's and the receiver's clocks."""

_B64URL = re.compile(r"^[A-Za-z0-9_-]*$")
_FIELDS = (
    "call_id",
    "chain",
    "data",
    "digest",
    "epoch",
    "events",
    "expires_at",
    "from_agent",
    "issued_at",
    "key_id",
    "kind",
    "packet_id",
    "reason",
    "seq",
    "sig",
    "summary",
    "tenant",
    "to_agent",
    "v",
)


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@attrs.frozen
class HandoffPacket:
    """What a handoff hands over: who, to whom, why, and which prefix of the log (seq, chain).

    ``events`` optionally carries the log's stored bytes up to ``seq`` inline,
    so ``state`` can be read where the store is out of reach.
    """

    packet_id: str
    call_id: str
    tenant: str | None
    from_agent: str | None
    to_agent: str
    kind: str
    reason: str | None
    summary: str | None
    seq: int
    epoch: int
    chain: bytes
    issued_at: float
    expires_at: float
    key_id: str
    signature: bytes = attrs.field(default=b"", repr=False)
    events: tuple[bytes, ...] | None = attrs.field(default=None, repr=False)
    data: Mapping[str, Any] = attrs.field(factory=dict)
    digest: bytes | None = attrs.field(default=None, repr=False)
    version: int = PACKET_VERSION
    _ring: KeyRing | None = attrs.field(default=None, eq=False, repr=False, alias="ring")

    # -- signing ---------------------------------------------------------------

    def _body(self) -> bytes:
        return packb(
            [
                self.version,
                self.packet_id,
                self.call_id,
                self.tenant,
                self.from_agent,
                self.to_agent,
                self.kind,
                self.reason,
                self.summary,
                self.seq,
                self.epoch,
                self.chain,
                float(self.issued_at),
                float(self.expires_at),
                self.key_id,
                canonical(self.data),
                self.digest,
            ]
        )

    def signed(self, ring: KeyRing) -> HandoffPacket:
        """This packet signed with the ring's current key (inline events bound by their digest)."""
        unsigned = attrs.evolve(self, key_id=ring.current, ring=ring, digest=events_digest(self.events))
        return attrs.evolve(unsigned, signature=ring.sign(unsigned._body()))

    def verify(self, keys: KeyRing | str | Mapping[str, str | bytes], *, skew: float = DEFAULT_SKEW) -> None:
        """Check key id, signature, validity window and inline events; raise PacketError."""
        ring = parse_keys(keys)
        if self.version != PACKET_VERSION:
            raise PacketError(
                "unsupported_version", f"packet version {self.version}; this voicestate reads {PACKET_VERSION}"
            )
        secret = ring.secret(self.key_id)
        if secret is None:
            raise PacketError("unknown_key", ring.missing_key("packet", self.key_id))
        if not hmac.compare_digest(hmac.digest(secret, self._body(), "sha256"), self.signature):
            raise PacketError("bad_signature", "the packet's signature does not match its contents")
        _check_window(self.issued_at, self.expires_at, skew)
        # One hash over the inline events (their chain is re-hashed when ``state`` is read).
        inline = self.events is not None or self.digest is not None
        if inline and (len(self.events or ()) != self.seq or events_digest(self.events) != self.digest):
            raise PacketError(
                "chain_mismatch", "the inline events do not hash to the digest the packet was signed with"
            )

    # -- encodings -------------------------------------------------------------

    def _map(self, binary: bool) -> dict[str, Any]:
        def b(x: bytes) -> Any:
            return x if binary else _b64e(x)

        return {
            "call_id": self.call_id,
            "chain": b(self.chain),
            "data": canonical(self.data),
            "digest": None if self.digest is None else b(self.digest),
            "epoch": self.epoch,
            "events": None if self.events is None else [b(e) for e in self.events],
            "expires_at": float(self.expires_at),
            "from_agent": self.from_agent,
            "issued_at": float(self.issued_at),
            "key_id": self.key_id,
            "kind": self.kind,
            "packet_id": self.packet_id,
            "reason": self.reason,
            "seq": self.seq,
            "sig": b(self.signature),
            "summary": self.summary,
            "tenant": self.tenant,
            "to_agent": self.to_agent,
            "v": self.version,
        }

    def to_bytes(self) -> bytes:
        """msgpack: the fast encoding; inline events are the stored bytes, not re-encoded."""
        return packb(self._map(True))

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, no spaces, bytes as base64url) for interop, MCP and logs."""
        return json.dumps(self._map(False), sort_keys=True, separators=(",", ":"), ensure_ascii=True)

    def to_token(self) -> str:
        """``vs1.`` + base64url of version, key id, packet id, expiry, call id and a truncated MAC.

        At most 256 characters, for a SIP ``X-`` header or a URL. The receiver
        reads the rest from the store, so a token works only where it reaches it.
        """
        ring = self._ring
        secret = None if ring is None else ring.secret(self.key_id)
        if secret is None:
            raise PacketError(
                "unknown_key",
                "to_token needs the signing key: use a packet from handoff() or from_json/from_bytes(keys=)",
            )
        expires = self.expires_at
        if not isinstance(expires, (int, float)) or isinstance(expires, bool) or not 0 <= expires < math.inf:
            raise PacketError("malformed", f"the packet's expiry {expires!r:.40} is not a time a token can carry")
        if math.ceil(expires) > TOKEN_MAX_EXPIRY:
            raise PacketError(
                "too_large",
                f"the packet expires at {expires!r}, past {TOKEN_MAX_EXPIRY} (early 2106), the latest a token can "
                "carry: hand off with a shorter ttl, or pass the packet as JSON instead",
            )
        payload = _token_payload(self.key_id, self.packet_id, expires, self.call_id)
        token = TOKEN_PREFIX + _b64e(payload + _token_mac(secret, payload))
        if len(token) > TOKEN_MAX_CHARS:
            raise PacketError(
                "too_large",
                f"the token would be {len(token)} characters (limit {TOKEN_MAX_CHARS}): "
                "shorten the call id or pass the packet as JSON instead",
            )
        return token

    @classmethod
    def from_bytes(
        cls,
        data: bytes,
        keys: KeyRing | str | Mapping[str, str | bytes],
        *,
        skew: float = DEFAULT_SKEW,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> HandoffPacket:
        """Decode and verify a msgpack packet; raise PacketError with a precise reason."""
        packet = _decode_bytes(data, parse_keys(keys), max_bytes)
        packet.verify(packet._ring or keys, skew=skew)
        return packet

    @classmethod
    def from_json(
        cls,
        data: str | bytes,
        keys: KeyRing | str | Mapping[str, str | bytes],
        *,
        skew: float = DEFAULT_SKEW,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> HandoffPacket:
        """Decode and verify a JSON packet (its canonical form only); raise PacketError."""
        packet = _decode_json(data, parse_keys(keys), max_bytes)
        packet.verify(packet._ring or keys, skew=skew)
        return packet

    # -- inline state ------------------------------------------------------------

    @functools.cached_property
    def state(self) -> CallState | None:
        """The call as of ``seq``, read-only, when the events are inline; else None."""
        if self.events is None:
            return None
        _verify_inline(self.call_id, self.events, self.seq, self.chain)
        folder = Folder(self.call_id, genesis(self.call_id))
        head = genesis(self.call_id)
        for seq, data in enumerate(self.events, 1):
            head = chain_next(head, data)
            ev = decode_event(data, seq, head)
            folder.apply(ev, seq, head, ev.agent)
        return folder.snapshot()


def _decode_bytes(data: object, ring: KeyRing | None, max_bytes: int = DEFAULT_MAX_BYTES) -> HandoffPacket:
    """Strictly decode msgpack, without verifying (``verify`` does that)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise PacketError("malformed", f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > max_bytes:
        raise PacketError("too_large", f"{len(data)} bytes exceeds the limit of {max_bytes}")
    try:
        raw = unpackb(data)
    except Exception as exc:
        raise PacketError("malformed", f"not a msgpack packet: {type(exc).__name__} {exc}".rstrip()) from None
    packet = _from_map(raw, binary=True, ring=ring)
    if packet.to_bytes() != data:
        raise PacketError("malformed", "not the canonical msgpack encoding of a packet")
    return packet


def _decode_json(data: object, ring: KeyRing | None, max_bytes: int = DEFAULT_MAX_BYTES) -> HandoffPacket:
    """Strictly decode canonical JSON, without verifying."""
    if isinstance(data, (bytes, bytearray)):
        try:
            data = bytes(data).decode("ascii")
        except UnicodeDecodeError:
            raise PacketError("malformed", "a JSON packet is pure ASCII") from None
    if not isinstance(data, str):
        raise PacketError("malformed", f"expected str, got {type(data).__name__}")
    if len(data) > max_bytes:
        raise PacketError("too_large", f"{len(data)} characters exceeds the limit of {max_bytes}")
    try:
        raw = json.loads(data, object_pairs_hook=_no_duplicate_keys, parse_constant=reject_constant)
    except (ValueError, RecursionError) as exc:
        raise PacketError("malformed", f"not a JSON packet: {exc}") from None
    packet = _from_map(raw, binary=False, ring=ring)
    if packet.to_json() != data:
        raise PacketError("malformed", "not the canonical JSON encoding of a packet (re-serialised or edited?)")
    return packet


def peek(data: str | bytes) -> HandoffPacket | TokenClaims:
    """Decode a packet (JSON or msgpack) or a token WITHOUT verifying it: for display only.

    Strict about the encoding all the same (PacketError). Never trust what it returns.
    """
    if isinstance(data, str) and data.lstrip(TOKEN_WHITESPACE).startswith(TOKEN_PREFIX):
        return _parse_token(data)[0]
    if isinstance(data, str) or (isinstance(data, (bytes, bytearray)) and bytes(data[:1]) == b"{"):
        return _decode_json(data, None)
    return _decode_bytes(data, None)


def _b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64d(text: str, what: str) -> bytes:
    # Strict: only the URL-safe alphabet, no padding, and the canonical trailing bits.
    if not isinstance(text, str) or not _B64URL.match(text) or len(text) % 4 == 1:
        raise PacketError("malformed", f"{what} is not unpadded base64url")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise PacketError("malformed", f"{what} is not base64url") from None
    if _b64e(raw) != text:
        raise PacketError("malformed", f"{what} is not canonical base64url")
    return raw


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r:.60}")
        out[k] = v
    return out


def reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _from_map(raw: Any, *, binary: bool, ring: KeyRing | None) -> HandoffPacket:
    if not isinstance(raw, dict):
        raise PacketError("malformed", "a packet is a map")
    version = raw.get("v")
    if _is_int(version) and version != PACKET_VERSION:
        raise PacketError(
            "unsupported_version", f"packet version {version!r:.40}; this voicestate reads {PACKET_VERSION}"
        )
    if set(raw) != set(_FIELDS):
        missing, extra = set(_FIELDS) - set(raw), set(raw) - set(_FIELDS)
        # (repr as the sort key: msgpack map keys may mix str and bytes)
        unexpected = ", ".join(repr(k)[:60] for k in sorted(extra, key=repr)[:20])
        raise PacketError("malformed", f"packet fields differ: missing {sorted(missing)}, unexpected [{unexpected}]")

    def get(name: str, check: Any, what: str) -> Any:
        value = raw[name]
        if not check(value):
            got = type(value).__name__
            if isinstance(value, str) and not text_ok(value):
                got = "text with a lone surrogate"
            elif _is_int(value) and value > MAX_SEQ:
                got = f"int {value!r:.40} (at most {MAX_SEQ})"
            raise PacketError("malformed", f"{name} must be {what}, got {got}")
        return value

    def blob(name: str, value: Any) -> bytes:
        if binary:
            if not isinstance(value, bytes):
                raise PacketError("malformed", f"{name} must be bytes")
            return value
        return _b64d(value, name)

    def s(v: Any) -> bool:
        return isinstance(v, str) and text_ok(v)  # (JSON can spell a lone surrogate: "\\ud800")

    def os_(v: Any) -> bool:
        return v is None or s(v)

    def count(v: Any) -> bool:
        return _is_int(v) and 1 <= v <= MAX_SEQ

    def num(v: Any) -> bool:
        return isinstance(v, float) and math.isfinite(v)

    events_raw = raw["events"]
    events: tuple[bytes, ...] | None = None
    if events_raw is not None:
        if not isinstance(events_raw, list):
            raise PacketError("malformed", "events must be a list or null")
        if binary:
            if not all(e.__class__ is bytes for e in events_raw):
                raise PacketError("malformed", "events must be bytes")
            events = tuple(events_raw)
        else:
            events = tuple(blob("events", e) for e in events_raw)
    chain = blob("chain", raw["chain"])
    if len(chain) != CHAIN_BYTES:
        raise PacketError("malformed", f"chain must be {CHAIN_BYTES} bytes")
    seq = get("seq", count, "a positive integer")
    epoch = get("epoch", count, "a positive integer")
    if events is not None and len(events) != seq:
        raise PacketError("malformed", f"{len(events)} inline events for seq {seq}")
    data = raw["data"]
    if not isinstance(data, dict):
        raise PacketError("malformed", f"data must be a map, got {type(data).__name__}")
    try:  # plain data, as HandedOff.data is: bounded depth, string keys, 64-bit integers, valid text
        check_field("packet", "data", JSON_MAP, data)
    except InvalidEvent as exc:
        raise PacketError("malformed", str(exc)[:300]) from None
    digest_raw = raw["digest"]
    digest = None if digest_raw is None else blob("digest", digest_raw)
    if digest is not None and len(digest) != 32:
        raise PacketError("malformed", "digest must be 32 bytes")
    return HandoffPacket(
        data=data,
        digest=digest,
        packet_id=get("packet_id", s, "a string"),
        call_id=get("call_id", s, "a string"),
        tenant=get("tenant", os_, "a string or null"),
        from_agent=get("from_agent", os_, "a string or null"),
        to_agent=get("to_agent", s, "a string"),
        kind=get("kind", s, "a string"),
        reason=get("reason", os_, "a string or null"),
        summary=get("summary", os_, "a string or null"),
        seq=seq,
        epoch=epoch,
        chain=chain,
        issued_at=get("issued_at", num, "a number"),
        expires_at=get("expires_at", num, "a number"),
        key_id=get("key_id", s, "a string"),
        signature=blob("sig", raw["sig"]),
        events=events,
        version=get("v", _is_int, "an integer"),
        ring=ring,
    )


def _check_window(issued_at: float, expires_at: float, skew: float, now: float | None = None) -> None:
    now = time.time() if now is None else now
    if now > expires_at + skew:
        raise PacketError(
            "expired", f"the packet expired {now - expires_at:.1f} s ago; ask the sender for a new handoff"
        )
    if issued_at > now + skew:
        raise PacketError(
            "expired", f"the packet is not valid yet (issued {issued_at - now:.1f} s in the future): check the clocks"
        )


def events_digest(events: Sequence[bytes] | None) -> bytes | None:
    """SHA-256 over the inline events as a msgpack array: one hash for the whole call."""
    if events is None:
        return None
    # msgpack frames each event with its length: unambiguous, and packed in C.
    return hashlib.sha256(packb(list(events))).digest()


def _verify_inline(call_id: str, events: Sequence[bytes], seq: int, chain: bytes) -> None:
    head = genesis(call_id)
    for data in events:
        head = chain_next(head, data)
    if head != chain or len(events) != seq:
        raise PacketError("chain_mismatch", "the inline events do not hash to the packet's chain value")


def check_chain_at(packet: HandoffPacket, log: Sequence[StoredEvent]) -> None:
    """The receiver's check: the store's chain value at the packet's seq is the packet's."""
    if packet.seq > len(log) or log[packet.seq - 1].chain != packet.chain:
        raise PacketError(
            "chain_mismatch",
            f"the store's log at seq {packet.seq} is not the one the packet covers; "
            "the packet is from another store or the call was rewritten",
        )


# --- tokens -------------------------------------------------------------------


@attrs.frozen
class TokenClaims:
    """What a verified ``vs1.`` token says; the rest of the packet comes from the store."""

    key_id: str
    packet_id: str
    expires_at: int
    call_id: str


def _token_payload(kid: str, packet_id: str, expires_at: float, call_id: str) -> bytes:
    try:
        pid = bytes.fromhex(packet_id)
    except (TypeError, ValueError):
        pid = b""
    if len(pid) != 16:
        raise PacketError("malformed", "a token needs a 32-hex-digit packet id")
    if not isinstance(call_id, str) or not text_ok(call_id):
        raise PacketError("malformed", f"a token needs a call id of valid text, not {call_id!r:.60}")
    k = kid.encode()
    return bytes([PACKET_VERSION, len(k)]) + k + pid + struct.pack(">I", math.ceil(expires_at)) + call_id.encode()


def _token_mac(secret: bytes, payload: bytes) -> bytes:
    return hmac.digest(secret, b"vs1-token\x00" + payload, "sha256")[:TOKEN_MAC_BYTES]


def decode_token(
    token: str, keys: KeyRing | str | Mapping[str, str | bytes], *, skew: float = DEFAULT_SKEW
) -> TokenClaims:
    """Verify a ``vs1.`` token's MAC and expiry; raise PacketError with a precise reason.

    Whitespace around the token (a SIP header's trailing CRLF, spaces) is ignored.
    """
    claims, payload, mac = _parse_token(token)
    ring = parse_keys(keys)
    secret = ring.secret(claims.key_id)
    if secret is None:
        raise PacketError("unknown_key", ring.missing_key("token", claims.key_id))
    if not hmac.compare_digest(_token_mac(secret, payload), mac):
        raise PacketError("bad_signature", "the token's MAC does not match its contents")
    _check_window(0.0, float(claims.expires_at), skew)
    return claims


def _parse_token(token: str) -> tuple[TokenClaims, bytes, bytes]:
    """Strictly parse a token's structure: (claims, signed payload, MAC), unverified."""
    if not isinstance(token, str):
        raise PacketError("malformed", f"a token is a string, got {type(token).__name__}")
    token = token.strip(TOKEN_WHITESPACE)
    if len(token) > TOKEN_MAX_CHARS:
        raise PacketError("too_large", f"a token has at most {TOKEN_MAX_CHARS} characters, this one {len(token)}")
    if not token.startswith(TOKEN_PREFIX):
        if re.match(r"^vs\d+\.", token):
            raise PacketError(
                "unsupported_version", f"token version {token.split('.')[0]!r}; this voicestate reads vs1"
            )
        raise PacketError("malformed", "a token starts with 'vs1.'")
    raw = _b64d(token[len(TOKEN_PREFIX) :], "token")
    if len(raw) < 2:
        raise PacketError("malformed", "the token is truncated")
    if raw[0] != PACKET_VERSION:
        raise PacketError("unsupported_version", f"token version {raw[0]}; this voicestate reads {PACKET_VERSION}")
    klen = raw[1]
    fixed = 2 + klen + 16 + 4
    if len(raw) < fixed + 1 + TOKEN_MAC_BYTES:
        raise PacketError("malformed", "the token is truncated")
    payload, mac = raw[:-TOKEN_MAC_BYTES], raw[-TOKEN_MAC_BYTES:]
    try:
        kid = raw[2 : 2 + klen].decode()
        call_id = payload[fixed:].decode()
    except UnicodeDecodeError:
        raise PacketError("malformed", "the token's key id or call id is not UTF-8") from None
    packet_id = raw[2 + klen : 2 + klen + 16].hex()
    (expires,) = struct.unpack(">I", raw[2 + klen + 16 : fixed])
    return TokenClaims(kid, packet_id, expires, call_id), payload, mac


def unsigned_packet(
    handed: HandedOff,
    *,
    call_id: str,
    tenant: str | None,
    seq: int,
    epoch: int,
    chain: bytes,
    key_id: str,
    events: tuple[bytes, ...] | None = None,
) -> HandoffPacket:
    """The packet a ``HandedOff`` event describes, at the given position of the log."""
    return HandoffPacket(
        packet_id=handed.packet_id,
        call_id=call_id,
        tenant=tenant,
        from_agent=handed.agent,
        to_agent=handed.to_agent,
        kind=handed.kind,
        reason=handed.reason,
        summary=handed.summary,
        seq=seq,
        epoch=epoch,
        chain=chain,
        issued_at=handed.at,
        expires_at=handed.expires_at,
        key_id=key_id,
        data=dict(handed.data),
        events=events,
    )


def packet_for(
    state: CallState, handed: HandedOff, epoch: int, ring: KeyRing, events: tuple[bytes, ...] | None = None
) -> HandoffPacket:
    """The signed packet of a recorded ``HandedOff`` (also how a token's packet is rebuilt)."""
    assert handed.seq is not None and handed.chain is not None
    packet = unsigned_packet(
        handed,
        call_id=state.call_id,
        tenant=state.tenant,
        seq=handed.seq,
        epoch=epoch,
        chain=handed.chain,
        key_id=ring.current,
        events=events,
    )
    return packet.signed(ring)
