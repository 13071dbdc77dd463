"""What a storage backend implements and receives.

A backend stores, per call, a gapless list of :class:`StoredEvent` (bytes it
never decodes) and the little metadata derived from them (:class:`CallMeta`),
and implements :class:`Backend` with sync and async twins. It registers its URL
scheme through a plugin (``register_backends``, or
:func:`voicestate.plugins.register_backend`) and proves itself by subclassing
the suites of :mod:`voicestate.testing`. See docs/writing-a-backend.md.
"""

from __future__ import annotations

from ._backend import OK, AppendResult, Backend, CallMeta, Capabilities, MetaUpdate, Snapshot, StoredEvent
from ._codec import CHAIN_BYTES, chain_next, genesis, verify_chain
from ._open import BackendFactory, open_backend
from ._public import publish

__all__ = [
    "CHAIN_BYTES",
    "OK",
    "AppendResult",
    "Backend",
    "BackendFactory",
    "CallMeta",
    "Capabilities",
    "MetaUpdate",
    "Snapshot",
    "StoredEvent",
    "chain_next",
    "genesis",
    "open_backend",
    "verify_chain",
]

publish(__name__, globals(), __all__)
