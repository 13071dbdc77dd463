"""DynamoDB figures, on moto's server (a real DynamoDB wire endpoint on loopback), for
information: moto is a Python emulator, so its times say nothing about AWS's; the request
count does.

Needs the ``voicestate-dynamodb`` member with its test extra (moto); ``nox -s bench``
installs them. ``VOICESTATE_BENCH_DYNAMODB_URL`` (a ``dynamodb://TABLE?...`` URL whose table
exists) measures another endpoint instead.

- Requests per append: one turn (its 2 or 4 events) recorded with ``session.record`` on a
  call that grows from 100 turns, every HTTP request botocore sends counted (periodic
  snapshots off: a snapshot is a write of its own). DESIGN: one request per append,
  whatever the call's length. Beside it, the write capacity units each append consumes
  (computed from the items it writes, AWS's rule for transactions), and the append's time
  against the floor: a raw boto3 ``PutItem``.
- Handoff + resume at 200 turns, two stores on the same table in one process: the handoff's
  time and ``resume(token)``'s, against a raw boto3 ``Query`` of the call's partition
  (consistent, every page) + ``json.loads`` of one JSON message per item, written once.
"""

from __future__ import annotations

import json
import os
import random
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import voicestate as vs

from .common import KEYS, Figure, build_call, fresh, timed_figure, turn_events, unmeasured

TURNS = 200


@contextmanager
def _tables() -> Iterator[Callable[[], str]]:
    """A factory of fresh store URLs: a new table each on moto (whose transactions copy the
    whole table, so a small table keeps its times the emulator's best), a new key prefix each
    on ``VOICESTATE_BENCH_DYNAMODB_URL``'s table."""
    url = os.environ.get("VOICESTATE_BENCH_DYNAMODB_URL")
    if url:
        yield lambda: f"{url}&prefix=b{uuid.uuid4().hex[:10]}%23"
        return
    from voicestate_dynamodb.testing import dynamodb_table, fake_credentials, moto_server

    fake_credentials()
    with moto_server() as endpoint:
        yield lambda: dynamodb_table(endpoint)


def _raw_client(url: str) -> Any:
    import boto3

    query = dict(p.split("=", 1) for p in url.split("?", 1)[1].split("&"))
    return boto3.client("dynamodb", region_name=query.get("region"), endpoint_url=query.get("endpoint_url"))


