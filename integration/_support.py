"""Helpers of the integration tests: tier URLs, reading each tier alone, a TCP gate in front of
DynamoDB (moto) that a test opens, hangs or closes, and the bodies of child processes.

Child processes are started with ``spawn`` and import this module by name (the parent's
``sys.path``, which holds this directory, is handed to them), so nothing here imports pytest.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode

import voicestate as vs
from voicestate.backend import CallMeta, StoredEvent, genesis, open_backend, verify_chain

KEYS = "it1:integration-secret-0123456789abcdef"
PREFIX = "it"

GateMode = Literal["open", "hung", "closed"]


# -- URLs -----------------------------------------------------------------------------------


def redis_tier(server_url: str, *, timeout: float = 0.5, retries: int = 0) -> str:
    """The deciding tier: the real server, a key prefix, a short connect/command timeout."""
    return f"{server_url}?prefix={PREFIX}&timeout={timeout:g}&retries={retries}"


def with_params(url: str, **params: str) -> str:
    """``url`` with query parameters set (replaced where present)."""
    base, _, query = url.partition("?")
    merged = dict(parse_qsl(query, keep_blank_values=True))
    merged.update(params)
    return f"{base}?{urlencode(merged, safe=':/')}"


def behind_tier(dynamodb_url: str, *, endpoint: str | None = None, timeout: float | None = None) -> str:
    """``dynamodb_url`` as a ``write=behind`` tier, optionally through another endpoint (a gate)."""
    params: dict[str, str] = {"write": "behind"}
    if endpoint is not None:
        params["endpoint_url"] = endpoint
    if timeout is not None:
        params["timeout"] = f"{timeout:g}"
    return with_params(dynamodb_url, **params)


def alone(url: str) -> str:
    """A tier URL without voicestate's own ``write=`` (the backend opened by itself)."""
    base, _, query = url.partition("?")
    rest = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k != "write"]
    return f"{base}?{urlencode(rest, safe=':/')}" if rest else base


# -- what each tier holds ------------------------------------------------------------------------


def tier_log(url: str, call_id: str) -> list[StoredEvent]:
    """What the backend of ``url`` holds for the call, read by a fresh client of its own."""
    backend = open_backend(alone(url))
    try:
        return list(backend.load(call_id))
    finally:
        backend.close()


def tier_meta(url: str, call_id: str) -> CallMeta | None:
    backend = open_backend(alone(url))
    try:
        return backend.get_meta(call_id)
    finally:
        backend.close()


def seq_of(url: str, call_id: str) -> int:
    """The seq the backend of ``url`` holds the call at (0: it holds no such call)."""
    meta = tier_meta(url, call_id)
    return 0 if meta is None else meta.seq


def assert_full_log(log: Sequence[StoredEvent], call_id: str, seq: int) -> None:
    """Seqs 1..seq in order, no event id twice, and the hash chain verifies from the genesis."""
    assert [e.seq for e in log] == list(range(1, seq + 1))
    assert len({e.id for e in log}) == len(log)
    assert verify_chain(genesis(call_id), list(log)) == -1


def is_prefix(short: Sequence[StoredEvent], full: Sequence[StoredEvent]) -> bool:
    """``short`` is ``full`` cut somewhere: the same events, bytes and order."""
    return list(short) == list(full[: len(short)])


def ids(items: Iterable[StoredEvent | vs.Event]) -> list[str]:
    """The event ids of stored events or decoded events, in order."""
    return [e.id for e in items]


# -- a TCP gate in front of a real server --------------------------------------------------------


