"""Word n-grams of normalised text, fast enough to scan everything an agent wrote.

Normalisation, the same for a test item and for any file: ASCII letters are lowercased; a word is a maximal run of
[a-z0-9] or a single non-ASCII character (so Chinese, which has no spaces, still gives words); punctuation,
whitespace and Unicode punctuation separate words. JSON and C escapes are undone first: `\\u00e9` is the character
é and the character after a backslash in `\\n`, `\\"`, ... is a separator, so an item inside a .jsonl line (escaped
or not) and the same item as plain text give the same words.

The fast path (`keys`, `ngram_hashes`, `HashSet`) works on raw bytes with numpy only: an ASCII word's key comes
from its first 8 bytes (longer words sharing them collide, which only lets a few more candidates through), a
non-ASCII character's from its code point, an n-gram hash is a polynomial over its keys, and membership is a
Bloom filter probe followed by a binary search. Candidates are then verified on exact words (`words`), so the lossy
keys never decide a match.
"""

import re

import numpy as np

_U = np.uint64
_ONES = _U(0x0101010101010101)
_HIGHS = _U(0x8080808080808080)
_MIX = _U(0x9E3779B97F4A7C15)
_POLY = _U(0x100000001B3)
_CHAR_TAG = _U(0xFF << 56)  # never the top byte of an ASCII word, so character keys cannot equal word keys
_BACKSLASH = 92

# Unicode code points that separate words rather than form one (spaces and punctuation blocks).
_SEPARATOR_RANGES = [
    (0x0000, 0x00BF), (0x00D7, 0x00D7), (0x00F7, 0x00F7), (0x2000, 0x206F), (0x2E00, 0x2E7F), (0x3000, 0x303F),
    (0xD800, 0xDFFF), (0xFE30, 0xFE4F), (0xFF00, 0xFF0F), (0xFF1A, 0xFF20), (0xFF3B, 0xFF40), (0xFF5B, 0xFF65),
    (0xFFF0, 0xFFFF),
]
_IS_SEPARATOR = np.zeros(0x10000, bool)
for _lo, _hi in _SEPARATOR_RANGES:
    _IS_SEPARATOR[_lo : _hi + 1] = True
# Scripts written without spaces: each character is a word of its own. Other scripts form words like ASCII.
_IDEOGRAPH_RANGES = [(0x2E80, 0x2FDF), (0x3040, 0x31FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF)]
_IS_IDEOGRAPH = np.zeros(0x10000, bool)
for _lo, _hi in _IDEOGRAPH_RANGES:
    _IS_IDEOGRAPH[_lo : _hi + 1] = True
_SIMPLE_ESCAPE = np.zeros(256, bool)
_SIMPLE_ESCAPE[list(b'nrtbf"/\\')] = True
_DIGIT_VALUE = np.full(256, 99, np.int64)
_DIGIT_VALUE[list(b"0123456789")] = np.arange(10)
_DIGIT_VALUE[list(b"abcdef")] = _DIGIT_VALUE[list(b"ABCDEF")] = np.arange(10, 16)

# A \\uXXXX escape is replaced whole; after any other backslash only the escaped character becomes a separator
# (the backslash is one already), which keeps `\\\\n` the same as the fast path sees it.
_ESCAPE_RE = re.compile(rb'\\u([0-9a-fA-F]{4})|(?<=\\)[nrtbf"/\\]')
# 4-byte characters (emoji and rarer scripts) separate words too: the fast path decodes up to 3 bytes.
_SEPARATOR_CLASS = "".join(f"\\U{lo:08x}-\\U{hi:08x}" for lo, hi in [*_SEPARATOR_RANGES, (0x10000, 0x10FFFF)])
_IDEOGRAPH_CLASS = "".join(f"\\U{lo:08x}-\\U{hi:08x}" for lo, hi in _IDEOGRAPH_RANGES)
_WORD_RE = re.compile(f"[a-z0-9]+|[{_IDEOGRAPH_CLASS}]|[^\\x00-\\x7f{_SEPARATOR_CLASS}{_IDEOGRAPH_CLASS}]+")


