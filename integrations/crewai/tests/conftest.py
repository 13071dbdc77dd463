"""CrewAI runs offline here: a scripted LLM and a hashing embedder (kit.py), no API keys, no
network; CrewAI's storage goes to a temporary directory and its telemetry and tracing are off."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from voicestate.testing.asyncio_tests import pytest_pyfunc_call  # noqa: F401  (a pytest hook: async tests)

# Before crewai is imported anywhere (it reads these at import).
os.environ["CREWAI_STORAGE_DIR"] = tempfile.mkdtemp(prefix="crewai-tests-")
os.environ["CREWAI_DISABLE_TELEMETRY"] = "true"
os.environ["CREWAI_TRACING_ENABLED"] = "false"
os.environ["OTEL_SDK_DISABLED"] = "true"
os.environ.setdefault("VOICESTATE_SIGNING_KEYS", "test:voicestate-crewai-test-key-0123456789")

sys.path.insert(0, str(Path(__file__).parent))  # kit.py, and scripts run in child processes
