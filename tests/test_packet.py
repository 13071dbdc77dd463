"""HandoffPacket and ``vs1.`` tokens: every PacketError reason, tamper resistance,
key rotation, ephemeral keys, inline state and canonical encodings."""

from __future__ import annotations

import ast
import base64
import json
import math
import time
import tokenize
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import msgpack
import pytest
from conftest import memory_url
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import voicestate as vs
import voicestate.plugins as vsp
from voicestate import HandoffPacket, PacketError
from voicestate.plugins import decode_token

KEYS = "k1:packet-test-secret-0123456789"
SAME_KID_OTHER_SECRET = "k1:a-different-secret-01234567"
FOREIGN_KEYS = "k9:foreign-secret-0123456789abc"
OLD = "old:the-old-secret-0123456789"
NEW = "new:the-new-secret-0123456789"
B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

PROPERTY = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


# --- helpers ----------------------------------------------------------------------------


def _triage(store: vs.Store, call_id: str = "call-1") -> vs.Session:
    s = store.open(call_id, agent="triage", meta={"channel": "sip"})
    s.record(vs.UserSpoke("I was charged twice"))
    turn = s.record(vs.AgentSpoke("Let me pull up your invoices and"))
    s.record(vs.Interrupted(turn=turn, heard="Let me pull up", heard_ms=910))
    s.record(vs.ToolCalled("t1", "lookup_invoices", {"account": "A-77"}))
    s.record(vs.SlotsSet({"account_id": "A-77"}))
    return s


def _resign(packet: HandoffPacket, keys: str = KEYS, **changes: Any) -> HandoffPacket:
    """What a sender holding ``keys`` would emit for a packet with ``changes``."""
    return attrs.evolve(packet, **changes).signed(vsp.parse_keys(keys))


def _canonical_json(raw: dict[str, Any]) -> str:
    return json.dumps(raw, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _edit_json(packet: HandoffPacket, **changes: Any) -> str:
    """The packet's JSON with fields replaced, re-serialised canonically (only the edit differs)."""
    raw = json.loads(packet.to_json())
    raw.update(changes)
    return _canonical_json(raw)


def _edit_bytes(packet: HandoffPacket, **changes: Any) -> bytes:
    raw = msgpack.unpackb(packet.to_bytes(), raw=False)
    raw.update(changes)
    return msgpack.packb(dict(sorted(raw.items())), use_bin_type=True)


def _token_parts(token: str) -> bytes:
    body = token[len("vs1.") :]
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))


def _token_from(raw: bytes) -> str:
    return "vs1." + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _reject(store: vs.Store, call_id: str, target: Any, agent: str, reason: str) -> PacketError:
    """Resume must fail with ``reason`` and leave the stored call exactly as it was."""
    before = store.events(call_id)
    with pytest.raises(PacketError) as err:
        store.resume(target, agent=agent)
    assert err.value.reason == reason, str(err.value)
    assert store.events(call_id) == before
    return err.value


# --- 1. every PacketError reason ------------------------------------------------------------


class TestMalformed:
    @pytest.mark.parametrize(
        ("edit", "needle"),
        [
            ({"seq": "7"}, "seq must be a positive integer, got str"),
            ({"seq": 0}, "seq must be a positive integer"),
            ({"epoch": True}, "epoch must be a positive integer, got bool"),
            ({"to_agent": None}, "to_agent must be a string, got NoneType"),
            ({"issued_at": 1}, "issued_at must be a number, got int"),
            ({"chain": "AAAA"}, "chain must be 16 bytes"),
            ({"chain": "sBaUUthMPb2OLKMMc9/Ocw=="}, "chain is not unpadded base64url"),
            ({"sig": 12}, "sig is not unpadded base64url"),
            ({"events": "nope"}, "events must be a list or null"),
        ],
    )
    def test_json_field_types(self, store: vs.Store, edit: dict[str, Any], needle: str) -> None:
        packet = _triage(store).handoff(to="billing")
        with pytest.raises(PacketError) as err:
            HandoffPacket.from_json(_edit_json(packet, **edit), KEYS)
        assert err.value.reason == "malformed"
        assert needle in str(err.value)

    def test_json_missing_and_unexpected_fields(self, store: vs.Store) -> None:
        packet = _triage(store).handoff(to="billing")
        raw = json.loads(packet.to_json())
        del raw["summary"]
        raw["admin"] = True
        with pytest.raises(PacketError) as err:
            HandoffPacket.from_json(_canonical_json(raw), KEYS)
        assert err.value.reason == "malformed"
        assert "missing ['summary']" in str(err.value)
        assert "unexpected ['admin']" in str(err.value)

    @pytest.mark.parametrize(
        ("data", "needle"),
        [
            ("", "not a JSON packet"),
            ("[1, 2]", "a packet is a map"),
            ("{", "not a JSON packet"),
            ("[" * 100_000, "not a JSON packet"),  # deep nesting: refused, not a crash
            (b"{\xff}", "pure ASCII"),
            (42, "expected str, got int"),
        ],
    )
    def test_json_garbage(self, data: Any, needle: str) -> None:
        with pytest.raises(PacketError) as err:
            HandoffPacket.from_json(data, KEYS)
        assert err.value.reason == "malformed"
        assert needle in str(err.value)

    @pytest.mark.parametrize(
        ("data", "needle"),
        [
            (b"", "not a msgpack packet"),
            (b"\xc1", "not a msgpack packet"),
            (b"\xdd\xff\xff\xff\xff", "not a msgpack packet"),  # a 4G-entry array: refused up front
            (b"\x92\x01\x02", "a packet is a map"),
            (b"\x81\x01\x02", "not a msgpack packet"),  # int map key
            (b"\xd4\x01\x00", "not a msgpack packet"),  # extension types are never decoded
            ("{}", "expected bytes, got str"),
        ],
    )
    def test_msgpack_garbage(self, data: Any, needle: str) -> None:
        with pytest.raises(PacketError) as err:
            HandoffPacket.from_bytes(data, KEYS)
        assert err.value.reason == "malformed"
        assert needle in str(err.value)

    def test_msgpack_trailing_and_truncated(self, store: vs.Store) -> None:
        data = _triage(store).handoff(to="billing").to_bytes()
        for bad in (data + b"\xc0", data[:-1]):
            with pytest.raises(PacketError) as err:
                HandoffPacket.from_bytes(bad, KEYS)
            assert err.value.reason == "malformed"
            assert "not a msgpack packet" in str(err.value)

    def test_msgpack_str_where_bytes_belong(self, store: vs.Store) -> None:
        packet = _triage(store).handoff(to="billing")
        with pytest.raises(PacketError) as err:
            HandoffPacket.from_bytes(_edit_bytes(packet, chain=packet.to_json()[:16]), KEYS)
        assert err.value.reason == "malformed"
        assert "chain must be bytes" in str(err.value)

    def test_token_malformed(self, store: vs.Store) -> None:
        token = _triage(store).handoff(to="billing").to_token()
        cases = {
            "x" + token: "a token starts with 'vs1.'",
            "vs1.": "truncated",
            token[:40]: "truncated",
            token + "=": "not unpadded base64url",
            token[:45]: "not unpadded base64url",  # 4n+1 characters
            token[:-1] + "é": "not unpadded base64url",
        }
        for bad, needle in cases.items():
            with pytest.raises(PacketError) as err:
                decode_token(bad, KEYS)
            assert err.value.reason == "malformed", bad
            assert needle in str(err.value), bad

    def test_token_non_canonical_trailing_bits(self, store: vs.Store) -> None:
        token = _triage(store).handoff(to="billing").to_token()
        body = token[4:]
        assert len(body) % 4 in (2, 3)  # 46 bytes for this kid and call id: the last character has spare bits
        alt = B64URL[B64URL.index(body[-1]) ^ 1]  # flip the lowest, unused bit
        bad = "vs1." + body[:-1] + alt
        assert _token_parts(bad) == _token_parts(token)  # the same bytes, another spelling
        with pytest.raises(PacketError) as err:
            decode_token(bad, KEYS)
        assert err.value.reason == "malformed"
        assert "not canonical base64url" in str(err.value)

    def test_store_resume_with_malformed_json(self, store: vs.Store) -> None:
        packet = _triage(store).handoff(to="billing")
        _reject(store, "call-1", packet.to_json()[:-1], "billing", "malformed")
        _reject(store, "call-1", packet.to_bytes()[:-1], "billing", "malformed")


