"""Dynamic: the heuristic planner picks agents from their descriptions; a
custom planner (a Python function) can write the plan instead.

Run:  python examples/python/dynamic_planning.py
"""

from __future__ import annotations

import asyncio
from typing import Any, Dict

import orchestra

orch = orchestra.Orchestrator()
orch.add_agent("researcher", lambda inp: f"notes on {inp.task}", description="finds facts and sources")
orch.add_agent("writer", lambda inp: f"article from {inp.task}", description="writes prose and articles")
orch.add_agent("translator", lambda inp: f"traduction: {inp.task}", description="translates text to French")


def fan_out_then_write(request: Dict[str, Any]) -> Dict[str, Any]:
    """Everyone but the writer researches at once; then the writer writes."""
    others = [a["name"] for a in request["agents"] if a["name"] != "writer"]
    return {
        "steps": [
            {"pattern": "concurrent", "agents": others, "task": request["task"]},
            {"pattern": "sequential", "agents": ["writer"], "task": "write it up"},
        ],
        "rationale": "research in parallel, then write",
    }


orch.add_planner("fan_out_then_write", fan_out_then_write)


async def main() -> None:
    async for event in orch.stream("dynamic", "Find facts about tides, then write an article"):
        if event.type == "plan_created":
            plan = event["plan"]
            print("heuristic plan:", [(s["pattern"], s["agents"]) for s in plan["steps"]])
            print("  because:", plan["rationale"])
        if event.result is not None:
            print("output:", event.result.output)

    custom = await orch.run("dynamic", "Tides", options={"planner": "fan_out_then_write"})
    print("custom plan ran:", [s.agent for s in custom.steps])
    assert custom.status == "completed"


if __name__ == "__main__":
    asyncio.run(main())
