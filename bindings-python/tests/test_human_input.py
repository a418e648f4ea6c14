"""Runs that pause for a person and resume with the answer, in every pattern."""

from __future__ import annotations

import asyncio
from typing import Any, Dict, List, Optional

import pytest

import orchestra
from conftest import collect


class Counter:
    def __init__(self) -> None:
        self.calls: Dict[str, int] = {}

    def hit(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    def __getitem__(self, name: str) -> int:
        return self.calls.get(name, 0)


def add_counted(o: orchestra.Orchestrator, name: str, counter: Counter) -> None:
    def agent(inp: orchestra.AgentInput) -> str:
        counter.hit(name)
        return f"{name}({inp.task})"

    o.add_agent(name, agent, description=f"{name} agent")


def add_asker(o: orchestra.Orchestrator, name: str, counter: Counter, *, is_async: bool = False) -> None:
    """An agent that asks for an integer, then answers with it."""

    def answer(inp: orchestra.AgentInput, ctx: orchestra.AgentContext) -> str:
        counter.hit(name)
        if ctx.answer is None:
            raise orchestra.InputRequired(
                "How many?", schema={"type": "integer"}, context={"asked_by": name}
            )
        assert inp.answer == ctx.answer
        return f"{name} heard {ctx.answer}"

    if is_async:

        async def async_answer(inp: orchestra.AgentInput, ctx: orchestra.AgentContext) -> str:
            await asyncio.sleep(0)
            return answer(inp, ctx)

        o.add_agent(name, async_answer, description=f"{name} asks a person")
    else:
        o.add_agent(name, answer, description=f"{name} asks a person")


async def test_sequential_pauses_and_resumes_without_rerunning_steps() -> None:
    o, n = orchestra.Orchestrator(), Counter()
    add_counted(o, "a", n)
    add_asker(o, "ask", n)
    add_counted(o, "c", n)
    paused = await o.run("sequential", "count", agents=["a", "ask", "c"])
    assert paused.status == "waiting_for_input" and paused.waiting and not paused.ok
    q = paused.input
    assert q is not None
    assert (q.key, q.kind, q.agent, q.step, q.prompt) == ("step:1", "agent", "ask", 1, "How many?")
    assert q.schema == {"type": "integer"} and q.context == {"asked_by": "ask"}
    assert q.requested_at and q.expires_at is None
    assert len(paused.steps) == 1 and n["c"] == 0
    # A pause is not a failure.
    assert paused.raise_for_status() is paused

    stored = await o.get_run(paused.run_id)
    assert stored is not None and stored.status == "waiting_for_input"
    assert stored.input is not None and stored.input.key == "step:1"

    done = await o.resume(paused.run_id, 7)
    assert done.status == "completed", done.error
    assert done.output == "c(ask heard 7)"
    assert len(done.steps) == 3 and done.input is None
    assert done.answers == {"step:1": 7}
    assert (n["a"], n["ask"], n["c"]) == (1, 2, 1)
    assert done.checkpoint is not None and done.checkpoint["resumes"] == 1
    session = await o.get_session(done.session_id)
    assert session is not None and len(session.messages) == 4


async def test_concurrent_with_an_async_agent_resumes_on_the_callers_loop() -> None:
    o, n = orchestra.Orchestrator(), Counter()
    add_counted(o, "a", n)
    add_asker(o, "ask", n, is_async=True)
    add_counted(o, "c", n)
    paused = await o.run("concurrent", "t", agents=["a", "ask", "c"])
    assert paused.status == "waiting_for_input"
    assert len(paused.steps) == 2, "the other branches are recorded"
    done = await o.resume(paused.run_id, 5)
    assert done.status == "completed", done.error
    assert done.output is not None and "ask heard 5" in done.output
    assert (n["a"], n["ask"], n["c"]) == (1, 2, 1)


async def test_handoff_to_an_agent_that_asks_resumes_as_a_stream() -> None:
    o, n = orchestra.Orchestrator(), Counter()

    def triage(inp: orchestra.AgentInput) -> orchestra.Handoff:
        n.hit("triage")
        return orchestra.Handoff("ask", "needs a number")

    o.add_agent("triage", triage, description="routes")
    add_asker(o, "ask", n, is_async=True)
    paused = await o.run("handoff", "t", agents=["triage", "ask"])
    assert paused.status == "waiting_for_input"
    assert paused.input is not None and paused.input.agent == "ask"

    events = await collect(o.resume_stream(paused.run_id, 9))
    assert events[0].type == "run_resumed"
    assert events[0]["recorded_steps"] == 1 and events[0]["answered"] == "step:1"
    assert events[-1].type == "run_completed"
    result = events[-1].result
    assert result is not None and result.output == "ask heard 9"
    assert (n["triage"], n["ask"]) == (1, 2)


async def test_group_chat_with_a_human_participant() -> None:
    o, n = orchestra.Orchestrator(), Counter()
    add_counted(o, "writer", n)
    o.add_human("editor", description="the editor", prompt="Your notes on the draft?")
    order = ["writer", "editor", "writer"]
    asked: List[int] = []

    async def script(chat: Dict[str, Any]) -> Optional[str]:
        # A coroutine manager: the resumed run calls it on this event loop.
        await asyncio.sleep(0)
        asked.append(chat["round"])
        return order[chat["round"]] if chat["round"] < len(order) else None

    o.add_manager("script", script)
    options = {"manager": "script", "max_rounds": 3}
    events = await collect(o.stream("group_chat", "draft", agents=["writer", "editor"], options=options))
    last = events[-1]
    assert last.type == "input_requested" and last.is_terminal
    request, paused = last.request, last.result
    assert request is not None and paused is not None
    assert (request.kind, request.agent, request.prompt) == ("human", "editor", "Your notes on the draft?")
    assert request.context["last_message"]["name"] == "writer"
    assert paused.status == "waiting_for_input"

    with pytest.raises(orchestra.InvalidAnswerError) as bad:
        await o.resume(paused.run_id, "")
    assert bad.value.code == "invalid_answer"
    assert isinstance(bad.value, orchestra.InvalidRequest)

    resumed = await collect(o.resume_stream(paused.run_id, "tighten the intro"))
    kinds = [e.type for e in resumed]
    assert kinds[0] == "run_resumed" and kinds[-1] == "run_completed"
    assert kinds.count("agent_started") == 2, kinds
    done = resumed[-1].result
    assert done is not None
    assert done.status == "completed", done.error
    output = done.steps[1].output
    assert output is not None and output.content == "tighten the intro"
    assert done.steps[1].agent == "editor"
    assert n["writer"] == 2
    assert asked == [0, 1, 2], "rounds 0 and 1 come from the record"


async def test_dynamic_plans_wait_for_approval() -> None:
    o, n = orchestra.Orchestrator(), Counter()
    add_counted(o, "researcher", n)
    options = {"approve_plan": True}
    paused = await o.run("dynamic", "research tides", agents=["researcher"], options=options)
    q = paused.input
    assert q is not None and (q.kind, q.key) == ("plan", "approve_plan:0")
    assert isinstance(q.context["plan"]["steps"], list)
    assert n["researcher"] == 0
    done = await o.resume(paused.run_id, {"approved": True})
    assert done.status == "completed", done.error
    assert n["researcher"] == 1

    paused = await o.run("dynamic", "research tides", agents=["researcher"], options=options)
    denied = await o.resume(paused.run_id, {"approved": False, "reason": "too broad"})
    assert denied.status == "failed"
    assert denied.error is not None and denied.error.code == "approval_denied"
    assert "too broad" in denied.error.message
    with pytest.raises(orchestra.ApprovalDeniedError) as e:
        denied.raise_for_status()
    assert e.value.result is denied
    assert n["researcher"] == 1


async def test_named_agents_act_only_after_approval() -> None:
    o, n = orchestra.Orchestrator(), Counter()
    add_counted(o, "a", n)
    add_counted(o, "b", n)
    options = {"approve_agents": ["b"]}
    paused = await o.run("sequential", "t", agents=["a", "b"], options=options)
    q = paused.input
    assert q is not None and (q.kind, q.agent) == ("approval", "b")
    assert n["b"] == 0
    done = await o.resume(paused.run_id, True)
    assert done.output == "b(a(t))"
    assert n["b"] == 1

    paused = await o.run("sequential", "t", agents=["a", "b"], options=options)
    with pytest.raises(orchestra.ApprovalDeniedError):
        await o.resume(paused.run_id, False, raise_on_error=True)
    record = await o.get_run(paused.run_id)
    assert record is not None and record.status == "failed"
    assert record.error is not None and record.error.code == "approval_denied"
    assert n["b"] == 1


async def test_a_bad_answer_is_refused_and_the_run_keeps_waiting() -> None:
    o, n = orchestra.Orchestrator(), Counter()
    add_asker(o, "ask", n)
    paused = await o.run("sequential", "t", agents=["ask"])
    with pytest.raises(orchestra.InvalidAnswerError) as bad:
        await o.resume(paused.run_id, "seven")
    assert "integer" in str(bad.value)
    with pytest.raises(orchestra.InvalidAnswerError):
        await collect(o.resume_stream(paused.run_id, "seven"))
    with pytest.raises(orchestra.RunStateError) as missing:
        await o.resume(paused.run_id)
    assert missing.value.code == "run_not_waiting"
    still = await o.get_run(paused.run_id)
    assert still is not None and still.status == "waiting_for_input"
    assert n["ask"] == 1, "a refused answer calls no agent"

    done = await o.resume(paused.run_id, 3)
    assert done.output == "ask heard 3"
    with pytest.raises(orchestra.RunStateError):
        await o.resume(paused.run_id, 3)
    with pytest.raises(orchestra.RunNotFoundError) as unknown:
        await o.resume("no-such-run", 1)
    assert unknown.value.code == "run_not_found"
    assert await o.get_run("no-such-run") is None


async def test_only_one_of_two_concurrent_answers_resumes_the_run() -> None:
    o, n = orchestra.Orchestrator(), Counter()
    add_asker(o, "ask", n, is_async=True)
    paused = await o.run("sequential", "t", agents=["ask"])
    outcomes = await asyncio.gather(
        o.resume(paused.run_id, 1), o.resume(paused.run_id, 2), return_exceptions=True
    )
    done = [r for r in outcomes if isinstance(r, orchestra.RunResult)]
    refused = [r for r in outcomes if isinstance(r, orchestra.RunStateError)]
    assert len(done) == 1 and len(refused) == 1, outcomes
    assert done[0].status == "completed"
    assert n["ask"] == 2


async def test_an_expired_question_ends_the_run_timed_out() -> None:
    o, n = orchestra.Orchestrator(), Counter()
    add_asker(o, "ask", n)
    paused = await o.run("sequential", "t", agents=["ask"], options={"input_timeout_ms": 0})
    assert paused.input is not None and paused.input.expires_at is not None
    with pytest.raises(orchestra.InputExpiredError) as e:
        await o.resume(paused.run_id, 1)
    assert isinstance(e.value, orchestra.Timeout)
    record = await o.get_run(paused.run_id)
    assert record is not None and record.status == "timed_out"
    assert record.error is not None and record.error.code == "input_expired"


async def test_a_waiting_run_can_be_cancelled() -> None:
    o, n = orchestra.Orchestrator(), Counter()
    add_asker(o, "ask", n)
    paused = await o.run("sequential", "t", agents=["ask"])
    assert await o.cancel_run(paused.run_id) is True
    record = await o.get_run(paused.run_id)
    assert record is not None and record.status == "cancelled"
    assert await o.cancel_run(paused.run_id) is False
    with pytest.raises(orchestra.RunStateError):
        await o.resume(paused.run_id, 1)
    assert await o.cancel_run("no-such-run") is False


async def test_a_paused_stream_ends_with_input_requested_and_the_resumed_one_starts_with_run_resumed() -> None:
    o, n = orchestra.Orchestrator(), Counter()
    add_counted(o, "a", n)
    add_asker(o, "ask", n)
    events = await collect(o.stream("sequential", "t", agents=["a", "ask"]))
    kinds = [e.type for e in events]
    assert kinds[0] == "run_started" and kinds[-1] == "input_requested", kinds
    assert "run_completed" not in kinds
    last = events[-1]
    assert last.request is not None and last.request.key == "step:1"
    paused = last.result
    assert paused is not None and paused.status == "waiting_for_input"

    stream = o.resume_stream(paused.run_id, 2)
    assert stream.run_id == paused.run_id
    resumed = await collect(stream)
    kinds = [e.type for e in resumed]
    assert kinds[0] == "run_resumed" and kinds[-1] == "run_completed", kinds
    assert stream.session_id == paused.session_id
    assert [e.seq for e in resumed] == sorted(e.seq for e in resumed)
    started = [e.agent for e in resumed if e.type == "agent_started"]
    assert started == ["ask"], "the recorded step of a is not run again"
    assert n["a"] == 1


async def test_an_agent_may_return_its_question_and_ask_twice() -> None:
    o = orchestra.Orchestrator()

    async def form(inp: orchestra.AgentInput, ctx: orchestra.AgentContext) -> Any:
        if ctx.answer is None:
            return orchestra.InputRequired("Name?", schema={"type": "string"})
        return f"hello {ctx.answer}"

    def survey(inp: orchestra.AgentInput, ctx: orchestra.AgentContext) -> str:
        if ctx.answer is None:
            raise orchestra.InputRequired("Rating?", {"type": "integer", "minimum": 1})
        return f"{inp.task} rated {ctx.answer}"

    o.add_agent("form", form)
    o.add_agent("survey", survey)
    first = await o.run("sequential", "t", agents=["form", "survey"])
    assert first.input is not None and first.input.prompt == "Name?"
    second = await o.resume(first.run_id, "Ada")
    assert second.status == "waiting_for_input"
    assert second.input is not None and (second.input.prompt, second.input.step) == ("Rating?", 1)
    with pytest.raises(orchestra.InvalidAnswerError):
        await o.resume(first.run_id, 0)
    done = await o.resume(first.run_id, 5)
    assert done.output == "hello Ada rated 5"
    assert done.answers == {"step:0": "Ada", "step:1": 5}


async def test_an_input_required_with_a_schema_that_is_not_json_fails_the_step() -> None:
    o = orchestra.Orchestrator()

    def bad(inp: orchestra.AgentInput) -> str:
        raise orchestra.InputRequired("?", schema={"type": object()})

    o.add_agent("bad", bad)
    r = await o.run("sequential", "t", agents=["bad"])
    assert r.status == "failed"
    assert r.error is not None and "JSON" in r.error.message


async def test_resume_rejects_an_answer_that_is_not_json() -> None:
    o = orchestra.Orchestrator()
    with pytest.raises(orchestra.InvalidRequest):
        await o.resume("some-run", object())
