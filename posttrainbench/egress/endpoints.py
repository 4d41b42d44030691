"""The provider endpoints the metering proxy forwards: inference and token counting, nothing else.

A request path is compared, exactly as received (no decoding, no normalisation), with a short list of patterns,
and forwarded exactly as compared. So nothing the provider's front end would resolve differently gets through:
dot segments (`/v1/messages/../files`, also percent-encoded), doubled slashes, backslashes and encoded slashes
never match, and neither do the batch, files, fine-tuning, admin or organisation APIs that the real key would
otherwise open.

What the four pinned CLIs send (tests/test_agents_cli.py checks that none of it is refused): Claude Code `POST /v1/messages?beta=true`, Codex
`POST /v1/responses`, Gemini CLI `POST /v1beta/models/M:streamGenerateContent` (and `:generateContent` for its
router), OpenCode `POST /v1/chat/completions` (or the Messages/Responses routes of its built-in providers). Token
counting (`count_tokens`, `input_tokens`, `:countTokens`) is allowed because clients call it to size their
context; it costs nothing. Model listings are not allowed: none of the CLIs needs them.
"""

import re
from dataclasses import dataclass

GEMINI_MODEL = r"/v1(beta)?/models/[A-Za-z0-9][A-Za-z0-9._-]*"


@dataclass(frozen=True)
class Endpoint:
    provider: str  # whose key is added: anthropic | openai | gemini
    api: str  # wire format of the answer, for usage.UsageMeter: anthropic | responses | chat | gemini
    pattern: str  # full match on the raw request path
    counts_tokens: bool = False  # answers a token count: no usage, no cost

    def matches(self, path: str) -> bool:
        return re.fullmatch(self.pattern, path) is not None


ENDPOINTS = (
    Endpoint("anthropic", "anthropic", r"/v1/messages"),
    Endpoint("anthropic", "anthropic", r"/v1/messages/count_tokens", counts_tokens=True),
    Endpoint("openai", "responses", r"/v1/responses"),
    Endpoint("openai", "responses", r"/v1/responses/input_tokens", counts_tokens=True),
    Endpoint("openai", "chat", r"/v1/chat/completions"),
    Endpoint("openai", "chat", r"/v1/completions"),
    Endpoint("gemini", "gemini", GEMINI_MODEL + r":(generateContent|streamGenerateContent)"),
    Endpoint("gemini", "gemini", GEMINI_MODEL + r":countTokens", counts_tokens=True),
)
METHODS = ("POST",)
# What a path must not contain to be considered at all; named in the refusal so the reason is plain.
NOT_NORMAL = (
    (re.compile(r"(^|/)\.\.?(/|$)"), "a dot segment"),
    (re.compile(r"%"), "percent-encoding"),
    (re.compile(r"\\"), "a backslash"),
    (re.compile(r"//"), "an empty segment"),
)


def endpoint_for(method: str, path: str) -> Endpoint | None:
    if method not in METHODS:
        return None
    return next((endpoint for endpoint in ENDPOINTS if endpoint.matches(path)), None)


def refusal(method: str, path: str) -> str:
    """Why `method path` is not forwarded, in one line the agent reads."""
    shown = path if len(path) <= 200 else path[:200] + "…"
    for pattern, what in NOT_NORMAL:
        if pattern.search(path):
            return f"{method} {shown}: the path has {what}; only plain inference paths are forwarded"
    return (f"{method} {shown} is not an inference or token-counting endpoint; the proxy forwards only POST to "
            "/v1/messages, /v1/responses, /v1/chat/completions, /v1/completions, Gemini :generateContent and "
            "the token-counting routes (no batches, files, fine-tuning, models or admin APIs)")


def provider_guess(path: str) -> str | None:
    """The wire format to phrase a refusal in, from the path's look (the request itself was refused)."""
    if "/messages" in path:
        return "anthropic"
    if "/models/" in path and ":" in path:
        return "gemini"
    return None
