"""The exception tree, agent failures, retries, fallbacks and timeouts."""

from __future__ import annotations

import asyncio
from typing import List

import pytest

import orchestra


def test_the_exception_tree() -> None:
    for cls in (
        orchestra.InvalidRequest,
        orchestra.AgentError,
        orchestra.Timeout,
        orchestra.Cancelled,
        orchestra.StoreError,
    ):
        assert issubclass(cls, orchestra.OrchestraError)
        assert issubclass(cls, Exception)
    e = orchestra.AgentError("boom", retryable=True)
    assert (e.code, e.retryable, str(e)) == ("agent_failed", True, "boom")


@pytest.mark.parametrize(
    ("pattern", "task", "agents", "options", "code"),
    [
        ("sequential", "t", ["ghost"], None, "unknown_agent"),
        ("wander", "t", ["echo"], None, "unknown_pattern"),
        ("sequential", "   ", ["echo"], None, "invalid_request"),
        ("sequential", "t", [], None, "no_agents"),
        ("concurrent", "t", ["echo"], {"aggregator": "loudest"}, "invalid_options"),
        ("group_chat", "t", ["echo"], {"manager": "nobody"}, "invalid_options"),
        ("dynamic", "t", ["echo"], {"planner": "nobody"}, "invalid_options"),
        ("sequential", "t", ["echo"], {"fallbacks": {"echo": ["ghost"]}}, "unknown_agent"),
    ],
)
async def test_invalid_requests_raise_before_anything_runs(
    orch: orchestra.Orchestrator, pattern: str, task: str, agents: List[str], options: object, code: str
) -> None:
    with pytest.raises(orchestra.InvalidRequest) as e:
        await orch.run(pattern, task, agents=agents, options=options)  # type: ignore[arg-type]
    assert e.value.code == code
    assert orch.active_runs == 0


async def test_an_invalid_session_id_is_an_invalid_request(orch: orchestra.Orchestrator) -> None:
    with pytest.raises(orchestra.InvalidRequest) as e:
        await orch.get_session("x" * 500)
    assert e.value.code == "invalid_session_id"


async def test_non_json_options_are_an_invalid_request(orch: orchestra.Orchestrator) -> None:
    with pytest.raises(orchestra.InvalidRequest):
        await orch.run("sequential", "t", agents=["echo"], options={"x": object()})


async def test_an_exception_in_an_agent_fails_the_run_with_its_message() -> None:
    o = orchestra.Orchestrator()

    async def broken(inp: orchestra.AgentInput) -> str:
        raise RuntimeError("the model is down")

    o.add_agent("broken", broken)
    r = await o.run("sequential", "t", agents=["broken"])
    assert r.status == "failed"
    assert r.error is not None
    assert (r.error.code, r.error.agent) == ("agent_failed", "broken")
    assert "RuntimeError: the model is down" in r.error.message
    assert r.steps[0].status == "failed"
    with pytest.raises(orchestra.AgentError) as e:
        r.raise_for_status()
    assert e.value.result is r and e.value.agent == "broken"


async def test_raise_on_error_raises_the_typed_error() -> None:
    o = orchestra.Orchestrator()
    o.add_agent("broken", lambda inp: 1 / 0)  # type: ignore[arg-type]
    with pytest.raises(orchestra.AgentError) as e:
        await o.run("sequential", "t", agents=["broken"], raise_on_error=True)
    assert e.value.code == "agent_failed"
    assert "ZeroDivisionError" in str(e.value)
    assert e.value.result is not None and e.value.result.status == "failed"


async def test_connection_errors_are_retried_and_value_errors_are_not() -> None:
    o = orchestra.Orchestrator()
    calls = {"flaky": 0, "wrong": 0}

    def flaky(inp: orchestra.AgentInput) -> str:
        calls["flaky"] += 1
        if calls["flaky"] < 3:
            raise ConnectionError("reset by peer")
        return "finally"

    def wrong(inp: orchestra.AgentInput) -> str:
        calls["wrong"] += 1
        raise ValueError("never works")

    o.add_agent("flaky", flaky)
    o.add_agent("wrong", wrong)
    retry = {"retry": {"max_retries": 3, "initial_backoff_ms": 1, "max_backoff_ms": 2}}
    events = [e async for e in o.stream("sequential", "t", agents=["flaky"], options=retry)]
    assert [e.type for e in events].count("retry") == 2
    result = events[-1].result
    assert result is not None and result.output == "finally"
    assert result.steps[0].attempts == 3

    r = await o.run("sequential", "t", agents=["wrong"], options=retry)
    assert r.status == "failed"
    assert calls["wrong"] == 1


async def test_an_agent_error_marked_retryable_is_retried() -> None:
    o = orchestra.Orchestrator()
    attempts: List[int] = []

    async def busy(inp: orchestra.AgentInput) -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise orchestra.AgentError("busy, try later", retryable=True)
        return "done"

    o.add_agent("busy", busy)
    r = await o.run(
        "sequential", "t", agents=["busy"], options={"retry": {"max_retries": 1, "initial_backoff_ms": 1}}
    )
    assert r.output == "done"
    assert len(attempts) == 2


async def test_a_fallback_answers_when_an_agent_fails() -> None:
    o = orchestra.Orchestrator()

    def primary(inp: orchestra.AgentInput) -> str:
        raise RuntimeError("primary down")

    o.add_agent("primary", primary)
    o.add_agent("backup", lambda inp: "from backup")
    events = [
        e
        async for e in o.stream(
            "sequential", "t", agents=["primary"], options={"fallbacks": {"primary": ["backup"]}}
        )
    ]
    fallback = [e for e in events if e.type == "fallback"]
    assert [(e["from"], e["to"]) for e in fallback] == [("primary", "backup")]
    result = events[-1].result
    assert result is not None and result.output == "from backup"
    assert result.steps[0].fallback_for == "primary"


async def test_a_wrong_return_type_is_invalid_agent_output() -> None:
    o = orchestra.Orchestrator()
    o.add_agent("numbers", lambda inp: 42)  # type: ignore[arg-type]  # the mistake under test
    events = [e async for e in o.stream("sequential", "t", agents=["numbers"])]
    failed = next(e for e in events if e.type == "agent_failed")
    assert failed["error"]["code"] == "invalid_agent_output"
    assert "int" in failed["error"]["message"]


async def test_a_run_past_its_timeout_is_timed_out(never: asyncio.Event) -> None:
    o = orchestra.Orchestrator()

    async def slow(inp: orchestra.AgentInput) -> str:
        await never.wait()
        return "late"

    o.add_agent("slow", slow)
    r = await o.run("sequential", "t", agents=["slow"], options={"timeout_ms": 50})
    assert r.status == "timed_out"
    assert r.error is not None and r.error.code == "timeout"
    with pytest.raises(orchestra.Timeout):
        await o.run("sequential", "t", agents=["slow"], options={"timeout_ms": 50}, raise_on_error=True)


async def test_max_iterations_surfaces_as_an_orchestra_error(orch: orchestra.Orchestrator) -> None:
    with pytest.raises(orchestra.OrchestraError) as e:
        await orch.run(
            "group_chat",
            "t",
            agents=["echo"],
            options={"max_rounds": 5, "max_iterations": 2},
            raise_on_error=True,
        )
    assert e.value.code == "max_iterations_exceeded"
    assert type(e.value) is orchestra.OrchestraError