class TestBadSignature:
    def test_json_field_edited(self, store: vs.Store) -> None:
        packet = _triage(store).handoff(to="billing", reason="double charge")
        with pytest.raises(PacketError) as err:
            HandoffPacket.from_json(_edit_json(packet, reason="refund everything"), KEYS)
        assert err.value.reason == "bad_signature"
        assert "signature does not match" in str(err.value)

    @pytest.mark.parametrize(
        "edit",
        [
            {"to_agent": "sales"},
            {"seq": 2},
            {"epoch": 2},
            {"expires_at": 4102444800.0},
            {"call_id": "call-2"},
            {"tenant": "acme"},
            {"from_agent": None},
            {"summary": "VIP, waive fees"},
        ],
    )
    def test_msgpack_field_edited(self, store: vs.Store, edit: dict[str, Any]) -> None:
        packet = _triage(store).handoff(to="billing")
        with pytest.raises(PacketError) as err:
            HandoffPacket.from_bytes(_edit_bytes(packet, **edit), KEYS)
        assert err.value.reason == "bad_signature"
        assert "signature does not match its contents" in str(err.value)

    def test_same_key_id_other_secret(self, store: vs.Store) -> None:
        packet = _triage(store).handoff(to="billing")
        with pytest.raises(PacketError) as err:
            HandoffPacket.from_json(packet.to_json(), SAME_KID_OTHER_SECRET)
        assert err.value.reason == "bad_signature"
        with pytest.raises(PacketError) as err:
            decode_token(packet.to_token(), SAME_KID_OTHER_SECRET)
        assert err.value.reason == "bad_signature"
        assert "MAC does not match" in str(err.value)

    def test_tampered_packet_object_through_resume(self, store: vs.Store) -> None:
        packet = _triage(store).handoff(to="billing")
        forged = attrs.evolve(packet, to_agent="mallory")  # not re-signed
        err = _reject(store, "call-1", forged, "mallory", "bad_signature")
        assert "signature" in str(err)
        assert store.load("call-1").owner == "triage"

    def test_token_field_edited(self, store: vs.Store) -> None:
        token = _triage(store).handoff(to="billing").to_token()
        raw = bytearray(_token_parts(token))
        raw[-17] ^= 0x01  # last byte of the call id, just before the MAC
        with pytest.raises(PacketError) as err:
            decode_token(_token_from(bytes(raw)), KEYS)
        assert err.value.reason == "bad_signature"
        assert "MAC" in str(err.value)


class TestUnknownKey:
    def test_from_json_and_bytes(self, store: vs.Store) -> None:
        packet = _triage(store).handoff(to="billing")
        for decode, data in (
            (HandoffPacket.from_json, packet.to_json()),
            (HandoffPacket.from_bytes, packet.to_bytes()),
        ):
            with pytest.raises(PacketError) as err:
                decode(data, FOREIGN_KEYS)  # type: ignore[operator]
            assert err.value.reason == "unknown_key"
            assert "'k1'" in str(err.value)
            assert "['k9']" in str(err.value)  # says which keys the receiver has

    def test_token(self, store: vs.Store) -> None:
        token = _triage(store).handoff(to="billing").to_token()
        with pytest.raises(PacketError) as err:
            decode_token(token, FOREIGN_KEYS)
        assert err.value.reason == "unknown_key"
        assert "'k1'" in str(err.value)

    def test_resume_in_a_store_with_other_keys(self, store: vs.Store) -> None:
        packet = _triage(store).handoff(to="billing")
        other = vs.open_store(store.tiers.all[0].url, signing_keys=FOREIGN_KEYS)  # same calls, other keys
        try:
            for target in (packet, packet.to_json(), packet.to_bytes(), packet.to_token()):
                _reject(other, "call-1", target, "billing", "unknown_key")
        finally:
            other.close()

    def test_to_token_without_the_signing_key(self, store: vs.Store) -> None:
        packet = _triage(store).handoff(to="billing")
        unsigned = attrs.evolve(packet, ring=None)
        with pytest.raises(PacketError) as err:
            unsigned.to_token()
        assert err.value.reason == "unknown_key"
        assert "signing key" in str(err.value)


