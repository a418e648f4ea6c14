"""The read-only views of the core's JSON (Step, InputRequest, RunResult,
Session, Event, AgentInput): what each attribute reads, that none can be
assigned, and the types mypy sees."""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path
from typing import Any, Dict, List

import pytest

import orchestra
from orchestra import AgentInput, Event, InputRequest, PolicyDecision, RunResult, Session, Step

REQUEST: Dict[str, Any] = {
    "key": "step:3",
    "kind": "agent",
    "agent": "writer",
    "step": 3,
    "prompt": "Which tone?",
    "schema": {"type": "string"},
    "context": ["formal", "casual"],
    "requested_at": "2026-01-01T00:00:00Z",
    "expires_at": "2026-01-02T00:00:00Z",
}

STEP: Dict[str, Any] = {
    "index": 2,
    "agent": "backup",
    "fallback_for": "writer",
    "label": "draft",
    "input": "tides",
    "status": "completed",
    "output": {"content": "done"},
    "attempts": 3,
    "started_at": "2026-01-01T00:00:00Z",
    "duration_ms": 12,
    "policy": [{"kind": "fallback", "from": "writer", "to": "backup", "reason": "failed"}],
}

RUN: Dict[str, Any] = {
    "run_id": "r1",
    "session_id": "s1",
    "pattern": "sequential",
    "task": "tides",
    "agents": ["writer"],
    "status": "waiting_for_input",
    "input": REQUEST,
    "answers": {"step:1": True},
    "checkpoint": {"version": 1},
    "output": "so far",
    "data": {"votes": 2},
    "termination": "text_mention: APPROVED",
    "steps": [STEP],
    "options": {"max_steps": 4},
    "started_at": "2026-01-01T00:00:00Z",
    "finished_at": "2026-01-01T00:00:01Z",
    "duration_ms": 1000,
}

SESSION: Dict[str, Any] = {
    "id": "s1",
    "messages": [{"role": "user", "content": "hi"}],
    "state": {"tone": "formal"},
    "runs": [RUN],
    "metadata": {"user": "ada"},
    "created_at": "2026-01-01T00:00:00Z",
    "updated_at": "2026-01-01T00:00:02Z",
    "version": 4,
}

EVENT: Dict[str, Any] = {
    "type": "input_requested",
    "run_id": "r1",
    "session_id": "s1",
    "seq": 7,
    "timestamp": "2026-01-01T00:00:01Z",
    "schema_version": 1,
    "agent": "writer",
    "result": RUN,
    "request": REQUEST,
}


# The attributes that return the JSON value under their name as it is (the
# same object, not a copy).
PLAIN = {
    Step: "index agent fallback_for label input status attempts started_at duration_ms",
    PolicyDecision: "kind",
    InputRequest: "key kind agent step prompt schema context requested_at expires_at",
    RunResult: "run_id session_id pattern task agents status answers checkpoint output data"
    " termination options started_at finished_at duration_ms",
    Session: "id state metadata created_at updated_at version",
    Event: "type run_id session_id seq timestamp schema_version agent",
}

WRAPPERS = [
    (Step, STEP),
    (PolicyDecision, STEP["policy"][0]),
    (InputRequest, REQUEST),
    (RunResult, RUN),
    (Session, SESSION),
    (Event, EVENT),
]
NAMES = [c.__name__ for c, _ in WRAPPERS]


@pytest.mark.parametrize("cls, data", WRAPPERS, ids=NAMES)
def test_fields_read_the_json(cls: Any, data: Dict[str, Any]) -> None:
    obj = cls(data)
    for name in PLAIN[cls].split():
        assert getattr(obj, name) is data[name], name
    assert obj.to_dict() is data


def test_nested_views() -> None:
    run = RunResult(RUN)
    assert run.waiting and not run.ok
    assert run.input is not None and run.input.to_dict() is REQUEST
    assert [s.to_dict() for s in run.steps] == [STEP]
    step = run.steps[0]
    assert repr(step) == "Step(2, 'backup', completed)"
    assert step.output is not None and step.output.content == "done"
    assert step.error is None
    assert [(p.kind, p.agent) for p in step.policy] == [("fallback", "backup")]
    session = Session(SESSION)
    assert [r.run_id for r in session.runs] == ["r1"]
    assert session.run("r1") is not None and session.run("r2") is None
    ev = Event(EVENT)
    assert ev.is_terminal and repr(ev) == "Event(#7 input_requested writer)"
    assert ev.result is not None and ev.result.to_dict() is RUN
    assert ev.request is not None and ev.request.key == "step:3"


