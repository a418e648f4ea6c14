"""Overhead of orchestra against a plain-asyncio floor doing the same calls.

Three workloads with trivial Python agents:
  * sequential over 5 agents,
  * concurrent over 10 agents,
  * group chat of 10 rounds (round robin over 3 agents),
each with coroutine agents, plain-function agents, and coroutine agents that
await 1 ms (a stand-in for I/O; the first two measure pure overhead). The floor runs the
same agent calls in plain asyncio in the same process: coroutines awaited
directly (gathered for the concurrent case), plain functions on the default
executor (what keeps them off the event loop, as orchestra does).

Run:  python bindings-python/bench/bench.py            (about a minute)
      python bindings-python/bench/bench.py --quick    (a smoke run)
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any, Awaitable, Callable, Dict, List, Tuple

import orchestra


def make_input(task: str, messages: List[Dict[str, Any]]) -> orchestra.AgentInput:
    return orchestra.AgentInput(
        {"task": task, "messages": messages, "session_id": "s", "run_id": "r", "state": {}, "metadata": {}}
    )


async def async_agent(inp: orchestra.AgentInput) -> str:
    return inp.task + "."


def sync_agent(inp: orchestra.AgentInput) -> str:
    return inp.task + "."


async def io_agent(inp: orchestra.AgentInput) -> str:
    await asyncio.sleep(0.001)  # a stand-in for 1 ms of network I/O
    return inp.task + "."


# -- the floor: the same calls in plain asyncio -------------------------------


async def call(fn: Callable[[orchestra.AgentInput], Any], is_async: bool, inp: orchestra.AgentInput) -> str:
    if is_async:
        out: str = await fn(inp)
        return out
    return await asyncio.get_running_loop().run_in_executor(None, fn, inp)


async def floor_sequential(fn: Any, is_async: bool, n: int) -> str:
    out, messages = "task", [{"role": "user", "content": "task"}]
    for i in range(n):
        out = await call(fn, is_async, make_input(out, list(messages)))
        messages.append({"role": "assistant", "content": out, "name": f"a{i}"})
    return out


async def floor_concurrent(fn: Any, is_async: bool, n: int) -> str:
    messages = [{"role": "user", "content": "task"}]
    outs = await asyncio.gather(*(call(fn, is_async, make_input("task", list(messages))) for _ in range(n)))
    return "\n\n".join(f"## a{i}\n{o}" for i, o in enumerate(outs))


async def floor_group_chat(fn: Any, is_async: bool, rounds: int) -> str:
    messages = [{"role": "user", "content": "task"}]
    out = ""
    for r in range(rounds):
        out = await call(fn, is_async, make_input("task", list(messages)))
        messages.append({"role": "assistant", "content": out, "name": f"a{r % 3}"})
    return out


# -- orchestra ----------------------------------------------------------------


def build(fn: Any) -> orchestra.Orchestrator:
    orch = orchestra.Orchestrator(store=orchestra.MemoryStore(max_sessions=100_000))
    for i in range(10):
        orch.add_agent(f"a{i}", fn, description=f"agent {i}")
    return orch


WORKLOADS: List[Tuple[str, str, List[str], Dict[str, Any], Callable[..., Awaitable[str]], int]] = [
    ("sequential, 5 agents", "sequential", [f"a{i}" for i in range(5)], {}, floor_sequential, 5),
    ("concurrent, 10 agents", "concurrent", [f"a{i}" for i in range(10)], {}, floor_concurrent, 10),
    ("group chat, 10 rounds", "group_chat", ["a0", "a1", "a2"], {"max_rounds": 10}, floor_group_chat, 10),
]


async def timed(f: Callable[[], Awaitable[Any]], iterations: int) -> float:
    """Median seconds per call over `iterations` calls, in 5 batches."""
    for _ in range(max(3, iterations // 10)):  # warm-up
        await f()
    batches = []
    per_batch = max(1, iterations // 5)
    for _ in range(5):
        began = time.perf_counter()
        for _ in range(per_batch):
            await f()
        batches.append((time.perf_counter() - began) / per_batch)
    return statistics.median(batches)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--iterations", type=int, default=500)
    args = parser.parse_args()
    iterations = 20 if args.quick else args.iterations

    print(f"orchestra {orchestra.__version__}; {iterations} runs per figure, median of 5 batches")
    print(f"{'workload':<24} {'agents':<7} {'floor':>10} {'orchestra':>10} {'ratio':>6}")
    worst = 0.0
    kinds = [("async", async_agent, True), ("sync", sync_agent, False), ("io 1ms", io_agent, True)]
    for kind, fn, is_async in kinds:
        orch = build(fn)
        for label, pattern, agents, options, floor, n in WORKLOADS:
            expect = await floor(fn, is_async, n)
            got = await orch.run(pattern, "task", agents=agents, options=options or None)
            assert got.status == "completed", got.error
            assert len(got.steps) == n and bool(expect)

            async def run_floor() -> None:
                await floor(fn, is_async, n)

            async def run_orch() -> None:
                await orch.run(pattern, "task", agents=agents, options=options or None)

            runs = iterations if kind != "io 1ms" else max(10, iterations // 10)
            f = await timed(run_floor, runs)
            o = await timed(run_orch, runs)
            worst = max(worst, o / f)
            print(f"{label:<24} {kind:<7} {f * 1e3:>8.3f}ms {o * 1e3:>8.3f}ms {o / f:>5.2f}x")
    print(f"worst ratio: {worst:.2f}x")
    print("per-call overhead = (orchestra - floor) / agent calls; see docs/performance.md")


if __name__ == "__main__":
    asyncio.run(main())
