"""The core's HTTP and OpenAI-compatible agents, configured from Python,
against small local services."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, Iterator, List, Tuple

import pytest

import orchestra

Handler = Callable[[str, Dict[str, Any]], Dict[str, Any]]


@pytest.fixture
def service() -> Iterator[Tuple[str, List[Tuple[str, Dict[str, Any]]], Callable[[Handler], None]]]:
    """A local JSON service; tests set how it answers and read what it got."""
    received: List[Tuple[str, Dict[str, Any]]] = []
    answer: List[Handler] = [lambda path, body: {}]

    class H(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            received.append((self.path, body))
            out = json.dumps(answer[0](self.path, body)).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), H)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def set_answer(h: Handler) -> None:
        answer[0] = h

    yield f"http://127.0.0.1:{server.server_address[1]}", received, set_answer
    server.shutdown()
    server.server_close()


# The wheel is always built with http-agents; a build without them is a failure, not a skip.
assert orchestra._orchestra.HAS_HTTP_AGENTS, "the extension was built without http-agents"


async def test_an_http_agent_service_takes_part_in_a_run(service: Any) -> None:
    url, received, set_answer = service
    set_answer(lambda path, body: {"content": f"wiki says: {body['task']}", "data": {"hits": 1}})
    o = orchestra.Orchestrator()
    o.add_agent("ask", lambda inp: "refund policy")
    o.add_http_agent("wiki", url + "/invoke", description="searches the wiki", timeout_ms=5000)
    assert ("wiki", "searches the wiki") in [(a.name, a.description) for a in o.agents]
    r = await o.run("sequential", "t", agents=["ask", "wiki"], metadata={"user": "u1"})
    assert r.output == "wiki says: refund policy"
    path, body = received[0]
    assert path == "/invoke"
    assert (body["agent"], body["task"], body["metadata"]) == ("wiki", "refund policy", {"user": "u1"})
    out = r.steps[1].output
    assert out is not None and out.data == {"hits": 1}


async def test_an_openai_compatible_model_as_an_agent(service: Any) -> None:
    url, received, set_answer = service
    set_answer(
        lambda path, body: {
            "id": "c1",
            "object": "chat.completion",
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Tides follow the moon."},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16},
        }
    )
    o = orchestra.Orchestrator()
    name = o.add_openai_agent(
        "analyst",
        base_url=url + "/v1",
        model="tiny",
        description="answers",
        system_prompt="Be brief.",
        stream=False,
    )
    assert name == "analyst"
    r = await o.run("sequential", "Why tides?", agents=["analyst"])
    assert r.status == "completed", r.error
    assert r.output == "Tides follow the moon."
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (11, 5)
    path, body = received[0]
    assert path == "/v1/chat/completions"
    assert body["model"] == "tiny"
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}


def test_a_bad_remote_configuration_is_an_invalid_request() -> None:
    o = orchestra.Orchestrator()
    with pytest.raises(orchestra.InvalidRequest):
        o.add_http_agent("x", "ftp://nowhere")
    with pytest.raises(orchestra.InvalidRequest):
        o.add_openai_agent("x", base_url="http://127.0.0.1:1", model="m", no_such_key=1)


async def test_an_unreachable_a2a_card_is_an_agent_error() -> None:
    o = orchestra.Orchestrator()
    with pytest.raises(orchestra.AgentError):
        await o.add_a2a_agent("http://127.0.0.1:1/.well-known/agent-card.json", timeout_ms=2000)