class TestExpired:
    def test_packet_past_its_expiry(self, store: vs.Store) -> None:
        packet = _triage(store).handoff(to="billing", ttl=0.05)
        time.sleep(0.1)
        with pytest.raises(PacketError) as err:
            HandoffPacket.from_json(packet.to_json(), KEYS, skew=0.0)
        assert err.value.reason == "expired"
        assert "expired" in str(err.value)
        assert "s ago" in str(err.value)
        # the same packet is still inside the default skew allowance
        assert HandoffPacket.from_json(packet.to_json(), KEYS) == packet

    def test_skew_allowance_both_ways(self, store: vs.Store) -> None:
        packet = _triage(store).handoff(to="billing")
        now = time.time()
        late = _resign(packet, expires_at=now - 2.0)
        early = _resign(packet, issued_at=now + 2.0, expires_at=now + 60.0)
        for p in (late, early):
            assert HandoffPacket.from_bytes(p.to_bytes(), KEYS, skew=5.0) == p
            with pytest.raises(PacketError) as err:
                HandoffPacket.from_bytes(p.to_bytes(), KEYS, skew=0.5)
            assert err.value.reason == "expired"

    def test_not_valid_yet(self, store: vs.Store) -> None:
        packet = _triage(store).handoff(to="billing")
        future = _resign(packet, issued_at=time.time() + 3600, expires_at=time.time() + 3720)
        with pytest.raises(PacketError) as err:
            HandoffPacket.from_json(future.to_json(), KEYS)
        assert err.value.reason == "expired"
        assert "not valid yet" in str(err.value)
        assert "clocks" in str(err.value)

    def test_expired_token(self, store: vs.Store) -> None:
        packet = _triage(store).handoff(to="billing")
        stale = _resign(packet, expires_at=time.time() - 60)
        with pytest.raises(PacketError) as err:
            decode_token(stale.to_token(), KEYS)
        assert err.value.reason == "expired"
        assert "s ago" in str(err.value)

    def test_expired_packet_through_resume(self) -> None:
        store = vs.open_store(memory_url(), signing_keys=KEYS, skew=0.0)
        try:
            packet = _triage(store).handoff(to="billing", ttl=0.05)
            time.sleep(0.1)
            _reject(store, "call-1", packet.to_json(), "billing", "expired")
            _reject(store, "call-1", packet, "billing", "expired")
            assert store.load("call-1").owner == "triage"
        finally:
            store.close()


class TestWrongTarget:
    @pytest.mark.parametrize("form", ["object", "json", "bytes", "token"])
    def test_resume_as_someone_else(self, store: vs.Store, form: str) -> None:
        packet = _triage(store).handoff(to="billing")
        target = {
            "object": packet,
            "json": packet.to_json(),
            "bytes": packet.to_bytes(),
            "token": packet.to_token(),
        }[form]
        err = _reject(store, "call-1", target, "sales", "wrong_target")
        assert "'billing'" in str(err)
        assert "'sales'" in str(err)
        assert store.resume(target, agent="billing").state.owner == "billing"


class TestChainMismatch:
    def test_packet_from_another_store(self) -> None:
        a = vs.open_store(memory_url(), signing_keys=KEYS)
        b = vs.open_store(memory_url(), signing_keys=KEYS)
        try:
            packet = _triage(a).handoff(to="billing")
            sb = b.open("call-1", agent="triage")  # same id, another history
            for i in range(10):
                sb.record(vs.UserSpoke(f"other {i}"))
            sb.handoff(to="billing")
            err = _reject(b, "call-1", packet.to_json(), "billing", "chain_mismatch")
            assert f"seq {packet.seq}" in str(err)
            assert "another store" in str(err)
        finally:
            a.close()
            b.close()

    def test_packet_beyond_the_stored_log(self) -> None:
        a = vs.open_store(memory_url(), signing_keys=KEYS)
        b = vs.open_store(memory_url(), signing_keys=KEYS)
        try:
            packet = _triage(a).handoff(to="billing")
            b.open("call-1", agent="triage")  # one event only
            _reject(b, "call-1", packet.to_bytes(), "billing", "chain_mismatch")
        finally:
            a.close()
            b.close()

    def test_tampered_inline_event(self, store: vs.Store) -> None:
        packet = _triage(store).handoff(to="billing", inline=True)
        assert packet.events is not None
        ev = bytearray(packet.events[1])
        ev[ev.index(b"charged")] ^= 0x20  # "Charged": same length, same msgpack shape
        tampered = attrs.evolve(packet, events=(packet.events[0], bytes(ev), *packet.events[2:]))
        with pytest.raises(PacketError) as err:
            HandoffPacket.from_bytes(tampered.to_bytes(), KEYS)
        assert err.value.reason == "chain_mismatch"
        assert "inline events do not hash" in str(err.value)
        with pytest.raises(PacketError) as err:
            HandoffPacket.from_json(tampered.to_json(), KEYS)
        assert err.value.reason == "chain_mismatch"
        _reject(store, "call-1", tampered, "billing", "chain_mismatch")


class TestUnsupportedVersion:
    def test_future_packet_version(self, store: vs.Store) -> None:
        packet = _triage(store).handoff(to="billing")
        v2 = _resign(packet, version=2)
        for decode, data in ((HandoffPacket.from_json, v2.to_json()), (HandoffPacket.from_bytes, v2.to_bytes())):
            with pytest.raises(PacketError) as err:
                decode(data, KEYS)  # type: ignore[operator]
            assert err.value.reason == "unsupported_version"
            assert "packet version 2" in str(err.value)
            assert "reads 1" in str(err.value)
        _reject(store, "call-1", v2, "billing", "unsupported_version")

    def test_future_token_prefix(self, store: vs.Store) -> None:
        token = _triage(store).handoff(to="billing").to_token()
        with pytest.raises(PacketError) as err:
            decode_token("vs2." + token[4:], KEYS)
        assert err.value.reason == "unsupported_version"
        assert "'vs2'" in str(err.value)

    def test_future_token_version_byte(self, store: vs.Store) -> None:
        token = _triage(store).handoff(to="billing").to_token()
        raw = bytearray(_token_parts(token))
        assert raw[0] == 1
        raw[0] = 2
        with pytest.raises(PacketError) as err:
            decode_token(_token_from(bytes(raw)), KEYS)
        assert err.value.reason == "unsupported_version"
        assert "token version 2" in str(err.value)


