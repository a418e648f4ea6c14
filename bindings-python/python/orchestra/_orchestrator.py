"""The Orchestrator: register Python agents, run patterns, stream events."""

from __future__ import annotations

import asyncio
import json
from typing import (
    Any,
    AsyncIterator,
    Awaitable,
    Callable,
    Dict,
    List,
    Mapping,
    Optional,
    Protocol,
    Sequence,
    TypeVar,
    Union,
    overload,
    runtime_checkable,
)

from . import _bridge
from . import _orchestra as _native
from ._bridge import AgentContext
from ._errors import OrchestraError
from ._types import (
    AgentInfo,
    AgentInput,
    AgentResult,
    Event,
    RunResult,
    Session,
    SessionSummary,
)

__all__ = [
    "Orchestrator",
    "RunEvents",
    "MemoryStore",
    "RedisStore",
    "AgentFn",
    "AgentLike",
    "ManagerFn",
    "PlannerFn",
    "ConditionFn",
]

#: An agent: a plain function or a coroutine function of an AgentInput (and,
#: optionally, an AgentContext to stream deltas and report tool calls).
AgentFn = Union[
    Callable[[AgentInput], Union[AgentResult, Awaitable[AgentResult]]],
    Callable[[AgentInput, AgentContext], Union[AgentResult, Awaitable[AgentResult]]],
]
#: A group chat manager: the chat (JSON dict) -> the next speaker's name, or None to stop.
ManagerFn = Callable[[Dict[str, Any]], Any]
#: A planner: the plan request (JSON dict) -> a plan dict.
PlannerFn = Callable[[Dict[str, Any]], Any]
#: A termination condition: the run's state (``rounds``, ``messages``,
#: ``tokens``, ``cost_micros``, ``elapsed_ms``) -> True to end the run now.
ConditionFn = Callable[[Dict[str, Any]], bool]

F = TypeVar("F", bound=AgentFn)


@runtime_checkable
class AgentLike(Protocol):
    """An object usable as an agent: ``name``, ``description`` and ``invoke(inp)``."""

    name: str
    description: str

    def invoke(self, inp: AgentInput) -> Union[AgentResult, Awaitable[AgentResult]]: ...


class MemoryStore:
    """Sessions kept in this process (the default), with idle expiry and LRU eviction."""

    def __init__(self, *, ttl_seconds: Optional[float] = 86400.0, max_sessions: int = 10_000):
        self._native = _native.Store.memory(ttl_seconds, max_sessions)

    def __repr__(self) -> str:
        return "MemoryStore()"


