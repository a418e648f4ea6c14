"""Adapters between Python callables and the native core.

The native side calls each adapted function with one JSON string (for
agents, a native input that has the task and encodes the rest as JSON on
demand) and expects a ``(kind, payload)`` tuple back (or a coroutine
producing one):

* ``(0, text)``: an agent's plain-text answer,
* ``(1, json)``: JSON (an AgentOutput, a speaker choice, a plan…),
* ``(2, json)``: a failure ``{"message", "retryable", "invalid_output"}``,
* ``(3, json)``: an agent's question for a person ``{"prompt", "schema", "context"}``
  (``orchestra.InputRequired``, raised or returned).

Exceptions raised by user code are turned into failures here, so the core
sees them as ordinary agent failures (``agent_failed`` events, retry and
fallback policy). They are logged on the ``orchestra`` logger at DEBUG level
with their traceback.
"""

from __future__ import annotations

import asyncio
import collections.abc
import contextvars
import functools
import inspect
import json
import logging
import sys
from typing import Any, Callable, Optional, Tuple

from . import _orchestra as _native
from ._errors import AgentError, InputRequired
from ._types import AgentInput, AgentOutput, Handoff

log = logging.getLogger("orchestra")

Reply = Tuple[int, str]
TEXT, JSON, FAILURE, INPUT = 0, 1, 2, 3

_RETRYABLE = (TimeoutError, asyncio.TimeoutError, ConnectionError)


def is_async_callable(fn: Any) -> bool:
    """True for coroutine functions, also behind functools.partial or __call__."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)
    return call is not None and inspect.iscoroutinefunction(call)


def wants_context(fn: Any) -> bool:
    """True when ``fn`` takes a second positional argument (the AgentContext)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return False
    positional = 0
    for p in sig.parameters.values():
        if p.kind is p.VAR_POSITIONAL:
            return True
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            positional += 1
    return positional >= 2


class AgentContext:
    """What an agent can do besides answering; passed as the second argument
    to agents that take two (``def agent(inp, ctx)``)."""

    __slots__ = ("_native", "_handoff", "_input")

    def __init__(self, native: _native.AgentContext, handoff: Optional[Handoff] = None) -> None:
        self._native = native
        self._handoff = handoff
        # Set by the adapter: the handoff is read from the input on demand.
        self._input: Optional[AgentInput] = None

    def delta(self, text: str) -> None:
        """Streams a piece of output (e.g. LLM tokens) as an ``agent_delta`` event."""
        self._native.delta(text)

    def tool_called(self, tool: str, call_id: str, arguments: Any = None) -> None:
        """Reports a tool call (``tool_called``); ``arguments`` is any JSON value."""
        self._native.tool_called(tool, call_id, json.dumps(arguments))

    def tool_completed(self, tool: str, call_id: str, result: Any = None) -> None:
        """Reports a tool result (``tool_completed``); ``result`` is any JSON value."""
        self._native.tool_completed(tool, call_id, json.dumps(result))

    @property
    def cancelled(self) -> bool:
        """True once the run is cancelled or this call's deadline has passed."""
        return self._native.cancelled

    @property
    def remaining_ms(self) -> Optional[int]:
        """Milliseconds left before this call's deadline, if it has one."""
        return self._native.remaining_ms

    @property
    def step(self) -> int:
        """The step number of this call within the run."""
        return self._native.step

    @property
    def answer(self) -> Any:
        """The answer to the question this agent asked at this step
        (``raise orchestra.InputRequired(...)``), once the run was resumed
        with it; None before that."""
        raw = self._native.answer_json
        return json.loads(raw) if raw is not None else None

    @property
    def handoff(self) -> Optional[Handoff]:
        """In handoff runs, the handoff that made this agent active, with its
        typed ``payload``; None for the first agent and in other patterns."""
        return self._input.handoff if self._input is not None else self._handoff


def failure(exc: BaseException, what: str) -> Reply:
    retryable = getattr(exc, "retryable", None)
    if not isinstance(retryable, bool):
        retryable = isinstance(exc, _RETRYABLE)
    if isinstance(exc, AgentError):
        message = str(exc)
    else:
        message = f"{type(exc).__name__}: {exc}"
    log.debug("%s raised %s", what, type(exc).__name__, exc_info=exc)
    return FAILURE, json.dumps({"message": message, "retryable": retryable})


def question(q: InputRequired) -> Reply:
    """An agent's question as a reply."""
    body: dict[str, Any] = {"prompt": str(q.prompt)}
    if q.schema is not None:
        body["schema"] = q.schema
    if q.context is not None:
        body["context"] = q.context
    try:
        return INPUT, json.dumps(body)
    except (TypeError, ValueError) as e:
        return _invalid(f"InputRequired schema and context must be JSON: {e}")