class TestTooLarge:
    def test_max_bytes(self, store: vs.Store) -> None:
        packet = _triage(store).handoff(to="billing", inline=True)
        data, text = packet.to_bytes(), packet.to_json()
        assert HandoffPacket.from_bytes(data, KEYS, max_bytes=len(data)) == packet
        assert HandoffPacket.from_json(text, KEYS, max_bytes=len(text)) == packet
        with pytest.raises(PacketError) as err:
            HandoffPacket.from_bytes(data, KEYS, max_bytes=len(data) - 1)
        assert err.value.reason == "too_large"
        assert f"{len(data)} bytes exceeds the limit of {len(data) - 1}" in str(err.value)
        with pytest.raises(PacketError) as err:
            HandoffPacket.from_json(text, KEYS, max_bytes=100)
        assert err.value.reason == "too_large"
        assert "limit of 100" in str(err.value)

    def test_token_for_a_long_non_ascii_call_id(self, store: vs.Store) -> None:
        call_id = "é" * 128  # 128 printable characters, 256 UTF-8 bytes
        packet = store.open(call_id, agent="triage").handoff(to="billing")
        with pytest.raises(PacketError) as err:
            packet.to_token()
        assert err.value.reason == "too_large"
        assert "limit 256" in str(err.value)
        assert "shorten the call id" in str(err.value)
        # the packet itself still travels as JSON
        assert store.resume(packet.to_json(), agent="billing").state.owner == "billing"

    def test_token_longer_than_256_characters(self, store: vs.Store) -> None:
        token = _triage(store).handoff(to="billing").to_token()
        with pytest.raises(PacketError) as err:
            decode_token(token + "A" * (257 - len(token)), KEYS)
        assert err.value.reason == "too_large"
        assert "at most 256 characters" in str(err.value)


# --- 2. any single change is rejected ------------------------------------------------------


@pytest.fixture(scope="module")
def sample() -> Iterator[dict[str, Any]]:
    store = vs.open_store(memory_url(), signing_keys=KEYS)
    try:
        plain = _triage(store, "call-p").handoff(to="billing", ttl=3600, summary="café ☕ refund")
        inline = _triage(store, "call-i").handoff(to="billing", ttl=3600, inline=True)
        token_call = _triage(store, "call-t")
        token = token_call.handoff(to="billing", ttl=3600).to_token()
        yield {
            "store": store,
            "packets": {"plain": plain, "inline": inline},
            "token": token,
            "token_events": store.events("call-t"),
        }
    finally:
        store.close()


def _mutate_bytes(data: bytes, draw: st.DataObject) -> bytes:
    kind = draw.draw(st.sampled_from(["flip", "insert", "delete"]))
    if kind == "insert":
        i = draw.draw(st.integers(0, len(data)))
        return data[:i] + bytes([draw.draw(st.integers(0, 255))]) + data[i:]
    i = draw.draw(st.integers(0, len(data) - 1))
    if kind == "delete":
        return data[:i] + data[i + 1 :]
    mask = draw.draw(st.sampled_from([1, 2, 4, 8, 16, 32, 64, 128]) | st.integers(1, 255))
    return data[:i] + bytes([data[i] ^ mask]) + data[i + 1 :]


def _mutate_text(text: str, draw: st.DataObject, alphabet: str) -> str:
    """One flip, insertion or deletion of a character; ``alphabet`` (and whitespace) weighted up."""
    chars = st.sampled_from(alphabet) | st.sampled_from(" \t\r\n") | st.characters()
    kind = draw.draw(st.sampled_from(["flip", "bitflip", "insert", "delete"]))
    if kind == "insert":
        i = draw.draw(st.integers(0, len(text)))
        return text[:i] + draw.draw(chars) + text[i:]
    i = draw.draw(st.integers(0, len(text) - 1))
    if kind == "delete":
        return text[:i] + text[i + 1 :]
    if kind == "bitflip" and text[i] in B64URL:  # one bit of one base64url digit
        c = B64URL[B64URL.index(text[i]) ^ (1 << draw.draw(st.integers(0, 5)))]
    else:
        c = draw.draw(chars.filter(lambda c: c != text[i]))
    return text[:i] + c + text[i + 1 :]


JSON_ALPHABET = B64URL + '{}[]:,."\\ 0123456789eE+-tnulfrs=/'


@pytest.mark.parametrize("which", ["plain", "inline"])
@PROPERTY
@given(draw=st.data())
def test_any_byte_change_to_msgpack_is_rejected(sample: dict[str, Any], which: str, draw: st.DataObject) -> None:
    data = sample["packets"][which].to_bytes()
    bad = _mutate_bytes(data, draw)
    assert bad != data
    with pytest.raises(PacketError):
        HandoffPacket.from_bytes(bad, KEYS)


@pytest.mark.parametrize("which", ["plain", "inline"])
@PROPERTY
@given(draw=st.data())
def test_any_character_change_to_json_is_rejected(sample: dict[str, Any], which: str, draw: st.DataObject) -> None:
    text = sample["packets"][which].to_json()
    bad = _mutate_text(text, draw, JSON_ALPHABET)
    assert bad != text
    with pytest.raises(PacketError):
        HandoffPacket.from_json(bad, KEYS)
    with pytest.raises(PacketError):  # also when handed over as bytes
        HandoffPacket.from_json(bad.encode("utf-8", "surrogatepass"), KEYS)


TOKEN_WHITESPACE = " \t\r\n\x0b\x0c"  # stripped from a token's ends (a SIP header's CRLF, spaces)


@PROPERTY
@given(draw=st.data())
def test_any_character_change_to_a_token_is_rejected(sample: dict[str, Any], draw: st.DataObject) -> None:
    token = sample["token"]
    bad = _mutate_text(token, draw, B64URL + "=+/.")
    assert bad != token
    if bad.strip(TOKEN_WHITESPACE) == token:  # only whitespace added at an end: the same token
        assert decode_token(bad, KEYS) == decode_token(token, KEYS)
        return
    with pytest.raises(PacketError):
        decode_token(bad, KEYS)


