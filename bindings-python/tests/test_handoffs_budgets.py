"""Typed and parallel handoffs, cost budgets and session budgets from Python."""

from __future__ import annotations

from typing import Any, Dict, List

import pytest

import orchestra
from conftest import collect

INVOICE = {
    "type": "object",
    "required": ["invoice_id"],
    "properties": {"invoice_id": {"type": "string"}},
}


def billing_desk(payload: Any, seen: List[Any]) -> orchestra.Orchestrator:
    o = orchestra.Orchestrator()

    @o.agent(description="routes requests")
    def triage(inp: orchestra.AgentInput) -> orchestra.Handoff:
        assert inp.handoff is None
        return orchestra.Handoff("billing", "invoice question", payload=payload)

    @o.agent(description="invoices")
    def billing(inp: orchestra.AgentInput, ctx: orchestra.AgentContext) -> str:
        assert ctx.handoff is not None and inp.handoff == ctx.handoff
        seen.append(ctx.handoff.payload)
        return f"billing got {ctx.handoff.payload['invoice_id']} from {ctx.handoff.reason}"

    return o


async def test_a_typed_payload_reaches_the_target() -> None:
    seen: List[Any] = []
    o = billing_desk({"invoice_id": "A-1"}, seen)
    r = await o.run(
        "handoff",
        "refund?",
        agents=["triage", "billing"],
        options={"payload_schemas": {"billing": INVOICE}},
        raise_on_error=True,
    )
    assert r.output == "billing got A-1 from invoice question"
    assert seen == [{"invoice_id": "A-1"}]
    out = r.steps[0].output
    assert out is not None and out.handoff == orchestra.Handoff(
        "billing", "invoice question", {"invoice_id": "A-1"}
    )


@pytest.mark.parametrize("payload", [{"invoice_id": 7}, None])
async def test_a_bad_payload_is_refused_with_a_typed_error(payload: Any) -> None:
    seen: List[Any] = []
    o = billing_desk(payload, seen)
    r = await o.run(
        "handoff",
        "refund?",
        agents=["triage", "billing"],
        options={"payload_schemas": {"billing": INVOICE}},
    )
    assert r.status == "failed"
    assert r.error is not None and r.error.code == "invalid_handoff_payload"
    with pytest.raises(orchestra.InvalidHandoffPayloadError) as e:
        r.raise_for_status()
    assert e.value.code == "invalid_handoff_payload"
    assert isinstance(e.value, orchestra.OrchestraError)
    with pytest.raises(orchestra.InvalidHandoffPayloadError):
        await o.run(
            "handoff",
            "refund?",
            agents=["triage", "billing"],
            options={"payload_schemas": {"billing": INVOICE}},
            raise_on_error=True,
        )
    assert seen == [], "billing never ran"


def fan_out(calls: List[int]) -> orchestra.Orchestrator:
    """``triage`` asks billing and sales at once, then sums up what it heard."""
    o = orchestra.Orchestrator()

    @o.agent(description="routes requests")
    def triage(inp: orchestra.AgentInput) -> orchestra.AgentResult:
        calls.append(1)
        if len(calls) == 1:
            return [
                orchestra.Handoff("billing", "check the invoice"),
                orchestra.Handoff("sales", "offer a discount", payload={"percent": 10}),
            ]
        heard = [m.content for m in inp.messages if m.name in ("billing", "sales")]
        return "summary: " + " + ".join(heard)

    @o.agent(description="invoices")
    def billing(inp: orchestra.AgentInput) -> str:
        return f"billing({inp.task})"

    @o.agent(description="sells")
    def sales(inp: orchestra.AgentInput, ctx: orchestra.AgentContext) -> str:
        assert ctx.handoff is not None
        return f"sales({inp.task}, {ctx.handoff.payload['percent']}%)"

    return o