def agent_failure(exc: BaseException, what: str) -> Reply:
    """What an exception raised by an agent means: a question or a failure."""
    if isinstance(exc, InputRequired):
        return question(exc)
    return failure(exc, what)


def _invalid(message: str) -> Reply:
    return FAILURE, json.dumps({"message": message, "invalid_output": True})


def _handoffs(hs: list[Handoff]) -> Reply:
    """One or more handoffs asked for in one turn: the first is ``handoff``,
    the others ``handoffs``."""
    body: dict[str, Any] = {"content": hs[0].reason, "handoff": hs[0].to_dict()}
    if len(hs) > 1:
        body["handoffs"] = [h.to_dict() for h in hs[1:]]
    try:
        return JSON, json.dumps(body)
    except (TypeError, ValueError) as e:
        return _invalid(f"a handoff payload must be JSON: {e}")


def convert_output(out: Any) -> Reply:
    """An agent's return value as a reply."""
    if type(out) is str:
        return TEXT, out
    if isinstance(out, AgentOutput):
        return JSON, json.dumps(out.to_dict())
    if isinstance(out, Handoff):
        return _handoffs([out])
    if isinstance(out, (list, tuple)) and out and all(isinstance(h, Handoff) for h in out):
        return _handoffs(list(out))
    if isinstance(out, InputRequired):
        return question(out)
    if isinstance(out, str):
        return TEXT, str(out)
    if isinstance(out, dict):
        try:
            return JSON, json.dumps(out)
        except (TypeError, ValueError) as e:
            return _invalid(f"agent returned a dict that is not JSON: {e}")
    return _invalid(
        f"agent returned {type(out).__name__}; expected str, orchestra.AgentOutput, "
        "orchestra.Handoff or a list of orchestra.Handoff"
    )


def adapt_agent(name: str, fn: Callable[..., Any]) -> Tuple[Callable[[str, Any], Any], bool]:
    """The native-facing wrapper of an agent function, and whether it is async."""
    what = f"agent {name!r}"
    with_ctx = wants_context(fn)

    def invoke(raw: Any, ctx: Any) -> Any:
        inp = AgentInput._from_json(raw)
        if not with_ctx:
            return fn(inp)
        context = AgentContext(ctx)
        context._input = inp
        return fn(inp, context)

    if is_async_callable(fn):

        async def call_async(raw: Any, ctx: Any) -> Reply:
            try:
                out = await invoke(raw, ctx)
            except Exception as e:
                return agent_failure(e, what)
            return convert_output(out)

        return call_async, True

    async def finish(pending: Any) -> Reply:
        try:
            out = await pending
        except Exception as e:
            return agent_failure(e, what)
        return convert_output(out)

    def call_sync(raw: Any, ctx: Any) -> Any:
        try:
            out = invoke(raw, ctx)
        except Exception as e:
            return agent_failure(e, what)
        if inspect.isawaitable(out):
            return finish(out)
        return convert_output(out)

    return call_sync, False


def adapt_json(
    what: str, fn: Callable[..., Any], convert: Callable[[Any], Any]
) -> Tuple[Callable[[str], Any], bool]:
    """A wrapper for a callable that takes a JSON dict and answers JSON."""

    def encode(out: Any) -> Reply:
        try:
            return JSON, json.dumps(convert(out))
        except Exception as e:
            return failure(e, what)

    if is_async_callable(fn):

        async def call_async(raw: str) -> Reply:
            try:
                out = await fn(json.loads(raw))
            except Exception as e:
                return failure(e, what)
            return encode(out)

        return call_async, True

    async def finish(pending: Any) -> Reply:
        try:
            out = await pending
        except Exception as e:
            return failure(e, what)
        return encode(out)

    def call_sync(raw: str) -> Any:
        try:
            out = fn(json.loads(raw))
        except Exception as e:
            return failure(e, what)
        if inspect.isawaitable(out):
            return finish(out)
        return encode(out)

    return call_sync, False


def speaker_choice(out: Any) -> Optional[dict[str, str]]:
    """A manager's answer (a name, (name, reason), a dict, or None) as JSON."""
    if out is None:
        return None
    if isinstance(out, str):
        return {"agent": out, "reason": "python manager"}
    if isinstance(out, tuple) and len(out) == 2:
        return {"agent": str(out[0]), "reason": str(out[1])}
    if isinstance(out, dict) and "agent" in out:
        return {"agent": str(out["agent"]), "reason": str(out.get("reason", ""))}
    raise TypeError(
        f"a manager must return an agent name, (name, reason), a dict or None; got {out!r}"
    )


def optional_text(out: Any) -> Optional[str]:
    if out is None or isinstance(out, str):
        return out
    raise TypeError(f"expected a str or None, got {type(out).__name__}")


