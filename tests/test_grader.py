"""The OpenAI-compatible grader client against the scripted fake server: retries, bounds, usage, configuration."""

import asyncio
import socket
import time

import httpx
import pytest
from fake_openai import Fault, FakeOpenAI

from posttrainbench.errors import PtbError
from posttrainbench.evaluation import grader as grader_module
from posttrainbench.evaluation.base import GraderConfig
from posttrainbench.evaluation.grader import Grader, GraderError, GraderUsage, grader_from_env

MESSAGES = [{"role": "user", "content": "Is this good? Answer [[A=B]]."}]


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch):
    monkeypatch.setattr(grader_module, "BASE_DELAY_S", 0.01)
    monkeypatch.setattr(grader_module, "MAX_ATTEMPTS", 4)


def config(url: str, **overrides) -> GraderConfig:
    return GraderConfig(**{"model": "gpt-5-mini", "base_url": url, "api_key": "test-key", **overrides})


def complete(grader: Grader, messages=MESSAGES):
    return asyncio.run(grader.complete(messages))


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def test_reply_text_usage_and_cost():
    with FakeOpenAI(lambda request: "[[A>B]]", usage=(1000, 200), cached_tokens=400) as server:
        reply = complete(Grader(config(server.url), max_completion_tokens=4096))
    assert reply.text == "[[A>B]]"
    assert (reply.usage.calls, reply.usage.prompt_tokens, reply.usage.completion_tokens) == (1, 1000, 200)
    # gpt-5-mini: $0.25 per 1M fresh input, $0.025 cached, $2 output
    assert reply.usage.cost_usd == pytest.approx((600 * 0.25 + 400 * 0.025 + 200 * 2.0) / 1e6)
    [request] = server.posts()
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer test-key"
    assert request.body == {
        "model": "gpt-5-mini",
        "messages": MESSAGES,
        "max_completion_tokens": 4096,
        "reasoning_effort": "medium",
    }


def test_unknown_model_has_no_cost_and_poisons_the_total():
    with FakeOpenAI() as server:
        reply = complete(Grader(config(server.url, model="my-local-judge"), 100))
    assert reply.usage.cost_usd is None
    total = GraderUsage(calls=3, prompt_tokens=10, completion_tokens=5, cost_usd=0.5)
    total.add(reply.usage)
    assert total.metrics() == {
        "grader_calls": 4,
        "grader_prompt_tokens": 110,
        "grader_completion_tokens": 25,
        "grader_cost_usd": None,
    }


def test_429_then_success_honours_retry_after():
    with FakeOpenAI(lambda request: "fine") as server:
        server.fail(429, retry_after=0.3, message="Rate limit reached")
        start = time.monotonic()
        reply = complete(Grader(config(server.url), 100))
        elapsed = time.monotonic() - start
    assert reply.text == "fine"
    assert len(server.posts()) == 2
    assert elapsed >= 0.3


def test_server_errors_are_retried_until_success():
    with FakeOpenAI(lambda request: "fine") as server:
        server.fail(500, times=2)
        server.fail(503)
        assert complete(Grader(config(server.url), 100)).text == "fine"
    assert len(server.posts()) == 4


def test_persistent_failure_raises_after_bounded_attempts():
    with FakeOpenAI(lambda request: Fault(500, "upstream exploded")) as server:
        with pytest.raises(GraderError, match=r"failed after 4 attempts: HTTP 500: upstream exploded"):
            complete(Grader(config(server.url), 100))
    assert len(server.posts()) == 4


def test_client_errors_are_not_retried():
    with FakeOpenAI(api_key="right-key") as server:
        with pytest.raises(GraderError, match="HTTP 401: Incorrect API key"):
            complete(Grader(config(server.url, api_key="wrong-key"), 100))
    assert len(server.posts()) == 1


def test_reasoning_effort_is_dropped_when_the_endpoint_rejects_it():
    def script(request):
        if "reasoning_effort" in request.body:
            return Fault(400, "Unrecognized request argument supplied: reasoning_effort")
        return "fine"

    with FakeOpenAI(script) as server:
        grader = Grader(config(server.url), 100)
        assert complete(grader).text == "fine"
        assert complete(grader).text == "fine"
    assert ["reasoning_effort" in r.body for r in server.posts()] == [True, False, False]


