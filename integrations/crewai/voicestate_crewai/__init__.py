"""voicestate-crewai: a Crew's memory lives in the call, and a Crew resumes a call's facts.

- :class:`VoiceStateStorage`: CrewAI's memory ``StorageBackend`` on a voicestate
  store; with the owner's session, the Crew's memory is the call's (what it
  saves is recorded in the call's log, fenced; the call's facts are records).
- The context format ``"crewai"``: the call as a Crew's task inputs.
- :func:`record_result` / :func:`arecord_result`: a Crew's result back into the call.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from voicestate.plugins import lazy_exports

if TYPE_CHECKING:
    from ._format import arecord_result, record_result
    from ._storage import VoiceStateStorage

# CrewAI is imported on first use of a name, not with the package: the entry point
# (voicestate_crewai.plugin) loads this package in every process that opens a store.
_WHERE = {"VoiceStateStorage": "_storage", "record_result": "_format", "arecord_result": "_format"}

__getattr__ = lazy_exports(__name__, _WHERE)

try:
    __version__ = version("voicestate-crewai")
except PackageNotFoundError:  # pragma: no cover - a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["VoiceStateStorage", "arecord_result", "record_result"]
