"""Persisting a Pipecat Flow (``pipecat.flows.FlowManager``) in the call.

Flows keeps ``FlowManager.state`` (a dict) and the current node in memory
only. :func:`save_flow` records both as one private slot of the session's
agent (scope ``agent:<name>``: other agents neither see nor render it);
:func:`restore_flow` refills the state and re-enters the saved node, through
``Flow.node(name)`` for a declarative flow or the app's own node factory.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from pipecat.flows import Flow, FlowManager, NodeConfig

import voicestate as vs

FLOW_SLOT = "pipecat_flow"
"""The private slot that holds ``{"node": name, "state": {...}}``."""


def save_flow(session: vs.Session, flow_manager: FlowManager) -> str:
    """Record the flow's current node and state (``record_nowait``: no I/O here; the next
    handoff, flush or ``end`` makes it durable). Returns the event's id.

    Call it after each transition (in the transition function, once the state
    is updated, or from a node's ``post_actions``). The state must be JSON."""
    try:
        state = json.loads(json.dumps(flow_manager.state))
    except (TypeError, ValueError) as exc:
        raise vs.InvalidArgument(f"FlowManager.state must hold JSON values to be saved: {exc}") from exc
    value = {"node": flow_manager.current_node, "state": state}
    return session.record_nowait(vs.SlotsSet({FLOW_SLOT: value}, scope=f"agent:{session.agent}"))


def saved_flow(state: vs.CallState, agent: str) -> dict[str, Any] | None:
    """What :func:`save_flow` last recorded for ``agent`` in ``state``, or ``None``."""
    saved = state.private_slots.get(agent, {}).get(FLOW_SLOT)
    return dict(saved) if isinstance(saved, dict) else None


async def restore_flow(
    session: vs.Session,
    flow_manager: FlowManager,
    nodes: Flow | Callable[[str], NodeConfig],
    *,
    agent: str | None = None,
) -> str | None:
    """Refill ``flow_manager.state`` and enter the saved node; returns its name, or ``None``
    when nothing was saved (then the app starts the flow as usual).

    ``nodes`` gives the node config for a name: a declarative ``Flow`` (its
    ``node(name)``) or the app's factory. ``agent`` is whose saved flow to
    restore (default: the session's agent; after a handoff between agents that
    share one flow, the sender's name). The manager is initialized with the
    node if it was not yet, else transitions to it.
    """
    saved = saved_flow(session.state, agent or session.agent)
    if saved is None:
        return None
    name = saved.get("node")
    flow_manager.state.clear()
    flow_manager.state.update(saved.get("state") or {})
    if not isinstance(name, str):
        return None
    try:
        node = nodes.node(name) if isinstance(nodes, Flow) else nodes(name)
    except Exception as exc:
        raise vs.ConfigError(
            f"the saved flow node {name!r} cannot be built again ({exc}); give every node a 'name' "
            "that Flow.node or the node factory knows"
        ) from exc
    if flow_manager.current_node is None:
        before = flow_manager.current_node
        await flow_manager.initialize(node)  # a manager not yet started: start it at the saved node
        if flow_manager.current_node != before:
            return name  # entered once; never run the node's actions twice
    if flow_manager.current_node != name:  # a manager already running elsewhere: transition
        await flow_manager.set_node_from_config(node)
    return name
