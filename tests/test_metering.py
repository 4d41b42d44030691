"""The metering proxy against the scripted fake LLM server: key swap, pass-through, usage, cost, retries, limits."""

import http.client
import json
import socket
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from posttrainbench.agents.trajectory import working_seconds
from posttrainbench.egress.metering import (
    Limits,
    MeteringProxy,
    RetryPolicy,
    Upstream,
    read_log,
    subscription_upstreams,
    upstreams_from_env,
)
from posttrainbench.egress.prices import cost_usd, price_for
from posttrainbench.egress.redact import find_secret, redact_files, redact_text
from posttrainbench.egress.usage import UsageMeter
from posttrainbench.errors import PtbError
from posttrainbench.specs.grid import expand, load_grid

sys.path.insert(0, str(Path(__file__).parent))
import fake_llm  # noqa: E402
from fake_llm import FakeLLM  # noqa: E402

KEY = "sk-proj-THEREALKEY0123456789abcdefghij"
FAST = RetryPolicy(attempts=5, base_delay_s=0.01, max_delay_s=0.05)
SHELL = {"properties": {"command": {"type": "string"}}}
REQUESTS = {
    "anthropic": ("/v1/messages?beta=true", {"model": "claude-sonnet-4-5", "messages": [],
                                            "tools": [{"name": "Bash", "input_schema": SHELL}]}),
    "responses": ("/v1/responses", {"model": "gpt-5", "input": [],
                                    "tools": [{"type": "function", "name": "exec_command", "parameters": SHELL}]}),
    "chat": ("/v1/chat/completions", {"model": "gpt-5", "messages": [],
                                      "tools": [{"type": "function", "function": {"name": "bash", "parameters": SHELL}}]}),
    "gemini": ("/v1beta/models/gemini-2.5-pro:{method}?key=dummy-key",
               {"contents": [], "tools": [{"functionDeclarations": [{"name": "run_shell_command",
                                                                     "parametersJsonSchema": SHELL}]}]}),
}


