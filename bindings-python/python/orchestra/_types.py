"""Typed views of the core's JSON: inputs, outputs, results, events, sessions.

Each class wraps the exact JSON the core produces (the same as the REST API
and the Node binding); ``to_dict()`` returns it unchanged.
"""

from __future__ import annotations

import json
from typing import (
    Any,
    Callable,
    Dict,
    Generic,
    List,
    NoReturn,
    Optional,
    Protocol,
    Type,
    TypeVar,
    Union,
    overload,
)

__all__ = [
    "Message",
    "AgentInput",
    "AgentOutput",
    "Handoff",
    "Usage",
    "ErrorInfo",
    "Step",
    "PolicyDecision",
    "InputRequest",
    "RunResult",
    "Session",
    "SessionSummary",
    "Event",
    "AgentInfo",
]

JSON = Dict[str, Any]

#: Run statuses.
COMPLETED = "completed"
FAILED = "failed"
TIMED_OUT = "timed_out"
CANCELLED = "cancelled"
RUNNING = "running"
WAITING_FOR_INPUT = "waiting_for_input"


_T = TypeVar("_T")


class _Wrapper(Protocol):
    """A class that wraps the core's JSON in ``_d``."""

    @property
    def _d(self) -> JSON: ...


class _Required:
    """The default of a field that has none: its key must be in the JSON."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<required>"


_REQUIRED = _Required()


class _Field(Generic[_T]):
    """A read-only attribute of a wrapper: the JSON value under the attribute's name.

    ``name = _Field[T](doc)`` reads ``self._d["name"]`` (``KeyError`` when the
    key is absent). With ``default=value`` it reads ``self._d.get("name",
    value)``: ``_Field[Optional[T]](default=None)`` for an optional field.
    With ``or_else=dict`` it reads ``self._d.get("name") or dict()``: a new
    empty object each time the JSON has none. On the class, the attribute is
    the field itself, with ``doc`` as its ``__doc__``.
    """

    def __init__(
        self,
        doc: Optional[str] = None,
        *,
        default: Union[_T, _Required] = _REQUIRED,
        or_else: Optional[Callable[[], _T]] = None,
    ) -> None:
        if or_else is not None and default is not _REQUIRED:
            raise TypeError("a field takes a default or an or_else, not both")
        self.__doc__ = doc
        self._key = ""
        self._default = default
        self._or_else = or_else
        self._required = default is _REQUIRED and or_else is None

    def __set_name__(self, owner: type, name: str) -> None:
        self._key = name

    @overload
    def __get__(self, obj: None, owner: Optional[type] = None) -> _Field[_T]: ...

    @overload
    def __get__(self, obj: _Wrapper, owner: Optional[type] = None) -> _T: ...

    def __get__(self, obj: Any, owner: Any = None) -> Any:
        if obj is None:
            return self
        if self._required:
            return obj._d[self._key]
        if self._or_else is None:
            return obj._d.get(self._key, self._default)
        return obj._d.get(self._key) or self._or_else()

    # Read-only like a property without a setter, in subclasses too; for
    # mypy, no value can be assigned.
    def __set__(self, obj: object, value: NoReturn) -> NoReturn:
        raise AttributeError(f"{type(obj).__name__!r} object attribute {self._key!r} is read-only")

    def __delete__(self, obj: object) -> NoReturn:
        raise AttributeError(f"{type(obj).__name__!r} object attribute {self._key!r} is read-only")


class _Outline(_Field[_T]):
    """A field of a run's result that its native form answers directly, so
    reading it decodes nothing else."""

    @overload
    def __get__(self, obj: None, owner: Optional[type] = None) -> _Outline[_T]: ...

    @overload
    def __get__(self, obj: _Wrapper, owner: Optional[type] = None) -> _T: ...

    def __get__(self, obj: Any, owner: Any = None) -> Any:
        if obj is not None and obj._data is None:
            return getattr(obj._native, self._key)
        return super().__get__(obj, owner)


class Message:
    """One message of a conversation."""

    __slots__ = ("role", "content", "name", "data", "created_at")

    def __init__(
        self,
        role: str,
        content: str,
        name: Optional[str] = None,
        data: Any = None,
        created_at: Optional[str] = None,
    ) -> None:
        #: "system", "user", "assistant" or "tool".
        self.role = role
        self.content = content
        #: The agent that wrote an assistant message.
        self.name = name
        #: Structured output that came with the text.
        self.data = data
        #: RFC 3339 timestamp.
        self.created_at = created_at

    @classmethod
    def from_dict(cls, d: JSON) -> Message:
        return cls(d["role"], d["content"], d.get("name"), d.get("data"), d.get("created_at"))

    def to_dict(self) -> JSON:
        d: JSON = {"role": self.role, "content": self.content}
        if self.name is not None:
            d["name"] = self.name
        if self.data is not None:
            d["data"] = self.data
        if self.created_at is not None:
            d["created_at"] = self.created_at
        return d

    def __repr__(self) -> str:
        who = f"{self.role}:{self.name}" if self.name else self.role
        return f"Message({who}, {self.content!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Message) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]


_V = TypeVar("_V", bound="_Lazy")


class _Lazy:
    """A view of the core's JSON that can start from a native object, which
    answers a few attributes itself and gives the whole JSON (``json()``)
    only when something else is read."""

    __slots__ = ("_data", "_native")

    def __init__(self, data: JSON) -> None:
        self._data: Optional[JSON] = data
        self._native: Any = None

    @classmethod
    def _from_native(cls: Type[_V], native: Any) -> _V:
        view = cls.__new__(cls)
        view._data = None
        view._native = native
        return view

    @property
    def _d(self) -> JSON:
        if self._data is None:
            self._data = json.loads(self._native.json())
        return self._data


class AgentInput(_Lazy):
    """What an agent is asked: the task and the conversation so far."""

    __slots__ = ("_messages",)

    def __init__(self, data: JSON) -> None:
        super().__init__(data)
        self._messages: Optional[List[Message]] = None

    @classmethod
    def _from_json(cls, raw: Any) -> AgentInput:
        """From JSON text, or from the native input (decoded on first use
        beyond ``task``: most agents read nothing else)."""
        if isinstance(raw, str):
            return cls(json.loads(raw))
        inp = cls._from_native(raw)
        inp._messages = None
        return inp

    @property
    def task(self) -> str:
        """The instruction for this step (the task, a sub-task, or the previous output)."""
        if self._data is None:
            return self._native.task  # type: ignore[no-any-return]
        return self._data["task"]  # type: ignore[no-any-return]

    @property
    def messages(self) -> List[Message]:
        """The conversation so far: earlier session messages, then this run's."""
        if self._messages is None:
            self._messages = [Message.from_dict(m) for m in self._d.get("messages", ())]
        return self._messages

    session_id = _Field[str](default="")
    run_id = _Field[str](default="")
    metadata = _Field[JSON]("The request's metadata.", or_else=dict)

    state = _Field[JSON](
        "The session's shared state (a JSON object) as of this step.",
        or_else=dict,
    )

    answer = _Field[Any](
        """The answer to the question this agent asked at this step (the same
        as ``ctx.answer``); None until the run is resumed with one.""",
        default=None,
    )

    @property
    def handoff(self) -> Optional[Handoff]:
        """In handoff runs, the handoff that made this agent active (who
        asked is the previous message), with its typed ``payload``; the same
        as ``ctx.handoff``. None for the first agent and in other patterns."""
        h = self._d.get("handoff")
        return Handoff.from_dict(h) if h else None

    def to_dict(self) -> JSON:
        return self._d

    def __repr__(self) -> str:
        return f"AgentInput(task={self.task!r}, messages={len(self._d.get('messages', ()))})"


