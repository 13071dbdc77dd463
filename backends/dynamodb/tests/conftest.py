"""A private DynamoDB for the tests (moto's server on loopback), or the one
VOICESTATE_TEST_DYNAMODB_URL names (a ``dynamodb://TABLE?...`` URL whose table exists).

Without the variable, ``moto.server.ThreadedMotoServer(port=0)`` serves on a free
loopback port for the whole session, and one table is created in it; every test gets
a key prefix of its own. Fake credentials go into ``os.environ`` here, at import time,
so the child processes of the multi-process suites (spawned: they inherit the
environment) sign their requests too. Real AWS is never reached without the variable.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

ENV_VAR = "VOICESTATE_TEST_DYNAMODB_URL"
logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise

if not os.environ.get(ENV_VAR):
    for _name, _value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        os.environ[_name] = _value
    os.environ.pop("AWS_PROFILE", None)


def _serialized(app: Any) -> Any:
    """moto's WSGI app, one request at a time: moto's TransactWriteItems is not atomic against
    concurrent requests (it deep-copies the table while other threads change it), where
    DynamoDB's is. Serializing the server keeps each request atomic, as DynamoDB's are."""
    lock = threading.Lock()

    def serve(environ: Any, start_response: Any) -> Any:
        with lock:
            return list(app(environ, start_response))

    return serve


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """The endpoint of the session's moto server (started once: moto is slow to start)."""
    from moto.moto_server import threaded_moto_server
    from moto.server import ThreadedMotoServer

    real = threaded_moto_server.DomainDispatcherApplication
    threaded_moto_server.DomainDispatcherApplication = lambda *a, **k: _serialized(real(*a, **k))  # type: ignore[misc]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="session")
def dynamodb_url(request: pytest.FixtureRequest) -> str:
    """The base URL of the test table (``?region=...&endpoint_url=...``)."""
    url = os.environ.get(ENV_VAR)
    if url:
        return url
    endpoint = request.getfixturevalue("moto_endpoint")
    from voicestate_dynamodb import create_table

    url = f"dynamodb://calls?region=us-east-1&endpoint_url={endpoint}"
    create_table(url)
    return url


@pytest.fixture
def store_url(dynamodb_url: str) -> Iterator[str]:
    """A fresh, empty store per test (child processes reopen it): on the test server a table
    of its own (moto copies a table at every transaction, so small tables keep it fast), on
    VOICESTATE_TEST_DYNAMODB_URL's table a key prefix of its own."""
    if os.environ.get(ENV_VAR):
        yield f"{dynamodb_url}&prefix=t{uuid.uuid4().hex[:12]}%23"
        return
    import boto3

    from voicestate_dynamodb import create_table

    table = f"t{uuid.uuid4().hex[:12]}"
    url = dynamodb_url.replace("dynamodb://calls?", f"dynamodb://{table}?")
    create_table(url)
    yield url
    endpoint = dynamodb_url.split("endpoint_url=", 1)[1].split("&", 1)[0]
    boto3.client("dynamodb", region_name="us-east-1", endpoint_url=endpoint).delete_table(TableName=table)
