"""The events a LangGraph thread is stored as, in the log of a voicestate call.

A thread is a call's log: a voice call's (its messages are the call's
conversation, its other channels this agent's private state) or a plain
thread's (a call the saver opened for it). Anyone may append these events
(``OUTSIDE``): a plain thread has no owner; on a voice call the saver writes
them through the owner's session, so they are fenced like every owner write.
Channel values are the saver's serde output, ``[type, base64]``; the type
names are short (``lg.``) because a call thread stores three per graph step.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import attrs

import voicestate as vs


@attrs.frozen
class Checkpointed(vs.Event):
    """A checkpoint of namespace ``ns``, stored as its difference from ``base`` (see :mod:`._compact`).

    ``base`` is what it is stored against: the seq of an earlier ``Checkpointed``
    of the same writer and namespace, 0 the writer's previous one (on a voice
    call, whose owner is its one writer), -1 none (every field whole); ``cp`` LangGraph's ``Checkpoint``
    without its values, ``meta`` its metadata, ``parent`` the parent's id
    (omitted when it is the base's; ``orphan``: it has none), ``blobs`` the
    values of the channels it stores (its ``new_versions``).
    """

    TYPE: ClassVar[str] = "lg.Checkpoint"
    OUTSIDE: ClassVar[bool] = True
    ns: str = ""
    base: int = 0
    cp: Mapping[str, Any] = attrs.field(factory=dict)
    meta: Any = None
    parent: str | None = None
    orphan: bool = False
    blobs: list[Any] = attrs.field(factory=list)


@attrs.frozen
class WritesPut(vs.Event):
    """Task ``task`` of checkpoint ``cid`` wrote ``writes``: ``[[idx, channel, type, b64], ...]``."""

    TYPE: ClassVar[str] = "lg.Writes"
    OUTSIDE: ClassVar[bool] = True
    ns: str = ""
    cid: str = ""
    task: str = ""
    path: str = ""
    writes: list[Any] = attrs.field(factory=list)


@attrs.frozen
class ThreadCleared(vs.Event):
    """``delete_thread`` on a voice call: its writer's checkpoints are forgotten (the log stays)."""

    TYPE: ClassVar[str] = "lg.Cleared"
    OUTSIDE: ClassVar[bool] = True


EVENT_TYPES: tuple[type[vs.Event], ...] = (Checkpointed, WritesPut, ThreadCleared)