class Handoff:
    """Passes control to another agent (handoff pattern).

    ``payload`` is structured data for the next agent (any JSON value); when
    the run sets ``payload_schemas`` for the target, it is checked before the
    target runs (``InvalidHandoffPayloadError`` otherwise). The target reads
    it from ``ctx.handoff`` (or ``inp.handoff``).

    An agent may return a list of handoffs to ask for several agents in one
    turn: with the option ``parallel_handoffs`` they run at once and their
    answers come back to it; without it, the first wins and a
    ``handoff_conflict`` event names them all.
    """

    __slots__ = ("to", "reason", "payload")

    def __init__(self, to: str, reason: str = "", payload: Any = None) -> None:
        self.to = to
        self.reason = reason
        self.payload = payload

    @classmethod
    def from_dict(cls, d: JSON) -> Handoff:
        return cls(d["to"], d.get("reason", ""), d.get("payload"))

    def to_dict(self) -> JSON:
        d: JSON = {"to": self.to, "reason": self.reason}
        if self.payload is not None:
            d["payload"] = self.payload
        return d

    def __repr__(self) -> str:
        extra = f", payload={self.payload!r}" if self.payload is not None else ""
        return f"Handoff(to={self.to!r}, reason={self.reason!r}{extra})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Handoff) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]