@PROPERTY
@given(draw=st.data())
def test_any_changed_token_fails_to_resume(sample: dict[str, Any], draw: st.DataObject) -> None:
    store: vs.Store = sample["store"]
    token = sample["token"]
    bad = _mutate_text(token, draw, B64URL + "=+/.")
    if bad.strip(TOKEN_WHITESPACE) == token:  # the same token (it would redeem the call: not here)
        assert decode_token(bad, KEYS) == decode_token(token, KEYS)
        return
    with pytest.raises(vs.VoiceStateError):
        store.resume(bad, agent="billing")
    assert store.events("call-t") == sample["token_events"]


@pytest.mark.parametrize("encoding", ["bytes", "json"])
@PROPERTY
@given(draw=st.data())
def test_any_change_to_an_inline_event_is_rejected(sample: dict[str, Any], encoding: str, draw: st.DataObject) -> None:
    packet: HandoffPacket = sample["packets"]["inline"]
    assert packet.events is not None
    i = draw.draw(st.integers(0, len(packet.events) - 1))
    events = list(packet.events)
    events[i] = _mutate_bytes(events[i], draw)
    tampered = attrs.evolve(packet, events=tuple(events))  # the signature is kept
    decode, data = (
        (HandoffPacket.from_bytes, tampered.to_bytes())
        if encoding == "bytes"
        else (HandoffPacket.from_json, tampered.to_json())
    )
    with pytest.raises(PacketError) as err:
        decode(data, KEYS)  # type: ignore[operator]
    assert err.value.reason == "chain_mismatch"


# --- 3. keys and rotation -----------------------------------------------------------------


def test_rotation_old_packets_verify_and_newest_signs() -> None:
    url = memory_url()
    old_store = vs.open_store(url, signing_keys=OLD)
    rotated = vs.open_store(url, signing_keys=f"{NEW},{OLD}")
    try:
        packet = _triage(old_store).handoff(to="billing")
        assert packet.key_id == "old"
        assert HandoffPacket.from_json(packet.to_json(), f"{NEW},{OLD}") == packet
        assert decode_token(packet.to_token(), f"{NEW},{OLD}").key_id == "old"
        b = rotated.resume(packet.to_bytes(), agent="billing")  # signed before the rotation
        assert b.state.owner == "billing"
        fresh = b.handoff(to="sales")
        assert fresh.key_id == "new"
        assert rotated.keys.current == "new"
        assert decode_token(fresh.to_token(), f"{NEW},{OLD}").key_id == "new"
        # the old ring cannot verify the newest key: unknown, not silently trusted
        with pytest.raises(PacketError) as err:
            HandoffPacket.from_json(fresh.to_json(), OLD)
        assert err.value.reason == "unknown_key"
        assert "'new'" in str(err.value)
    finally:
        old_store.close()
        rotated.close()


def test_retired_key_gives_unknown_key() -> None:
    url = memory_url()
    old_store = vs.open_store(url, signing_keys=OLD)
    retired = vs.open_store(url, signing_keys=NEW)
    try:
        packet = _triage(old_store).handoff(to="billing")
        err = _reject(retired, "call-1", packet.to_json(), "billing", "unknown_key")
        assert "'old'" in str(err)
        assert "['new']" in str(err)
        _reject(retired, "call-1", packet.to_token(), "billing", "unknown_key")
    finally:
        old_store.close()
        retired.close()


def test_keys_as_a_mapping() -> None:
    new_secret = NEW.split(":", 1)[1]
    old_secret = OLD.split(":", 1)[1].encode()
    mapping: dict[str, str | bytes] = {"new": new_secret, "old": old_secret}
    ring = vsp.parse_keys(mapping)
    assert ring.current == "new"
    assert set(ring.keys) == {"new", "old"}
    url = memory_url()
    old_store = vs.open_store(url, signing_keys=OLD)
    mapped = vs.open_store(url, signing_keys=mapping)
    try:
        packet = _triage(old_store).handoff(to="billing")
        assert HandoffPacket.from_bytes(packet.to_bytes(), mapping) == packet
        b = mapped.resume(packet, agent="billing")
        fresh = b.handoff(to="sales")
        assert fresh.key_id == "new"
        # the mapping and the equivalent string are the same keys
        assert HandoffPacket.from_json(fresh.to_json(), f"{NEW},{OLD}") == fresh
    finally:
        old_store.close()
        mapped.close()


BAD_KEY_SPECS: list[tuple[Any, str]] = [
    ("k1:short", "at least 16"),
    ("bad kid!:0123456789abcdef0123", "signing key id 'bad kid!'"),
    ("seventeen-chars-x:0123456789abcdef0123", "1 to 16 characters"),
    ("k1", "has no secret"),
    ("k1:0123456789abcdef0123,k1:abcdef0123456789abcd", "appears twice"),
    ("", "no signing keys"),
    ({}, "no signing keys"),
    ({"k1": b"short"}, "at least 16"),
    ({1: "0123456789abcdef0123"}, "signing key id"),
    ({"k1": 32}, "k1"),
    (42, "not int"),
]


BAD_KEY_IDS = [
    "short-secret",
    "bad-kid",
    "long-kid",
    "missing-colon",
    "duplicate-kid",
    "empty",
    "empty-mapping",
    "mapping-short-secret",
    "mapping-int-kid",
    "mapping-int-secret",
    "not-a-spec",
]


@pytest.mark.parametrize(("spec", "needle"), BAD_KEY_SPECS, ids=BAD_KEY_IDS)
def test_bad_key_specs_are_config_errors(spec: Any, needle: str) -> None:
    with pytest.raises(vs.ConfigError) as err:
        vsp.parse_keys(spec)
    assert needle in str(err.value)
    with pytest.raises(vs.ConfigError):
        vs.open_store(memory_url(), signing_keys=spec)