def post(base: str, path: str, body: dict, headers: dict | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"content-type": "application/json", "x-api-key": "dummy-key",
                                              "authorization": "Bearer dummy-key", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def api_request(api: str, stream: bool) -> tuple[str, dict]:
    path, body = REQUESTS[api]
    if api == "gemini":
        method = "streamGenerateContent" if stream else "generateContent"
        return path.format(method=method) + ("&alt=sse" if stream else ""), dict(body)
    return path, {**body, "stream": stream}


@pytest.fixture
def deterministic_ids(monkeypatch):
    monkeypatch.setattr(fake_llm, "_id", lambda prefix: prefix + "0" * 20)
    monkeypatch.setattr(fake_llm.time, "time", lambda: 1_800_000_000)


def proxy_for(url: str, tmp_path: Path, **kwargs) -> MeteringProxy:
    upstreams = {p: Upstream(url, KEY) for p in ("anthropic", "openai", "gemini")}
    return MeteringProxy(upstreams, tmp_path / "calls.jsonl", port=0, policy=kwargs.pop("policy", FAST), **kwargs)


@pytest.mark.parametrize("stream", [True, False], ids=["sse", "json"])
@pytest.mark.parametrize("api", list(REQUESTS))
def test_answer_passes_unchanged_and_is_metered(api, stream, deterministic_ids, tmp_path):
    path, body = api_request(api, stream)
    with FakeLLM(["echo hi"]) as fake, proxy_for(fake.url, tmp_path) as proxy:
        direct = post(fake.url, path, body)
        proxied = post(proxy.url, path, body)
    assert proxied == direct and direct[0] == 200
    assert b"echo hi" in proxied[1]
    (call,) = read_log(tmp_path / "calls.jsonl")
    assert call["status"] == 200 and call["stream"] is stream
    assert (call["input_tokens"], call["cached_tokens"], call["output_tokens"]) == (1000, 200, 50)
    model = "claude-sonnet-4-5" if api == "anthropic" else "gemini-2.5-pro" if api == "gemini" else "gpt-5"
    assert call["model"] == model
    assert call["cost_usd"] == pytest.approx(cost_usd(model, 1000, 50, 200))
    assert call["provider"] == {"anthropic": "anthropic", "gemini": "gemini"}.get(api, "openai")


@pytest.mark.parametrize("api", list(REQUESTS))
def test_real_key_replaces_whatever_the_agent_sent(api, tmp_path):
    path, body = api_request(api, True)
    with FakeLLM(["true"]) as fake, proxy_for(fake.url, tmp_path) as proxy:
        post(proxy.url, path, body)
    (request,) = fake.requests
    headers = {k.lower(): v for k, v in request["headers"].items()}
    wanted = {"anthropic": "x-api-key", "gemini": "x-goog-api-key"}.get(api, "authorization")
    assert headers[wanted] == (f"Bearer {KEY}" if wanted == "authorization" else KEY)
    assert "dummy-key" not in json.dumps(headers) + request["path"]
    assert "alt=sse" in request["path"] or api != "gemini"


def test_provider_errors_are_retried_with_backoff_and_logged(tmp_path):
    path, body = api_request("anthropic", True)
    with FakeLLM(["true"], faults=["429", "529", "500", "reset"]) as fake, proxy_for(fake.url, tmp_path) as proxy:
        status, answer = post(proxy.url, path, body)
        summary = proxy.summary()
    assert status == 200 and b"message_stop" in answer
    (call,) = read_log(tmp_path / "calls.jsonl")
    assert call["attempts"] == 5
    assert [f["status"] for f in call["failures"]] == [429, 529, 500, None]
    assert "reset" in call["failures"][3]["error"].lower()
    assert all("delay_s" in f for f in call["failures"])
    assert call["retry_s"] > 0 and summary["failed_attempts"] == 4 and summary["errors"] == 0


def test_persistent_overload_gives_up_with_a_fatal_error(tmp_path):
    stops = []
    path, body = api_request("responses", True)
    with FakeLLM(["true"], faults=["529"] * 5) as fake, proxy_for(fake.url, tmp_path, on_stop=stops.append) as proxy:
        status, answer = post(proxy.url, path, body)
    assert status == 400
    assert "upstream failed after 5 attempts (HTTP 529)" in json.loads(answer)["error"]["message"]
    assert proxy.upstream_down and not proxy.limit_reached and len(stops) == 1


@pytest.mark.parametrize("api", ["anthropic", "responses", "gemini"])
def test_dead_api_fails_fast_in_the_provider_error_shape(api, tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"
    path, body = api_request(api, True)
    started = time.monotonic()
    with proxy_for(dead, tmp_path, policy=RetryPolicy(attempts=3, base_delay_s=0.05)) as proxy:
        status, answer = post(proxy.url, path, body)
        again = post(proxy.url, path, body)
    assert time.monotonic() - started < 5
    error = json.loads(answer)["error"]
    assert status == 400 and "ptb proxy: upstream failed after 3 attempts" in error["message"]
    assert again[0] == 400 and b"LLM API unreachable" in again[1]
    assert proxy.stop_reason.startswith("LLM API unreachable")
    calls = read_log(tmp_path / "calls.jsonl")
    assert [c["attempts"] for c in calls] == [3, 0]


def test_cost_limit_refuses_further_calls(tmp_path):
    path, body = api_request("anthropic", True)
    limit = 1.5 * cost_usd("claude-sonnet-4-5", 1000, 50, 200)
    with FakeLLM(["true"]) as fake, proxy_for(fake.url, tmp_path, limits=Limits(max_cost_usd=limit)) as proxy:
        results = [post(proxy.url, path, body)[0] for _ in range(3)]
    assert results == [200, 200, 400]
    assert proxy.limit_reached and proxy.stop_reason.startswith("cost limit reached")
    assert len(fake.requests) == 2


def test_unknown_route_and_missing_upstream_are_clear_errors(tmp_path):
    with FakeLLM(["true"]) as fake:
        proxy = MeteringProxy({"openai": Upstream(fake.url, KEY)}, tmp_path / "calls.jsonl", port=0)
        with proxy:
            status, answer = post(proxy.url, *api_request("anthropic", True))
            assert status == 400 and b"no upstream configured for anthropic" in answer
            status, _ = post(proxy.url, "/v2/whatever", {})
            assert status == 403
    assert fake.requests == []


def raw_request(url: str, method: str, target: str, body: bytes = b"{}", headers: dict | None = None):
    """A request line sent as written: urllib would normalise some targets."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    connection.putrequest(method, target, skip_accept_encoding=True)
    for name, value in {"content-type": "application/json", "content-length": str(len(body)),
                        "x-api-key": "dummy-key", **(headers or {})}.items():
        connection.putheader(name, value)
    connection.endheaders(body)
    response = connection.getresponse()
    return response.status, response.read()


@pytest.mark.parametrize("method, target", [
    ("POST", "/v1/messages/../../v1/organizations/org-1/api_keys"),
    ("POST", "/v1/responses/../files"),
    ("POST", "/v1/messages/%2e%2e/batches"),
    ("POST", "/v1/messages/%2E%2E/%2e%2e/v1/files"),
    ("POST", "/v1/messages%2f..%2fbatches"),
    ("POST", "/v1/./messages"),
    ("POST", "//v1/messages"),
    ("POST", "/v1//messages"),
    ("POST", "/v1\\..\\files"),
    ("POST", "/v1/messages/batches"),
    ("GET", "/v1/messages/batches/msgbatch_1/results"),
    ("POST", "/v1/batches"),
    ("POST", "/v1/files"),
    ("GET", "/v1/files/file-1/content"),
    ("POST", "/v1/fine_tuning/jobs"),
    ("GET", "/v1/organization/usage/completions"),
    ("GET", "/v1/organizations/org-1/users"),
    ("GET", "/v1/models"),
    ("POST", "/v1/embeddings"),
    ("POST", "/v1/responses/resp_1/cancel"),
    ("GET", "/v1/responses"),
    ("POST", "/v1beta/files"),
    ("POST", "/v1beta/tunedModels/m:generateContent"),
    ("POST", "/v1beta/models/gemini-2.5-pro:batchGenerateContent"),
    ("POST", "/upload/v1beta/files"),
    ("POST", "/v1/messages;batches"),
])
def test_only_inference_endpoints_are_forwarded(method, target, tmp_path):
    with FakeLLM(["true"]) as fake, proxy_for(fake.url, tmp_path) as proxy:
        status, answer = raw_request(proxy.url, method, target)
        # The proxy is still usable afterwards: a refusal is not a stop.
        assert post(proxy.url, *api_request("chat", True))[0] == 200
    assert status == 403, answer
    message = json.dumps(json.loads(answer))
    assert "ptb proxy" in message and ("not an inference" in message or "the path has" in message)
    assert [r["path"] for r in fake.requests] == ["/v1/chat/completions"]
    refused, allowed = read_log(tmp_path / "calls.jsonl")
    assert refused["status"] == 403 and refused["path"] == target and refused["attempts"] == 0
    assert allowed["status"] == 200 and proxy.stop_reason is None


@pytest.mark.parametrize("target", ["/v1/messages/count_tokens", "/v1/responses/input_tokens",
                                    "/v1beta/models/gemini-2.5-pro:countTokens"])
def test_token_counting_is_forwarded_and_costs_nothing(target, tmp_path):
    with FakeLLM(["true"]) as fake, proxy_for(fake.url, tmp_path) as proxy:
        status, _ = post(proxy.url, target, {"model": "claude-sonnet-4-5", "messages": []})
    assert status == 200 and [r["path"] for r in fake.requests] == [target]
    (call,) = read_log(tmp_path / "calls.jsonl")
    assert call["input_tokens"] == 0 and call.get("cost_usd") is None and "usage_estimated" not in call


def test_limits_are_on_by_default(tmp_path):
    from posttrainbench.specs import RunSpec, parse_agent
    from posttrainbench.specs.run import DEFAULT_LLM_TOKENS, DEFAULT_LLM_USD

    with proxy_for("http://127.0.0.1:9", tmp_path) as proxy:
        assert (proxy.limits.max_cost_usd, proxy.limits.max_tokens) == (DEFAULT_LLM_USD, DEFAULT_LLM_TOKENS)
    spec = RunSpec(agent=parse_agent("claude:claude-opus-4-6"), model="qwen3-1.7b-base", benchmark="gsm8k")
    assert Limits.of(spec.llm) == Limits(max_tokens=150_000_000, max_cost_usd=100.0)
    lifted = RunSpec(agent=spec.agent, model=spec.model, benchmark=spec.benchmark, llm={"max_usd": None})
    assert Limits.of(lifted.llm) == Limits(max_tokens=150_000_000, max_cost_usd=None)
    with pytest.raises(ValueError):
        RunSpec(agent=spec.agent, model=spec.model, benchmark=spec.benchmark, llm={"max_usd": -1})
    grid_file = tmp_path / "g.yaml"
    grid_file.write_text("agents: [{scaffold: claude, model: claude-opus-4-6}]\nmodels: [qwen3-1.7b-base]\n"
                         "benchmarks: [gsm8k]\nllm: {max_usd: 40, max_tokens: null}\n")
    (cell,) = expand(load_grid(grid_file))
    assert Limits.of(cell.spec.llm) == Limits(max_tokens=None, max_cost_usd=40.0)


def test_answers_without_usage_are_metered_by_size(tmp_path, monkeypatch):
    """A chat stream without `stream_options.include_usage` carries no usage: it still counts towards the limits."""
    real = fake_llm.chat_events
    monkeypatch.setattr(fake_llm, "chat_events", lambda reply, model: [e for e in real(reply, model)
                                                                       if b'"usage"' not in e])
    path, body = api_request("chat", True)
    with FakeLLM(["echo hi"]) as fake, proxy_for(fake.url, tmp_path, limits=Limits(max_tokens=200)) as proxy:
        results = [post(proxy.url, path, body)[0] for _ in range(3)]
    calls = read_log(tmp_path / "calls.jsonl")
    assert calls[0]["usage_estimated"] and calls[0]["input_tokens"] > 0 and calls[0]["output_tokens"] > 0
    assert results[-1] == 400 and proxy.stop_reason.startswith("token limit reached")


def test_usage_is_read_to_the_end_when_the_agent_hangs_up(tmp_path, monkeypatch):
    # 32 MB before the usage chunk: more than socket buffers hold, so the proxy is still writing when the agent
    # has gone.
    real = fake_llm.chat_events
    filler = b"data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": "x" * 65536}}]}).encode() + b"\n\n"
    monkeypatch.setattr(fake_llm, "chat_events", lambda reply, model: [filler] * 512 + real(reply, model))
    path, body = api_request("chat", True)
    with FakeLLM(["echo hi"]) as fake, proxy_for(fake.url, tmp_path) as proxy:
        host, port = proxy.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as client:
            raw = json.dumps(body).encode()
            client.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                           f"Content-Length: {len(raw)}\r\n\r\n".encode() + raw)
            client.recv(1)  # the answer has started; hang up before its usage
        deadline = time.monotonic() + 30
        while not (tmp_path / "calls.jsonl").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    (call,) = read_log(tmp_path / "calls.jsonl")
    assert (call["input_tokens"], call["output_tokens"]) == (1000, 50) and call["client_gone"]


def test_serves_on_a_unix_socket(tmp_path):
    socket_path = tmp_path / "llm.sock"

    class UnixConnection(http.client.HTTPConnection):
        def connect(self):
            self.sock = socket.socket(socket.AF_UNIX)
            self.sock.connect(str(socket_path))

    with FakeLLM(["true"]) as fake:
        with MeteringProxy({"openai": Upstream(fake.url, KEY)}, tmp_path / "c.jsonl", socket_path=socket_path):
            assert oct(socket_path.stat().st_mode & 0o777) == "0o666"
            connection = UnixConnection("localhost")
            path, body = api_request("chat", True)
            connection.request("POST", path, json.dumps(body), {"content-type": "application/json"})
            response = connection.getresponse()
            assert response.status == 200 and b"[DONE]" in response.read()
    assert not socket_path.exists()


def test_subscription_logins_use_bearer_tokens(tmp_path):
    auth = tmp_path / "auth.json"
    auth.write_text(json.dumps({"OPENAI_API_KEY": None, "tokens": {"access_token": "codex-access-token-123",
                                                                   "account_id": "acct-1"}}))
    upstreams = subscription_upstreams(claude_oauth_token="claude-oauth-token-123", codex_auth_json=auth)
    with FakeLLM(["true"]) as fake:
        upstreams["anthropic"].base_url = fake.url
        upstreams["openai"].base_url = fake.url + "/backend-api/codex"
        with MeteringProxy(upstreams, tmp_path / "c.jsonl", port=0) as proxy:
            post(proxy.url, *api_request("anthropic", True), headers={"anthropic-beta": "claude-code-20250219"})
            post(proxy.url, *api_request("responses", True))
    claude, codex = ({k.lower(): v for k, v in r["headers"].items()} | {"_path": r["path"]} for r in fake.requests)
    assert claude["authorization"] == "Bearer claude-oauth-token-123" and "x-api-key" not in claude
    assert claude["anthropic-beta"] == "claude-code-20250219,oauth-2025-04-20"
    assert codex["authorization"] == "Bearer codex-access-token-123" and codex["chatgpt-account-id"] == "acct-1"
    assert codex["_path"] == "/backend-api/codex/responses"
    auth.write_text("{}")
    with pytest.raises(PtbError, match="neither OPENAI_API_KEY"):
        subscription_upstreams(codex_auth_json=auth)


def test_upstreams_from_env_takes_keys_and_overrides():
    upstreams = upstreams_from_env({"ANTHROPIC_API_KEY": "a-key", "GOOGLE_API_KEY": "g-key",
                                    "PTB_GEMINI_UPSTREAM": "http://gemini.local"})
    assert set(upstreams) == {"anthropic", "gemini"}
    assert upstreams["anthropic"].base_url == "https://api.anthropic.com"
    assert (upstreams["gemini"].base_url, upstreams["gemini"].key) == ("http://gemini.local", "g-key")


def test_proxy_needs_somewhere_to_listen(tmp_path):
    with pytest.raises(PtbError):
        MeteringProxy({}, tmp_path / "c.jsonl")


def test_usage_survives_chunks_split_anywhere():
    stream = b"".join(fake_llm.anthropic_events(fake_llm.Reply(text="hi"), "claude-opus-4-6"))
    meter = UsageMeter("anthropic")
    for start in range(0, len(stream), 7):
        meter.feed(stream[start:start + 7], event_stream=True)
    meter.finish()
    assert meter.model == "claude-opus-4-6"
    assert meter.usage == {"input_tokens": 1000, "cached_tokens": 200, "cache_write_tokens": 0,
                           "output_tokens": 50, "reasoning_tokens": 0}


def test_gemini_thinking_tokens_count_as_output():
    meter = UsageMeter("gemini")
    chunk = {"usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5, "thoughtsTokenCount": 7}}
    meter.feed(f"data: {json.dumps(chunk)}\n\n".encode(), event_stream=True)
    meter.finish()
    assert meter.usage["output_tokens"] == 12 and meter.usage["reasoning_tokens"] == 7


def test_prices_match_families_but_not_other_versions():
    assert price_for("claude-sonnet-4-5-20250929") == price_for("claude-sonnet-4-5")
    assert price_for("gpt-5.1-codex-max") == price_for("gpt-5.1")
    assert price_for("models/gemini-3-pro-preview") == price_for("gemini-3-pro")
    assert price_for("claude-opus-4-7") is None and price_for("gpt-5.4") is None and price_for(None) is None
    # Anthropic: 800 fresh at $3, 200 cache reads at $0.30, 100 cache writes at $3.75, 50 out at $15 (per M).
    assert cost_usd("claude-sonnet-4-5", 1100, 50, 200, 100) == pytest.approx((800 * 3 + 200 * 0.3 + 100 * 3.75 + 50 * 15) / 1e6)
    assert cost_usd("gemini-2.5-pro", 300_000, 0) == pytest.approx(300_000 * 2.5 / 1e6)
    assert cost_usd("mystery-model", 10, 10) is None


def test_working_time_subtracts_retry_time_once():
    calls = [
        {"t": "2026-01-01T00:00:10+00:00", "retry_s": 5.0},
        {"t": "2026-01-01T00:00:12+00:00", "retry_s": 5.0},  # overlaps the first: 10..17 blocked
        {"t": "2026-01-01T00:00:30+00:00", "retry_s": 0.0},
        {"t": "2026-01-01T00:00:58+00:00", "retry_s": 10.0},  # clipped at the end: 58..60
    ]
    assert working_seconds("2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z", calls) == pytest.approx(60 - 7 - 2)


def test_redaction_of_values_and_key_shapes(tmp_path):
    text = (f"key={KEY} anthropic=sk-ant-api03-{'a' * 30} google=AIzaSy{'B' * 33} "
            f"or=sk-or-v1-{'c' * 30} custom=my-own-secret-value")
    clean = redact_text(text, ["my-own-secret-value"])
    assert "[REDACTED:openai-project]" in clean and "[REDACTED:anthropic]" in clean
    assert "[REDACTED:google]" in clean and "[REDACTED:openrouter]" in clean and "custom=[REDACTED]" in clean
    assert "sk-" not in clean.replace("[REDACTED", "")
    (tmp_path / "log.txt").write_text(text)
    (tmp_path / "weights.bin").write_bytes(b"\0\1" + KEY.encode() + b"\0" + KEY.encode().hex().encode())
    assert redact_files(tmp_path, [KEY]) == [tmp_path / "log.txt"]
    hits = find_secret(tmp_path, KEY)
    assert [(h.path.name, h.offset) for h in hits] == [("weights.bin", 2), ("weights.bin", 3 + len(KEY))]


def test_secret_scan_finds_keys_across_read_chunks(tmp_path):
    blob = tmp_path / "big.bin"
    blob.write_bytes(b"x" * ((1 << 20) - 10) + KEY.encode() + b"y" * 100)
    assert [h.offset for h in find_secret(tmp_path, KEY)] == [(1 << 20) - 10]


def test_client_key_is_required_when_set(tmp_path):
    with FakeLLM(["true"]) as fake:
        proxy = MeteringProxy({"openai": Upstream(fake.url, KEY), "gemini": Upstream(fake.url, KEY)},
                              tmp_path / "c.jsonl", port=0, client_key="ptb-run-abc123")
        with proxy:
            path, body = api_request("chat", True)
            assert post(proxy.url, path, body)[0] == 401
            assert post(proxy.url, path, body, headers={"authorization": "Bearer ptb-run-abc123"})[0] == 200
            gemini_path, gemini_body = api_request("gemini", True)
            assert post(proxy.url, gemini_path.replace("dummy-key", "ptb-run-abc123"), gemini_body)[0] == 200
    assert len(fake.requests) == 2 and all("ptb-run" not in r["path"] for r in fake.requests)


def test_upstream_error_quoting_the_key_is_redacted_in_the_log(tmp_path, monkeypatch):
    monkeypatch.setitem(fake_llm.ERRORS, "500", (500, "api_error", f"invalid key {KEY}"))
    with FakeLLM(["true"], faults=["500"]) as fake, proxy_for(fake.url, tmp_path) as proxy:
        assert post(proxy.url, *api_request("chat", True))[0] == 200
    assert KEY not in (tmp_path / "calls.jsonl").read_text()
    assert "invalid key [REDACTED]" in (tmp_path / "calls.jsonl").read_text()


def test_calls_in_flight_are_bounded_so_a_limit_holds(tmp_path, monkeypatch):
    """A burst of parallel calls cannot carry the run far past a limit: only max_concurrent are forwarded at once,
    and the ones waiting are refused once a finished call reaches the limit."""
    import concurrent.futures

    real = fake_llm.chat_events

    def slow(reply, model):
        time.sleep(1)  # every call of the burst is in flight before the first one ends
        return real(reply, model)

    monkeypatch.setattr(fake_llm, "chat_events", slow)
    path, body = api_request("chat", True)
    with FakeLLM(["true"]) as fake, proxy_for(fake.url, tmp_path, limits=Limits(max_tokens=1, max_concurrent=2)) \
            as proxy:
        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            statuses = list(pool.map(lambda _: post(proxy.url, path, body)[0], range(12)))
    assert 1 <= statuses.count(200) <= 2 and statuses.count(400) == 12 - statuses.count(200)
    assert len(fake.requests) == statuses.count(200)
