"""voicestate-redis: the Redis backend of voicestate (``redis://``, ``rediss://``, and
``redis+cluster://``, ``rediss+cluster://`` for a Redis Cluster).

Installing the distribution registers the schemes through the ``voicestate``
entry-point group; ``voicestate.open_store("redis://127.0.0.1:6379/0")`` then
opens a :class:`RedisBackend`. See README.md for the URL options and the key layout.
"""

from __future__ import annotations

from ._backend import RedisBackend, open_redis

__all__ = ["RedisBackend", "open_redis"]