def test_absent_keys() -> None:
    # Required fields raise KeyError, as reading the dict does.
    with pytest.raises(KeyError, match="index"):
        Step({}).index
    with pytest.raises(KeyError, match="run_id"):
        RunResult({}).run_id
    with pytest.raises(KeyError, match="seq"):
        Event({}).seq

    # Optional ones read None, or their default.
    step = Step({})
    assert step.fallback_for is None and step.label is None
    req = InputRequest({})
    for name in ("agent", "step", "schema", "context", "requested_at", "expires_at"):
        assert getattr(req, name) is None, name
    run = RunResult({})
    for name in ("checkpoint", "output", "data", "termination", "finished_at"):
        assert getattr(run, name) is None, name
    assert run.duration_ms == 0 and run.partial is False and run.steps == []
    assert Session({}).version == 0
    assert Event({}).agent is None

    # A default applies only when the key is absent: a null stays null.
    assert RunResult({"duration_ms": None}).duration_ms is None
    assert Session({"version": None}).version is None

    # Objects read as a new empty dict when absent, null or empty.
    run = RunResult({"answers": None})
    assert run.answers == {} and run.options == {}
    assert run.answers is not run.answers
    run.options["x"] = 1
    assert run.options == {} and run.to_dict() == {"answers": None}
    session = Session({"state": {}})
    assert session.state == {} and session.metadata == {}
    assert session.state is not session.to_dict()["state"]


def test_agent_input_fields() -> None:
    full = {
        "task": "tides",
        "session_id": "s1",
        "run_id": "r1",
        "metadata": {"user": "ada"},
        "state": {"tone": "formal"},
        "answer": {"approved": True},
    }
    inp = AgentInput._from_json(json.dumps(full))
    assert (inp.task, inp.session_id, inp.run_id) == ("tides", "s1", "r1")
    assert inp.metadata == {"user": "ada"} and inp.state == {"tone": "formal"}
    assert inp.metadata is inp.to_dict()["metadata"]
    assert inp.answer == {"approved": True} and inp.handoff is None

    bare = AgentInput({"task": "tides"})
    assert bare.session_id == "" and bare.run_id == "" and bare.answer is None
    assert bare.metadata == {} and bare.state == {}

    class Native:
        task = "from native"

        def json(self) -> str:
            return json.dumps({**full, "task": "from json"})

    lazy = AgentInput._from_json(Native())
    assert lazy.task == "from native"
    assert lazy.session_id == "s1"  # decoded on first use


def test_a_native_run_result_answers_its_outline_without_decoding() -> None:
    decoded: List[int] = []

    class Native:
        run_id = "r-native"
        session_id = "s-native"
        status = "completed"
        output = "the answer"

        def json(self) -> str:
            decoded.append(1)
            return json.dumps({**RUN, "run_id": "r-native", "session_id": "s-native",
                               "status": "completed", "output": "the answer"})

    result = RunResult._from_json(Native())
    assert (result.run_id, result.session_id, result.status, result.output) == (
        "r-native", "s-native", "completed", "the answer",
    )
    assert result.ok and not result.waiting
    assert decoded == []
    # Anything else decodes the whole record, once.
    assert result.pattern == "sequential" and result.task == "tides"
    assert [s.agent for s in result.steps] == [s.agent for s in RunResult(RUN).steps]
    assert result.to_dict()["output"] == "the answer"
    assert decoded == [1]
    with pytest.raises(AttributeError):
        setattr(result, "status", "failed")
    assert RunResult.status.__doc__ is not None and "completed" in RunResult.status.__doc__


def public_attributes(cls: type) -> List[str]:
    return [
        name
        for name, value in vars(cls).items()
        if not name.startswith("_") and not name.isupper() and not inspect.isfunction(value)
    ]


@pytest.mark.parametrize("cls, data", WRAPPERS, ids=NAMES)
def test_attributes_are_read_only(cls: Any, data: Dict[str, Any]) -> None:
    class Sub(cls):  # type: ignore[misc]
        """A subclass with a __dict__: the attributes stay read-only."""

    assert not hasattr(cls(dict(data)), "__dict__")  # slots only
    for obj in (cls(dict(data)), Sub(dict(data))):
        names = public_attributes(cls)
        assert names
        for name in names:
            before = getattr(obj, name)
            with pytest.raises(AttributeError):
                setattr(obj, name, before)
            with pytest.raises(AttributeError):
                delattr(obj, name)
        assert obj.to_dict() == data
    with pytest.raises(AttributeError):
        cls(dict(data)).not_an_attribute = 1


