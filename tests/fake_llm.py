"""A scripted fake LLM API for running the real agent CLIs offline.

Speaks Anthropic Messages, OpenAI Responses, Chat Completions (all SSE or JSON) and Gemini generateContent /
streamGenerateContent. Each reply is decided from the request alone (agent-clis.md §7): a JSON schema gets a JSON
object, a request without tools gets the text "ok", and an agent turn plays step N of the script where N is the
number of tool results already in the conversation. A shell step becomes one call of the CLI's own shell tool.

Faults ("429", "529", "500", "reset") are consumed one per agent turn before it is answered, which lets tests
check that the metering proxy retries them.
"""

import json
import socket
import struct
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SHELL_TOOLS = ("Bash", "bash", "run_shell_command", "shell_command", "exec_command", "shell")

# Per agent turn: 1000 prompt tokens of which 200 are cache reads, 50 output tokens. Side calls are smaller.
TURN_USAGE = {"input": 1000, "cached": 200, "output": 50}
SIDE_USAGE = {"input": 10, "cached": 0, "output": 2}


def _id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:20]}"


def _fill(schema: dict) -> object:
    kind = schema.get("type")
    if "enum" in schema:
        values = schema["enum"]
        return "user" if "user" in values else values[0]
    if kind == "object" or "properties" in schema:
        return {name: _fill(sub) for name, sub in schema.get("properties", {}).items()}
    if kind == "array":
        return []
    if kind in ("integer", "number", "INTEGER", "NUMBER"):
        return 1
    if kind in ("boolean", "BOOLEAN"):
        return True
    return "ok"


class Reply:
    """What to answer: text, a JSON object (as text) or a shell tool call."""

    def __init__(self, text: str | None = None, tool: str | None = None, args: dict | None = None, side: bool = False):
        self.text, self.tool, self.args = text, tool, args
        self.usage = SIDE_USAGE if side else TURN_USAGE

    def log(self) -> dict:
        return {"text": self.text, "tool": self.tool, "args": self.args, "usage": self.usage}


def _shell_args(name: str, schema: dict, command: str) -> dict:
    props = (schema or {}).get("properties", {})
    key = "cmd" if "cmd" in props and "command" not in props else "command"
    value: object = command
    if props.get(key, {}).get("type") == "array":
        value = ["bash", "-lc", command]
    args = {key: value}
    # a step may import torch on a loaded machine: give it the longest wait the tool accepts, not its default
    for name, limit in (("timeout_ms", 600_000), ("timeout", 600_000)):
        if props.get(name, {}).get("type") in ("integer", "number"):
            args[name] = limit
    if "description" in props:
        args["description"] = "scripted step"
    return args


class Decider:
    def __init__(self, script: list[str], final_text: str):
        self.script, self.final_text = script, final_text

    def decide(self, api: str, body: dict) -> tuple[Reply, bool]:
        """Returns the reply and whether this request is an agent turn (has tools)."""
        schema = self._schema(api, body)
        if schema is not None:
            return Reply(text=json.dumps(_fill(schema)), side=True), False
        tools = self._tools(api, body)
        if not tools:
            return Reply(text="ok", side=True), False
        step = self._tool_results(api, body)
        if step >= len(self.script):
            return Reply(text=self.final_text), True
        for name in SHELL_TOOLS:
            if name in tools:
                return Reply(tool=name, args=_shell_args(name, tools[name], self.script[step])), True
        raise ValueError(f"no shell tool among {sorted(tools)}")

    @staticmethod
    def _schema(api: str, body: dict) -> dict | None:
        if api == "anthropic":
            fmt = (body.get("output_config") or {}).get("format") or {}
            return fmt.get("schema")
        if api == "responses":
            fmt = (body.get("text") or {}).get("format") or {}
            return fmt.get("schema") if fmt.get("type") == "json_schema" else None
        if api == "chat":
            fmt = body.get("response_format") or {}
            return (fmt.get("json_schema") or {}).get("schema") if fmt.get("type") == "json_schema" else None
        config = body.get("generationConfig") or {}
        return config.get("responseJsonSchema") or config.get("responseSchema")

    @staticmethod
    def _tools(api: str, body: dict) -> dict[str, dict]:
        tools: dict[str, dict] = {}
        for tool in body.get("tools") or []:
            if api == "anthropic" and "name" in tool:
                tools[tool["name"]] = tool.get("input_schema") or {}
            elif api == "responses" and tool.get("type") == "function":
                tools[tool["name"]] = tool.get("parameters") or {}
            elif api == "chat" and tool.get("type") == "function":
                tools[tool["function"]["name"]] = tool["function"].get("parameters") or {}
            elif api == "gemini":
                for decl in tool.get("functionDeclarations") or []:
                    tools[decl["name"]] = decl.get("parametersJsonSchema") or decl.get("parameters") or {}
        return tools

    @staticmethod
    def _tool_results(api: str, body: dict) -> int:
        count = 0
        if api == "anthropic":
            for message in body.get("messages", []):
                if message.get("role") == "user" and isinstance(message.get("content"), list):
                    count += sum(1 for block in message["content"] if block.get("type") == "tool_result")
        elif api == "responses":
            items = body.get("input") if isinstance(body.get("input"), list) else []
            count = sum(1 for item in items if str(item.get("type", "")).endswith("_output"))
        elif api == "chat":
            count = sum(1 for message in body.get("messages", []) if message.get("role") == "tool")
        else:
            for content in body.get("contents", []):
                count += sum(1 for part in content.get("parts", []) if "functionResponse" in part)
        return count


