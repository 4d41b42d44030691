"""A scripted OpenAI-compatible server for tests of LLM graders: stdlib ThreadingHTTPServer on 127.0.0.1, port 0.

Answers POST /v1/chat/completions and POST /v1/responses (non-streaming) and GET /v1/models. The reply text comes
from `script(request)`; the script may also return a Fault to fail that one request. Faults queued with `fail()` are
served first, one per POST. Every request is logged in `requests`; `max_in_flight` records the peak concurrency.

    with FakeOpenAI(lambda request: "[[A=B]]") as server:
        GraderConfig(model="gpt-5-mini", base_url=server.url, api_key="k")
"""

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Fault:
    status: int
    message: str = "injected fault"
    retry_after: float | None = None


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: dict = field(default_factory=dict)

    @property
    def messages(self) -> list[dict]:
        """The conversation as chat messages, whichever API the request used."""
        if "messages" in self.body:
            return self.body["messages"]
        given = self.body.get("input", [])
        turns = [{"role": "user", "content": given}] if isinstance(given, str) else given
        if self.body.get("instructions"):
            turns = [{"role": "system", "content": self.body["instructions"]}, *turns]
        return turns

    @property
    def prompt(self) -> str:
        """All message text joined, for scripts that decide on the content."""
        parts = []
        for message in self.messages:
            content = message.get("content", "")
            if isinstance(content, list):
                content = "".join(part.get("text", "") for part in content)
            parts.append(content)
        return "\n".join(parts)


class FakeOpenAI:
    def __init__(
        self,
        script: Callable[[Request], "str | Fault"] = lambda request: "ok",
        *,
        usage: tuple[int, int] = (100, 20),
        cached_tokens: int = 0,
        api_key: str | None = None,
        delay_s: float = 0.0,
        port: int = 0,
    ):
        self.script = script
        self.usage = usage  # (prompt, completion) tokens reported for every successful reply
        self.cached_tokens = cached_tokens
        self.api_key = api_key  # when set, requests without "Bearer <api_key>" get 401
        self.delay_s = delay_s
        self.requests: list[Request] = []
        self.max_in_flight = 0
        self._faults: list[Fault] = []
        self._in_flight = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def fail(self, status: int, times: int = 1, message: str = "injected fault", retry_after: float | None = None):
        with self._lock:
            self._faults += [Fault(status, message, retry_after)] * times

    def posts(self) -> list[Request]:
        return [r for r in self.requests if r.method == "POST"]

    def start(self) -> "FakeOpenAI":
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "FakeOpenAI":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _answer(self, request: Request) -> tuple[int, dict, dict]:
        """(status, headers, body) for one logged request."""
        if self.api_key is not None and request.headers.get("authorization") != f"Bearer {self.api_key}":
            return 401, {}, {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}
        if request.method == "GET":
            if request.path.rstrip("/") == "/v1/models":
                return 200, {}, {"object": "list", "data": [{"id": "fake-model", "object": "model"}]}
            return 404, {}, {"error": {"message": f"no route {request.path}"}}
        with self._lock:
            fault = self._faults.pop(0) if self._faults else None
        if fault is None:
            reply = self.script(request)
            fault = reply if isinstance(reply, Fault) else None
        if fault is not None:
            headers = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
            return fault.status, headers, {"error": {"message": fault.message, "type": "fake_fault"}}
        prompt, completion = self.usage
        if request.path == "/v1/chat/completions":
            return 200, {}, self._chat(request, reply, prompt, completion)
        if request.path == "/v1/responses":
            return 200, {}, self._response(request, reply, prompt, completion)
        return 404, {}, {"error": {"message": f"no route {request.path}"}}

    def _chat(self, request: Request, text: str, prompt: int, completion: int) -> dict:
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:16]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.body.get("model", "fake-model"),
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            ],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
                "prompt_tokens_details": {"cached_tokens": self.cached_tokens},
            },
        }

    def _response(self, request: Request, text: str, prompt: int, completion: int) -> dict:
        return {
            "id": f"resp_{uuid.uuid4().hex[:16]}",
            "object": "response",
            "created_at": int(time.time()),
            "status": "completed",
            "model": request.body.get("model", "fake-model"),
            "output": [
                {
                    "type": "message",
                    "id": f"msg_{uuid.uuid4().hex[:16]}",
                    "status": "completed",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": text, "annotations": []}],
                }
            ],
            "usage": {
                "input_tokens": prompt,
                "input_tokens_details": {"cached_tokens": self.cached_tokens},
                "output_tokens": completion,
                "total_tokens": prompt + completion,
            },
        }


def _handler(server: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep test output clean
            pass

        def do_GET(self) -> None:
            self._serve(Request("GET", self.path, _lower(self.headers)))

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                body = json.loads(raw or b"{}")
            except json.JSONDecodeError:
                body = {"_unparsed": raw.decode("utf-8", "replace")}
            self._serve(Request("POST", self.path.split("?")[0], _lower(self.headers), body))

        def _serve(self, request: Request) -> None:
            with server._lock:
                server.requests.append(request)
                server._in_flight += 1
                server.max_in_flight = max(server.max_in_flight, server._in_flight)
            try:
                if server.delay_s:
                    time.sleep(server.delay_s)
                status, headers, body = server._answer(request)
            finally:
                with server._lock:
                    server._in_flight -= 1
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

    return Handler


def _lower(headers) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}