def test_attributes_keep_their_docs() -> None:
    assert Step.agent.__doc__ == "The agent that answered (a fallback's name when one stood in)."
    assert Step.status.__doc__ == '"completed" or "failed".'
    assert Step.index.__doc__ is None
    assert inspect.getdoc(RunResult.status) == (
        '"completed", "failed", "timed_out", "cancelled", "waiting_for_input"\n'
        '(paused until ``orch.resume``), or "running" in a session.'
    )
    assert inspect.getdoc(Event.seq) == "1, 2, 3… within a run, in emission order."
    assert inspect.getdoc(InputRequest.expires_at) == (
        "After this (RFC 3339), answers are refused and the run ends ``timed_out``."
    )
    assert inspect.getdoc(AgentInput.metadata) == "The request's metadata."


# The type mypy --strict gives each attribute (JSON is Dict[str, Any]).
STATIC_TYPES = {
    "AgentInput": "task=str messages=List[Message] session_id=str run_id=str metadata=JSON"
    " state=JSON answer=Any handoff=Optional[Handoff]",
    "Step": "index=int agent=str fallback_for=Optional[str] label=Optional[str] input=str"
    " status=str output=Optional[AgentOutput] error=Optional[ErrorInfo] attempts=int"
    " started_at=str duration_ms=int policy=List[PolicyDecision]",
    "PolicyDecision": "kind=str agent=Optional[str] error=Optional[ErrorInfo]",
    "InputRequest": "key=str kind=str agent=Optional[str] step=Optional[int] prompt=str"
    " schema=Any context=Any requested_at=Optional[str] expires_at=Optional[str]",
    "RunResult": "run_id=str session_id=str pattern=str task=str agents=List[str] status=str"
    " waiting=bool input=Optional[InputRequest] answers=JSON checkpoint=Optional[JSON] ok=bool"
    " output=Optional[str] data=Any error=Optional[ErrorInfo] termination=Optional[str]"
    " partial=bool steps=List[Step] usage=Usage options=JSON started_at=str"
    " finished_at=Optional[str] duration_ms=int",
    "Session": "id=str messages=List[Message] state=JSON runs=List[RunResult] metadata=JSON"
    " created_at=str updated_at=str version=int",
    "Event": "type=str run_id=str session_id=str seq=int timestamp=str schema_version=int"
    " agent=Optional[str] is_terminal=bool result=Optional[RunResult]"
    " request=Optional[InputRequest]",
}

TYPED_HEADER = """
from typing import Any, Dict, List, Optional

from typing_extensions import assert_type

from orchestra import *

JSON = Dict[str, Any]


# Read-only: each assignment is an error (and an unused ignore would be one too).
def assign(step: Step, run: RunResult, session: Session, inp: AgentInput) -> None:
    step.index = 3  # type: ignore[assignment]
    session.state = {}  # type: ignore[assignment]
    inp.session_id = ""  # type: ignore[assignment]
    run.ok = True  # type: ignore[misc]
"""


def typed_use() -> str:
    """Code using every attribute, with the types above asserted for mypy."""
    lines = [TYPED_HEADER]
    for cls, attributes in STATIC_TYPES.items():
        lines.append(f"\ndef check_{cls}(x: {cls}) -> None:")
        for attribute in attributes.split():
            name, expected = attribute.split("=")
            lines.append(f"    assert_type(x.{name}, {expected})")
    return "\n".join(lines) + "\n"


def test_static_types_cover_every_attribute() -> None:
    for cls, attributes in STATIC_TYPES.items():
        names = [a.split("=")[0] for a in attributes.split()]
        assert sorted(names) == sorted(public_attributes(getattr(orchestra, cls))), cls


def test_static_types(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    api = pytest.importorskip("mypy.api")
    src = tmp_path / "typed_use.py"
    src.write_text(typed_use())
    monkeypatch.chdir(tmp_path)
    package_root = Path(orchestra.__file__).resolve().parent.parent
    monkeypatch.setenv("MYPYPATH", os.fspath(package_root))
    out, err, status = api.run(
        ["--strict", "--no-incremental", "--cache-dir", os.devnull, str(src)]
    )
    assert status == 0, out + err
