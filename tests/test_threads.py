"""One Store shared by threads: each thread its own sessions, plus non-owner writes to a shared call."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from conftest import memory_url

import voicestate as vs
from voicestate.backend import genesis, verify_chain

KEYS = "t1:threads-secret-0123456789abcdef"


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_threads_share_a_store(kind: str, tmp_path: Path) -> None:
    url = memory_url() if kind == "memory" else f"sqlite:///{tmp_path / 'calls.db'}"
    store = vs.open_store(url, signing_keys=KEYS)
    shared = store.open("shared", agent="owner")
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            s = store.open(f"own-{n}", agent=f"w{n}")
            for i in range(40):
                s.record(vs.UserSpoke(f"{n}:{i}"))
                store.append("shared", vs.Note(f"from {n}: {i}"))
            s.handoff(to="next")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    for n in range(4):
        st = store.load(f"own-{n}")
        assert [t.text for t in st.turns] == [f"{n}:{i}" for i in range(40)]
        assert st.pending_handoff is not None
    log = store.tiers.deciding.backend.load("shared")
    assert [e.seq for e in log] == list(range(1, 162))
    assert verify_chain(genesis("shared"), log) == -1
    assert len(shared.refresh().notes) == 160
    store.close()
