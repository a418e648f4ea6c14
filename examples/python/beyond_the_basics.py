"""Budgets, a typed parallel handoff, an external stop and replay: the
features beyond the five patterns, each checked as it runs.

Run:  python examples/python/beyond_the_basics.py
(after `maturin develop` in bindings-python, or `pip install orchestra-sdk`)
"""

from __future__ import annotations

import asyncio
from typing import List, Union

import orchestra

orch = orchestra.Orchestrator()


def priced(name: str) -> None:
    """An agent that answers "<name>: <task>" for 60 tokens costing 0.25."""

    def agent(inp: orchestra.AgentInput) -> orchestra.AgentOutput:
        return orchestra.AgentOutput(
            f"{name}: {inp.task}",
            usage=orchestra.Usage(40, 20, cost_micros=250_000),
        )

    orch.add_agent(name, agent, description=f"the {name} desk")


for desk in ("research", "draft", "edit", "review"):
    priced(desk)


def triage(
    inp: orchestra.AgentInput,
) -> Union[str, List[orchestra.Handoff]]:
    answers = [m.content for m in inp.messages if m.name not in (None, "triage")]
    if answers:
        return "joined: " + " | ".join(answers)
    ticket = {"ticket": "T-7"}
    return [
        orchestra.Handoff("research", "find the facts", payload=ticket),
        orchestra.Handoff("draft", "write a first draft", payload=ticket),
        orchestra.Handoff("review", "list the risks", payload=ticket),
    ]


orch.add_agent("triage", triage, description="routes")

gate = asyncio.Event()


async def gated(inp: orchestra.AgentInput) -> str:
    await gate.wait()
    return "gated: done"


orch.add_agent("gated", gated, description="waits for a signal")


async def main() -> None:
    # 1. A cost budget: the run stops cleanly once it has cost 0.5.
    r = await orch.run(
        "sequential",
        "a launch note",
        agents=["research", "draft", "edit", "review"],
        options={"termination": {"any": [{"max_rounds": 10}, {"max_cost": 0.5}]}},
    )
    print("cost budget:", r.termination, len(r.steps), "steps")
    assert r.termination == "max_cost: 0.5"

    # 2. A session budget across runs: 120 tokens per run, 200 for the session.
    outcomes = []
    for _ in range(3):
        r = await orch.run(
            "sequential",
            "again",
            agents=["research", "draft"],
            session_id="budgeted-session",
            options={"session_budget": {"max_tokens": 200}},
        )
        outcomes.append((len(r.steps), r.termination))
    print("session budget:", outcomes)
    assert outcomes[2] == (0, "session_max_tokens: 200")

    # 3. A typed, parallel handoff: one task to three desks at once.
    schema = {"type": "object", "required": ["ticket"]}
    handed = await orch.run(
        "handoff",
        "launch plan",
        agents=["triage", "research", "draft", "review"],
        options={
            "parallel_handoffs": True,
            "payload_schemas": {"research": schema, "draft": schema, "review": schema},
        },
    )
    print("parallel handoff:", handed.output)
    assert handed.output is not None and handed.output.startswith("joined: research: find the facts")

    # 4. An external stop: the run completes with what it has.
    events = orch.stream("sequential", "long job", agents=["research", "gated", "edit", "review"])
    stopped = None
    async for event in events:
        if event.type == "agent_started" and event.to_dict().get("step") == 1:
            orch.stop(event.run_id, reason="good enough")
            gate.set()
        if event.result is not None:
            stopped = event.result
    assert stopped is not None
    print("stop:", stopped.termination, len(stopped.steps), "steps")
    assert stopped.termination == "stopped: good enough"

    # 5. Replay: the recorded run again, event by event, no agent called.
    replayed = [e async for e in orch.replay(handed)]
    last = replayed[-1].result
    assert last is not None and last.output == handed.output
    print("replay:", len(replayed), "events")


if __name__ == "__main__":
    asyncio.run(main())