@pytest.mark.parametrize(("spec", "needle"), BAD_KEY_SPECS[:5], ids=BAD_KEY_IDS[:5])
def test_bad_key_spec_in_the_environment(monkeypatch: pytest.MonkeyPatch, spec: str, needle: str) -> None:
    monkeypatch.setenv("VOICESTATE_SIGNING_KEYS", spec)
    with pytest.raises(vs.ConfigError) as err:
        vs.open_store(memory_url())
    assert needle in str(err.value)


@pytest.mark.parametrize(("spec", "needle"), [BAD_KEY_SPECS[0], BAD_KEY_SPECS[4]], ids=[BAD_KEY_IDS[0], BAD_KEY_IDS[4]])
def test_bad_keys_given_to_a_decoder_are_config_errors(store: vs.Store, spec: Any, needle: str) -> None:
    """A receiver's own bad key spec is a configuration error, not a fault of the packet."""
    packet = _triage(store).handoff(to="billing")
    with pytest.raises(vs.ConfigError) as err:
        decode_token(packet.to_token(), spec)
    assert needle in str(err.value)
    with pytest.raises(vs.ConfigError) as err:
        HandoffPacket.from_json(packet.to_json(), spec)
    assert needle in str(err.value)
    with pytest.raises(vs.ConfigError) as err:
        HandoffPacket.from_bytes(packet.to_bytes(), spec)
    assert needle in str(err.value)


def test_keys_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICESTATE_SIGNING_KEYS", f"{NEW},{OLD}")
    env_store = vs.open_store(memory_url())
    try:
        packet = _triage(env_store).handoff(to="billing")
        assert packet.key_id == "new"
        assert HandoffPacket.from_json(packet.to_json(), NEW) == packet
    finally:
        env_store.close()


# --- 4. no keys configured ------------------------------------------------------------------


def test_no_keys_warns_and_fails_loudly_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VOICESTATE_SIGNING_KEYS", raising=False)
    monkeypatch.delenv("VOICESTATE_STORE", raising=False)
    with pytest.warns(vs.EphemeralKeyWarning, match="no signing keys configured") as record:
        mine = vs.open_store()
    assert record[0].filename == __file__  # points at the caller's line
    assert "VOICESTATE_SIGNING_KEYS" in str(record[0].message)
    with pytest.warns(vs.EphemeralKeyWarning):
        theirs = vs.open_store()
    keyed = vs.open_store(memory_url(), signing_keys=KEYS)
    try:
        assert mine.keys.ephemeral
        assert mine.keys.current != theirs.keys.current
        packet = _triage(mine, f"eph-{uuid.uuid4().hex}").handoff(to="billing")
        assert packet.key_id == mine.keys.current
        assert str(packet.key_id) in str(record[0].message)
        for keys in (theirs.keys, keyed.keys):
            with pytest.raises(PacketError) as err:
                HandoffPacket.from_json(packet.to_json(), keys)
            assert err.value.reason == "unknown_key"
            assert repr(packet.key_id) in str(err.value)
            with pytest.raises(PacketError) as err:
                decode_token(packet.to_token(), keys)
            assert err.value.reason == "unknown_key"
        # within the process that signed it, the packet works
        assert mine.resume(packet.to_json(), agent="billing").state.owner == "billing"
    finally:
        mine.close()
        theirs.close()
        keyed.close()


def test_ephemeral_packet_rejected_by_a_shared_store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("VOICESTATE_SIGNING_KEYS", raising=False)
    url = f"sqlite:///{tmp_path / 'calls.db'}"
    with pytest.warns(vs.EphemeralKeyWarning):
        sender = vs.open_store(url)
    with pytest.warns(vs.EphemeralKeyWarning):
        receiver = vs.open_store(url)  # "another process" on the same database
    try:
        packet = _triage(sender).handoff(to="billing")
        for target in (packet.to_json(), packet.to_bytes(), packet.to_token()):
            _reject(receiver, "call-1", target, "billing", "unknown_key")
        assert receiver.load("call-1").owner == "triage"
    finally:
        sender.close()
        receiver.close()


# --- 5. tokens ----------------------------------------------------------------------------------


def test_token_shape_and_limit() -> None:
    kid16 = "abcdefghijklmnop"
    store = vs.open_store(memory_url(), signing_keys=f"{kid16}:0123456789abcdef0123")
    try:
        call_id = "x" * 127 + "~"  # 128 printable ASCII characters
        s = store.open(call_id, agent="triage")
        packet = s.handoff(to="billing")
        token = packet.to_token()
        assert token.startswith("vs1.")
        assert len(token) <= 256
        assert set(token[4:]) <= set(B64URL)  # base64url, no padding
        claims = decode_token(token, store.keys)
        assert claims == vsp.TokenClaims(kid16, packet.packet_id, math.ceil(packet.expires_at), call_id)
        assert store.resume(token, agent="billing").state.owner == "billing"
    finally:
        store.close()


def test_token_strict_base64url(store: vs.Store) -> None:
    token = _triage(store).handoff(to="billing").to_token()
    body = token[4:]
    std = base64.b64encode(_token_parts(token)).decode()  # the standard alphabet, padded
    variants = [
        "vs1." + std,
        "vs1." + std.rstrip("="),
        token + "=" * (-len(body) % 4 or 4),
        "vs1.+" + body[1:],
        "vs1./" + body[1:],
        "vs1." + body[:8] + " " + body[9:],
    ]
    for bad in variants:
        if bad == token:
            continue  # std == urlsafe when the bytes happen to avoid '+' and '/'
        with pytest.raises(PacketError) as err:
            decode_token(bad, KEYS)
        assert err.value.reason == "malformed", bad
        assert "base64url" in str(err.value), bad
        _reject(store, "call-1", bad, "billing", "malformed")


