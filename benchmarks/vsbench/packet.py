"""Figure c: handoff packet encode + verify + decode, 200 turns inline.

Measured: ``data = packet.to_bytes()`` then ``HandoffPacket.from_bytes(data, keys)``,
which checks the canonical encoding, the HMAC signature, the validity window
and re-hashes the inline chain. The packet comes from ``handoff(inline=True)``
on a 200-turn call, so its events are the stored bytes. Budget (DESIGN.md):
≤ 300 µs (taken as p50). Floor, same run: a bare ``msgpack.packb`` +
``msgpack.unpackb`` round trip of the same list of event bytes. The JSON
encoding (``to_json`` + ``from_json``) is reported for information.
"""

from __future__ import annotations

import time

import msgpack  # type: ignore[import-untyped]

import voicestate as vs
import voicestate.plugins as vsp

from .common import KEYS, Figure, build_call, fresh, percentiles_us, timed_figure

TURNS = 200
BUDGET_US = 300.0


def make_packet() -> vs.HandoffPacket:
    """The inline packet of a 200-turn call (built once, untimed)."""
    store = vs.open_store("memory://", signing_keys=KEYS)
    s = build_call(store, "packet-200", TURNS)
    return s.handoff(to="billing", reason="double charge", inline=True)


def msgpack_samples(packet: vs.HandoffPacket, ring: vsp.KeyRing, count: int) -> tuple[list[int], list[int], list[int]]:
    """(total, encode, decode) nanoseconds of to_bytes + from_bytes."""
    perf = time.perf_counter_ns
    total, enc, dec = [0] * count, [0] * count, [0] * count
    from_bytes = vs.HandoffPacket.from_bytes
    for i in range(count):
        t0 = perf()
        data = packet.to_bytes()
        t1 = perf()
        from_bytes(data, ring)
        t2 = perf()
        total[i], enc[i], dec[i] = t2 - t0, t1 - t0, t2 - t1
    return total, enc, dec


def json_samples(packet: vs.HandoffPacket, ring: vsp.KeyRing, count: int) -> list[int]:
    perf = time.perf_counter_ns
    out = [0] * count
    from_json = vs.HandoffPacket.from_json
    for i in range(count):
        t0 = perf()
        from_json(packet.to_json(), ring)
        out[i] = perf() - t0
    return out


def floor_samples(events: tuple[bytes, ...], count: int) -> list[int]:
    """A bare msgpack round trip of the list of event bytes."""
    perf = time.perf_counter_ns
    packb, unpackb = msgpack.packb, msgpack.unpackb
    out = [0] * count
    for i in range(count):
        t0 = perf()
        unpackb(packb(events, use_bin_type=True), raw=False)
        out[i] = perf() - t0
    return out


def run(count: int, json_count: int, warmup: int) -> list[Figure]:
    packet = make_packet()
    assert packet.events is not None
    ring = vsp.parse_keys(KEYS)
    msgpack_samples(packet, ring, warmup)
    json_samples(packet, ring, min(warmup, json_count))
    floor_samples(packet.events, warmup)
    fresh()
    floor = floor_samples(packet.events, count)
    fresh()
    total, enc, dec = msgpack_samples(packet, ring, count)
    fresh()
    js = json_samples(packet, ring, json_count)
    size = {"events": len(packet.events), "msgpack_bytes": len(packet.to_bytes()), "json_chars": len(packet.to_json())}
    fig = timed_figure(
        "packet to_bytes + from_bytes (msgpack, inline)",
        f"{TURNS} turns",
        total,
        floor,
        floor="bare msgpack packb + unpackb of the event bytes",
        budget=f"≤ {BUDGET_US:.0f} µs (p50)",
        raw={"encode_us": percentiles_us(enc), "decode_verify_us": percentiles_us(dec), "size": size},
    )
    assert fig.p50 is not None
    fig.verdict = "within budget" if fig.p50 <= BUDGET_US else "OVER BUDGET"
    fig.note = (
        f"{size['events']} events, {size['msgpack_bytes']:,} B; encode p50 {fig.raw['encode_us']['p50']:.0f} µs, "
        f"decode+verify p50 {fig.raw['decode_verify_us']['p50']:.0f} µs"
    )
    json_fig = timed_figure(
        "packet to_json + from_json (inline), for information",
        f"{TURNS} turns",
        js,
        raw={"size": size},
        note=f"{size['json_chars']:,} characters",
    )
    return [fig, json_fig]