class Gate:
    """A TCP proxy on loopback in front of a real server, which a test switches:

    - ``open``: connections are forwarded both ways (after ``delay`` seconds per chunk
      sent to the server, if set: a slow network);
    - ``hung``: connections are accepted and what is sent is swallowed; nothing comes back
      (a partition, or a server that stopped answering);
    - ``closed``: nothing listens on the port: a connection is refused at once.

    Changing the mode cuts every connection made before, as a network change would.
    The gate lives in the test process; child processes connect to its port too.
    """

    def __init__(self, host: str, port: int, mode: GateMode = "open") -> None:
        self.target = (host, port)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.delay = 0.0
        self.mode: GateMode = "closed"
        self.accepted = 0
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self.set(mode)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set(self, mode: GateMode) -> None:
        with self._lock:
            self.mode = mode
        self._cut()
        if mode == "closed":
            self._stop_listening()
        else:
            self._listen()

    def close(self) -> None:
        self.set("closed")

    def _listen(self) -> None:
        if self._listener is not None:
            return
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.02)
        self._listener = listener
        self._thread = threading.Thread(target=self._accept, args=(listener,), name="gate-accept", daemon=True)
        self._thread.start()

    def _stop_listening(self) -> None:
        listener, thread = self._listener, self._thread
        self._listener = self._thread = None
        if listener is not None and thread is not None:
            thread.join(5)  # it sees the listener is no longer current within one accept timeout
            listener.close()

    def _cut(self) -> None:
        with self._lock:
            conns, self._conns = self._conns, set()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def _track(self, *conns: socket.socket) -> None:
        with self._lock:
            self._conns.update(conns)

    def _accept(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            with self._lock:
                mode = self.mode
                self.accepted += 1
            if mode == "hung":
                self._track(conn)
                threading.Thread(target=self._swallow, args=(conn,), daemon=True).start()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                conn.close()
                continue
            upstream.settimeout(None)
            self._track(conn, upstream)
            threading.Thread(target=self._pump, args=(conn, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, conn, False), daemon=True).start()

    def _swallow(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while conn.recv(65536):
                pass

    def _pump(self, src: socket.socket, dst: socket.socket, to_server: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if to_server and self.delay:
                    time.sleep(self.delay)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


# -- bodies of child processes (spawn) ------------------------------------------------------------


def resume_in_another_process(urls: list[str], packet_json: str) -> dict[str, Any]:
    """Redeem the packet as ``billing`` over the same tiers, finish the tool call and end the call."""
    store = vs.open_store(*urls, signing_keys=KEYS)
    hot = store.tiers.hot[0].backend
    try:
        empty_before = hot.load(packet_call_id(packet_json)) == []
        b = store.resume(packet_json, agent="billing")
        call_id = b.call_id
        st = b.state
        seen = {
            "empty_before": empty_before,
            "owner": st.owner,
            "epoch": st.epoch,
            "texts": [t.text for t in st.turns],
            "heard": [t.heard for t in st.turns],
            "interrupted": [t.interrupted for t in st.turns],
            "pending": [t.call_id for t in st.pending_tools()],
            "slots": dict(st.slots),
            "refilled": hot.load(call_id) == store.tiers.deciding.backend.load(call_id),
        }
        b.record(vs.ToolReturned("t1", result={"charges": 2}))
        b.record(vs.AgentSpoke("I see two charges; I have refunded one"))
        seen["end_seq"] = b.end("refunded")
        seen["ids"] = [e.id for e in store.tiers.deciding.backend.load(call_id)]
        return seen
    finally:
        store.close()


def packet_call_id(packet_json: str) -> str:
    return vs.HandoffPacket.from_json(packet_json, keys=KEYS).call_id


def record_then_wait(urls: list[str], call_id: str, out: Any, go: Any) -> None:
    """Open the call, record, make every tier hold it, report; then (once told) record more
    while this process's behind tier is out of reach, report what was acknowledged, and
    wait to be killed."""
    try:
        store = vs.open_store(*urls, signing_keys=KEYS, lease=1.0)
        s = store.open(call_id, agent="triage", meta={"channel": "sip"})
        s.record(vs.UserSpoke("my card was declined"))
        turn = s.record(vs.AgentSpoke("Let me look at the last payment attempt"))
        s.record(vs.Interrupted(turn=turn, heard="Let me look", heard_ms=640))
        s.flush(all_tiers=True)
        out.put(("phase1", s.seq))
        if not go.wait(30):
            out.put(("error", "never told to go on"))
            return
        acked: list[tuple[str, int]] = []
        for i in range(6):
            ev = vs.UserSpoke(f"while the archive is out of reach {i}")
            acked.append((ev.id, s.record(ev)))
        batch = [vs.ToolCalled("t7", "check_payment", {"card": "4242"}), vs.SlotsSet({"card_ok": False})]
        seq = s.record(*batch)
        acked += [(ev.id, seq - len(batch) + 1 + i) for i, ev in enumerate(batch)]
        s.flush()  # the through tiers: the behind one is not waited for
        out.put(("acked", acked))
        time.sleep(120)  # killed here, its behind queue undrained
    except BaseException as exc:
        out.put(("error", f"{type(exc).__name__}: {exc}"))
