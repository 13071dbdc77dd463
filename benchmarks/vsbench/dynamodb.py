"""DynamoDB figures, on moto's server (a real DynamoDB wire endpoint on loopback), for
information: moto is a Python emulator, so its times say nothing about AWS's; the request
count does.

Needs the ``voicestate-dynamodb`` member with its test extra (moto); ``nox -s bench``
installs them. ``VOICESTATE_BENCH_DYNAMODB_URL`` (a ``dynamodb://TABLE?...`` URL whose table
exists) measures another endpoint instead.

- Requests per append: one turn (its 2 or 4 events) recorded with ``session.record`` on a
  call that grows to 200 turns, every request the store's botocore client sends counted
  (its ``before-send`` event). DESIGN: one request per append, whatever the call's length.
  Beside it, the append's time and the floor: a raw boto3 ``PutItem`` of the same bytes.
- Handoff + resume at 200 turns, two stores on the same table in one process: the handoff's
  time and ``resume(token)``'s, against a raw boto3 ``Query`` of the call's partition
  (consistent, every page) + ``json.loads`` of one JSON message per item, written once.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import voicestate as vs

from .common import KEYS, Figure, build_call, fresh, timed_figure, turn_events, unmeasured

TURNS = 200


@contextmanager
def _table() -> Iterator[str]:
    url = os.environ.get("VOICESTATE_BENCH_DYNAMODB_URL")
    if url:
        yield url
        return
    from voicestate_dynamodb.testing import dynamodb_table, fake_credentials, moto_server

    fake_credentials()
    with moto_server() as endpoint:
        yield dynamodb_table(endpoint, "bench")


def _raw_client(url: str) -> Any:
    import boto3

    query = dict(p.split("=", 1) for p in url.split("?", 1)[1].split("&"))
    return boto3.client("dynamodb", region_name=query.get("region"), endpoint_url=query.get("endpoint_url"))


def run(samples: int) -> list[Figure]:
    try:
        import voicestate_dynamodb  # noqa: F401
    except ImportError as exc:
        return [unmeasured("DynamoDB (moto)", f"{TURNS} turns", f"{exc.name} is not installed")]
    with _table() as url:
        return _appends(url, samples) + _handoff(url, max(5, samples // 20))


def _appends(url: str, samples: int) -> list[Figure]:
    store = vs.open_store(f"{url}&prefix=a%23", signing_keys=KEYS)
    session = build_call(store, "ddb-append", TURNS // 2)
    import botocore.endpoint

    sent: list[str] = []  # every HTTP request any botocore client sends (retries included)
    real_send = botocore.endpoint.Endpoint._send

    def counting(self: Any, request: Any) -> Any:
        sent.append(request.headers.get("X-Amz-Target", b"").decode().rsplit(".", 1)[-1])
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
    fresh()
    for i in range(samples):
        events = turn_events(TURNS // 2 + i, rng)
        before = len(sent)
        t0 = perf()
        session.record(*events)
        times.append(perf() - t0)
        requests.append(len(sent) - before)
        ops.update(sent[before:])
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
    return [count, timed]


def _handoff(url: str, calls: int) -> list[Figure]:
    a = vs.open_store(f"{url}&prefix=h%23", signing_keys=KEYS)
    b = vs.open_store(f"{url}&prefix=h%23", signing_keys=KEYS)
    raw = _raw_client(url)
    table = url.split("://", 1)[1].split("?", 1)[0]
    perf = time.perf_counter_ns
    handoffs: list[int] = []
    resumes: list[int] = []
    floor: list[int] = []
    for i in range(calls):
        session = build_call(a, f"ddb-h{i}", TURNS)
        if i == 0:  # the floor's call: the same messages, one item each, written once
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