def plan_dict(out: Any) -> Any:
    if isinstance(out, dict):
        return out
    to_dict = getattr(out, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    raise TypeError(f"a planner must return a plan dict, got {type(out).__name__}")


class _Spawned:
    """A coroutine started on an event loop from another thread; cancellable from any thread."""

    __slots__ = ("_loop", "_coro", "_on_done", "_task", "_cancelled")

    def __init__(self, loop: asyncio.AbstractEventLoop, coro: Any, on_done: Callable[[Any], None]):
        self._loop = loop
        self._coro = coro
        self._on_done = on_done
        self._task: Optional[asyncio.Task[Any]] = None
        self._cancelled = False

    def _start(self) -> None:
        if self._cancelled:
            self._coro.close()
            self._on_done(None)
            return
        self._task = self._loop.create_task(self._coro)
        self._task.add_done_callback(self._finish)

    def _finish(self, task: asyncio.Task[Any]) -> None:
        _task_done(self._on_done, task)

    def _cancel_task(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def cancel(self) -> None:
        self._cancelled = True
        try:
            self._loop.call_soon_threadsafe(self._cancel_task)
        except RuntimeError:
            pass  # the loop is closed: nothing runs on it any more


def spawn(
    loop: asyncio.AbstractEventLoop,
    context: Optional[contextvars.Context],
    coro: Any,
    on_done: Callable[[Any], None],
) -> _Spawned:
    """Runs ``coro`` on ``loop`` (called from a native thread); ``on_done(reply | None)``."""
    spawned = _Spawned(loop, coro, on_done)
    try:
        loop.call_soon_threadsafe(spawned._start, context=context)
    except RuntimeError:
        coro.close()
        raise
    return spawned


def _task_done(on_done: Callable[[Any], None], task: asyncio.Task[Any]) -> None:
    """Hands a finished task's reply to ``on_done`` (None if it was cancelled)."""
    if task.cancelled():
        on_done(None)
        return
    exc = task.exception()
    on_done(failure(exc, "callable") if exc is not None else task.result())


class _Resumed(collections.abc.Coroutine):  # type: ignore[type-arg]
    """A coroutine started outside any task (by ``eager``), handed to a task
    for the rest: the task's first ``send`` gets what the coroutine yielded;
    everything else goes to the coroutine, including a cancellation that
    comes before the task's first step (a plain wrapper coroutine would not
    pass that one on)."""

    __slots__ = ("_coro", "_first", "_started")

    def __init__(self, coro: Any, first: Any) -> None:
        self._coro = coro
        self._first = first
        self._started = False

    def send(self, value: Any) -> Any:
        if not self._started:
            self._started = True
            return self._first
        return self._coro.send(value)

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        self._started = True
        if val is None and tb is None:
            return self._coro.throw(typ)
        return self._coro.throw(typ, val, tb)

    def close(self) -> None:
        self._coro.close()

    @property
    def __name__(self) -> str:
        """The coroutine's name, for the task's repr."""
        return getattr(self._coro, "__qualname__", type(self._coro).__name__)

    def __await__(self) -> Any:
        return self

    def __iter__(self) -> Any:
        return self

    def __next__(self) -> Any:
        return self.send(None)


def eager(loop: asyncio.AbstractEventLoop, coro: Any) -> Any:
    """Runs an adapted callable's coroutine on this thread (the thread of
    ``loop``, in a task of which a run is being polled) up to its first
    suspension, in a copy of the current context: its reply if it finished
    there, else the task of ``loop`` that runs the rest."""
    context = contextvars.copy_context()
    try:
        yielded = context.run(coro.send, None)
    except StopIteration as stop:
        return stop.value
    if sys.version_info >= (3, 11):
        return loop.create_task(_Resumed(coro, yielded), context=context)
    return context.run(loop.create_task, _Resumed(coro, yielded))


def when_done(task: asyncio.Task[Any], on_done: Callable[[Any], None]) -> None:
    """Calls ``on_done(reply | None)`` once ``task`` (from ``eager``) is over."""
    task.add_done_callback(functools.partial(_task_done, on_done))


def set_future(fut: asyncio.Future[Any], ok: bool, value: Any) -> None:
    """Resolves a native call's future, or wakes the task awaiting a native
    run (on its loop)."""
    if fut.done():
        return
    if ok:
        fut.set_result(value)
    else:
        fut.set_exception(value)


def adapt_condition(name: str, fn: Callable[[Any], Any]) -> Callable[[str], bool]:
    """Wraps a termination predicate: the state as JSON in, a bool out.

    An exception counts as "not yet" (the run goes on) and is logged on the
    ``orchestra`` logger at WARNING level.
    """
    if is_async_callable(fn):
        raise TypeError(
            f"condition {name!r} must be a plain function: the core checks conditions synchronously"
        )

    def condition(raw: str) -> bool:
        try:
            return bool(fn(json.loads(raw)))
        except Exception:
            log.warning("termination condition %r raised; treated as false", name, exc_info=True)
            return False

    return condition