class RedisStore:
    """Sessions in Redis, shared by every process that uses the same URL and prefix.

    The connection is made on first use; ``await RedisStore.connect(...)``
    connects (and checks Redis answers) up front.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "orchestra",
        ttl_seconds: Optional[float] = 86400.0,
    ) -> None:
        if not _native.HAS_REDIS:
            raise RuntimeError("this build of orchestra has no Redis support")
        self._native = _native.Store.redis(url, prefix, ttl_seconds)
        self.url = url
        self.prefix = prefix

    @classmethod
    async def connect(
        cls,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "orchestra",
        ttl_seconds: Optional[float] = 86400.0,
    ) -> RedisStore:
        """Connects now; raises ``StoreError`` if Redis does not answer."""
        store = cls.__new__(cls)
        store._native = await _native.Store.connect_redis(url, prefix, ttl_seconds)
        store.url = url
        store.prefix = prefix
        return store

    def __repr__(self) -> str:
        return f"RedisStore({self.url!r}, prefix={self.prefix!r})"


Store = Union[MemoryStore, RedisStore]


def _dumps(what: str, value: Optional[Mapping[str, Any]]) -> Optional[str]:
    if value is None:
        return None
    try:
        return json.dumps(value)
    except (TypeError, ValueError) as e:
        from ._errors import InvalidRequest

        raise InvalidRequest(f"{what} must be JSON-serializable: {e}", code="invalid_request") from e


def _model_config(
    base_url: str, model: str, api_key_env: Optional[str], config: Mapping[str, Any]
) -> str:
    body: Dict[str, Any] = {"base_url": base_url, "model": model, **config}
    if api_key_env is not None:
        body["api_key_env"] = api_key_env
    return _dumps("model config", body) or "{}"


class RunEvents:
    """The events of one run, as an async iterator (``async for ev in orch.stream(...)``).

    The last event is ``run_completed``, ``run_failed``, ``run_cancelled`` or,
    when the run paused for input, ``input_requested``, and carries the
    result. Leaving the loop early (``break``, an exception,
    the task being cancelled) cancels the run; so do ``cancel()`` and
    ``aclose()``. Also usable as ``async with orch.stream(...) as events:``.
    """

    __slots__ = ("_handle", "_buffer", "_ended", "__weakref__")

    def __init__(self, handle: _native.RunHandle) -> None:
        self._handle = handle
        self._buffer: List[str] = []
        self._ended = False

    @property
    def run_id(self) -> str:
        return self._handle.run_id

    @property
    def session_id(self) -> str:
        """The run's session (for ``resume_stream``, known once the first event arrived)."""
        return self._handle.session_id

    def __aiter__(self) -> RunEvents:
        return self

    async def __anext__(self) -> Event:
        if not self._buffer:
            if self._ended:
                raise StopAsyncIteration
            try:
                batch = await self._handle.next_events()
            except asyncio.CancelledError:
                await self._cancel_and_wait()
                raise
            if not batch:
                self._ended = True
                raise StopAsyncIteration
            batch.reverse()
            self._buffer = batch
        return Event(json.loads(self._buffer.pop()))

    def cancel(self) -> None:
        """Asks the run to stop; the stream then ends with ``run_cancelled``."""
        self._handle.cancel()

    async def result(self) -> RunResult:
        """Waits for the end of the run (events not yet read are skipped)."""
        return RunResult._from_json(await self._handle.result())

    async def _cancel_and_wait(self) -> None:
        self._handle.cancel()
        # Wait until the run is recorded as cancelled, even if we are cancelled again.
        try:
            await asyncio.shield(self._handle.result())
        except OrchestraError:
            pass  # a refused resume: nothing ran

    async def aclose(self) -> None:
        """Cancels the run if it is still going and waits until it is recorded."""
        self._ended = True
        self._buffer = []
        if not self._handle.done():
            await self._cancel_and_wait()

    async def __aenter__(self) -> RunEvents:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class Orchestrator:
    """Runs the five patterns over registered agents.

    ``store`` holds sessions: ``MemoryStore()`` (the default) or
    ``RedisStore(url, prefix=...)``. Agents are plain functions (run on a
    worker thread, so they never block the event loop) or coroutine
    functions (awaited on the caller's event loop, in a copy of its
    context). ``await orch.run(...)`` runs the pattern on the calling task
    itself: a coroutine agent starts right there, and only one that has to
    wait goes on as a task of its own.
    """

    def __init__(self, store: Optional[Store] = None) -> None:
        self._store = store
        self._native = _native.Orchestrator(store._native if store is not None else None)

    # -- registry ---------------------------------------------------------

    @overload
    def add_agent(self, name: str, fn: AgentFn, *, description: Optional[str] = None) -> None: ...

    @overload
    def add_agent(self, name: AgentLike) -> None: ...

    def add_agent(
        self,
        name: Union[str, AgentLike],
        fn: Optional[AgentFn] = None,
        *,
        description: Optional[str] = None,
    ) -> None:
        """Adds (or replaces) an agent.

        ``add_agent("writer", fn, description="writes prose")`` or
        ``add_agent(obj)`` for an object with ``name``, ``description`` and
        ``invoke(inp)``. Without a description, the function's docstring's
        first line is used.
        """
        if isinstance(name, str):
            if fn is None or not callable(fn):
                raise TypeError("add_agent(name, fn): fn must be callable")
            agent_name, call = name, fn
        else:
            if fn is not None:
                raise TypeError("add_agent(obj) takes no function")
            agent_name, call = name.name, name.invoke
            if description is None:
                description = name.description
        if description is None:
            doc = getattr(call, "__doc__", None) or ""
            description = doc.strip().split("\n", 1)[0] if doc else ""
        wrapped, is_async = _bridge.adapt_agent(agent_name, call)
        self._native.add_agent(agent_name, description, wrapped, is_async)

    @overload
    def agent(self, fn: F) -> F: ...

    @overload
    def agent(
        self, *, name: Optional[str] = None, description: Optional[str] = None
    ) -> Callable[[F], F]: ...

    def agent(
        self,
        fn: Optional[F] = None,
        *,
        name: Optional[str] = None,
        description: Optional[str] = None,
    ) -> Union[F, Callable[[F], F]]:
        """Decorator registering a function as an agent (named after the function)::

            @orch.agent(description="finds facts")
            async def researcher(inp: orchestra.AgentInput) -> str: ...
        """

        def register(f: F) -> F:
            agent_name: str = name or getattr(f, "__name__", None) or "agent"
            self.add_agent(agent_name, f, description=description)
            return f

        return register(fn) if fn is not None else register

    def remove_agent(self, name: str) -> bool:
        """Removes an agent; False if there was none."""
        return self._native.remove_agent(name)

    @property
    def agents(self) -> List[AgentInfo]:
        """The registered agents, in registration order."""
        return [AgentInfo(n, d) for n, d in self._native.agents()]

    def add_manager(self, name: str, manager: Any) -> None:
        """Registers a group chat manager, used with ``options={"manager": name}``.

        ``manager`` is a function (sync or async) taking the chat as a dict
        (``task``, ``participants``, ``transcript``, ``round``, ``usage``) and
        returning the next speaker's name, ``(name, reason)``, or None to end
        the chat; or an object with such a ``select_next`` method and,
        optionally, ``should_terminate(chat) -> reason | None`` and
        ``filter_result(chat) -> text | None``.
        """
        select = getattr(manager, "select_next", None)
        if select is None:
            if not callable(manager):
                raise TypeError("a manager is a callable or has a select_next method")
            select = manager
        what = f"manager {name!r}"
        terminate = getattr(manager, "should_terminate", None)
        filter_result = getattr(manager, "filter_result", None)
        self._native.add_manager(
            name,
            _bridge.adapt_json(what, select, _bridge.speaker_choice),
            _bridge.adapt_json(what, terminate, _bridge.optional_text) if terminate else None,
            _bridge.adapt_json(what, filter_result, _bridge.optional_text)
            if filter_result
            else None,
        )

    def add_planner(self, name: str, planner: PlannerFn) -> None:
        """Registers a planner for the dynamic pattern (``options={"planner": name}``).

        ``planner`` (sync or async) takes the request as a dict (``task``,
        ``agents``, and ``ledger`` when replanning) and returns a plan:
        ``{"steps": [{"pattern", "agents", "task", "options"?}], "rationale": str}``.
        """
        if not callable(planner):
            raise TypeError("a planner must be callable")
        call, is_async = _bridge.adapt_json(f"planner {name!r}", planner, _bridge.plan_dict)
        self._native.add_planner(name, call, is_async)

    def add_human(
        self, name: str, *, description: str = "", prompt: Optional[str] = None
    ) -> None:
        """Registers a person as a participant: each of their turns pauses the
        run (``input_requested``, kind "human") until it is resumed with their
        answer, which becomes their message: text, or ``{"content": text,
        "data": any}``. ``prompt`` is what they are asked (default: the
        step's instruction). In a group chat they speak when the manager
        picks them."""
        self._native.add_human(name, description, prompt)

    def add_condition(self, name: str, fn: ConditionFn) -> None:
        """Registers a termination condition, used with ``{"termination": {"custom": name}}``.

        ``fn(state)`` is a plain (not async) function called after each agent
        step with a dict: ``rounds`` (agent turns so far), ``messages`` (this
        run's agent messages, as dicts), ``tokens`` (used so far),
        ``cost_micros`` (cost so far, see ``Usage.cost_micros``) and
        ``elapsed_ms``. Returning True ends the run cleanly; its
        ``termination`` is then ``"custom: <name>"``. It runs with the GIL,
        so keep it quick.
        """
        if not callable(fn):
            raise TypeError("a condition must be callable")
        self._native.add_condition(name, _bridge.adapt_condition(name, fn))

    # -- the core's remote agents (they run entirely in Rust) -------------

    def _remote(self) -> _native.Orchestrator:
        if not _native.HAS_HTTP_AGENTS:
            raise RuntimeError("this build of orchestra has no HTTP agent support")
        return self._native

    def add_http_agent(
        self,
        name: str,
        url: str,
        *,
        description: str = "",
        timeout_ms: Optional[int] = None,
        headers: Optional[Mapping[str, str]] = None,
    ) -> None:
        """Registers an agent service reached with one JSON POST per step
        (the protocol of docs/agent-protocol.md)."""
        self._remote().add_http_agent(
            name, url, description, timeout_ms, list(headers.items()) if headers else None
        )

    def add_openai_agent(
        self,
        name: str,
        *,
        base_url: str,
        model: str,
        description: str = "",
        system_prompt: Optional[str] = None,
        api_key_env: Optional[str] = None,
        **config: Any,
    ) -> str:
        """Registers an OpenAI-compatible chat model as an agent.

        ``config`` takes the other keys of the core's agent configuration
        (``temperature``, ``max_tokens``, ``stream``, ``timeout_ms``,
        ``max_tool_rounds``, ``headers``, ``extra_body``…). The API key is
        read from the environment variable named by ``api_key_env``.
        """
        body: Dict[str, Any] = {
            "name": name,
            "description": description,
            "base_url": base_url,
            "model": model,
            **config,
        }
        if system_prompt is not None:
            body["system_prompt"] = system_prompt
        if api_key_env is not None:
            body["api_key_env"] = api_key_env
        return self._remote().add_openai_agent(_dumps("config", body) or "{}")

    def add_llm_manager(
        self,
        name: str,
        *,
        base_url: str,
        model: str,
        api_key_env: Optional[str] = None,
        instructions: Optional[str] = None,
        **config: Any,
    ) -> None:
        """Registers a group chat manager that asks a chat model who speaks next
        (``options={"manager": name}``)."""
        body = _model_config(base_url, model, api_key_env, config)
        self._remote().add_llm_manager(name, body, instructions)

    def add_llm_planner(
        self,
        name: str,
        *,
        base_url: str,
        model: str,
        api_key_env: Optional[str] = None,
        **config: Any,
    ) -> None:
        """Registers a planner that asks a chat model for the plan
        (``options={"planner": name}``)."""
        self._remote().add_llm_planner(name, _model_config(base_url, model, api_key_env, config))

    async def add_a2a_agent(
        self,
        card_url: str,
        *,
        name: Optional[str] = None,
        description: Optional[str] = None,
        **config: Any,
    ) -> str:
        """Fetches an A2A agent card and registers the peer; returns its name."""
        body: Dict[str, Any] = {"card_url": card_url, **config}
        if name is not None:
            body["name"] = name
        if description is not None:
            body["description"] = description
        return await self._remote().add_a2a_agent(_dumps("config", body) or "{}")

    async def add_queue_agent(
        self,
        name: str,
        transport: str,
        *,
        description: str = "",
        timeout_ms: Optional[int] = None,
        prefix: Optional[str] = None,
        jetstream: bool = False,
    ) -> None:
        """Registers an agent answered by workers behind a queue
        (``orchestra.serve_agent`` or any worker speaking the queue contract
        of docs/agent-protocol.md). ``transport`` is ``"redis://…"`` or
        ``"nats://…"``; ``prefix`` and ``jetstream`` must match the workers'."""
        await self._native.add_queue_agent(
            name, transport, description, timeout_ms, prefix, jetstream
        )

    # -- runs -------------------------------------------------------------

    def _start(
        self,
        pattern: str,
        task: str,
        agents: Optional[Sequence[str]],
        session_id: Optional[str],
        options: Optional[Mapping[str, Any]],
        metadata: Optional[Mapping[str, Any]],
        events: bool,
    ) -> _native.RunHandle:
        if isinstance(agents, str):
            raise TypeError("agents must be a list of names, not a str")
        return self._native.start(
            pattern,
            task,
            list(agents) if agents is not None else None,
            session_id,
            _dumps("options", options),
            _dumps("metadata", metadata),
            events,
        )

    async def run(
        self,
        pattern: str,
        task: str,
        agents: Optional[Sequence[str]] = None,
        session_id: Optional[str] = None,
        options: Optional[Mapping[str, Any]] = None,
        metadata: Optional[Mapping[str, Any]] = None,
        *,
        raise_on_error: bool = False,
    ) -> RunResult:
        """Runs a pattern to the end.

        Raises ``InvalidRequest`` when the request is wrong (nothing runs).
        A run that started returns its ``RunResult`` whatever its status
        ("completed", "failed", "timed_out", "cancelled"), with ``error`` set
        when it did not complete; with ``raise_on_error=True`` such a run
        raises ``AgentError`` / ``Timeout`` / ``Cancelled`` / ``OrchestraError``
        instead (the result is on the exception's ``.result``).

        Cancelling the awaiting task cancels the run; the ``CancelledError``
        propagates once the run is recorded as cancelled in its session.
        """
        handle = self._start(pattern, task, agents, session_id, options, metadata, False)
        try:
            raw = await handle.result()
        except asyncio.CancelledError:
            handle.cancel()
            await asyncio.shield(handle.result())
            raise
        result = RunResult._from_json(raw)
        return result.raise_for_status() if raise_on_error else result

    def stream(
        self,
        pattern: str,
        task: str,
        agents: Optional[Sequence[str]] = None,
        session_id: Optional[str] = None,
        options: Optional[Mapping[str, Any]] = None,
        metadata: Optional[Mapping[str, Any]] = None,
    ) -> RunEvents:
        """Starts a run and returns its events: ``async for ev in orch.stream(...)``.

        Must be called with an event loop running (from async code). Raises
        ``InvalidRequest`` at once when the request is wrong.
        """
        return RunEvents(self._start(pattern, task, agents, session_id, options, metadata, True))

    def run_sync(
        self,
        pattern: str,
        task: str,
        agents: Optional[Sequence[str]] = None,
        session_id: Optional[str] = None,
        options: Optional[Mapping[str, Any]] = None,
        metadata: Optional[Mapping[str, Any]] = None,
        *,
        raise_on_error: bool = False,
    ) -> RunResult:
        """``run()`` for scripts without an event loop (uses ``asyncio.run``)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise RuntimeError(
                "run_sync() cannot be called from a running event loop; use `await orch.run(...)`"
            )
        return asyncio.run(
            self.run(
                pattern,
                task,
                agents,
                session_id,
                options,
                metadata,
                raise_on_error=raise_on_error,
            )
        )

    # -- paused runs ------------------------------------------------------

    def _resume(self, run_id: str, answer: Any, events: bool) -> _native.RunHandle:
        if not isinstance(run_id, str):
            raise TypeError("run_id must be a str")
        raw: Optional[str] = None
        if answer is not None:
            try:
                raw = json.dumps(answer)
            except (TypeError, ValueError) as e:
                from ._errors import InvalidRequest

                raise InvalidRequest(f"answer must be JSON-serializable: {e}") from e
        return self._native.resume(run_id, raw, events)

    async def resume(
        self, run_id: str, answer: Any = None, *, raise_on_error: bool = False
    ) -> RunResult:
        """Resumes a run paused for input with the person's ``answer`` (any
        JSON value) and runs it to its end, or to its next pause.

        The answer goes to the step that asked (``ctx.answer``); recorded
        steps are not run again. ``answer=None`` continues a run whose
        process died (status "running" in the store). Raises
        ``InvalidAnswerError`` when the answer does not satisfy the
        question's schema (the run keeps waiting), ``RunStateError`` when the
        run is not waiting (finished, already answered, or an answer is
        missing), ``RunNotFoundError`` and ``InputExpiredError``. Otherwise
        like ``run()``: a denied approval ends the run failed with
        ``error.code == "approval_denied"`` (raised as
        ``ApprovalDeniedError`` with ``raise_on_error=True``).
        """
        handle = self._resume(run_id, answer, False)
        try:
            raw = await handle.result()
        except asyncio.CancelledError:
            handle.cancel()
            try:
                await asyncio.shield(handle.result())
            except Exception:
                pass  # the resume was refused: nothing runs
            raise
        result = RunResult._from_json(raw)
        return result.raise_for_status() if raise_on_error else result

    def resume_stream(self, run_id: str, answer: Any = None) -> RunEvents:
        """``resume()`` as an event stream: ``async for ev in orch.resume_stream(id, answer)``.

        The first event is ``run_resumed``. The errors ``resume()`` raises
        are raised by the first iteration.
        """
        return RunEvents(self._resume(run_id, answer, True))

    async def get_run(self, run_id: str) -> Optional[RunResult]:
        """The stored record of a run, found by its id alone (paused runs
        included, with their ``input``); None if unknown."""
        raw = await self._native.get_run(run_id)
        return RunResult._from_json(raw) if raw is not None else None

    async def cancel_run(self, run_id: str) -> bool:
        """Cancels a run in flight here, or a run waiting for input (recorded
        as cancelled; it can no longer be resumed). False otherwise."""
        return await self._native.cancel_run(run_id)

    async def wait_run(self, run_id: str) -> Optional[RunResult]:
        """Waits for a run of this orchestrator that is in flight; None if it is not."""
        raw = await self._native.wait_run(run_id)
        return RunResult._from_json(raw) if raw is not None else None

    def cancel(self, run_id: str) -> bool:
        """Cancels a run in flight; False if it is not running here."""
        return self._native.cancel(run_id)

    def stop(self, run_id: str, reason: str = "requested") -> bool:
        """Asks a run in flight to stop cleanly at its next step boundary.

        Unlike ``cancel``, the run completes with what it has and its
        ``termination`` is ``"stopped: <reason>"``. False if it is not running here.
        """
        return self._native.stop(run_id, reason)

    def replay(self, result: Union[RunResult, Mapping[str, Any]]) -> RunEvents:
        """Replays a recorded run (a ``RunResult`` or its dict) as an event stream.

        Every agent step is answered from the record: no agent is called. The
        replay keeps the run and session ids and runs against a scratch
        session, so the original session is untouched. Managers and planners
        registered here take part again (they must be plain functions: a
        replay has no caller's event loop).
        """
        data = result.to_dict() if isinstance(result, RunResult) else result
        raw = _dumps("result", data) or "{}"
        return RunEvents(self._native.replay(raw))

    @property
    def active_runs(self) -> int:
        """Runs in flight."""
        return self._native.active_runs()

    # -- sessions ---------------------------------------------------------

    async def get_session(self, session_id: str) -> Optional[Session]:
        """The session, or None if unknown."""
        raw = await self._native.get_session(session_id)
        return Session(json.loads(raw)) if raw is not None else None

    async def delete_session(self, session_id: str) -> bool:
        """Deletes a session; False if there was none."""
        return await self._native.delete_session(session_id)

    async def list_sessions(self, offset: int = 0, limit: int = 50) -> List[SessionSummary]:
        """Sessions, most recently updated first."""
        raw = await self._native.list_sessions(offset, limit)
        return [SessionSummary(d) for d in json.loads(raw)]

    def __repr__(self) -> str:
        return f"Orchestrator(agents={[a.name for a in self.agents]})"


def patterns() -> List[Dict[str, Any]]:
    """The five patterns: name, description and the JSON schema of their options."""
    return json.loads(_native.patterns())  # type: ignore[no-any-return]
