"""All five patterns with Python agents (sync and async)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Dict, List, Optional

import orchestra
from conftest import collect


async def test_sequential_chains_a_sync_and_an_async_agent(orch: orchestra.Orchestrator) -> None:
    r = await orch.run("sequential", "tides", agents=["researcher", "writer"])
    assert r.status == "completed"
    assert r.output == "article on facts about tides"
    assert [s.agent for s in r.steps] == ["researcher", "writer"]
    assert r.steps[1].input == "facts about tides"
    assert r.error is None and r.ok
    assert r.session_id and r.run_id and r.pattern == "sequential"


async def test_a_result_is_the_stored_record_whichever_way_it_was_awaited(orch: orchestra.Orchestrator) -> None:
    awaited = await orch.run("sequential", "tides", agents=["researcher", "writer"])
    # Outline first (answered natively), then the whole record.
    assert (awaited.status, awaited.output) == ("completed", "article on facts about tides")
    stream = orch.stream("sequential", "tides", agents=["researcher", "writer"])
    streamed = await stream.result()
    for result in (awaited, streamed):
        session = await orch.get_session(result.session_id)
        assert session is not None
        assert result.to_dict() == session.runs[-1].to_dict()
        assert result.run_id == session.runs[-1].run_id


async def test_concurrent_gives_every_agent_the_task(orch: orchestra.Orchestrator) -> None:
    r = await orch.run("concurrent", "tides", agents=["researcher", "writer", "echo"])
    assert r.status == "completed"
    assert sorted(s.agent for s in r.steps) == ["echo", "researcher", "writer"]
    assert all(s.input == "tides" for s in r.steps)
    assert r.output is not None
    for part in ("## researcher\nfacts about tides", "## writer\narticle on tides", "## echo\ntides"):
        assert part in r.output


async def test_concurrent_vote_picks_the_majority() -> None:
    o = orchestra.Orchestrator()
    o.add_agent("a", lambda inp: "Yes.")
    o.add_agent("b", lambda inp: "yes")
    o.add_agent("c", lambda inp: "no")
    r = await o.run("concurrent", "ship it?", agents=["a", "b", "c"], options={"aggregator": "vote"})
    assert r.output == "Yes."
    assert r.data["votes"] == {"yes": 2, "no": 1}


async def test_handoff_follows_a_python_handoff() -> None:
    o = orchestra.Orchestrator()

    @o.agent(description="routes requests")
    def triage(inp: orchestra.AgentInput) -> orchestra.Handoff:
        return orchestra.Handoff(to="billing", reason="a refund question")

    @o.agent(description="handles refunds")
    async def billing(inp: orchestra.AgentInput) -> str:
        return f"refunded ({inp.messages[-1].content})"

    events = await collect(o.stream("handoff", "I want my money back", agents=["triage", "billing"]))
    handoffs = [e for e in events if e.type == "handoff"]
    assert len(handoffs) == 1
    assert (handoffs[0]["from"], handoffs[0]["to"], handoffs[0]["reason"]) == (
        "triage",
        "billing",
        "a refund question",
    )
    result = events[-1].result
    assert result is not None and result.status == "completed"
    assert result.output == "refunded (a refund question)"
    assert [s.agent for s in result.steps] == ["triage", "billing"]


async def test_handoff_to_an_agent_outside_the_routes_fails_the_run() -> None:
    o = orchestra.Orchestrator()
    o.add_agent("triage", lambda inp: orchestra.Handoff("sales", "wrong desk"))
    o.add_agent("billing", lambda inp: "ok")
    o.add_agent("sales", lambda inp: "sold")
    r = await o.run(
        "handoff",
        "help",
        agents=["triage", "billing", "sales"],
        options={"routes": {"triage": ["billing"]}},
    )
    assert r.status == "failed"
    assert r.error is not None and r.error.code == "invalid_handoff"


async def test_group_chat_round_robin_until_a_text_mention() -> None:
    o = orchestra.Orchestrator()
    drafts: List[int] = []

    @o.agent(description="drafts")
    def writer(inp: orchestra.AgentInput) -> str:
        drafts.append(1)
        return f"draft {len(drafts)}"

    @o.agent(description="reviews")
    async def critic(inp: orchestra.AgentInput) -> str:
        last = inp.messages[-1].content
        return "APPROVED" if last == "draft 2" else f"revise {last}"

    r = await o.run(
        "group_chat",
        "a slogan",
        agents=["writer", "critic"],
        options={"max_rounds": 10, "termination": {"text_mention": "APPROVED"}},
    )
    assert r.status == "completed"
    assert [s.agent for s in r.steps] == ["writer", "critic", "writer", "critic"]
    assert r.termination == "text_mention: APPROVED"


async def test_group_chat_stops_at_max_rounds(orch: orchestra.Orchestrator) -> None:
    r = await orch.run("group_chat", "chat", agents=["echo", "writer"], options={"max_rounds": 3})
    assert len(r.steps) == 3
    assert [s.agent for s in r.steps] == ["echo", "writer", "echo"]


async def test_dynamic_with_the_heuristic_planner(orch: orchestra.Orchestrator) -> None:
    events = await collect(
        orch.stream(
            "dynamic",
            "Find facts about tides, then write an article",
            agents=["researcher", "writer", "echo"],
        )
    )
    plans = [e for e in events if e.type == "plan_created"]
    assert len(plans) == 1
    step = plans[0]["plan"]["steps"][0]
    assert step["pattern"] == "sequential"
    assert step["agents"] == ["researcher", "writer"]
    result = events[-1].result
    assert result is not None and result.status == "completed"
    assert result.output is not None and result.output.startswith("article on facts about")


async def test_a_custom_manager_callable_picks_the_speakers(orch: orchestra.Orchestrator) -> None:
    seen: List[Dict[str, Any]] = []

    def manager(chat: Dict[str, Any]) -> Optional[str]:
        seen.append(chat)
        order = ["writer", "echo", "writer"]
        return order[chat["round"]] if chat["round"] < len(order) else None

    orch.add_manager("scripted", manager)
    r = await orch.run(
        "group_chat", "topic", agents=["echo", "writer"], options={"manager": "scripted"}
    )
    assert r.status == "completed"
    assert [s.agent for s in r.steps] == ["writer", "echo", "writer"]
    assert [p["name"] for p in seen[0]["participants"]] == ["echo", "writer"]
    assert seen[0]["task"] == "topic"
    assert len(seen[-1]["transcript"]) == 3


async def test_an_async_manager_object_can_end_the_chat_and_shape_the_result(
    orch: orchestra.Orchestrator,
) -> None:
    class Manager:
        async def select_next(self, chat: Dict[str, Any]) -> Any:
            return ("echo", "always echo")

        def should_terminate(self, chat: Dict[str, Any]) -> Optional[str]:
            return "enough" if chat["round"] >= 2 else None

        def filter_result(self, chat: Dict[str, Any]) -> Optional[str]:
            return " | ".join(m["content"] for m in chat["transcript"])

    orch.add_manager("mgr", Manager())
    events = await collect(
        orch.stream("group_chat", "hi", agents=["echo", "writer"], options={"manager": "mgr"})
    )
    picks = [e for e in events if e.type == "speaker_selected"]
    assert [(e["agent"], e["reason"]) for e in picks] == [("echo", "always echo")] * 2
    result = events[-1].result
    assert result is not None
    assert result.output == "hi | hi"


async def test_a_manager_that_raises_fails_the_run(orch: orchestra.Orchestrator) -> None:
    def broken(chat: Dict[str, Any]) -> str:
        raise KeyError("no speaker")

    orch.add_manager("broken", broken)
    r = await orch.run("group_chat", "t", agents=["echo"], options={"manager": "broken"})
    assert r.status == "failed"
    assert r.error is not None and r.error.code == "manager_failed"
    assert "KeyError" in r.error.message


async def test_a_custom_planner_callable_writes_the_plan(orch: orchestra.Orchestrator) -> None:
    requests: List[Dict[str, Any]] = []

    async def planner(request: Dict[str, Any]) -> Dict[str, Any]:
        requests.append(request)
        return {
            "steps": [
                {"pattern": "concurrent", "agents": ["echo", "researcher"], "task": "gather"},
                {"pattern": "sequential", "agents": ["writer"], "task": "write it up"},
            ],
            "rationale": "gather then write",
        }

    orch.add_planner("two-step", planner)
    events = await collect(
        orch.stream("dynamic", "anything", options={"planner": "two-step"})
    )
    plan = next(e for e in events if e.type == "plan_created")["plan"]
    assert plan["planner"] == "two-step"
    assert plan["rationale"] == "gather then write"
    result = events[-1].result
    assert result is not None and result.status == "completed", result
    assert sorted(s.agent for s in result.steps) == ["echo", "researcher", "writer"]
    assert {a["name"] for a in requests[0]["agents"]} == {"researcher", "writer", "echo"}
    assert requests[0]["task"] == "anything"


async def test_a_planner_returning_garbage_fails_the_run(orch: orchestra.Orchestrator) -> None:
    orch.add_planner("bad", lambda request: {"steps": "nope"})
    r = await orch.run("dynamic", "t", agents=["echo"], options={"planner": "bad"})
    assert r.status == "failed"
    assert r.error is not None and r.error.code == "planner_failed"


async def test_agent_input_carries_conversation_metadata_and_ids() -> None:
    o = orchestra.Orchestrator()
    seen: List[orchestra.AgentInput] = []

    def probe(inp: orchestra.AgentInput) -> str:
        seen.append(inp)
        return "ok"

    o.add_agent("probe", probe, description="looks")
    r = await o.run(
        "sequential", "look", agents=["probe"], session_id="s-meta", metadata={"user": "ada"}
    )
    inp = seen[0]
    assert inp.task == "look"
    assert inp.metadata == {"user": "ada"}
    assert inp.session_id == "s-meta" == r.session_id
    assert inp.run_id == r.run_id
    assert [(m.role, m.content, m.name) for m in inp.messages] == [("user", "look", None)]
    assert inp.state == {}


async def test_agent_output_data_and_state_patch_reach_the_next_agent_and_the_session() -> None:
    o = orchestra.Orchestrator()

    def first(inp: orchestra.AgentInput) -> orchestra.AgentOutput:
        return orchestra.AgentOutput("counted", data={"n": 3}, state_patch={"count": 3})

    def second(inp: orchestra.AgentInput) -> str:
        return f"count is {inp.state['count']}"

    o.add_agent("first", first)
    o.add_agent("second", second)
    r = await o.run("sequential", "count", agents=["first", "second"])
    assert r.output == "count is 3"
    out = r.steps[0].output
    assert out is not None and out.data == {"n": 3}
    session = await o.get_session(r.session_id)
    assert session is not None and session.state == {"count": 3}


async def test_agent_objects_and_the_decorator_register_agents() -> None:
    o = orchestra.Orchestrator()

    class Shouter:
        name = "shouter"
        description = "shouts"

        async def invoke(self, inp: orchestra.AgentInput) -> str:
            return inp.task.upper()

    o.add_agent(Shouter())

    @o.agent
    def whisperer(inp: orchestra.AgentInput) -> str:
        """whispers"""
        return inp.task.lower()

    @o.agent(name="doubler", description="says it twice")
    def double(inp: orchestra.AgentInput) -> str:
        return inp.task * 2

    assert [(a.name, a.description) for a in o.agents] == [
        ("shouter", "shouts"),
        ("whisperer", "whispers"),
        ("doubler", "says it twice"),
    ]
    r = await o.run("sequential", "Hi", agents=["shouter", "whisperer", "doubler"])
    assert r.output == "hihi"
    assert o.remove_agent("doubler") and not o.remove_agent("doubler")


async def test_sync_agents_do_not_block_the_event_loop() -> None:
    # The sync agent waits for a signal that only a coroutine on the loop can
    # send: if it ran on the loop's thread, it would time out instead.
    o = orchestra.Orchestrator()
    signal = threading.Event()
    entered = threading.Event()

    def blocking(inp: orchestra.AgentInput) -> str:
        entered.set()
        return "unblocked" if signal.wait(10) else "the loop was blocked"

    o.add_agent("blocking", blocking)
    run = asyncio.ensure_future(o.run("sequential", "t", agents=["blocking"]))
    await asyncio.get_running_loop().run_in_executor(None, entered.wait, 10)
    signal.set()
    r = await run
    assert r.output == "unblocked"


async def test_async_agents_run_on_the_callers_loop_with_its_context() -> None:
    import contextvars

    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    var.set("from the caller")
    o = orchestra.Orchestrator()
    loops: List[asyncio.AbstractEventLoop] = []

    async def probe(inp: orchestra.AgentInput) -> str:
        loops.append(asyncio.get_running_loop())
        return var.get()

    o.add_agent("probe", probe)
    r = await o.run("sequential", "t", agents=["probe"])
    assert r.output == "from the caller"
    assert loops == [asyncio.get_running_loop()]


def test_run_sync_works_without_an_event_loop(orch: orchestra.Orchestrator) -> None:
    r = orch.run_sync("sequential", "tides", agents=["researcher", "writer"])
    assert r.output == "article on facts about tides"
    again = orch.run_sync("sequential", "more", agents=["echo"], session_id=r.session_id)
    assert again.session_id == r.session_id


async def test_run_sync_refuses_to_run_inside_a_loop(orch: orchestra.Orchestrator) -> None:
    import pytest

    with pytest.raises(RuntimeError, match="running event loop"):
        orch.run_sync("sequential", "t", agents=["echo"])


def test_patterns_lists_the_five_with_schemas() -> None:
    names = [p["name"] for p in orchestra.patterns()]
    assert names == ["sequential", "concurrent", "handoff", "group_chat", "dynamic"]
    assert all("options_schema" in p for p in orchestra.patterns())
