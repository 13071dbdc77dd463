"""A real DynamoDB wire endpoint for tests and benchmarks: moto's server on loopback.

Needs moto (``pip install 'voicestate-dynamodb[test]'``). Real AWS is never reached:
``fake_credentials()`` puts test credentials in ``os.environ`` (so child processes,
which inherit the environment, sign their requests too), and every URL built here
names the local endpoint::

    from voicestate_dynamodb.testing import dynamodb_table, fake_credentials, moto_server

    fake_credentials()
    with moto_server() as endpoint:
        url = dynamodb_table(endpoint)  # "dynamodb://calls?region=us-east-1&endpoint_url=http://..."
        store = voicestate.open_store(url)
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ._backend import create_table

__all__ = ["REGION", "dynamodb_table", "fake_credentials", "moto_server"]

REGION = "us-east-1"


def fake_credentials() -> None:
    """Test credentials and region in ``os.environ``, and no AWS profile."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        os.environ[name] = value
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


@contextmanager
def moto_server() -> Iterator[str]:
    """moto's DynamoDB server on a free loopback port for the ``with`` block, one request at a
    time (see ``_serialized``); yields its endpoint, ``http://127.0.0.1:<port>``."""
    try:
        from moto.moto_server import threaded_moto_server as module
        from moto.server import ThreadedMotoServer
    except ImportError:
        raise RuntimeError("moto is not installed: `pip install 'voicestate-dynamodb[test]'`") from None
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    # the server thread builds its app from this module global before start() returns
    threaded_moto_server: Any = module
    real = threaded_moto_server.DomainDispatcherApplication
    threaded_moto_server.DomainDispatcherApplication = lambda *a, **k: _serialized(real(*a, **k))
    try:
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
    finally:
        threaded_moto_server.DomainDispatcherApplication = real
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def dynamodb_table(endpoint: str, table: str | None = None) -> str:
    """Create a table (TTL on) at ``endpoint`` and return its store URL; a fresh name by default."""
    url = f"dynamodb://{table or 't' + uuid.uuid4().hex[:12]}?region={REGION}&endpoint_url={endpoint}"
    create_table(url)
    return url
