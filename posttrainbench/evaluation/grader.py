"""The client of the LLM grader that judges Arena-Hard and HealthBench answers: any OpenAI-compatible endpoint.

Calls are bounded in number (one semaphore per event loop) and retried with exponential backoff on 429, 5xx and
connection errors. A call that still fails raises GraderError; inside an inspect scorer that becomes the sample's
error, so a dead grader ends the evaluation with one clear message instead of a hang or a silent zero score.
Every reply carries its token usage and cost, which the scorers store per sample and `usage_from_log` totals.
"""

import asyncio
import functools
import logging
import os
import random
import time
from dataclasses import asdict, dataclass

import httpx
from inspect_ai.log import EvalLog

from posttrainbench.egress.prices import cost_usd
from posttrainbench.errors import PtbError
from posttrainbench.evaluation.base import PREFLIGHT_DONE_ENV, GraderConfig

log = logging.getLogger(__name__)

DEFAULT_MODEL = "gpt-5-mini"  # the original's grader for both benchmarks
DEFAULT_BASE_URL = "https://api.openai.com/v1"

MAX_ATTEMPTS = 6
BASE_DELAY_S = 2.0  # doubled after each failed attempt: 2 + 4 + 8 + 16 + 32 s before giving up
MAX_DELAY_S = 60.0
# A reasoning grader may think for minutes before the (non-streamed) reply arrives.
TIMEOUT = httpx.Timeout(600.0, connect=20.0)
USAGE_KEY = "grader_usage"  # Score.metadata key the scorers store a sample's GraderUsage under


class GraderError(PtbError):
    """The grader endpoint failed for good (after retries, or with an error that retrying cannot fix)."""


@dataclass
class GraderUsage:
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = 0.0  # None once any call had a model without a known price

    def add(self, other: "GraderUsage") -> None:
        self.calls += other.calls
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.cost_usd = None if self.cost_usd is None or other.cost_usd is None else self.cost_usd + other.cost_usd

    def metrics(self) -> dict:
        return {
            "grader_calls": self.calls,
            "grader_prompt_tokens": self.prompt_tokens,
            "grader_completion_tokens": self.completion_tokens,
            "grader_cost_usd": None if self.cost_usd is None else round(self.cost_usd, 6),
        }


@dataclass
class GraderReply:
    text: str
    usage: GraderUsage


def grader_from_env(model: str | None = None) -> GraderConfig:
    """The grader endpoint from the environment; raises before any generation if none is configured.

    PTB_GRADER_BASE_URL picks an OpenAI-compatible endpoint (default: OpenAI's), PTB_GRADER_API_KEY or else
    OPENAI_API_KEY its key. A custom endpoint may go without a key; OpenAI's may not.
    """
    key = os.environ.get("PTB_GRADER_API_KEY") or os.environ.get("OPENAI_API_KEY") or ""
    base_url = os.environ.get("PTB_GRADER_BASE_URL", "").strip()
    if not key and not base_url:
        raise PtbError(
            "this benchmark is graded by an LLM: set OPENAI_API_KEY (or PTB_GRADER_API_KEY), and PTB_GRADER_BASE_URL"
            " for an OpenAI-compatible endpoint other than OpenAI's"
        )
    return GraderConfig(model=model or DEFAULT_MODEL, base_url=(base_url or DEFAULT_BASE_URL).rstrip("/"), api_key=key)


