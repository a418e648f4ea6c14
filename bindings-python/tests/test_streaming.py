"""Streaming: every event, in order, to the terminal one, as core JSON."""

from __future__ import annotations

import json

import pytest

import orchestra
from conftest import collect


async def test_a_stream_ends_with_the_result(orch: orchestra.Orchestrator) -> None:
    events = await collect(orch.stream("sequential", "tides", agents=["researcher", "writer"]))
    assert [e.type for e in events] == [
        "run_started",
        "agent_started",
        "agent_completed",
        "agent_started",
        "agent_completed",
        "run_completed",
    ]
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert len({e.run_id for e in events}) == 1
    assert events[-1].is_terminal and not events[0].is_terminal
    result = events[-1].result
    assert result is not None
    assert result.output == "article on facts about tides"
    assert result.run_id == events[0].run_id


async def test_events_are_the_core_json(orch: orchestra.Orchestrator) -> None:
    events = await collect(orch.stream("sequential", "tides", agents=["echo"]))
    started = events[0].to_dict()
    assert started["type"] == "run_started"
    assert started["schema_version"] == orchestra.EVENT_SCHEMA_VERSION
    assert started["pattern"] == "sequential"
    assert started["agents"] == ["echo"]
    completed = events[2].to_dict()
    assert completed["message"]["role"] == "assistant"
    assert completed["message"]["name"] == "echo"
    assert completed["message"]["content"] == "tides"
    assert events[2].agent == "echo"
    # Plain JSON all the way down.
    assert json.loads(json.dumps([e.to_dict() for e in events])) == [e.to_dict() for e in events]


async def test_the_stream_knows_its_ids_before_the_first_event(orch: orchestra.Orchestrator) -> None:
    stream = orch.stream("sequential", "t", agents=["echo"], session_id="known-session")
    assert stream.session_id == "known-session"
    first = await stream.__anext__()
    assert first.run_id == stream.run_id
    result = await stream.result()
    assert result.status == "completed"


async def test_an_invalid_stream_request_raises_at_once(orch: orchestra.Orchestrator) -> None:
    with pytest.raises(orchestra.InvalidRequest) as e:
        orch.stream("sequential", "t", agents=["ghost"])
    assert e.value.code == "unknown_agent"


async def test_a_failed_run_streams_agent_failed_then_run_failed() -> None:
    o = orchestra.Orchestrator()

    def broken(inp: orchestra.AgentInput) -> str:
        raise ValueError("bad input")

    o.add_agent("broken", broken)
    events = await collect(o.stream("sequential", "t", agents=["broken"]))
    assert [e.type for e in events] == ["run_started", "agent_started", "agent_failed", "run_failed"]
    failed = events[2]
    assert failed["error"]["code"] == "agent_error"
    assert failed["error"]["message"] == "ValueError: bad input"
    assert failed["will_retry"] is False
    assert events[-1]["error"]["code"] == "agent_failed"


async def test_stream_used_as_a_context_manager(orch: orchestra.Orchestrator) -> None:
    types = []
    async with orch.stream("sequential", "t", agents=["echo"]) as events:
        async for ev in events:
            types.append(ev.type)
    assert types[-1] == "run_completed"


async def test_agents_taking_a_context_stream_deltas_and_tool_calls() -> None:
    o = orchestra.Orchestrator()

    async def talker(inp: orchestra.AgentInput, ctx: orchestra.AgentContext) -> str:
        ctx.tool_called("lookup", "c1", {"q": inp.task})
        ctx.tool_completed("lookup", "c1", ["moon"])
        for word in ("Tides ", "follow ", "the moon."):
            ctx.delta(word)
        remaining = ctx.remaining_ms
        assert not ctx.cancelled and remaining is not None and remaining > 0
        return "Tides follow the moon."

    def counter(inp: orchestra.AgentInput, ctx: orchestra.AgentContext) -> str:
        ctx.delta(f"step {ctx.step}")
        return "counted"

    o.add_agent("talker", talker)
    o.add_agent("counter", counter)
    events = [e async for e in o.stream("sequential", "tides", agents=["talker", "counter"])]
    deltas = [(e.agent, e["delta"]) for e in events if e.type == "agent_delta"]
    assert deltas == [
        ("talker", "Tides "),
        ("talker", "follow "),
        ("talker", "the moon."),
        ("counter", "step 1"),
    ]
    called = next(e for e in events if e.type == "tool_called")
    assert (called["tool"], called["call_id"], called["arguments"]) == ("lookup", "c1", {"q": "tides"})
    done = next(e for e in events if e.type == "tool_completed")
    assert done["result"] == ["moon"]
    assert [e.type for e in events].index("agent_delta") < [e.type for e in events].index("agent_completed")


async def test_an_agent_deadline_is_visible_in_the_context() -> None:
    o = orchestra.Orchestrator()
    seen = []

    def probe(inp: orchestra.AgentInput, ctx: orchestra.AgentContext) -> str:
        seen.append(ctx.remaining_ms)
        return "ok"

    o.add_agent("probe", probe)
    await o.run("sequential", "t", agents=["probe"], options={"agent_timeout_ms": 60000})
    assert seen[0] is not None and 0 < seen[0] <= 60000