def test_token_across_stores(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'calls.db'}"
    sender = vs.open_store(url, signing_keys=KEYS)
    foreign = vs.open_store(url, signing_keys=FOREIGN_KEYS)
    impostor = vs.open_store(url, signing_keys=SAME_KID_OTHER_SECRET)
    receiver = vs.open_store(url, signing_keys=KEYS)
    elsewhere = vs.open_store(f"sqlite:///{tmp_path / 'other.db'}", signing_keys=KEYS)
    try:
        token = _triage(sender).handoff(to="billing").to_token()
        _reject(foreign, "call-1", token, "billing", "unknown_key")
        _reject(impostor, "call-1", token, "billing", "bad_signature")
        with pytest.raises(vs.CallNotFound):  # the token carries no state: it needs the store
            elsewhere.resume(token, agent="billing")
        b = receiver.resume(token, agent="billing")
        assert (b.state.owner, b.state.epoch) == ("billing", 2)
        assert [t.text for t in b.state.turns] == ["I was charged twice", "Let me pull up your invoices and"]
        assert [t.call_id for t in b.state.pending_tools()] == ["t1"]
        before = receiver.events("call-1")
        with pytest.raises(vs.OwnershipError):  # redeemed once
            receiver.resume(token, agent="billing")
        assert receiver.events("call-1") == before
    finally:
        for s in (sender, foreign, impostor, receiver, elsewhere):
            s.close()


# --- 6. inline state ------------------------------------------------------------------------------


def test_inline_packet_carries_the_stored_bytes(store: vs.Store) -> None:
    s = _triage(store)
    s.record(vs.Note("for the humans"))
    packet = s.handoff(to="billing", reason="double charge", inline=True)
    stored = store.tiers.all[0].backend.load("call-1")
    assert packet.events == tuple(e.data for e in stored[: packet.seq])
    assert len(packet.events) == packet.seq == s.state.seq
    for p in (HandoffPacket.from_bytes(packet.to_bytes(), KEYS), HandoffPacket.from_json(packet.to_json(), KEYS)):
        assert p == packet
        assert p.events == packet.events
        assert p.to_bytes() == packet.to_bytes()


def test_inline_state_is_readable_without_the_store(store: vs.Store) -> None:
    packet = _triage(store).handoff(to="billing", inline=True)
    data = packet.to_json()
    expected = store.load("call-1")
    store.delete("call-1")  # the store is out of reach now
    p = HandoffPacket.from_json(data, KEYS)
    state = p.state
    assert isinstance(state, vs.CallState)
    assert (state.call_id, state.seq, state.chain) == ("call-1", packet.seq, packet.chain)
    assert state == expected
    assert [(t.role, t.text) for t in state.turns] == [
        ("user", "I was charged twice"),
        ("agent", "Let me pull up your invoices and"),
    ]
    assert state.turns[1].interrupted
    assert (state.turns[1].heard, state.turns[1].heard_ms) == ("Let me pull up", 910)
    assert state.tools["t1"].status == "pending"
    assert state.tools["t1"].arguments == {"account": "A-77"}
    assert [t.call_id for t in state.pending_tools()] == ["t1"]
    assert dict(state.slots) == {"account_id": "A-77"}
    assert state.owner == "triage"
    assert state.pending_handoff is not None
    assert state.pending_handoff.packet_id == packet.packet_id
    assert state.meta["channel"] == "sip"
    with pytest.raises(AttributeError):
        state.owner = "mallory"  # type: ignore[misc]
    # redeeming still needs the store
    with pytest.raises(vs.CallNotFound):
        store.resume(data, agent="billing")


def test_packet_without_inline_events_has_no_state(store: vs.Store) -> None:
    packet = _triage(store).handoff(to="billing")
    assert packet.events is None
    assert HandoffPacket.from_bytes(packet.to_bytes(), KEYS).state is None


def test_inline_packet_resumes_through_the_store(store: vs.Store) -> None:
    packet = _triage(store).handoff(to="billing", inline=True)
    b = store.resume(packet.to_bytes(), agent="billing")
    assert b.state.owner == "billing"
    assert b.state.seq == packet.seq + 1


def test_inline_events_swapped_or_replaced(store: vs.Store) -> None:
    packet = _triage(store).handoff(to="billing", inline=True)
    other = _triage(store, "call-2").handoff(to="billing", inline=True)
    assert packet.events is not None and other.events is not None
    ev = list(packet.events)
    ev[1], ev[2] = ev[2], ev[1]
    foreign = other.events  # same count, another call's log
    for events in (tuple(ev), foreign):
        tampered = attrs.evolve(packet, events=events)
        with pytest.raises(PacketError) as err:
            HandoffPacket.from_bytes(tampered.to_bytes(), KEYS)
        assert err.value.reason == "chain_mismatch"


def test_inline_count_must_match_seq(store: vs.Store) -> None:
    s = _triage(store)
    packet = s.handoff(to="billing", inline=True)
    assert packet.events is not None
    extra = store.tiers.all[0].backend.load("call-1")[0].data
    for events in (packet.events[:-1], (*packet.events, extra), ()):
        short = attrs.evolve(packet, events=events)
        for decode, data in (
            (HandoffPacket.from_bytes, short.to_bytes()),
            (HandoffPacket.from_json, short.to_json()),
        ):
            with pytest.raises(PacketError) as err:
                decode(data, KEYS)  # type: ignore[operator]
            assert err.value.reason == "malformed"
            assert f"{len(events)} inline events for seq {packet.seq}" in str(err.value)
        _reject(store, "call-1", short.to_json(), "billing", "malformed")


# --- 7. one canonical encoding ------------------------------------------------------------------------


def test_json_reserialised_is_malformed(store: vs.Store) -> None:
    packet = _triage(store).handoff(to="billing", summary="café ☕")
    text = packet.to_json()
    raw = json.loads(text)
    variants = [
        json.dumps(raw, sort_keys=True),  # spaces after ',' and ':'
        json.dumps(raw, sort_keys=True, indent=2),
        _canonical_json(raw).replace(",", ", ", 1),
        json.dumps(dict(reversed(list(raw.items()))), separators=(",", ":")),  # another key order
        json.dumps(raw, sort_keys=True, separators=(",", ":"), ensure_ascii=False),  # raw UTF-8
        text + "\n",
        " " + text,
        text.replace('"v":1', '"v":1.0'),
        text.replace("\\u00e9", "\\u00E9"),  # the same string, other escape spelling
    ]
    for bad in variants:
        assert bad != text
        with pytest.raises(PacketError) as err:
            HandoffPacket.from_json(bad, KEYS)
        assert err.value.reason == "malformed", bad
        if bad.startswith("{"):
            _reject(store, "call-1", bad, "billing", "malformed")
    assert HandoffPacket.from_json(text, KEYS) == packet


