"""Unicode folding applied to test items and to scanned text alike, so that character tricks change nothing:
invisible characters (zero-width spaces and joiners, soft hyphens, bidirectional marks, variation selectors, tag
characters) are removed, NFKC maps compatibility forms (fullwidth, mathematical alphanumerics, ligatures,
superscripts) to plain ones, and letters of other scripts that look like Latin ones (Cyrillic а, Greek ο, ...) become
those Latin letters. Text without any such character is left as it is, so plain text costs one check."""

import functools
import re
import unicodedata

import numpy as np

# Letters that render like ASCII letters in common fonts: the homoglyphs a copy would be disguised with.
_LOOKALIKES = {
    # Cyrillic
    "а": "a", "в": "b", "е": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p", "с": "c", "т": "t", "у": "y",
    "х": "x", "ѕ": "s", "і": "i", "ј": "j", "ԁ": "d", "ԛ": "q", "ԝ": "w", "ӏ": "l", "ɡ": "g", "ո": "n", "ս": "u",
    "А": "A", "В": "B", "Е": "E", "К": "K", "М": "M", "Н": "H", "О": "O", "Р": "P", "С": "C", "Т": "T", "У": "Y",
    "Х": "X", "Ѕ": "S", "І": "I", "Ј": "J", "Ԁ": "D", "Ԛ": "Q", "Ԝ": "W", "Ӏ": "I",
    # Greek
    "α": "a", "ο": "o", "ρ": "p", "ν": "v", "υ": "u", "ι": "i", "κ": "k", "τ": "t", "χ": "x", "ε": "e",
    "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M", "Ν": "N", "Ο": "O", "Ρ": "P",
    "Τ": "T", "Υ": "Y", "Χ": "X",
    # Latin look-alikes outside ASCII
    "ı": "i", "ȷ": "j", "ℓ": "l", "ꓲ": "I", "ꓳ": "O", "ꓴ": "U", "ꓮ": "A", "ꓐ": "B", "ꓚ": "C", "ꓓ": "D", "ꓰ": "E",
}
_FORMAT_RANGES = [(0xAD, 0xAD), (0x600, 0x605), (0x61C, 0x61C), (0x6DD, 0x6DD), (0x70F, 0x70F), (0x890, 0x891),
                  (0x8E2, 0x8E2), (0x180E, 0x180E), (0x200B, 0x200F), (0x202A, 0x202E), (0x2060, 0x2064),
                  (0x2066, 0x206F), (0xFEFF, 0xFEFF), (0xFFF9, 0xFFFB), (0x110BD, 0x110BD), (0x110CD, 0x110CD),
                  (0x13430, 0x13438), (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A), (0xE0001, 0xE0001), (0xE0020, 0xE007F)]
_INVISIBLE_CLASS = "".join(f"\\U{lo:08x}-\\U{hi:08x}" for lo, hi in _FORMAT_RANGES)
_EXTRA_INVISIBLE = "\\u034f\\u115f\\u1160\\u3164\\uffa0\\ufe00-\\ufe0f\\U000e0100-\\U000e01ef"
_INVISIBLE = re.compile(f"[{_INVISIBLE_CLASS}{_EXTRA_INVISIBLE}]+")
_LOOKALIKE = re.compile(f"[{''.join(_LOOKALIKES)}]")
_SUSPECT = re.compile(f"[{''.join(_LOOKALIKES)}{_INVISIBLE_CLASS}{_EXTRA_INVISIBLE}]")


def _needs_fold(line: str) -> bool:
    return _SUSPECT.search(line) is not None or not unicodedata.is_normalized("NFKC", line)


def _fold_line(line: str) -> str:
    line = unicodedata.normalize("NFKC", _INVISIBLE.sub("", line))
    return _LOOKALIKE.sub(lambda m: _LOOKALIKES[m.group()], line)


def fold(text: str) -> str:
    """The folded text (the same object when there is nothing to fold). Lines are looked at one by one, so that a
    long text with a few such characters costs little more than finding them; no line is added or removed."""
    if text.isascii():
        return text
    lines = text.split("\n")
    changed = False
    for number, line in enumerate(lines):
        if not line.isascii() and _needs_fold(line):
            lines[number] = _fold_line(line)
            changed = True
    return "\n".join(lines) if changed else text


def fold_whole(text: str) -> str:
    """What `fold` gives, with the whole text folded at once: for text made of lines that all have non-ASCII
    characters, where looking at them one by one costs more than it saves. Folding acts within lines (a line break
    separates normalisation runs, no mapping adds or removes one), so both ways give the same text."""
    return _fold_line(text) if _needs_fold(text) else text


# Hangul composes by rule (a syllable and a following jamo make one), outside the decomposition data.
_HANGUL = [(0x1100, 0x11FF), (0x3130, 0x318F), (0xA960, 0xA97F), (0xAC00, 0xD7A3), (0xD7B0, 0xD7FF)]


@functools.cache
def inert() -> np.ndarray:
    """Per code point below 0x10000: a character that folding leaves as it is wherever it stands, so that a line of
    ASCII and such characters (accented letters, typographic quotes and dashes, most scripts) need not be folded. NFKC
    keeps it; it is no invisible or look-alike character; it joins nothing before it: no combining mark, not the
    second character of a canonical pair, not decomposing into one that starts with such a character. Surrogates and
    Hangul are left out. Built on first use (~80 ms)."""
    second = set()
    for code in range(0x10000):
        parts = unicodedata.decomposition(chr(code)).split()
        if len(parts) == 2 and not parts[0].startswith("<"):
            second.add(int(parts[1], 16))
    table = np.zeros(0x10000, bool)
    for code in range(0x80, 0x10000):
        char = chr(code)
        table[code] = (code not in second and not unicodedata.combining(char)
                       and unicodedata.is_normalized("NFKC", char) and _SUSPECT.search(char) is None
                       and ord(unicodedata.normalize("NFD", char)[0]) not in second)
    table[0xD800:0xE000] = False
    for low, high in _HANGUL:
        table[low : high + 1] = False
    return table