def run(samples: int) -> list[Figure]:
    try:
        import voicestate_dynamodb  # noqa: F401
    except ImportError as exc:
        return [unmeasured("DynamoDB (moto)", f"{TURNS} turns", f"{exc.name} is not installed")]
    with _tables() as new_url:
        return _appends(new_url(), samples) + _handoff(new_url, max(5, samples // 20))


def _appends(url: str, samples: int) -> list[Figure]:
    # no periodic snapshots here: a snapshot is a write of its own (at handoffs and every
    # snapshot_every events), not part of the append; the handoff figures include one
    store = vs.open_store(url, signing_keys=KEYS, snapshot_every=0)
    session = build_call(store, "ddb-append", TURNS // 2)
    import botocore.endpoint

    sent: list[str] = []  # every HTTP request any botocore client sends (retries included)
    real_send = botocore.endpoint.Endpoint._send

    bodies: list[dict[str, Any]] = []

    def counting(self: Any, request: Any) -> Any:
        sent.append(request.headers.get("X-Amz-Target", b"").decode().rsplit(".", 1)[-1])
        bodies.append(json.loads(request.body or b"{}"))
        return real_send(self, request)

    botocore.endpoint.Endpoint._send = counting  # type: ignore[method-assign]
    raw = _raw_client(url)
    table = url.split("://", 1)[1].split("?", 1)[0]
    rng = random.Random(3)
    perf = time.perf_counter_ns
    times: list[int] = []
    floor: list[int] = []
    requests: list[int] = []
    ops: set[str] = set()
    units: list[int] = []
    fresh()
    for i in range(samples):
        events = turn_events(TURNS // 2 + i, rng)
        before = len(sent)
        t0 = perf()
        session.record(*events)
        times.append(perf() - t0)
        requests.append(len(sent) - before)
        ops.update(sent[before:])
        units.append(_write_units(raw, bodies[before:]))  # untimed: reads the items written
        t0 = perf()
        raw.put_item(
            TableName=table,
            Item={"pk": {"S": "raw#floor"}, "sk": {"S": f"{i:08d}"}, "d": {"B": b"x" * 600}},
        )
        floor.append(perf() - t0)
    botocore.endpoint.Endpoint._send = real_send  # type: ignore[method-assign]
    store.close()
    per_append = sum(requests) / len(requests)
    count = Figure(
        "DynamoDB requests per append (one turn, counted at the client)",
        f"{TURNS // 2}–{TURNS // 2 + samples} turns",
        "requests",
        per_append,
        float(max(requests)),
        budget="one request per append",
        verdict="within budget" if max(requests) == 1 else "OVER BUDGET",
        note=f"{sum(requests)} requests for {len(requests)} appends ({', '.join(sorted(ops))})",
    )
    timed = timed_figure(
        "DynamoDB append on moto (one turn), for information",
        f"{TURNS // 2} turns",
        times,
        floor,
        floor="raw boto3 PutItem on moto",
        note="moto's times, not AWS's",
    )
    wcu = Figure(
        "DynamoDB write capacity per append (one turn), computed from the items written",
        f"{TURNS // 2}–{TURNS // 2 + samples} turns",
        "WCU",
        sorted(units)[len(units) // 2],
        float(max(units)),
        note="2 units per started KB of each item a transaction writes (the larger of its sizes "
        "before and after), AWS's rule for transactional writes; docs/scaling.md",
    )
    return [count, wcu, timed]


def _item_size(item: dict[str, Any]) -> int:
    """DynamoDB's item size: attribute names plus values (strings and binaries by length,
    numbers about one byte per two digits plus one)."""
    size = 0
    for name, value in item.items():
        size += len(name.encode())
        ((kind, v),) = value.items()
        if kind == "S":
            size += len(v.encode())
        elif kind == "B":
            size += len(v) * 3 // 4 if isinstance(v, str) else len(v)  # base64 in the JSON body
        elif kind == "N":
            size += len(v.lstrip("-").replace(".", "")) // 2 + 1
        else:
            size += len(json.dumps(v))
    return size


def _write_units(raw: Any, bodies: list[dict[str, Any]]) -> int:
    """The write capacity the transactions in ``bodies`` consume: a Put's item as sent, an
    Update's item as it stands now (read back), 2 units per started KB each."""
    units = 0
    for body in bodies:
        for action in body.get("TransactItems", ()):
            ((kind, spec),) = action.items()
            if kind == "Put":
                size = _item_size(spec["Item"])
            elif kind == "Update":
                got = raw.get_item(TableName=spec["TableName"], Key=spec["Key"], ConsistentRead=True)
                size = _item_size(got.get("Item", spec["Key"]))
            else:  # ConditionCheck, Delete: the key
                size = _item_size(spec["Key"])
            units += 2 * max(1, -(-size // 1024))
    return units


def _handoff(new_url: Callable[[], str], calls: int) -> list[Figure]:
    perf = time.perf_counter_ns
    handoffs: list[int] = []
    resumes: list[int] = []
    floor: list[int] = []
    for i in range(calls):
        url = new_url()  # one table (or prefix) per call
        table = url.split("://", 1)[1].split("?", 1)[0]
        raw = _raw_client(url)
        a = vs.open_store(url, signing_keys=KEYS)
        b = vs.open_store(url, signing_keys=KEYS)
        session = build_call(a, f"ddb-h{i}", TURNS)
        # the floor's call beside it: the same messages, one item each
        messages = [json.dumps(m) for m in session.context("openai")]
        for k, m in enumerate(messages):
            raw.put_item(TableName=table, Item={"pk": {"S": "raw#call"}, "sk": {"S": f"{k:08d}"}, "m": {"S": m}})
        fresh()
        t0 = perf()
        token = session.handoff(to="billing").to_token()
        handoffs.append(perf() - t0)
        t0 = perf()
        resumed = b.resume(token, agent="billing")
        resumes.append(perf() - t0)
        if len(resumed.state.turns) < TURNS:
            raise RuntimeError(f"resumed {len(resumed.state.turns)} turns, not {TURNS}")
        t0 = perf()
        loaded = _query_all(raw, table, "raw#call")
        floor.append(perf() - t0)
        if len(loaded) != len(messages):
            raise RuntimeError(f"the floor read {len(loaded)} messages, not {len(messages)}")
        a.close()
        b.close()
    note = "moto's times, not AWS's; two stores, one process"
    return [
        timed_figure("DynamoDB handoff on moto, for information", f"{TURNS} turns", handoffs, note=note),
        timed_figure(
            "DynamoDB resume on moto, for information",
            f"{TURNS} turns",
            resumes,
            floor,
            floor="raw boto3 Query of the call's items + json.loads",
            note=note,
        ),
    ]


def _query_all(raw: Any, table: str, pk: str) -> list[Any]:
    items: list[Any] = []
    kwargs: dict[str, Any] = {
        "TableName": table,
        "KeyConditionExpression": "pk = :p",
        "ExpressionAttributeValues": {":p": {"S": pk}},
        "ConsistentRead": True,
    }
    while True:
        page = raw.query(**kwargs)
        items += [json.loads(item["m"]["S"]) for item in page["Items"]]
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
