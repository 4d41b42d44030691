"""Final-answer extraction from free-form model output, shared by the math benchmarks."""

import re

# "ANSWER: n" opening a line (markdown bullets, headings and bold allowed) is the format the prompts ask for;
# "... answer: n" elsewhere in a line is the lenient fallback.
_ANSWER_LINE = re.compile(r"^[\s*#>\-]*(?:final\s+)?answer\s*\**\s*[:：]\s*\**(.*)$", re.IGNORECASE | re.MULTILINE)
_ANSWER_ANYWHERE = re.compile(r"answer\s*\**\s*[:：]\s*\**(.*)$", re.IGNORECASE | re.MULTILINE)
_INTEGER_TOKEN = re.compile(r"[-+]?\d+(?:\.0+)?")
_DEGREES = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|°")
_THOUSANDS = re.compile(r"(?<=\d)(?:,|\{,\}|\\,|\\!)(?=\d{3}(?!\d))")
# Markup around a number; "\frac{7}{2}" and "7/2" are deliberately left alone so they never read as 7.
_WRAPPERS = re.compile(r"\\(?:boxed|text|textbf|mathrm|mathbf)\s*\{|\$|\\[()\[\]]|\*\*")
_TOKEN_EDGES = ".,;:!?()[]{}'\"`*"
_DELIMITER_ONLY = re.compile(r"^[\s$*#\-\\\[\]()]*$")


def strip_reasoning(text: str) -> str:
    """The visible answer of a reasoning model: what follows its last </think>.

    An opened but unclosed <think> means generation ran out inside the reasoning, so there is no answer.
    """
    if "</think>" in text:
        return text.rsplit("</think>", 1)[1]
    if "<think>" in text:
        return text.split("<think>", 1)[0]
    return text


def last_boxed(text: str) -> str | None:
    r"""Content of the last \boxed{...} (or \fbox{...}), braces balanced."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    open_at = text.find("{", start)
    if open_at < 0:
        return None
    depth = 0
    for i in range(open_at, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[open_at + 1 : i]
    return None


def integer_in(fragment: str, *, last: bool = False) -> int | None:
    """The integer a short answer fragment states, or None if it states no integer.

    "$070$" → 70, "1,234." → 1234, "x = 70" → 70, "70^\\circ" → 70, "\\frac{7}{2}" → None, "7/2" → None.
    The first integer token counts (after the last "=" if any); with last=True the last one does.
    """
    cleaned = _DEGREES.sub("", fragment)
    cleaned = _WRAPPERS.sub(" ", cleaned)
    cleaned = _THOUSANDS.sub("", cleaned)
    if not last and "=" in cleaned:
        cleaned = cleaned.rsplit("=", 1)[1]
    tokens = [token.strip(_TOKEN_EDGES) for token in re.split(r"[\s=]+", cleaned)]
    for token in reversed(tokens) if last else tokens:
        if _INTEGER_TOKEN.fullmatch(token):
            return int(float(token))
    return None


def _last_substantive_line(text: str) -> str:
    for line in reversed(text.strip().splitlines()):
        if not _DELIMITER_ONLY.match(line):
            return line
    return ""


def _answer_fragment(fragment: str) -> int | None:
    boxed = last_boxed(fragment)
    return integer_in(boxed if boxed is not None else fragment)


def extract_integer(completion: str) -> int | None:
    """The final integer answer of a completion, or None.

    In order: the last line opening with "ANSWER: <n>" (the format the prompt asks for; "Final answer:",
    markdown bold and bullets also count), else the last "answer: <n>" inside a line that states an integer,
    else the last \\boxed{<n>}, else the last number on the last non-empty line.
    """
    body = strip_reasoning(completion)
    lines = _ANSWER_LINE.findall(body)
    if lines:
        return _answer_fragment(lines[-1])
    for fragment in reversed(_ANSWER_ANYWHERE.findall(body)):
        value = _answer_fragment(fragment)
        if value is not None:
            return value
    boxed = last_boxed(body)
    if boxed is not None:
        return integer_in(boxed)
    line = _last_substantive_line(body)
    return integer_in(line, last=True) if line else None
