"""store.verify / averify: a packet's or token's verdict, from its signature and the call's log."""

from __future__ import annotations

import asyncio
import time

import pytest

import voicestate as vs
import voicestate.plugins as vsp

KEYS = "k1:verify-secret-0123456789abcdef"


@pytest.fixture
def store(tmp_path):
    s = vs.open_store(f"sqlite:///{tmp_path / 'v.db'}", signing_keys=KEYS, skew=0)
    yield s
    s.close()


def _offer(store, call_id, **kw):
    s = store.open(call_id, agent="triage")
    s.record(vs.UserSpoke("charged twice"))
    return s, s.handoff("billing", reason="double charge", **kw)


def test_pending_then_redeemed(store):
    _, packet = _offer(store, "c1")
    for form in (packet, packet.to_json(), packet.to_bytes(), packet.to_token()):
        check = store.verify(form)
        assert check.verdict == "valid" and check.redeemable
        assert (check.to_agent, check.from_agent, check.kind, check.owner) == (
            "billing",
            "triage",
            "transfer",
            "triage",
        )
        assert check.packet_id == packet.packet_id and check.offered_seq == 3
    store.resume(packet.to_token(), agent="billing")
    check = store.verify(packet.to_token())
    assert (check.verdict, check.redeemed_by, check.owner, check.epoch) == ("redeemed", "billing", "billing", 2)
    assert not check.redeemable and "cannot be redeemed again" in check.detail


def test_cancelled_replaced_ended_expired_cleared(store):
    s, p = _offer(store, "cancel")
    s.cancel_handoff()
    assert store.verify(p).verdict == "cancelled"

    s, p = _offer(store, "replace")
    s.handoff("sales")
    check = store.verify(p.to_token())
    assert check.verdict == "replaced" and "'sales'" in check.detail

    s, p = _offer(store, "end")
    s.end("hung up")
    assert store.verify(p).verdict == "ended" and store.verify(p).owner is None

    s, p = _offer(store, "expire", ttl=0.05)
    time.sleep(0.1)
    check = store.verify(p)
    assert check.verdict == "expired" and "ask for a new handoff" in check.detail

    s, p = _offer(store, "clear")
    store.resume("clear", agent="ops", takeover=True, force=True)
    assert store.verify(p).verdict == "cleared"


def test_invalid_inputs_are_verdicts(store, tmp_path):
    _, packet = _offer(store, "c2")
    token = packet.to_token()
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert store.verify(forged).reason == "bad_signature"
    assert store.verify("c2").reason == "malformed"
    assert store.verify("{not json").reason == "malformed"
    wrong = store.verify(packet, agent="sales")
    assert (wrong.verdict, wrong.reason) == ("invalid", "wrong_target")
    assert store.verify(token, agent="sales").reason == "wrong_target"
    other = vs.open_store(f"sqlite:///{tmp_path / 'other.db'}", signing_keys="k9:another-secret-0123456789")
    assert other.verify(token).reason == "unknown_key"
    same_keys = vs.open_store(f"sqlite:///{tmp_path / 'other2.db'}", signing_keys=KEYS)
    gone = same_keys.verify(token)
    assert (gone.verdict, gone.reason, gone.call_id) == ("invalid", "call_not_found", "c2")
    other.close()
    same_keys.close()
    before = store.events("c2")
    for bad in (forged, "c2", packet.to_json().replace("billing", "sales")):
        store.verify(bad)
    assert store.events("c2") == before  # a verdict writes nothing
    store.delete("c2")
    assert store.verify(packet).reason == "call_not_found"


def test_averify_is_the_same_judgement(store):
    _, packet = _offer(store, "c3")
    check = asyncio.run(store.averify(packet.to_token(), agent="billing"))
    assert check == store.verify(packet.to_token(), agent="billing")
    assert check.verdict == "valid"


def test_verify_decodes_as_resume_does(store):
    """'valid' means resume would redeem it: the same decoding, the same token check."""
    import base64

    import attrs

    from voicestate._keys import parse_keys
    from voicestate._packet import _token_mac, _token_payload

    _, packet = _offer(store, "c4")
    for bent in (packet.to_json() + "\n", " " + packet.to_json(), packet.to_json().encode()):
        check = store.verify(bent)
        assert (check.verdict, check.reason) == ("invalid", "malformed"), bent
        with pytest.raises(vs.PacketError):
            store.resume(bent, agent="billing")
    # a token signed with the right key for this packet, but another expiry than the stored handoff's
    ring = parse_keys(KEYS)
    payload = _token_payload("k1", packet.packet_id, packet.expires_at + 3600, "c4")
    mac = _token_mac(ring.secret("k1"), payload)
    token = "vs1." + base64.urlsafe_b64encode(payload + mac).rstrip(b"=").decode()
    assert vsp.decode_token(token, KEYS).packet_id == packet.packet_id  # genuinely signed
    check = store.verify(token)
    assert (check.verdict, check.reason) == ("invalid", "bad_signature")
    with pytest.raises(vs.PacketError, match="does not match"):
        store.resume(token, agent="billing")
    # hand-built packets whose fields are not what they claim: verdicts, not exceptions
    for bad in (attrs.evolve(packet, seq=2**70), attrs.evolve(packet, call_id="bad\nid")):
        assert store.verify(bad).verdict == "invalid"
    assert store.verify(packet).verdict == "valid"  # and the real one still is