def _sse(event: str | None, data: object) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()


def anthropic_events(reply: Reply, model: str) -> list[bytes]:
    u = reply.usage
    usage = {
        "input_tokens": u["input"] - u["cached"],
        "output_tokens": 1,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": u["cached"],
    }
    message = {"id": _id("msg_"), "type": "message", "role": "assistant", "model": model, "content": [],
               "stop_reason": None, "stop_sequence": None, "usage": usage}
    out = [_sse("message_start", {"type": "message_start", "message": message})]
    if reply.tool:
        block = {"type": "tool_use", "id": _id("toolu_"), "name": reply.tool, "input": {}}
        delta = {"type": "input_json_delta", "partial_json": json.dumps(reply.args)}
        stop = "tool_use"
    else:
        block = {"type": "text", "text": ""}
        delta = {"type": "text_delta", "text": reply.text}
        stop = "end_turn"
    out += [
        _sse("content_block_start", {"type": "content_block_start", "index": 0, "content_block": block}),
        _sse("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}),
        _sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
        _sse("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                               "usage": {"output_tokens": u["output"]}}),
        _sse("message_stop", {"type": "message_stop"}),
    ]
    return out


def anthropic_json(reply: Reply, model: str) -> dict:
    u = reply.usage
    if reply.tool:
        content = [{"type": "tool_use", "id": _id("toolu_"), "name": reply.tool, "input": reply.args}]
    else:
        content = [{"type": "text", "text": reply.text}]
    return {"id": _id("msg_"), "type": "message", "role": "assistant", "model": model, "content": content,
            "stop_reason": "tool_use" if reply.tool else "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": u["input"] - u["cached"], "output_tokens": u["output"],
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": u["cached"]}}


def _responses_item(reply: Reply) -> dict:
    if reply.tool:
        return {"type": "function_call", "id": _id("fc_"), "call_id": _id("call_"), "name": reply.tool,
                "arguments": json.dumps(reply.args), "status": "completed"}
    return {"type": "message", "id": _id("msg_"), "role": "assistant", "status": "completed",
            "content": [{"type": "output_text", "text": reply.text, "annotations": []}]}


def _responses_usage(reply: Reply) -> dict:
    u = reply.usage
    return {"input_tokens": u["input"], "input_tokens_details": {"cached_tokens": u["cached"]},
            "output_tokens": u["output"], "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": u["input"] + u["output"]}


def responses_events(reply: Reply, model: str) -> list[bytes]:
    rid = _id("resp_")
    item = _responses_item(reply)
    base = {"id": rid, "object": "response", "model": model, "output": []}
    events = [
        ("response.created", {"response": {**base, "status": "in_progress"}}),
        ("response.in_progress", {"response": {**base, "status": "in_progress"}}),
        ("response.output_item.added", {"output_index": 0, "item": {**item, "status": "in_progress"}}),
        ("response.output_item.done", {"output_index": 0, "item": item}),
        ("response.completed", {"response": {**base, "status": "completed", "output": [item],
                                             "usage": _responses_usage(reply)}}),
    ]
    return [_sse(name, {"type": name, "sequence_number": n, **data}) for n, (name, data) in enumerate(events)]


def responses_json(reply: Reply, model: str) -> dict:
    return {"id": _id("resp_"), "object": "response", "model": model, "status": "completed",
            "output": [_responses_item(reply)], "usage": _responses_usage(reply)}


def _chat_usage(reply: Reply) -> dict:
    u = reply.usage
    return {"prompt_tokens": u["input"], "completion_tokens": u["output"], "total_tokens": u["input"] + u["output"],
            "prompt_tokens_details": {"cached_tokens": u["cached"]}}


def chat_events(reply: Reply, model: str) -> list[bytes]:
    cid, created = _id("chatcmpl_"), int(time.time())

    def chunk(choices: list, **extra) -> bytes:
        return _sse(None, {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                           "choices": choices, **extra})

    if reply.tool:
        call = {"index": 0, "id": _id("call_"), "type": "function",
                "function": {"name": reply.tool, "arguments": json.dumps(reply.args)}}
        delta, finish = {"tool_calls": [call]}, "tool_calls"
    else:
        delta, finish = {"content": reply.text}, "stop"
    return [
        chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]),
        chunk([{"index": 0, "delta": delta, "finish_reason": None}]),
        chunk([{"index": 0, "delta": {}, "finish_reason": finish}]),
        chunk([], usage=_chat_usage(reply)),
        _sse(None, "[DONE]"),
    ]


def chat_json(reply: Reply, model: str) -> dict:
    message: dict = {"role": "assistant", "content": reply.text}
    if reply.tool:
        message = {"role": "assistant", "content": None, "tool_calls": [
            {"id": _id("call_"), "type": "function",
             "function": {"name": reply.tool, "arguments": json.dumps(reply.args)}}]}
    return {"id": _id("chatcmpl_"), "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if reply.tool else "stop"}],
            "usage": _chat_usage(reply)}


def gemini_json(reply: Reply, model: str) -> dict:
    u = reply.usage
    part = {"functionCall": {"name": reply.tool, "args": reply.args}} if reply.tool else {"text": reply.text}
    return {"candidates": [{"content": {"role": "model", "parts": [part]}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": u["input"], "cachedContentTokenCount": u["cached"],
                              "candidatesTokenCount": u["output"], "totalTokenCount": u["input"] + u["output"]},
            "modelVersion": model, "responseId": _id("")}


ERRORS = {
    "429": (429, "rate_limit_error", "Rate limited"),
    "529": (529, "overloaded_error", "Overloaded"),
    "500": (500, "api_error", "Internal server error"),
}


class FakeLLM:
    """Run with `with FakeLLM(script) as fake:`; `fake.url` is the base URL, `fake.requests` the request log."""

    def __init__(self, script: list[str], final_text: str = "done", faults: list[str] | None = None):
        self.decider = Decider(script, final_text)
        self.faults = list(faults or [])
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeLLM":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def turns(self) -> list[dict]:
        """Agent turns that were answered (not faults, not side calls)."""
        return [r for r in self.requests if r.get("turn") and r.get("fault") is None]

    def usage_total(self) -> dict:
        total = {"input": 0, "cached": 0, "output": 0}
        for record in self.requests:
            if record.get("reply"):
                for key in total:
                    total[key] += record["reply"]["usage"][key]
        return total

    def _take_fault(self) -> str | None:
        with self.lock:
            return self.faults.pop(0) if self.faults else None

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_HEAD(self) -> None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self) -> None:
                fake.requests.append({"method": "GET", "path": self.path, "headers": dict(self.headers)})
                self._json(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw or b"{}")
                path = self.path.split("?")[0]
                record = {"t": time.time(), "method": "POST", "path": self.path, "headers": dict(self.headers),
                          "body": body}
                fake.requests.append(record)
                if path.endswith("/count_tokens") or path.endswith(":countTokens"):
                    self._json(200, {"input_tokens": 10, "totalTokens": 10})
                    return
                api = self._api(path)
                model = body.get("model") or path.rsplit("/", 1)[-1].split(":")[0]
                reply, turn = fake.decider.decide(api, body)
                record["turn"] = turn
                fault = fake._take_fault() if turn else None
                if fault:
                    record["fault"] = fault
                    self._fault(api, fault)
                    return
                record["reply"] = reply.log()
                stream = body.get("stream") or path.endswith(":streamGenerateContent")
                if api == "gemini":
                    data = gemini_json(reply, model)
                    self._stream([_sse(None, data)]) if stream else self._json(200, data)
                elif api == "anthropic":
                    self._stream(anthropic_events(reply, model)) if stream else self._json(200, anthropic_json(reply, model))
                elif api == "responses":
                    self._stream(responses_events(reply, model)) if stream else self._json(200, responses_json(reply, model))
                else:
                    self._stream(chat_events(reply, model)) if stream else self._json(200, chat_json(reply, model))

            @staticmethod
            def _api(path: str) -> str:
                if path.endswith("/messages"):
                    return "anthropic"
                if path.endswith("/responses"):
                    return "responses"
                if path.endswith("/chat/completions"):
                    return "chat"
                return "gemini"

            def _fault(self, api: str, fault: str) -> None:
                if fault == "reset":
                    # SO_LINGER 0 makes close() send RST: the client sees "connection reset by peer".
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.close_connection = True
                    self.connection.close()
                    return
                status, kind, message = ERRORS[fault]
                if api == "anthropic":
                    body = {"type": "error", "error": {"type": kind, "message": message}}
                elif api == "gemini":
                    body = {"error": {"code": status, "message": message, "status": "UNAVAILABLE"}}
                else:
                    body = {"error": {"message": message, "type": kind, "code": None}}
                self._json(status, body, {"retry-after": "0"})

            def _json(self, status: int, data: dict, headers: dict | None = None) -> None:
                raw = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(raw)

            def _stream(self, events: list[bytes]) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for event in events:
                    self.wfile.write(f"{len(event):x}\r\n".encode() + event + b"\r\n")
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

        return Handler