class Usage:
    """Token counts and cost.

    ``cost_micros`` is the cost in millionths of the price table's currency
    (e.g. micro-USD; integer so that sums are exact); it counts towards the
    ``max_cost`` termination and ``session_budget.max_cost``.
    """

    __slots__ = ("prompt_tokens", "completion_tokens", "total_tokens", "cost_micros")

    def __init__(
        self,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        total_tokens: Optional[int] = None,
        cost_micros: int = 0,
    ) -> None:
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        self.total_tokens = (
            prompt_tokens + completion_tokens if total_tokens is None else total_tokens
        )
        self.cost_micros = cost_micros

    @classmethod
    def from_dict(cls, d: Optional[JSON]) -> Usage:
        d = d or {}
        return cls(
            d.get("prompt_tokens", 0),
            d.get("completion_tokens", 0),
            d.get("total_tokens"),
            d.get("cost_micros", 0),
        )

    def to_dict(self) -> JSON:
        d: JSON = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }
        if self.cost_micros:
            d["cost_micros"] = self.cost_micros
        return d

    def __repr__(self) -> str:
        cost = f", cost_micros={self.cost_micros}" if self.cost_micros else ""
        return f"Usage(prompt={self.prompt_tokens}, completion={self.completion_tokens}{cost})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Usage) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]


class AgentOutput:
    """What an agent answers, when plain text is not enough."""

    __slots__ = ("content", "data", "state_patch", "handoff", "usage", "handoffs")

    def __init__(
        self,
        content: str = "",
        data: Any = None,
        state_patch: Optional[JSON] = None,
        handoff: Optional[Handoff] = None,
        usage: Optional[Usage] = None,
        handoffs: Optional[List[Handoff]] = None,
    ) -> None:
        self.content = content
        #: Structured output (any JSON value).
        self.data = data
        #: A JSON merge patch (RFC 7396) applied to the session's shared state.
        self.state_patch = state_patch
        self.handoff = handoff
        self.usage = usage
        #: More handoffs asked for in the same turn, after ``handoff`` (see
        #: ``Handoff``); returning a list of handoffs sets both.
        self.handoffs: List[Handoff] = list(handoffs) if handoffs else []

    @classmethod
    def from_dict(cls, d: JSON) -> AgentOutput:
        h = d.get("handoff")
        return cls(
            d.get("content", ""),
            d.get("data"),
            d.get("state_patch"),
            Handoff.from_dict(h) if h else None,
            Usage.from_dict(d["usage"]) if d.get("usage") else None,
            [Handoff.from_dict(x) for x in d.get("handoffs", ())],
        )

    def to_dict(self) -> JSON:
        d: JSON = {"content": self.content}
        if self.data is not None:
            d["data"] = self.data
        if self.state_patch is not None:
            d["state_patch"] = self.state_patch
        if self.handoff is not None:
            d["handoff"] = self.handoff.to_dict()
        if self.usage is not None:
            d["usage"] = self.usage.to_dict()
        if self.handoffs:
            d["handoffs"] = [h.to_dict() for h in self.handoffs]
        return d

    def __repr__(self) -> str:
        return f"AgentOutput({self.content!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AgentOutput) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]


