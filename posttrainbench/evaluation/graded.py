"""What the LLM-graded benchmarks (Arena-Hard writing, HealthBench) share: the clean-up of a model's answer before
the grader sees it, and the bootstrap standard error of their scores."""

import re
from collections.abc import Callable

import numpy as np

MAX_REPEATS = 5
_REPEATED_UNIT = re.compile(r"(.{3,500}?)\1{%d,}" % MAX_REPEATS, re.DOTALL)


def clean_answer(completion: str) -> str:
    """The answer as the grader sees it: a leading <think>…</think> block dropped, degenerate loops capped."""
    text = completion.strip()
    if text.startswith("<think>") and "</think>" in text:
        text = text.split("</think>", 1)[1].strip()
    return limit_repetitions(text)


def limit_repetitions(text: str) -> str:
    """Cap every run of more than MAX_REPEATS back-to-back copies at MAX_REPEATS copies, as the original did.

    The copies may be lines, blocks of 2 to 29 lines (a copy cut off at the very end of the text is dropped too), or
    substrings of 3 to 500 characters. A looping model would otherwise hand the grader a huge answer to read,
    and the grader's verdict on it would mostly reflect the loop.
    """
    for _ in range(10):
        capped = _cap_substrings(_cap_lines(text))
        if capped == text:
            break
        text = capped
    return text


def _cap_lines(text: str) -> str:
    lines = text.split("\n")
    for size in range(1, 30):
        if len(lines) < size * (MAX_REPEATS + 1):
            break
        out: list[str] = []
        i = 0
        while i < len(lines):
            block = lines[i : i + size]
            end = i + size
            while lines[end : end + size] == block:
                end += size
            if (end - i) // size > MAX_REPEATS:
                out.extend(block * MAX_REPEATS)
                i = len(lines) if _is_cut_copy(lines[end:], block) else end
            else:
                out.append(lines[i])
                i += 1
        lines = out
    return "\n".join(lines)


def _is_cut_copy(rest: list[str], block: list[str]) -> bool:
    """Whether the text's tail is the start of one more copy of `block` (generation stopped inside it)."""
    if not rest or len(rest) > len(block):
        return False
    whole, last = rest[:-1], rest[-1].strip()
    return whole == block[: len(whole)] and block[len(whole)].startswith(last)


def _cap_substrings(text: str) -> str:
    """re.sub of _REPEATED_UNIT, but the regex only runs where numpy found a long enough periodic stretch.

    Scanning every position with the regex costs about a second per 64 KB answer; a position can start a match only
    if text[p + k] == text[p + k + L] holds for 5·L consecutive k, which numpy finds for all L in ~50 ms.
    """
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    starts: list[tuple[int, int]] = []  # (first, last) positions where a match may start
    for size in range(3, min(500, len(codes) // (MAX_REPEATS + 1)) + 1):
        same = np.concatenate(([False], codes[:-size] == codes[size:], [False]))
        edges = np.flatnonzero(same[1:] != same[:-1])
        begin, end = edges[0::2], edges[1::2]
        long_enough = end - begin >= MAX_REPEATS * size
        starts += [(int(b), int(e) - MAX_REPEATS * size) for b, e in zip(begin[long_enough], end[long_enough])]
    out: list[str] = []
    cursor = 0
    while candidates := [max(first, cursor) for first, last in starts if last >= cursor]:
        position = min(candidates)
        match = _REPEATED_UNIT.match(text, position)
        out += [text[cursor:position], match.group(1) * MAX_REPEATS]
        cursor = match.end()
    out.append(text[cursor:])
    return "".join(out)


def bootstrap_std(n: int, statistic: Callable[[np.ndarray], float], resamples: int = 1000, seed: int = 42) -> float:
    """Standard deviation of `statistic` over resamples (with replacement) of the n item indices.

    With the clipped mean as statistic this is exactly the original HealthBench stderr (same generator and seed).
    """
    if n < 2:
        return 0.0
    rng = np.random.default_rng(seed)
    return float(np.std([statistic(rng.choice(n, size=n, replace=True)) for _ in range(resamples)]))
