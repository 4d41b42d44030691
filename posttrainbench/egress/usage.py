"""Token usage read from LLM API responses (SSE streams or JSON bodies), normalised across providers.

Normalised fields: input_tokens = the whole prompt (including cache reads and writes), cached_tokens = cache
reads, cache_write_tokens, output_tokens (including reasoning), reasoning_tokens; plus the model the provider
reports.
"""

import json

USAGE_KEYS = ("input_tokens", "cached_tokens", "cache_write_tokens", "output_tokens", "reasoning_tokens")


class UsageMeter:
    """Feed response bytes as they pass; read `usage` and `model` at the end."""

    def __init__(self, api: str):
        self.api = api
        self.usage = dict.fromkeys(USAGE_KEYS, 0)
        self.model: str | None = None
        self._buffer = b""
        self._stream: bool | None = None
        self._body = bytearray()
        self._fresh = 0  # Anthropic input_tokens: the prompt part neither read from nor written to cache
        self.reported = False  # the answer carried usage at all

    def feed(self, chunk: bytes, event_stream: bool) -> None:
        self._stream = event_stream
        if not event_stream:
            self._body += chunk
            return
        self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            line = line.strip()
            if line.startswith(b"data:"):
                self._data(line[5:].strip())

    def finish(self) -> None:
        if self._stream:
            if self._buffer.strip().startswith(b"data:"):
                self._data(self._buffer.strip()[5:].strip())
            return
        try:
            body = json.loads(bytes(self._body) or b"null")
        except ValueError:
            return
        for item in body if isinstance(body, list) else [body]:
            if isinstance(item, dict):
                self._event(item)

    def _data(self, raw: bytes) -> None:
        if not raw or raw == b"[DONE]":
            return
        try:
            event = json.loads(raw)
        except ValueError:
            return
        if isinstance(event, dict):
            self._event(event)

    def _event(self, event: dict) -> None:
        handler = getattr(self, f"_{self.api}")
        handler(event)

    def _anthropic(self, event: dict) -> None:
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message") or {}
            self.model = message.get("model") or self.model
            self._anthropic_usage(message.get("usage") or {})
        elif kind == "message_delta":
            self._anthropic_usage(event.get("usage") or {})
        elif kind == "message":
            self.model = event.get("model") or self.model
            self._anthropic_usage(event.get("usage") or {})

    def _anthropic_usage(self, usage: dict) -> None:
        # message_delta repeats cumulative counts; a field it omits keeps the message_start value.
        fresh = usage.get("input_tokens")
        read = usage.get("cache_read_input_tokens")
        write = usage.get("cache_creation_input_tokens")
        if read is not None:
            self.usage["cached_tokens"] = read
        if write is not None:
            self.usage["cache_write_tokens"] = write
        if fresh is not None:
            self._fresh = fresh
        if fresh is not None or read is not None or write is not None:
            self.reported = True
            self.usage["input_tokens"] = (
                self._fresh + self.usage["cached_tokens"] + self.usage["cache_write_tokens"]
            )
        if usage.get("output_tokens") is not None:
            self.reported = True
            self.usage["output_tokens"] = usage["output_tokens"]

    def _responses(self, event: dict) -> None:
        response = event.get("response") if "response" in event else event
        if not isinstance(response, dict):
            return
        self.model = response.get("model") or self.model
        usage = response.get("usage")
        if usage:
            self.reported = True
            self.usage["input_tokens"] = usage.get("input_tokens") or 0
            self.usage["cached_tokens"] = (usage.get("input_tokens_details") or {}).get("cached_tokens") or 0
            self.usage["output_tokens"] = usage.get("output_tokens") or 0
            self.usage["reasoning_tokens"] = (usage.get("output_tokens_details") or {}).get("reasoning_tokens") or 0

    def _chat(self, event: dict) -> None:
        self.model = event.get("model") or self.model
        usage = event.get("usage")
        if usage:
            self.reported = True
            self.usage["input_tokens"] = usage.get("prompt_tokens") or 0
            self.usage["cached_tokens"] = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
            self.usage["output_tokens"] = usage.get("completion_tokens") or 0
            details = usage.get("completion_tokens_details") or {}
            self.usage["reasoning_tokens"] = details.get("reasoning_tokens") or 0

    def _gemini(self, event: dict) -> None:
        self.model = event.get("modelVersion") or self.model
        usage = event.get("usageMetadata")
        if usage:
            self.reported = True
            thoughts = usage.get("thoughtsTokenCount") or 0
            self.usage["input_tokens"] = usage.get("promptTokenCount") or 0
            self.usage["cached_tokens"] = usage.get("cachedContentTokenCount") or 0
            self.usage["output_tokens"] = (usage.get("candidatesTokenCount") or 0) + thoughts
            self.usage["reasoning_tokens"] = thoughts