class ErrorInfo:
    """An error as data: what results and events carry."""

    __slots__ = ("code", "message", "agent")

    def __init__(self, code: str, message: str, agent: Optional[str] = None) -> None:
        self.code = code
        self.message = message
        self.agent = agent

    @classmethod
    def from_dict(cls, d: JSON) -> ErrorInfo:
        return cls(d["code"], d["message"], d.get("agent"))

    def to_dict(self) -> JSON:
        d: JSON = {"code": self.code, "message": self.message}
        if self.agent is not None:
            d["agent"] = self.agent
        return d

    def __repr__(self) -> str:
        return f"ErrorInfo({self.code!r}, {self.message!r})"


class Step:
    """One agent call of a run (after its retries)."""

    __slots__ = ("_d",)

    def __init__(self, data: JSON) -> None:
        self._d = data

    index = _Field[int]()
    agent = _Field[str]("The agent that answered (a fallback's name when one stood in).")
    fallback_for = _Field[Optional[str]](default=None)
    label = _Field[Optional[str]](default=None)
    input = _Field[str]()
    status = _Field[str]('"completed" or "failed".')

    @property
    def output(self) -> Optional[AgentOutput]:
        o = self._d.get("output")
        return AgentOutput.from_dict(o) if o is not None else None

    @property
    def error(self) -> Optional[ErrorInfo]:
        e = self._d.get("error")
        return ErrorInfo.from_dict(e) if e is not None else None

    attempts = _Field[int]()
    started_at = _Field[str]()
    duration_ms = _Field[int]()

    @property
    def policy(self) -> List[PolicyDecision]:
        """Retries, fallbacks and circuit breaker decisions taken in this step, in order."""
        return [PolicyDecision(p) for p in self._d.get("policy", ())]

    def to_dict(self) -> JSON:
        return self._d

    def __repr__(self) -> str:
        return f"Step({self.index}, {self.agent!r}, {self.status})"


class PolicyDecision:
    """A decision a policy took during a step (the same facts as the
    ``retry``, ``fallback`` and ``circuit_*`` events).

    ``kind`` is one of retry (``agent``, ``attempt``, ``delay_ms``, ``error``),
    fallback (``from``, ``to``, ``reason``), circuit_opened (``agent``,
    ``failures``, ``cooldown_ms``), circuit_half_open (``agent``),
    circuit_closed (``agent``), circuit_rejected (``agent``, ``retry_in_ms``);
    new kinds may be added. ``decision["field"]`` reads the other fields.
    """

    __slots__ = ("_d",)

    KINDS = frozenset(
        {
            "retry",
            "fallback",
            "circuit_opened",
            "circuit_half_open",
            "circuit_closed",
            "circuit_rejected",
        }
    )

    def __init__(self, data: JSON) -> None:
        self._d = data

    kind = _Field[str]()

    @property
    def agent(self) -> Optional[str]:
        """The agent concerned (for a fallback, the one that stood in)."""
        a = self._d.get("agent")
        return a if a is not None else self._d.get("to")

    @property
    def error(self) -> Optional[ErrorInfo]:
        e = self._d.get("error")
        return ErrorInfo.from_dict(e) if e is not None else None

    def get(self, key: str, default: Any = None) -> Any:
        return self._d.get(key, default)

    def __getitem__(self, key: str) -> Any:
        return self._d[key]

    def to_dict(self) -> JSON:
        return self._d

    def __repr__(self) -> str:
        return f"PolicyDecision({self.kind!r}, {self.agent!r})"


