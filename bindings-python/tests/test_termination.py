"""Termination conditions, clean stops and replays."""

from __future__ import annotations

import asyncio
from typing import Any, Dict, List

import orchestra
from conftest import collect


def _counting(o: orchestra.Orchestrator, calls: List[str]) -> None:
    @o.agent(description="drafts")
    def writer(inp: orchestra.AgentInput) -> str:
        calls.append("writer")
        return f"draft {len(calls)}"

    @o.agent(description="reviews")
    def critic(inp: orchestra.AgentInput) -> str:
        calls.append("critic")
        return "APPROVED" if len(calls) >= 4 else "more"


async def test_a_custom_condition_ends_the_run() -> None:
    o = orchestra.Orchestrator()
    calls: List[str] = []
    _counting(o, calls)
    seen: List[Dict[str, Any]] = []

    def three_messages(state: Dict[str, Any]) -> bool:
        seen.append(state)
        return len(state["messages"]) >= 3

    o.add_condition("three", three_messages)
    result = await o.run(
        "group_chat",
        "a slogan",
        agents=["writer", "critic"],
        options={"max_rounds": 10, "termination": {"custom": "three"}},
    )
    assert result.status == "completed"
    assert result.termination == "custom: three"
    assert len(result.steps) == 3
    assert result.options["termination"] == {"custom": "three"}
    state = seen[-1]
    assert state["rounds"] == 3
    assert [m["name"] for m in state["messages"]] == ["writer", "critic", "writer"]
    assert isinstance(state["tokens"], int) and isinstance(state["elapsed_ms"], int)


async def test_a_raising_condition_does_not_end_the_run() -> None:
    o = orchestra.Orchestrator()
    _counting(o, [])

    def broken(state: Dict[str, Any]) -> bool:
        raise ValueError("nope")

    o.add_condition("broken", broken)
    result = await o.run(
        "group_chat",
        "a slogan",
        agents=["writer", "critic"],
        options={"max_rounds": 2, "termination": {"custom": "broken"}},
    )
    assert result.status == "completed"
    assert len(result.steps) == 2


async def test_text_mention_ends_a_group_chat() -> None:
    o = orchestra.Orchestrator()
    calls: List[str] = []
    _counting(o, calls)
    result = await o.run(
        "group_chat",
        "a slogan",
        agents=["writer", "critic"],
        options={"max_rounds": 10, "termination": {"text_mention": "APPROVED"}},
    )
    assert result.termination == "text_mention: APPROVED"
    assert calls == ["writer", "critic", "writer", "critic"]
    assert result.output == "APPROVED"


async def test_max_tokens_is_a_budget() -> None:
    o = orchestra.Orchestrator()

    @o.agent(description="spends tokens")
    def spender(inp: orchestra.AgentInput) -> orchestra.AgentOutput:
        return orchestra.AgentOutput("spent", usage=orchestra.Usage(40, 20))

    events = await collect(
        o.stream(
            "sequential",
            "t",
            agents=["spender", "spender", "spender"],
            options={"termination": {"any": [{"max_tokens": 100}, {"max_rounds": 9}]}},
        )
    )
    result = events[-1].result
    assert result is not None
    assert result.termination == "max_tokens: 100"
    assert len(result.steps) == 2
    budget = [e for e in events if e.type == "budget_exceeded"]
    assert len(budget) == 1
    assert budget[0]["budget"] == "max_tokens"
    assert budget[0]["limit"] == 100 and budget[0]["used"] == 120


async def test_an_async_condition_is_refused() -> None:
    o = orchestra.Orchestrator()

    async def later(state: Dict[str, Any]) -> bool:
        return True

    try:
        o.add_condition("later", later)  # type: ignore[arg-type]
    except TypeError as e:
        assert "plain function" in str(e)
    else:
        raise AssertionError("an async condition was accepted")


async def test_stop_ends_a_run_cleanly_at_the_next_step() -> None:
    o = orchestra.Orchestrator()
    release = asyncio.Event()
    started = asyncio.Event()
    calls: List[str] = []

    @o.agent(description="waits for the test")
    async def gate(inp: orchestra.AgentInput) -> str:
        calls.append("gate")
        started.set()
        await release.wait()
        return "gate done"

    @o.agent(description="should not run")
    def after(inp: orchestra.AgentInput) -> str:
        calls.append("after")
        return "after"

    events = o.stream("sequential", "t", agents=["gate", "after"])
    await started.wait()
    assert o.stop(events.run_id, reason="enough")
    release.set()
    got = await collect(events)
    result = got[-1].result
    assert result is not None
    assert got[-1].type == "run_completed"
    assert result.status == "completed"
    assert result.termination == "stopped: enough"
    assert calls == ["gate"]
    assert result.output == "gate done"
    assert not o.stop(events.run_id, reason="again")
    assert not o.stop("no-such-run")


_VOLATILE = {"timestamp", "duration_ms", "started_at", "finished_at", "created_at", "updated_at"}


def _stable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in _VOLATILE}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


async def test_a_replay_matches_the_original_without_calling_agents() -> None:
    o = orchestra.Orchestrator()
    calls: List[str] = []
    _counting(o, calls)
    original = await collect(
        o.stream(
            "group_chat",
            "a slogan",
            agents=["writer", "critic"],
            options={"max_rounds": 10, "termination": {"text_mention": "APPROVED"}},
        )
    )
    result = original[-1].result
    assert result is not None and result.ok
    n = len(calls)
    for record in (result, result.to_dict()):
        replay = o.replay(record)
        assert replay.run_id == result.run_id and replay.session_id == result.session_id
        replayed = await collect(replay)
        assert [_stable(e.to_dict()) for e in replayed] == [
            _stable(e.to_dict()) for e in original
        ]
    assert len(calls) == n


async def test_a_replay_of_a_session_run_needs_no_agents() -> None:
    o = orchestra.Orchestrator()
    _counting(o, [])
    result = await o.run("sequential", "tides", agents=["writer", "critic"])
    session = await o.get_session(result.session_id)
    assert session is not None
    recorded = session.run(result.run_id)
    assert recorded is not None
    empty = orchestra.Orchestrator()
    replayed = await empty.replay(recorded).result()
    assert replayed.output == result.output
    assert [s.agent for s in replayed.steps] == ["writer", "critic"]


async def test_policy_decisions_are_typed() -> None:
    o = orchestra.Orchestrator()
    attempts: List[int] = []

    @o.agent(description="flaky")
    def flaky(inp: orchestra.AgentInput) -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionError("down")
        return "ok"

    result = await o.run(
        "sequential",
        "t",
        agents=["flaky"],
        options={"retry": {"max_retries": 2, "initial_backoff_ms": 1}},
    )
    assert result.ok
    (decision,) = result.steps[0].policy
    assert decision.kind == "retry" and decision.kind in orchestra.PolicyDecision.KINDS
    assert decision.agent == "flaky"
    assert decision["attempt"] == 2
    assert decision.error is not None
    assert result.options["retry"]["max_retries"] == 2
