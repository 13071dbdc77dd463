"""Real parts for the integration tests: a persistent redis-server per test (which the test may
SIGKILL, SIGSTOP and start again on the same port and data), one moto DynamoDB server per
session with a fresh table per test, a TCP gate in front of moto per test, and stores that are
closed afterwards.

Fake AWS credentials go into ``os.environ`` at import, before any child process is spawned
(children inherit the environment); real AWS is never reached.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs
import boto3  # type: ignore[import-untyped]
import pytest
from _support import KEYS, Gate

import voicestate as vs
from voicestate_dynamodb.testing import REGION, dynamodb_table, fake_credentials, moto_server
from voicestate_redis.testing import RedisServer

fake_credentials()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own with ``appendonly yes`` and ``appendfsync always``:
    an acknowledged write survives SIGKILL, and ``start()`` brings it back on the same port
    and directory."""
    server = RedisServer(tmp_path, persist=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto's DynamoDB server for the session (``http://127.0.0.1:<port>``)."""
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def dynamodb_url(moto_endpoint: str) -> Iterator[str]:
    """A fresh table per test (``dynamodb://TABLE?region=...&endpoint_url=...``), dropped afterwards."""
    url = dynamodb_table(moto_endpoint)
    yield url
    table = urlsplit(url).netloc
    client = boto3.client("dynamodb", region_name=REGION, endpoint_url=moto_endpoint)
    with contextlib.suppress(Exception):
        client.delete_table(TableName=table)


@pytest.fixture
def gate(moto_endpoint: str) -> Iterator[Gate]:
    """A TCP gate in front of moto, open; the test hangs or closes it (see ``Gate``)."""
    parts = urlsplit(moto_endpoint)
    g = Gate(parts.hostname or "127.0.0.1", parts.port or 80)
    try:
        yield g
    finally:
        g.close()


@pytest.fixture
def opener(gate: Gate, redis_server: RedisServer, dynamodb_url: str) -> Iterator[Callable[..., vs.Store]]:
    """``open_store`` with the test keys; stores still open at the end are closed, before the
    servers and the table go (the gate opened first, so that their behind tiers can catch up)."""
    stores: list[vs.Store] = []

    def open_(*urls: str, **options: Any) -> vs.Store:
        store = vs.open_store(*urls, signing_keys=KEYS, **options)
        stores.append(store)
        return store

    yield open_
    gate.set("open")
    for store in stores:
        store.config = attrs.evolve(store.config, barrier_timeout=5.0)
        try:
            store.close()
        except vs.BackendUnavailable as exc:  # e.g. a test failed with its server down
            warnings.warn(f"closing {store!r}: {exc}", stacklevel=1)