class InputRequest:
    """A question a paused run waits on (``RunResult.input``, and the
    ``input_requested`` event's ``request``).

    ``kind`` is "agent" (an agent raised ``orchestra.InputRequired``),
    "approval" (``approve_agents``), "plan" (``approve_plan``) or "human" (an
    ``add_human`` participant's turn). Answer it with
    ``orch.resume(run_id, answer)``: approvals take ``True`` / ``False`` or
    ``{"approved": bool, "reason": str}``; a human's turn takes text or
    ``{"content": text, "data": any}``; an agent's question takes whatever
    its ``schema`` allows.
    """

    __slots__ = ("_d",)

    KINDS = frozenset({"agent", "approval", "plan", "human"})

    def __init__(self, data: JSON) -> None:
        self._d = data

    key = _Field[str](
        'Identifies the pause point within the run ("step:3", "approve:2", "approve_plan:0").'
    )

    kind = _Field[str]()

    agent = _Field[Optional[str]](
        "The agent that asked, or the one waiting for approval.",
        default=None,
    )

    step = _Field[Optional[int]]("The step the answer belongs to.", default=None)
    prompt = _Field[str]("What to show the person answering.")

    schema = _Field[Any](
        "A JSON schema the answer must satisfy (None: any JSON value).",
        default=None,
    )

    context = _Field[Any](
        "Extra facts for the person answering (the plan to approve, the last message…).",
        default=None,
    )

    requested_at = _Field[Optional[str]](default=None)

    expires_at = _Field[Optional[str]](
        "After this (RFC 3339), answers are refused and the run ends ``timed_out``.",
        default=None,
    )

    def to_dict(self) -> JSON:
        return self._d

    def __repr__(self) -> str:
        return f"InputRequest({self.key!r}, {self.kind}, {self.prompt!r})"


class RunResult(_Lazy):
    """The outcome of a run; also the run's record inside its session."""

    __slots__ = ()

    @classmethod
    def _from_json(cls, raw: Any) -> RunResult:
        """From JSON text, or from the native result of a run (its ids,
        status and output read at once, the rest decoded on first use)."""
        if isinstance(raw, str):
            return cls(json.loads(raw))
        return cls._from_native(raw)

    run_id = _Outline[str]()
    session_id = _Outline[str]()
    pattern = _Field[str]()
    task = _Field[str]()
    agents = _Field[List[str]]()

    status = _Outline[str](
        """"completed", "failed", "timed_out", "cancelled", "waiting_for_input"
        (paused until ``orch.resume``), or "running" in a session."""
    )

    @property
    def waiting(self) -> bool:
        """True when the run is paused for input (see ``input``)."""
        return self.status == WAITING_FOR_INPUT

    @property
    def input(self) -> Optional[InputRequest]:
        """The question the run waits on (status "waiting_for_input")."""
        i = self._d.get("input")
        return InputRequest(i) if i is not None else None

    answers = _Field[JSON](
        "Answers given to the run's questions, by ``InputRequest.key``.",
        or_else=dict,
    )

    checkpoint = _Field[Optional[JSON]](
        """Where the run stands (``version``, ``steps``, ``position``,
        ``resumes``…), written after every step of a checkpointed run.""",
        default=None,
    )

    @property
    def ok(self) -> bool:
        """True when the run completed."""
        return self.status == COMPLETED

    output = _Outline[Optional[str]](
        "The final answer; None when the run ended without one.",
        default=None,
    )

    data = _Field[Any]("Structured final output (aggregations, votes…).", default=None)

    @property
    def error(self) -> Optional[ErrorInfo]:
        e = self._d.get("error")
        return ErrorInfo.from_dict(e) if e is not None else None

    termination = _Field[Optional[str]](
        'Why the run stopped when a condition ended it (e.g. "text_mention: APPROVED").',
        default=None,
    )

    @property
    def partial(self) -> bool:
        """True when some agents failed and the result is built from the rest."""
        return bool(self._d.get("partial", False))

    @property
    def steps(self) -> List[Step]:
        return [Step(s) for s in self._d.get("steps", ())]

    @property
    def usage(self) -> Usage:
        return Usage.from_dict(self._d.get("usage"))

    options = _Field[JSON]("The request's options, kept so the run can be replayed.", or_else=dict)
    started_at = _Field[str]()
    finished_at = _Field[Optional[str]](default=None)
    duration_ms = _Field[int](default=0)

    def to_dict(self) -> JSON:
        """The core's JSON for this result, unchanged."""
        return self._d

    def raise_for_status(self) -> RunResult:
        """Returns self if the run completed or is paused for input; raises
        the matching error otherwise."""
        if self.ok or self.waiting:
            return self
        from ._errors import _from_info

        e = self.error
        if e is None:
            raise _from_info(self.status, f"run ended {self.status}", None, self)
        raise _from_info(e.code, e.message, e.agent, self)

    def __repr__(self) -> str:
        return f"RunResult({self.pattern}, status={self.status}, output={self.output!r})"


