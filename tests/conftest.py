from __future__ import annotations

import warnings

from voicestate import EphemeralKeyWarning

# Tests that do not pass keys on purpose would warn on every store.
warnings.filterwarnings("ignore", category=EphemeralKeyWarning)