def test_dead_server_is_a_clear_error_not_a_hang():
    start = time.monotonic()
    with pytest.raises(GraderError, match=r"gpt-5-mini at http://127\.0\.0\.1:\d+/v1 failed after 4 attempts: Connect"):
        complete(Grader(config(closed_port_url()), 100))
    assert time.monotonic() - start < 10


def test_silent_server_times_out(monkeypatch):
    monkeypatch.setattr(grader_module, "TIMEOUT", httpx.Timeout(0.3))
    monkeypatch.setattr(grader_module, "MAX_ATTEMPTS", 2)
    with socket.socket() as listener:  # accepts connections (kernel backlog) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
        start = time.monotonic()
        with pytest.raises(GraderError, match="failed after 2 attempts: ReadTimeout"):
            complete(Grader(config(url), 100))
    assert time.monotonic() - start < 5


def test_concurrency_is_bounded():
    async def many(grader):
        return await asyncio.gather(*(grader.complete(MESSAGES) for _ in range(12)))

    with FakeOpenAI(delay_s=0.1) as server:
        replies = asyncio.run(many(Grader(config(server.url, max_concurrency=3), 100)))
    assert len(replies) == 12
    assert server.max_in_flight == 3


def test_grader_can_be_reused_across_event_loops():
    with FakeOpenAI() as server:
        grader = Grader(config(server.url, max_concurrency=1), 100)
        complete(grader)
        complete(grader)
    assert len(server.posts()) == 2


def test_preflight():
    with FakeOpenAI(api_key="right-key") as server:
        Grader(config(server.url, api_key="right-key"), 100).preflight()
        with pytest.raises(PtbError, match="refused the API key"):
            Grader(config(server.url, api_key="wrong-key"), 100).preflight()
    with pytest.raises(PtbError, match="is unreachable: Connect"):
        Grader(config(closed_port_url()), 100).preflight()


def test_preflight_accepts_endpoints_without_a_models_route():
    with FakeOpenAI() as server:
        Grader(config(server.url.removesuffix("/v1") + "/other"), 100).preflight()
    assert server.requests[0].path == "/other/models"


@pytest.fixture
def clean_env(monkeypatch):
    for name in ("PTB_GRADER_API_KEY", "OPENAI_API_KEY", "PTB_GRADER_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_grader_from_env_needs_a_key_or_an_endpoint(clean_env):
    with pytest.raises(PtbError, match="set OPENAI_API_KEY"):
        grader_from_env()
    clean_env.setenv("OPENAI_API_KEY", "sk-openai")
    openai = grader_from_env()
    assert (openai.model, openai.base_url, openai.api_key) == ("gpt-5-mini", "https://api.openai.com/v1", "sk-openai")
    clean_env.setenv("PTB_GRADER_API_KEY", "sk-ptb")
    clean_env.setenv("PTB_GRADER_BASE_URL", "http://judge.local:8000/v1/")
    custom = grader_from_env("qwen3-judge")
    assert (custom.model, custom.base_url, custom.api_key) == ("qwen3-judge", "http://judge.local:8000/v1", "sk-ptb")


def test_keyless_custom_endpoint_sends_no_authorization(clean_env):
    with FakeOpenAI() as server:
        clean_env.setenv("PTB_GRADER_BASE_URL", server.url)
        complete(Grader(grader_from_env(), 100))
    assert "authorization" not in server.posts()[0].headers


def test_fake_server_speaks_the_responses_api():
    with FakeOpenAI(lambda request: f"echo: {request.prompt}", usage=(7, 3)) as server:
        body = {"model": "gpt-5", "instructions": "be brief", "input": [{"role": "user", "content": "hi"}]}
        response = httpx.post(f"{server.url}/responses", json=body)
    data = response.json()
    assert response.status_code == 200
    assert data["output"][0]["content"][0]["text"] == "echo: be brief\nhi"
    assert data["usage"] == {"input_tokens": 7, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 3,
                             "total_tokens": 10}  # fmt: skip
    assert server.posts()[0].messages == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
    ]