class AgentInfo:
    """A registered agent's name and description."""

    __slots__ = ("name", "description")

    def __init__(self, name: str, description: str) -> None:
        self.name = name
        self.description = description

    def __repr__(self) -> str:
        return f"AgentInfo({self.name!r}, {self.description!r})"


class Session:
    """A conversation with its shared state and the runs that wrote it."""

    __slots__ = ("_d",)

    def __init__(self, data: JSON) -> None:
        self._d = data

    id = _Field[str]()

    @property
    def messages(self) -> List[Message]:
        return [Message.from_dict(m) for m in self._d.get("messages", ())]

    state = _Field[JSON](or_else=dict)

    @property
    def runs(self) -> List[RunResult]:
        """Every run of the session, oldest first."""
        return [RunResult(r) for r in self._d.get("runs", ())]

    def run(self, run_id: str) -> Optional[RunResult]:
        """The run with this id."""
        for r in self._d.get("runs", ()):
            if r["run_id"] == run_id:
                return RunResult(r)
        return None

    metadata = _Field[JSON](or_else=dict)
    created_at = _Field[str]()
    updated_at = _Field[str]()
    version = _Field[int](default=0)

    def to_dict(self) -> JSON:
        return self._d

    def __repr__(self) -> str:
        return f"Session({self.id!r}, messages={len(self._d.get('messages', ()))}, runs={len(self._d.get('runs', ()))})"


class SessionSummary:
    """A session in a listing."""

    __slots__ = ("id", "created_at", "updated_at", "message_count", "run_count", "version")

    def __init__(self, d: JSON) -> None:
        self.id: str = d["id"]
        self.created_at: str = d["created_at"]
        self.updated_at: str = d["updated_at"]
        self.message_count: int = d["message_count"]
        self.run_count: int = d["run_count"]
        self.version: int = d["version"]

    def __repr__(self) -> str:
        return f"SessionSummary({self.id!r}, runs={self.run_count})"


class Event:
    """One step of a run, as streamed: the core's event JSON with typed accessors.

    ``type`` is one of run_started, agent_started, agent_delta, agent_completed,
    agent_failed, tool_called, tool_completed, agent_task_state, retry, fallback,
    circuit_opened, circuit_half_open, circuit_closed, handoff, speaker_selected, plan_created,
    plan_updated, budget_exceeded, run_completed, run_failed, run_cancelled,
    input_requested (the run paused: the last event of its stream), run_resumed
    (the first event of a resumed run's stream) (new types may be added).
    """

    __slots__ = ("_d",)

    TERMINAL = frozenset({"run_completed", "run_failed", "run_cancelled", "input_requested"})

    def __init__(self, data: JSON) -> None:
        self._d = data

    type = _Field[str]()
    run_id = _Field[str]()
    session_id = _Field[str]()
    seq = _Field[int]("1, 2, 3… within a run, in emission order.")
    timestamp = _Field[str]()
    schema_version = _Field[int]()
    agent = _Field[Optional[str]]("The agent the event is about, when there is one.", default=None)

    @property
    def is_terminal(self) -> bool:
        """True for the last event of a run."""
        return self.type in self.TERMINAL

    @property
    def result(self) -> Optional[RunResult]:
        """The run's result, on the terminal event (paused, on ``input_requested``)."""
        r = self._d.get("result")
        return RunResult(r) if r is not None and self.is_terminal else None

    @property
    def request(self) -> Optional[InputRequest]:
        """The question, on an ``input_requested`` event."""
        r = self._d.get("request")
        return InputRequest(r) if r is not None and self.type == "input_requested" else None

    def get(self, key: str, default: Any = None) -> Any:
        """A field of the event's JSON."""
        return self._d.get(key, default)

    def __getitem__(self, key: str) -> Any:
        return self._d[key]

    def to_dict(self) -> JSON:
        """The core's JSON for this event, unchanged (as sent over SSE)."""
        return self._d

    def __repr__(self) -> str:
        who = f" {self.agent}" if self.agent else ""
        return f"Event(#{self.seq} {self.type}{who})"


AgentResult = Union[str, AgentOutput, Handoff, List[Handoff]]
