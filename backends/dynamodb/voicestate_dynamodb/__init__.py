"""voicestate-dynamodb: the DynamoDB backend of voicestate (``dynamodb://TABLE``).

Installing the distribution registers the scheme through the ``voicestate``
entry-point group; ``voicestate.open_store("dynamodb://calls?region=eu-west-1")``
then opens a :class:`DynamoDBBackend`. See README.md for the URL options and the
item layout.
"""

from __future__ import annotations

from ._backend import DynamoDBBackend, create_table, open_dynamodb

__all__ = ["DynamoDBBackend", "create_table", "open_dynamodb"]