class Grader:
    def __init__(self, config: GraderConfig, max_completion_tokens: int):
        self.config = config
        self.max_completion_tokens = max_completion_tokens
        self.reasoning_effort = config.reasoning_effort
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots: asyncio.Semaphore | None = None

    @property
    def _headers(self) -> dict:
        return {"Authorization": f"Bearer {self.config.api_key}"} if self.config.api_key else {}

    def _where(self) -> str:
        return f"grader {self.config.model} at {self.config.base_url}"

    def preflight(self) -> None:
        """Fail fast, before hours of generation, if the endpoint is unreachable or refuses the key."""
        if os.environ.get(PREFLIGHT_DONE_ENV) == "1":
            return
        url = f"{self.config.base_url}/models"
        problem = ""
        for attempt in range(3):
            try:
                response = httpx.get(url, headers=self._headers, timeout=30.0, verify=_tls())
            except httpx.TransportError as exc:
                problem = _describe(exc)
                if attempt < 2:
                    delay = BASE_DELAY_S * 2**attempt
                    log.warning("%s unreachable (%s); retrying in %.0f s", self._where(), problem, delay)
                    time.sleep(delay)
                continue
            if response.status_code in (401, 403):
                status = response.status_code
                raise PtbError(f"{self._where()} refused the API key (HTTP {status}): {_message(response)}")
            return  # any other answer means someone is there; an endpoint need not implement /models
        raise PtbError(f"{self._where()} is unreachable: {problem}")

    def _semaphore(self) -> asyncio.Semaphore:
        # An asyncio.Semaphore belongs to one event loop, and each inspect eval runs in a fresh one.
        loop = asyncio.get_running_loop()
        if self._slots is None or self._loop is not loop:
            self._loop, self._slots = loop, asyncio.Semaphore(self.config.max_concurrency)
        return self._slots

    async def complete(self, messages: list[dict]) -> GraderReply:
        url = f"{self.config.base_url}/chat/completions"
        problem = ""
        async with self._semaphore(), httpx.AsyncClient(timeout=TIMEOUT, verify=_tls()) as http:
            for attempt in range(1, MAX_ATTEMPTS + 1):
                tokens = self.max_completion_tokens
                body = {"model": self.config.model, "messages": messages, "max_completion_tokens": tokens}
                if self.reasoning_effort:
                    body["reasoning_effort"] = self.reasoning_effort
                wait = None
                try:
                    response = await http.post(url, json=body, headers=self._headers)
                except httpx.TransportError as exc:
                    problem = _describe(exc)
                else:
                    status = response.status_code
                    if status == 200:
                        try:
                            return self._reply(response.json())
                        except (ValueError, KeyError, IndexError, TypeError) as exc:
                            problem = f"malformed reply ({type(exc).__name__}: {exc})"
                    elif status == 400 and "reasoning_effort" in body and "reasoning_effort" in response.text:
                        # Endpoints serving non-reasoning models reject the parameter: drop it for good.
                        log.warning("%s does not take reasoning_effort; grading without it", self._where())
                        self.reasoning_effort = None
                        continue
                    elif status in (408, 409, 429) or status >= 500:
                        problem = f"HTTP {status}: {_message(response)}"
                        wait = _retry_after(response)
                    else:
                        raise GraderError(f"{self._where()} answered HTTP {status}: {_message(response)}")
                if attempt < MAX_ATTEMPTS:
                    delay = wait if wait is not None else min(MAX_DELAY_S, BASE_DELAY_S * 2 ** (attempt - 1))
                    delay *= 1 + random.random() / 4  # spread out the retries of concurrent calls
                    log.warning("%s: %s; attempt %d of %d in %.1f s", self._where(), problem, attempt + 1,
                                MAX_ATTEMPTS, delay)
                    await asyncio.sleep(delay)
        raise GraderError(f"{self._where()} failed after {MAX_ATTEMPTS} attempts: {problem}")

    def _reply(self, data: dict) -> GraderReply:
        text = data["choices"][0]["message"].get("content") or ""
        usage = data.get("usage") or {}
        prompt = int(usage.get("prompt_tokens") or 0)
        completion = int(usage.get("completion_tokens") or 0)
        cached = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
        cost = cost_usd(self.config.model, prompt, completion, cached_tokens=cached)
        return GraderReply(text, GraderUsage(1, prompt, completion, cost))


def usage_from_log(eval_log: EvalLog) -> GraderUsage:
    """The grader usage of a whole evaluation, from what the scorers stored per sample."""
    total = GraderUsage()
    for sample in eval_log.samples or []:
        for score in (sample.scores or {}).values():
            if score.metadata and USAGE_KEY in score.metadata:
                total.add(GraderUsage(**score.metadata[USAGE_KEY]))
    return total


def usage_metadata(usage: GraderUsage) -> dict:
    return {USAGE_KEY: asdict(usage)}


@functools.cache
def _tls():
    # Building a TLS context costs ~30 ms of CPU; one shared context keeps a fresh client per call cheap.
    return httpx.create_ssl_context()


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _message(response: httpx.Response) -> str:
    try:
        error = response.json().get("error")
        text = error.get("message") if isinstance(error, dict) else str(error or response.text)
    except (ValueError, AttributeError):
        text = response.text
    return " ".join(str(text).split())[:300] or response.reason_phrase


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return min(MAX_DELAY_S, max(0.0, float(response.headers["retry-after"])))
    except (KeyError, ValueError):
        return None