async def test_parallel_handoffs_come_back_to_the_agent_that_asked() -> None:
    calls: List[int] = []
    o = fan_out(calls)
    events = await collect(
        o.stream(
            "handoff",
            "t",
            agents=["triage", "billing", "sales"],
            options={"parallel_handoffs": True},
        )
    )
    r = events[-1].result
    assert r is not None
    assert r.status == "completed", r.error
    assert r.output == "summary: billing(check the invoice) + sales(offer a discount, 10%)"
    assert len(calls) == 2
    assert [e["to"] for e in events if e.type == "handoff"] == ["billing", "sales"]
    assert "handoff_conflict" not in [e.type for e in events]


async def test_several_handoffs_without_the_option_take_the_first_and_say_so() -> None:
    calls: List[int] = []
    o = fan_out(calls)
    events = await collect(o.stream("handoff", "t", agents=["triage", "billing", "sales"]))
    r = events[-1].result
    assert r is not None and r.output == "billing(t)"
    conflicts = [e for e in events if e.type == "handoff_conflict"]
    assert len(conflicts) == 1
    c = conflicts[0]
    assert (c["agent"], c["requested"], c["chosen"]) == ("triage", ["billing", "sales"], "billing")


def billed(o: orchestra.Orchestrator, name: str, calls: List[str]) -> None:
    """An agent whose every answer uses 30 tokens and costs 0.4 (400 000 micros)."""

    def agent(inp: orchestra.AgentInput) -> orchestra.AgentOutput:
        calls.append(name)
        return orchestra.AgentOutput(
            f"{name}({inp.task})", usage=orchestra.Usage(20, 10, cost_micros=400_000)
        )

    o.add_agent(name, agent, description="billed")


async def test_a_cost_budget_stops_the_run() -> None:
    o = orchestra.Orchestrator()
    calls: List[str] = []
    for name in "abcde":
        billed(o, name, calls)
    events = await collect(
        o.stream(
            "sequential",
            "t",
            agents=list("abcde"),
            options={"termination": {"any": [{"max_rounds": 10}, {"max_cost": 1.0}]}},
        )
    )
    r = events[-1].result
    assert r is not None and r.status == "completed"
    assert r.termination == "max_cost: 1"
    assert calls == ["a", "b", "c"]
    assert r.usage.cost_micros == 1_200_000
    assert r.usage == orchestra.Usage(60, 30, 90, 1_200_000)
    step_usage = r.steps[0].output.usage if r.steps[0].output else None
    assert step_usage is not None and step_usage.cost_micros == 400_000
    budget = [e for e in events if e.type == "budget_exceeded"]
    assert [(e["budget"], e["limit"], e["used"]) for e in budget] == [
        ("max_cost_micros", 1_000_000, 1_200_000)
    ]


async def test_a_session_budget_stops_the_second_run() -> None:
    o = orchestra.Orchestrator()
    calls: List[str] = []
    for name in "abc":
        billed(o, name, calls)
    opts = {"session_budget": {"max_cost": 1.5}}
    first = await o.run("sequential", "t", agents=list("abc"), session_id="py-budget", options=opts)
    assert first.termination is None and first.usage.cost_micros == 1_200_000
    second = await o.run(
        "sequential", "t", agents=list("abc"), session_id="py-budget", options=opts
    )
    assert second.status == "completed"
    assert second.termination == "session_max_cost: 1.5"
    assert len(second.steps) == 1
    assert len(calls) == 4


async def test_custom_conditions_see_the_cost() -> None:
    o = orchestra.Orchestrator()
    calls: List[str] = []
    for name in "abcd":
        billed(o, name, calls)
    seen: List[Dict[str, Any]] = []

    def pricey(state: Dict[str, Any]) -> bool:
        seen.append(state)
        return bool(state["cost_micros"] >= 800_000)

    o.add_condition("pricey", pricey)
    r = await o.run(
        "sequential",
        "t",
        agents=list("abcd"),
        options={"termination": {"custom": "pricey"}},
    )
    assert r.termination == "custom: pricey"
    assert calls == ["a", "b"]
    assert [s["cost_micros"] for s in seen] == [400_000, 800_000]
