"""`await orch.run(...)` polls the run on the caller's event loop thread:
coroutine agents start right there, in the awaiting task, and plain
functions still run off the loop. These tests check that mixed agents,
off-thread wake-ups (timers, Redis), timeouts, cancellation, failures,
contextvars, nested runs and several loops all keep working."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import uuid
from typing import Dict, List, Optional

import pytest

import orchestra

from conftest import PATTERNS, REDIS_URL, a_hundred_runs, cancel_mid_run, waiting_agent


def mixed(o: orchestra.Orchestrator) -> None:
    """An instant coroutine, a coroutine that suspends, and a plain function."""

    async def instant(inp: orchestra.AgentInput) -> str:
        return inp.task + "i"

    async def awaiting(inp: orchestra.AgentInput) -> str:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[str] = loop.create_future()
        loop.call_soon(fut.set_result, "a")
        await asyncio.sleep(0)
        return inp.task + await fut

    def plain(inp: orchestra.AgentInput) -> str:
        return inp.task + "p"

    o.add_agent("instant", instant)
    o.add_agent("awaiting", awaiting)
    o.add_agent("plain", plain)


async def test_a_hundred_runs_mixing_instant_suspending_and_plain_agents() -> None:
    o = orchestra.Orchestrator()
    mixed(o)
    results = await a_hundred_runs(o, ["instant", "awaiting", "plain"], lambda i: f"t{i}")
    assert [r.status for r in results] == ["completed"] * 100
    assert len({r.run_id for r in results}) == 100
    for i, r in enumerate(results):
        assert len(r.steps) == 3
        if r.pattern == "sequential":
            assert r.output == f"t{i}iap"
        if r.pattern == "concurrent":
            assert sorted(s.output.content for s in r.steps if s.output) == [f"t{i}a", f"t{i}i", f"t{i}p"]
    assert o.active_runs == 0


async def test_an_instant_coroutine_runs_in_the_awaiting_task() -> None:
    o = orchestra.Orchestrator()
    seen: List[Optional[asyncio.Task[object]]] = []
    threads: List[int] = []

    async def here(inp: orchestra.AgentInput) -> str:
        seen.append(asyncio.current_task())
        threads.append(threading.get_ident())
        return "ok"

    o.add_agent("here", here)
    r = await o.run("sequential", "t", agents=["here", "here"])
    assert r.output == "ok"
    # No task of its own and no other thread: the call did not hop.
    assert seen == [asyncio.current_task()] * 2
    assert threads == [threading.get_ident()] * 2


async def test_plain_functions_run_off_the_loop_thread() -> None:
    o = orchestra.Orchestrator()
    threads: List[int] = []

    def plain(inp: orchestra.AgentInput) -> str:
        threads.append(threading.get_ident())
        return "ok"

    o.add_agent("plain", plain)
    r = await o.run("concurrent", "t", agents=["plain"])
    assert r.output is not None and "ok" in r.output
    assert threads and threading.get_ident() not in threads


async def test_an_agent_awaiting_a_timer() -> None:
    o = orchestra.Orchestrator()

    async def sleepy(inp: orchestra.AgentInput) -> str:
        await asyncio.sleep(0.01)
        return inp.task + " rested"

    o.add_agent("sleepy", sleepy)
    r = await o.run("sequential", "t", agents=["sleepy", "sleepy"])
    assert r.output == "t rested rested"


async def test_runs_on_a_redis_store_wake_up_from_other_threads(redis_prefix: str) -> None:
    o = orchestra.Orchestrator(store=orchestra.RedisStore(REDIS_URL, prefix=redis_prefix))
    mixed(o)
    first = await o.run("sequential", "t", agents=["instant", "awaiting", "plain"])
    assert first.output == "tiap"
    more = await asyncio.gather(
        *(
            o.run(PATTERNS[i % 2], f"m{i}", agents=["instant", "plain"], session_id=first.session_id)
            for i in range(10)
        )
    )
    assert [r.status for r in more] == ["completed"] * 10
    session = await o.get_session(first.session_id)
    assert session is not None
    assert len(session.runs) == 11
    assert await o.delete_session(first.session_id) is True


async def test_a_timeout_cancels_a_suspended_agent_coroutine(never: asyncio.Event) -> None:
    o = orchestra.Orchestrator()
    _, cancelled = waiting_agent(o, never)

    async def instant(inp: orchestra.AgentInput) -> str:
        return "quick"

    o.add_agent("instant", instant)
    r = await o.run("sequential", "t", agents=["instant", "wait"], options={"timeout_ms": 50})
    assert r.status == "timed_out"
    assert r.error is not None and r.error.code == "timeout"
    await asyncio.wait_for(cancelled.wait(), 10)
    assert o.active_runs == 0


async def test_cancelling_the_awaiting_task_mid_run(never: asyncio.Event) -> None:
    o = orchestra.Orchestrator()
    started, cancelled = waiting_agent(o, never)
    mixed(o)
    sid = str(uuid.uuid4())
    task = asyncio.ensure_future(
        o.run("concurrent", "t", agents=["instant", "awaiting", "plain", "wait"], session_id=sid)
    )
    await cancel_mid_run(o, task, started, sid)
    await asyncio.wait_for(cancelled.wait(), 10)
    assert o.active_runs == 0


async def test_wait_for_a_run_that_is_too_slow_cancels_it(never: asyncio.Event) -> None:
    o = orchestra.Orchestrator()
    started = asyncio.Event()

    async def wait(inp: orchestra.AgentInput) -> str:
        started.set()
        await never.wait()
        return "never"

    o.add_agent("wait", wait)
    sid = str(uuid.uuid4())
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(o.run("sequential", "t", agents=["wait"], session_id=sid), 0.05)
    assert started.is_set()
    session = await o.get_session(sid)
    assert session is not None
    assert [r.status for r in session.runs] == ["cancelled"]
    assert o.active_runs == 0


async def test_agents_raising_before_and_after_suspending() -> None:
    o = orchestra.Orchestrator()

    async def at_once(inp: orchestra.AgentInput) -> str:
        raise ValueError("at once")

    async def later(inp: orchestra.AgentInput) -> str:
        await asyncio.sleep(0)
        raise KeyError("later")

    def plain(inp: orchestra.AgentInput) -> str:
        raise RuntimeError("plain")

    o.add_agent("at_once", at_once)
    o.add_agent("later", later)
    o.add_agent("plain", plain)
    for name, message in [("at_once", "ValueError: at once"), ("later", "KeyError"), ("plain", "RuntimeError: plain")]:
        r = await o.run("sequential", "t", agents=[name])
        assert r.status == "failed", name
        assert r.error is not None, name
        assert message in r.error.message, (name, r.error.message)
    with pytest.raises(orchestra.AgentError):
        await o.run("sequential", "t", agents=["at_once"], raise_on_error=True)


async def test_contextvars_reach_agents_and_do_not_leak_back() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    var.set("caller")
    o = orchestra.Orchestrator()

    async def instant(inp: orchestra.AgentInput) -> str:
        value = var.get()
        var.set("instant")
        return value

    async def suspending(inp: orchestra.AgentInput) -> str:
        before = var.get()
        var.set("suspending")
        await asyncio.sleep(0)
        return f"{before}/{var.get()}"

    o.add_agent("instant", instant)
    o.add_agent("suspending", suspending)
    r = await o.run("concurrent", "t", agents=["instant", "suspending"])
    assert sorted(s.output.content for s in r.steps if s.output) == ["caller", "caller/suspending"]
    assert var.get() == "caller"


async def test_a_run_inside_an_agent() -> None:
    o = orchestra.Orchestrator()
    mixed(o)

    async def nested(inp: orchestra.AgentInput) -> str:
        inner = await o.run("sequential", inp.task, agents=["instant", "awaiting", "plain"])
        return f"[{inner.output}]"

    o.add_agent("nested", nested)
    r = await o.run("sequential", "t", agents=["instant", "nested", "instant"])
    assert r.output == "[tiiap]i"


def test_two_event_loops_in_two_threads() -> None:
    o = orchestra.Orchestrator()
    mixed(o)
    both = threading.Barrier(2)
    loops: Dict[str, List[asyncio.AbstractEventLoop]] = {"A": [], "B": []}

    def meet(inp: orchestra.AgentInput) -> str:
        # Passes only while a run of each thread is in flight.
        both.wait(10)
        return inp.task + "m"

    async def where(inp: orchestra.AgentInput) -> str:
        loops[inp.task[0]].append(asyncio.get_running_loop())
        return inp.task + "w"

    o.add_agent("meet", meet)
    o.add_agent("where", where)
    outputs: Dict[str, List[Optional[str]]] = {}
    own: Dict[str, asyncio.AbstractEventLoop] = {}
    errors: List[BaseException] = []

    async def main(name: str) -> None:
        own[name] = asyncio.get_running_loop()
        first = await o.run("sequential", name, agents=["where", "meet", "awaiting"])
        rest = await asyncio.gather(
            *(o.run(PATTERNS[i % 3], f"{name}{i}", agents=["where", "instant", "plain"]) for i in range(20))
        )
        outputs[name] = [first.output] + [r.status for r in rest]

    def thread(name: str) -> None:
        try:
            asyncio.run(main(name))
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=thread, args=(n,)) for n in ("A", "B")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    for name in ("A", "B"):
        assert outputs[name] == [f"{name}wma"] + ["completed"] * 20
        assert loops[name] and all(lp is own[name] for lp in loops[name])


async def test_closing_a_run_mid_flight_cancels_it(never: asyncio.Event) -> None:
    o = orchestra.Orchestrator()
    _, cancelled = waiting_agent(o, never)
    sid = str(uuid.uuid4())
    run = o.run("sequential", "t", agents=["wait"], session_id=sid)
    # Step the coroutine by hand up to the agent's suspension, then drop it.
    yielded = run.send(None)
    assert isinstance(yielded, asyncio.Future)
    assert o.active_runs == 1
    run.close()
    await asyncio.wait_for(cancelled.wait(), 10)
    # The core records a dropped run as cancelled from a task of its own.
    for _ in range(1000):
        session = await o.get_session(sid)
        if session is not None and session.runs and session.runs[0].status == "cancelled":
            break
        await asyncio.sleep(0.01)
    assert session is not None and [r.status for r in session.runs] == ["cancelled"]
    assert o.active_runs == 0


async def test_run_sync_inside_a_plain_function_agent() -> None:
    # The nested run's loop runs on a thread of the blocking pool.
    o = orchestra.Orchestrator()
    mixed(o)

    def nested(inp: orchestra.AgentInput) -> str:
        inner = o.run_sync("sequential", inp.task, agents=["instant", "awaiting"])
        return f"[{inner.output}]"

    o.add_agent("nested", nested)
    results = await asyncio.gather(
        *(o.run("sequential", f"t{i}", agents=["instant", "nested", "plain"]) for i in range(10))
    )
    assert [r.output for r in results] == [f"[t{i}iia]p" for i in range(10)]