def test_json_duplicate_keys_are_malformed(store: vs.Store) -> None:
    packet = _triage(store).handoff(to="billing")
    text = packet.to_json()
    bad = text[:-1] + ',"to_agent":"mallory"}'
    with pytest.raises(PacketError) as err:
        HandoffPacket.from_json(bad, KEYS)
    assert err.value.reason == "malformed"
    assert "duplicate key 'to_agent'" in str(err.value)
    _reject(store, "call-1", bad, "billing", "malformed")


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_json_non_finite_numbers_are_malformed(store: vs.Store, constant: str) -> None:
    packet = _triage(store).handoff(to="billing")
    text = packet.to_json()
    raw = json.loads(text)
    bad = text.replace(f'"expires_at":{raw["expires_at"]!r}', f'"expires_at":{constant}')
    assert bad != text
    with pytest.raises(PacketError) as err:
        HandoffPacket.from_json(bad, KEYS)
    assert err.value.reason == "malformed"
    assert f"{constant.lstrip('-')} is not allowed" in str(err.value)


def test_msgpack_reencoded_is_malformed(store: vs.Store) -> None:
    packet = _triage(store).handoff(to="billing", summary="café ☕", inline=True)
    data = packet.to_bytes()
    raw = msgpack.unpackb(data, raw=False)
    assert msgpack.packb(raw, use_bin_type=True) == data  # the canonical form round-trips
    epoch = msgpack.packb("epoch") + msgpack.packb(packet.epoch)
    variants = {
        "reordered keys": msgpack.packb(dict(reversed(list(raw.items()))), use_bin_type=True),
        "float32": msgpack.packb(raw, use_bin_type=True, use_single_float=True),
        "wide int": data.replace(epoch, msgpack.packb("epoch") + b"\xce" + packet.epoch.to_bytes(4, "big"), 1),
        "str8 for a fixstr": data.replace(b"\xa7call_id", b"\xd9\x07call_id", 1),
    }
    for name, bad in variants.items():
        assert bad != data, name
        with pytest.raises(PacketError) as err:
            HandoffPacket.from_bytes(bad, KEYS)
        assert err.value.reason == "malformed", name
        assert "canonical msgpack" in str(err.value), name
        _reject(store, "call-1", bad, "billing", "malformed")
    old_spec = msgpack.packb(raw, use_bin_type=False)  # bytes as raw strings
    with pytest.raises(PacketError) as err:
        HandoffPacket.from_bytes(old_spec, KEYS)
    assert err.value.reason == "malformed"


# --- 8. never pickle --------------------------------------------------------------------------------

_UNSAFE = {"pickle", "_pickle", "cPickle", "dill", "cloudpickle", "marshal", "shelve", "jsonpickle"}


def test_no_module_imports_pickle() -> None:
    """No code in the package names pickle or a relative (docstrings may still say "no pickle")."""
    root = Path(vs.__file__).parent
    sources = sorted(root.rglob("*.py"))
    assert len(sources) > 10
    offenders = []
    for path in sources:
        with path.open("rb") as f:
            for tok in tokenize.tokenize(f.readline):
                if tok.type == tokenize.NAME and ("pickle" in tok.string.lower() or tok.string in _UNSAFE):
                    offenders.append(f"{path.relative_to(root)}:{tok.start[0]} {tok.line.strip()}")
        for node in ast.walk(ast.parse(path.read_bytes(), str(path))):
            if isinstance(node, ast.Call):  # __import__("pickle"), importlib.import_module("pickle")
                for arg in node.args:
                    if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and arg.value in _UNSAFE:
                        offenders.append(f"{path.relative_to(root)}:{node.lineno} loads {arg.value} dynamically")
    assert offenders == []


def test_decoding_never_unpickles(store: vs.Store, monkeypatch: pytest.MonkeyPatch) -> None:
    import pickle

    def refuse(*a: Any, **k: Any) -> Any:
        raise AssertionError("pickle was used to decode a packet")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    s = _triage(store)
    packet = s.handoff(to="billing", inline=True)
    assert HandoffPacket.from_bytes(packet.to_bytes(), KEYS).state is not None
    assert HandoffPacket.from_json(packet.to_json(), KEYS).state is not None
    decode_token(packet.to_token(), KEYS)
    # a pickle payload is just malformed input
    evil = pickle.dumps({"v": 1})
    with pytest.raises(PacketError) as err:
        HandoffPacket.from_bytes(evil, KEYS)
    assert err.value.reason == "malformed"


# --- 9. rejected resumes leave the call untouched -------------------------------------------------------


def test_every_rejected_resume_leaves_the_call_untouched(store: vs.Store) -> None:
    s = _triage(store)
    packet = s.handoff(to="billing", inline=True)
    tampered_events = list(packet.events or ())
    tampered_events[0] = tampered_events[0][:-1] + bytes([tampered_events[0][-1] ^ 1])
    now = time.time()
    cases: list[tuple[Any, str, str]] = [
        (packet.to_json()[:-2] + "}", "billing", "malformed"),
        (_edit_json(packet, reason="x"), "billing", "bad_signature"),
        (_resign(packet, keys=FOREIGN_KEYS).to_json(), "billing", "unknown_key"),
        (_resign(packet, expires_at=now - 60).to_bytes(), "billing", "expired"),
        (packet.to_bytes(), "sales", "wrong_target"),
        (attrs.evolve(packet, events=tuple(tampered_events)), "billing", "chain_mismatch"),
        (_resign(packet, version=2).to_json(), "billing", "unsupported_version"),
        ("vs1." + "A" * 300, "billing", "too_large"),
        (_resign(packet, expires_at=now - 60).to_token(), "billing", "expired"),
    ]
    before = store.events("call-1")
    state = store.load("call-1")
    for target, agent, reason in cases:
        _reject(store, "call-1", target, agent, reason)
    assert store.events("call-1") == before
    after = store.load("call-1")
    assert (after.owner, after.epoch, after.seq) == (state.owner, state.epoch, state.seq)
    assert after.pending_handoff is not None and after.pending_handoff.packet_id == packet.packet_id
    # and the genuine packet still works afterwards
    assert store.resume(packet, agent="billing").state.owner == "billing"