def _unescape(match: re.Match) -> bytes:
    if match.group(1) is None:
        return b" "
    code = int(match.group(1), 16)
    return b" " if code < 0x80 or _IS_SEPARATOR[code] else chr(code).encode()


def words(text: bytes | str) -> list[str]:
    """The exact normalised words of a (small) text: the words whose keys `keys` computes."""
    data = text.encode("utf-8", "replace") if isinstance(text, str) else text
    if b"\\" in data:
        data = _ESCAPE_RE.sub(_unescape, data)
    return _WORD_RE.findall(data.lower().decode("utf-8", "replace"))


def _mix(x: np.ndarray) -> np.ndarray:
    x *= _MIX
    x ^= x >> _U(29)
    return x


def _ascii_words(b: np.ndarray, escaped: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lower = b | np.uint8(32)  # digits already have bit 5 set, so this lowercases letters only
    is_word = ((lower - np.uint8(97)) < 26) | ((b - np.uint8(48)) < 10)
    is_word[escaped] = False
    # Word bytes, separators zero, a zero byte in front and at least 8 behind so every 8-byte read stays inside.
    code = np.zeros((len(b) // 8 + 2) * 8, np.uint8)
    np.multiply(lower, is_word, out=code[1 : len(b) + 1], casting="unsafe")
    present = code != 0
    starts = np.flatnonzero(present[1:] > present[:-1]) + 1
    # The 8 bytes from each start, from the two aligned words they lie in (np.take of aligned words is several
    # times faster than indexing an unaligned view; a shift by 64 gives 0).
    aligned = code.view("<u8")
    word, shift = starts >> 3, (starts & 7).astype(_U) << _U(3)
    x = np.take(aligned, word) >> shift
    x |= np.take(aligned, word + 1) << (_U(64) - shift)
    # Keep the bytes before the first zero byte (the word's end): t marks the first zero byte's high bit. Word bytes
    # are below 0x80 and the bytes before the first zero byte are not 0, so no borrow reaches it and the usual `& ~x`
    # is not needed; bytes after it may be marked too, hence the lowest mark only (t & -t).
    t = x - _ONES
    t &= _HIGHS
    t &= -t
    t >>= _U(7)
    t -= _U(1)
    x &= t
    return starts - 1, _mix(x)


def _escapes(b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bytes that escapes turn into separators, and the (offset, code point) of each `\\uXXXX`."""
    slashes = np.flatnonzero(b[:-1] == _BACKSLASH)
    if not len(slashes):
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    after = b[slashes + 1]
    simple = slashes[_SIMPLE_ESCAPE[after]] + 1
    uni = slashes[(after == ord("u")) & (slashes + 5 < len(b))]
    points = escaped_codes(b, uni, 2, 4, 16)
    uni, points = uni[points >= 0], points[points >= 0]
    hidden = (uni[:, None] + np.arange(1, 6)).ravel()
    return np.concatenate([simple, hidden]), uni, points


def escaped_codes(b: np.ndarray, at: np.ndarray, skip: int, digits: int, base: int) -> np.ndarray:
    """The number written by the `digits` digits of `base` from `at + skip` on (an escape at `at`), -1 where one is
    not such a digit."""
    values = _DIGIT_VALUE.take(b.take(at[:, None] + np.arange(skip, skip + digits)))
    codes = np.zeros(len(at), np.int64)
    for column in range(digits):
        codes = codes * base + values[:, column]
    return np.where((values < base).all(axis=1), codes, -1)


def utf8_chars(b: np.ndarray, leads: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(offset, code point) of every well-formed 2- and 3-byte UTF-8 character that starts at one of the (sorted)
    offsets `leads` (those of the bytes >= 0xC2, or more); 4-byte ones (emoji) are separators."""
    lead = np.take(b, leads)
    two, three = leads[lead <= 0xDF], leads[(lead >= 0xE0) & (lead <= 0xEF)]
    c1, c2, c3 = (_following(b, at) for at in (two + 1, three + 1, three + 2))
    two_ok = (c1 & 0xC0) == 0x80  # followed by continuation bytes, as valid UTF-8 is
    three_ok = ((c2 & 0xC0) == 0x80) & ((c3 & 0xC0) == 0x80)
    points2 = ((np.take(b, two).astype(np.int64) & 0x1F) << 6) | (c1 & 0x3F)
    points3 = ((np.take(b, three).astype(np.int64) & 0x0F) << 12) | ((c2 & 0x3F) << 6) | (c3 & 0x3F)
    three_ok &= points3 >= 0x800  # overlong forms are invalid; a decoder replaces them
    return np.concatenate([two[two_ok], three[three_ok]]), np.concatenate([points2[two_ok], points3[three_ok]])


def _following(b: np.ndarray, at: np.ndarray) -> np.ndarray:
    """The bytes at offsets `at` (as int64), 0 past the end."""
    return np.where(at < len(b), np.take(b, np.minimum(at, len(b) - 1)), 0).astype(np.int64)


def _other_words(b: np.ndarray, escape_at: np.ndarray, escape_points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(offset, key) of the words made of non-ASCII characters, written raw or as escapes."""
    # Lead bytes are looked at alone (non-ASCII bytes are few in most text): one pass over the block, not eight.
    raw_at, raw_points = utf8_chars(b, np.flatnonzero(b >= 0xC2))
    at = np.concatenate([raw_at, escape_at])
    points = np.concatenate([raw_points, escape_points])
    width = np.concatenate([np.where(b[raw_at] >= 0xE0, 3, 2), np.full(len(escape_at), 6)])
    order = np.argsort(at, kind="stable")
    at, points, width = at[order], points[order], width[order]
    letter = ~_IS_SEPARATOR[points]
    at, points, width = at[letter], points[letter], width[letter]
    adjacent = np.zeros(len(at), bool)
    adjacent[1:] = at[1:] == at[:-1] + width[:-1]
    single = _IS_IDEOGRAPH[points]
    starts = np.ones(len(at), bool)
    starts[1:] = ~adjacent[1:] | single[1:] | single[:-1]
    first = np.flatnonzero(starts)
    if not len(first):
        return first, np.zeros(0, _U)
    place = np.arange(len(at)) - first[np.cumsum(starts) - 1]
    salted = _mix((points.astype(_U) | (place.astype(_U) << _U(32))) | _CHAR_TAG)
    return at[first], _mix(np.add.reduceat(salted, first))


def keys(blob: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(byte offset, 64-bit key) of every word in blob, in text order."""
    b = np.frombuffer(blob, np.uint8)
    if not len(b):
        return np.zeros(0, np.int64), np.zeros(0, _U)
    none = np.zeros(0, np.int64)
    hidden, escape_at, escape_points = _escapes(b) if b"\\" in blob else (none, none, none)
    offsets, word_keys = _ascii_words(b, hidden)
    if not len(escape_at) and blob.isascii():
        return offsets, word_keys
    other_at, other_keys = _other_words(b, escape_at, escape_points)
    if not len(other_at):  # only separators (quotes, dashes) among the non-ASCII characters
        return offsets, word_keys
    # Both are in text order and no two words start at one offset: merged, not sorted.
    place = np.searchsorted(offsets, other_at)
    return np.insert(offsets, place, other_at), np.insert(word_keys, place, other_keys)


def ngram_hashes(word_keys: np.ndarray, n: int, stride: int = 1, every: int = 1) -> np.ndarray:
    """Hash of every run of n words `stride` apart (consecutive words for 1), for the first words 0, every,
    2 * every, ... that have such a run."""
    return strided_hashes(word_keys, n, [(stride, every)])[0]


def strided_hashes(word_keys: np.ndarray, n: int, plan: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """What `ngram_hashes` gives for each (stride, every) of `plan`, one after the other in one array (computed in
    place, not joined by a copy), and how many hashes each gave."""
    counts = [len(word_keys) - (n - 1) * stride for stride, _ in plan]
    sizes = np.array([-(-count // every) if count > 0 else 0 for count, (_, every) in zip(counts, plan)], np.int64)
    out = np.empty(int(sizes.sum()), _U)
    low = 0
    for (stride, every), count, size in zip(plan, counts, sizes.tolist()):
        if size:
            h = out[low : low + size]
            np.copyto(h, word_keys[0:count:every])
            for k in range(1, n):
                h *= _POLY
                h += word_keys[k * stride : k * stride + count : every]
        low += size
    return out, sizes


def unique(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values (np.unique of numpy 2.3 hashes integers, some 10x slower than sorting them)."""
    ordered = np.sort(values)
    if not len(ordered):
        return ordered
    keep = np.empty(len(ordered), bool)
    keep[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered[keep]


class HashSet:
    """A static set of 64-bit hashes: a Bloom filter in front of a sorted array, so nearly every probe of a
    non-member stops before the binary search. The filter is one bitmap, eight slots a byte, probed at the hash's
    high bits, at its low bits and (for the few that pass both) at the high bits of the hash times a constant. At 16
    slots per member it is 4 MB for a million hashes, small enough to stay in the CPU cache, where two byte-per-slot
    bitmaps of a like error rate would not (random reads from main memory were most of the scan's time); about one
    non-member in a thousand reaches the binary search."""

    def __init__(self, hashes: np.ndarray, packed: np.ndarray | None = None):
        """`packed`: `hashes` are sorted and unique already (a memory-mapped cache) and this is their bitmap as
        `packed()` gave it."""
        self.sorted = np.asarray(hashes) if packed is not None else unique(hashes.astype(_U))
        bits = int(np.clip(np.ceil(np.log2(max(len(self.sorted), 1) * 16)), 15, 29))
        self._shift = np.uint32(32 - bits)
        self._mask = np.uint32((1 << bits) - 1)
        self._mixed_shift = _U(64 - bits)
        if packed is not None:
            self._bitmap = np.asarray(packed)
            return
        slots = np.zeros(1 << bits, bool)
        low, high = self._halves(self.sorted)
        slots[high >> self._shift] = True
        slots[low & self._mask] = True
        slots[self._mixed(self.sorted)] = True
        self._bitmap = np.packbits(slots, bitorder="little")

    def packed(self) -> np.ndarray:
        """The bitmap (for a cache on disk)."""
        return self._bitmap

    @staticmethod
    def _halves(hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # 32-bit views of the hashes (no copy): half the memory traffic of 64-bit arithmetic.
        words = np.ascontiguousarray(hashes, dtype="<u8").view(np.uint32)
        return words[0::2], words[1::2]

    def _mixed(self, hashes: np.ndarray) -> np.ndarray:
        return ((hashes * _MIX) >> self._mixed_shift).astype(np.uint32)

    def _has(self, slots: np.ndarray) -> np.ndarray:
        """True or False per slot number (uint32)."""
        # take rather than indexing: several times faster for a gather like this one (numpy 2).
        bit = (self._bitmap.take(slots >> np.uint32(3)) >> (slots & np.uint32(7)).astype(np.uint8)) & np.uint8(1)
        return bit.view(bool)

    def __len__(self) -> int:
        return len(self.sorted)

    def find(self, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(indices into `hashes` that are members, in order, and their positions in `self.sorted`)."""
        if not len(hashes):
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        low, high = self._halves(hashes)
        maybe = self._has(high >> self._shift).nonzero()[0]
        maybe = maybe[self._has(low.take(maybe) & self._mask)]
        candidates = hashes.take(maybe)
        keep = self._has(self._mixed(candidates))
        maybe, candidates = maybe[keep], candidates[keep]
        if not len(maybe):
            return maybe, maybe
        # Searched in sorted order: numpy starts each search from where the last one ended, in memory it just read.
        order = np.argsort(candidates)
        at = np.searchsorted(self.sorted, candidates[order])
        at[at == len(self.sorted)] = 0
        found = self.sorted.take(at) == candidates[order]
        order, at = order[found], at[found]
        unsort = np.argsort(order)
        return maybe.take(order[unsort]), at.take(unsort)
