"""A private DynamoDB for the tests (moto's server on loopback), or the one
VOICESTATE_TEST_DYNAMODB_URL names (a ``dynamodb://TABLE?...`` URL whose table exists).

Without the variable, moto's server (``voicestate_dynamodb.testing.moto_server``) serves
on a free loopback port for the whole session, and every test gets a table of its own;
with it, every test gets a key prefix of its own on that table. Fake credentials go into
``os.environ`` here, at import time, so the child processes of the multi-process suites
(spawned: they inherit the environment) sign their requests too. Real AWS is never reached without the variable.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from voicestate_dynamodb.testing import REGION, dynamodb_table, fake_credentials, moto_server

ENV_VAR = "VOICESTATE_TEST_DYNAMODB_URL"

if not os.environ.get(ENV_VAR):
    fake_credentials()  # at import time, before any child process is spawned


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """The endpoint of the session's moto server (started once: moto is slow to start)."""
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def dynamodb_url(request: pytest.FixtureRequest) -> str:
    """The base URL of the test table (``?region=...&endpoint_url=...``)."""
    url = os.environ.get(ENV_VAR)
    if url:
        return url
    return dynamodb_table(request.getfixturevalue("moto_endpoint"), "calls")


@pytest.fixture
def store_url(dynamodb_url: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, empty store per test (child processes reopen it): on the test server a table
    of its own (moto copies a table at every transaction, so small tables keep it fast), on
    VOICESTATE_TEST_DYNAMODB_URL's table a key prefix of its own."""
    if os.environ.get(ENV_VAR):
        yield f"{dynamodb_url}&prefix=t{uuid.uuid4().hex[:12]}%23"
        return
    import boto3

    endpoint = request.getfixturevalue("moto_endpoint")
    url = dynamodb_table(endpoint)
    yield url
    table = url.split("://", 1)[1].split("?", 1)[0]
    boto3.client("dynamodb", region_name=REGION, endpoint_url=endpoint).delete_table(TableName=table)
