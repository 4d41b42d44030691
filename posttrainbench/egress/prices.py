"""List prices of the LLMs agents use, in USD per million tokens (standard tier, no batch discount).

Matched after dropping a `models/` or provider prefix and a date suffix (`claude-sonnet-4-5-20250929`); a named
variant (`gpt-5.1-codex-max`, `gemini-3-pro-preview`) takes its family's price, but a different version number
(`claude-opus-4-7`) does not match `claude-opus-4`. A model with no entry is metered with cost None rather than a
guess; callers can pass their own table.
"""

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Price:
    input: float
    output: float
    cached_input: float  # cache reads
    cache_write: float | None = None  # Anthropic cache creation (5-minute TTL); None = billed as input
    long_context: "Price | None" = None  # used when the prompt exceeds LONG_CONTEXT tokens


LONG_CONTEXT = 200_000

_SONNET_LONG = Price(6.0, 22.5, 0.6, 7.5)
_GEMINI_PRO_25_LONG = Price(2.5, 15.0, 0.625)
_GEMINI_PRO_3_LONG = Price(4.0, 18.0, 0.4)

PRICES: dict[str, Price] = {
    # Anthropic
    "claude-opus-4-6": Price(5.0, 25.0, 0.5, 6.25),
    "claude-opus-4-5": Price(5.0, 25.0, 0.5, 6.25),
    "claude-opus-4-1": Price(15.0, 75.0, 1.5, 18.75),
    "claude-opus-4": Price(15.0, 75.0, 1.5, 18.75),
    "claude-sonnet-4-6": Price(3.0, 15.0, 0.3, 3.75, _SONNET_LONG),
    "claude-sonnet-4-5": Price(3.0, 15.0, 0.3, 3.75, _SONNET_LONG),
    "claude-sonnet-4": Price(3.0, 15.0, 0.3, 3.75, _SONNET_LONG),
    "claude-haiku-4-5": Price(1.0, 5.0, 0.1, 1.25),
    "claude-3-5-haiku": Price(0.8, 4.0, 0.08, 1.0),
    # OpenAI
    "gpt-5.2": Price(1.75, 14.0, 0.175),
    "gpt-5.1": Price(1.25, 10.0, 0.125),
    "gpt-5-mini": Price(0.25, 2.0, 0.025),
    "gpt-5-nano": Price(0.05, 0.4, 0.005),
    "gpt-5": Price(1.25, 10.0, 0.125),
    "gpt-4.1": Price(2.0, 8.0, 0.5),
    "o3": Price(2.0, 8.0, 0.5),
    "o3-mini": Price(1.1, 4.4, 0.55),
    "o4-mini": Price(1.1, 4.4, 0.275),
    # Google
    "gemini-3-pro": Price(2.0, 12.0, 0.2, None, _GEMINI_PRO_3_LONG),
    "gemini-2.5-pro": Price(1.25, 10.0, 0.31, None, _GEMINI_PRO_25_LONG),
    "gemini-2.5-flash-lite": Price(0.1, 0.4, 0.025),
    "gemini-2.5-flash": Price(0.3, 2.5, 0.075),
}


def normalize(model: str) -> str:
    name = model.strip().lower().rsplit("/", 1)[-1]
    return re.sub(r"(-\d{8}|-latest|@\d{8})$", "", name)


def _variant_of(name: str, key: str) -> bool:
    rest = name[len(key) + 1:]
    return name.startswith(key + "-") and not rest[:1].isdigit()


def price_for(model: str | None, table: dict[str, Price] | None = None) -> Price | None:
    if not model:
        return None
    table = PRICES if table is None else table
    name = normalize(model)
    matches = [key for key in table if name == key or _variant_of(name, key)]
    return table[max(matches, key=len)] if matches else None


def cost_usd(
    model: str | None,
    input_tokens: int,
    output_tokens: int,
    cached_tokens: int = 0,
    cache_write_tokens: int = 0,
    table: dict[str, Price] | None = None,
) -> float | None:
    """Cost of one call. input_tokens counts the whole prompt, including cache reads and writes."""
    price = price_for(model, table)
    if price is None:
        return None
    if price.long_context and input_tokens > LONG_CONTEXT:
        price = price.long_context
    write_rate = price.input if price.cache_write is None else price.cache_write
    fresh = max(input_tokens - cached_tokens - cache_write_tokens, 0)
    total = fresh * price.input + cached_tokens * price.cached_input + cache_write_tokens * write_rate
    return (total + output_tokens * price.output) / 1_000_000
