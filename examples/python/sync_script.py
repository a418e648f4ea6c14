"""No asyncio needed: run_sync() for plain scripts, concurrent pattern with a vote.

Run:  python examples/python/sync_script.py
"""

from __future__ import annotations

import orchestra

orch = orchestra.Orchestrator()
orch.add_agent("optimist", lambda inp: "yes", description="says yes")
orch.add_agent("realist", lambda inp: "Yes.", description="agrees, politely")
orch.add_agent("pessimist", lambda inp: "no", description="says no")

result = orch.run_sync(
    "concurrent",
    "Should we ship on Friday?",
    agents=["optimist", "realist", "pessimist"],
    options={"aggregator": "vote"},
)
print(result.output, result.data)
assert result.output == "yes"
