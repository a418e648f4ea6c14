"""The same run gives the same event JSON from Python as from Rust, Node and
REST: the events of a fixed run, normalized, equal
orchestra-core/tests/fixtures/events-golden.jsonl (see
orchestra-core/tests/golden_events.rs for the run and the normalization)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orchestra
from conftest import collect

GOLDEN = (
    Path(__file__).resolve().parents[2]
    / "orchestra-core"
    / "tests"
    / "fixtures"
    / "events-golden.jsonl"
)

RESEARCH = (
    "Research notes on 'tides': (1) background and definitions; (2) two "
    "well-established facts; (3) one open question worth a follow-up."
)
IDS = {"run_id", "session_id"}
TIMES = {"timestamp", "created_at", "started_at", "finished_at", "updated_at"}


def normalize(value: Any) -> Any:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k in sorted(value):
            if k in IDS:
                out[k] = "<id>"
            elif k in TIMES:
                out[k] = "<time>"
            elif k == "duration_ms":
                out[k] = 0
            else:
                out[k] = normalize(value[k])
        return out
    if isinstance(value, list):
        return [normalize(v) for v in value]
    return value


async def test_the_event_json_of_a_fixed_run_matches_the_golden_file() -> None:
    o = orchestra.Orchestrator()

    @o.agent(description="research notes")
    def demo_researcher(inp: orchestra.AgentInput) -> orchestra.AgentOutput:
        return orchestra.AgentOutput(RESEARCH, usage=orchestra.Usage(19, 19))

    @o.agent(description="drafts")
    async def demo_writer(inp: orchestra.AgentInput) -> orchestra.AgentOutput:
        return orchestra.AgentOutput(
            f"Draft: a short article built from: {RESEARCH}", usage=orchestra.Usage(25, 25)
        )

    events = await collect(
        o.stream("sequential", "tides", agents=["demo_researcher", "demo_writer"])
    )
    lines = "".join(
        json.dumps(normalize(e.to_dict()), separators=(",", ":"), ensure_ascii=False) + "\n"
        for e in events
    )
    assert lines == GOLDEN.read_text(encoding="utf-8")
