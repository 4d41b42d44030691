"""Find benchmark test items in what an agent wrote or downloaded.

Two stages. Candidates: word 5-grams of every test item (question, answer, solution, ...) form an index, also
5-grams of every second and third word, so that a copy with a filler word after every word, every second or every
third word still gives candidates (scanned text is read with strides of 1 to 4 words). An n-gram shared by two
items, or present in data a benchmark allows for training (GSM8K train), is dropped as no evidence of anything.
Scanned text whose n-grams hit one item at least `MIN_HITS` times within about one item's length is a candidate
(text n-grams are looked up at every second word only, against half as many hits: `_EVERY`).
Verification: on the exact words around the candidate, the share of each part's words covered by runs of four words
found there (four words with single filler words between them, where the candidate came from strided n-grams). A
part covered at `MIN_COVERAGE` or more is a match; that holds for verbatim and lightly reworded copies and for
copies of a part only (the answers alone), and not for different problems written in the same style, which share
only a few phrases. A part covered less is a fragment where it is covered by an unbroken run of words: fragments of one
item are united over the whole run, so an item cut into pieces across files still counts; only unbroken copies of
a fifth of a part or more count as fragments, not the scattered stock phrases that similar texts share.

Test items and scanned text are folded alike (`fold`); text that reads as rot13 of test items is decoded and
scanned again. The index is built once per (test data hashes, settings) and kept on disk (`index_cache`).
"""

import codecs
import functools
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from itertools import repeat
from pathlib import Path

import numpy as np

from posttrainbench.errors import PtbError
from posttrainbench.integrity import decode, files, index_cache, ngram
from posttrainbench.integrity.fold import fold
from posttrainbench.integrity.items import Item, allowed_texts, canaries, test_items
from posttrainbench.integrity.report import Check
from posttrainbench.integrity.tokens import Detokenizer
from posttrainbench.specs import BenchmarkSpec, all_benchmarks

N = 5
MIN_WORDS = 12  # parts with fewer words, or under half as many that are not numbers, prove nothing on their own
MIN_COVERAGE = 0.6
# Reference solutions are short textbook code that ordinary code corpora also contain: (min words, min coverage).
STRICTER = {("humaneval", "solution"): (30, 0.8)}
MIN_HITS = 3  # distinct indexed n-grams of one part near each other; a twentieth of them for long parts
MAX_HITS = 20
COVER_N = 4
ITEM_STRIDES = (1, 2, 3)  # n-grams of the items' words `stride` apart
TEXT_STRIDES = (1, 2, 3, 4)  # text stride s meets item stride s - 1: one filler after every (s - 1)-th word
# The index holds the items' n-grams at every word; the text's are looked up only where they start at a multiple of
# _EVERY[stride] words into a piece, about one lookup per word for all strides instead of 1.8. What is still always
# found, with `need` halved (rounded up) to match:
# - Stride 1: an unbroken copy of L words of a part has L - N + 1 consecutive n-gram starts, every second of them
#   looked up, so L >= N - 1 + 2 * h words give h distinct hits: a part that needs h_0 hits at every word (`need`
#   at build time) is a candidate wherever an unbroken copy of N - 1 + 2 * ceil(h_0 / 2) words is, the same length
#   as before when h_0 is even and one word more when it is odd (8 words instead of 7 for short parts).
# - Stride s + 1 >= 2 (a filler after every s-th word): in any s + 1 consecutive text words of such a copy, s start
#   an n-gram of item stride s. The looked-up starts are multiples of k = _EVERY[s + 1], coprime to s + 1, so any
#   s + 1 consecutive looked-up starts fall on every residue modulo s + 1 once and s of them hit: an item of W words
#   copied so gives about W / k hits, W / 5, W / 7 and W / 9 for s = 1, 2, 3 against half the hits needed, where it
#   gave W / 3, W / 4 and W / 5 against all of them before.
# Fragments (an item cut across files) are candidates by the first rule, one piece at a time.
_EVERY = {1: 2, 2: 5, 3: 7, 4: 9}
SAMPLE = _EVERY[1]
_EVERY_OF = np.array([_EVERY[stride] for stride in TEXT_STRIDES])
_STRIDE_OF = np.array(TEXT_STRIDES, np.int8)
_PLAN = [(stride, _EVERY[stride]) for stride in TEXT_STRIDES]
FRAGMENT_WORDS = 8  # a fragment is an unbroken copy of this many words of a part, and of this share of it
FRAGMENT_SHARE = 0.2
PIECE = 1 << 20
ROT13_REACH = 16 << 10  # bytes around a rot13 n-gram of a test item decoded as rot13
_ROT13 = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
                         b"NOPQRSTUVWXYZABCDEFGHIJKLMnopqrstuvwxyzabcdefghijklm")
SETTINGS = {"n": N, "min_words": MIN_WORDS, "item_strides": ITEM_STRIDES, "min_hits": MIN_HITS,
            "max_hits": MAX_HITS, "fold": 1, "rot13": 2, "sample": SAMPLE}


@dataclass
class Hit:
    benchmark: str
    item: str
    part: str
    coverage: float
    offset: int  # in the scanned text
    transform: str = ""  # "rot13" when found in the rot13-decoded text


@dataclass
class Fragment:
    number: int  # item number in the index
    part: int  # part number within the item's parts
    covered: np.ndarray  # bool per word of the part
    offset: int


@dataclass
class _Part:
    name: str
    words: list[str]
    min_coverage: float
    runs: np.ndarray  # code of each run of COVER_N consecutive words (`_run_codes`)
    letters: np.ndarray  # per word: not a number


@dataclass
class _Parts:
    """The verifiable parts of one item, and the numbering of the item's distinct words their runs are coded in."""

    vocabulary: dict[str, int]  # word -> 1, 2, ...; 0 is any other word
    parts: list[_Part]


@dataclass
class Index:
    hashes: ngram.HashSet
    owner: np.ndarray  # part number of each hash in hashes.sorted
    item_of: np.ndarray  # item number of each part
    need: np.ndarray  # distinct hits (at the sampled words) a part needs to make its item a candidate (0: never)
    span: np.ndarray  # per item: bytes around a candidate to verify it in
    sizes: dict[str, int]  # benchmark -> number of test items
    load_items: Callable[[], list[Item]]
    canaries: dict[bytes, str] = field(default_factory=dict)  # canary -> benchmark
    _parts: dict[int, _Parts] = field(default_factory=dict)

    @functools.cached_property
    def items(self) -> list[Item]:
        return self.load_items()

    @classmethod
    def build(cls, items: list[Item], allowed: list[str], canary: dict[str, str] | None = None) -> "Index":
        items = [Item(i.benchmark, i.id, tuple((name, fold(text)) for name, text in i.segments)) for i in items]
        hashes, parts, item_of, spans, plain, rot, rot_parts = [], [], [], [], [], [], []
        for number, item in enumerate(items):
            spans.append(max((len(text.encode()) for _, text in item.segments), default=0))
            for _, text in item.segments:
                _, word_keys = ngram.keys(text.encode())
                if len(word_keys) >= MIN_WORDS:
                    h = ngram.unique(ngram.strided_hashes(word_keys, N, [(s, 1) for s in ITEM_STRIDES])[0])
                    plain.append(ngram.unique(ngram.ngram_hashes(word_keys, N)))
                    _, rot_keys = ngram.keys(codecs.encode(text, "rot13").encode())
                    rot.append(ngram.ngram_hashes(rot_keys, N))
                    rot_parts.append(np.full(len(rot[-1]), len(item_of), np.int64))
                else:
                    h = plain_h = word_keys[:0]
                    plain.append(plain_h)
                hashes.append(h)
                parts.append(np.full(len(h), len(item_of), np.int64))
                item_of.append(number)
        # rot13 n-grams are owned by "parts" numbered after the real ones: part p's rot13 is part P + p.
        count = len(item_of)
        item_of = np.array(item_of + item_of, np.int64)
        h = np.concatenate(hashes + rot) if hashes else np.zeros(0, np.uint64)
        part = np.concatenate(parts + [r + count for r in rot_parts]) if parts else np.zeros(0, np.int64)
        # An n-gram of two items, or of allowed training data read at any stride, is evidence of neither.
        order = np.lexsort((part, h))
        h, part = h[order], part[order]
        first = np.flatnonzero(np.r_[True, h[1:] != h[:-1]]) if len(h) else np.zeros(0, np.int64)
        unique_h = h[first]
        last = np.r_[first[1:], len(h)] - 1 if len(h) else first
        keep = item_of[part[first]] == item_of[part[last]]
        if allowed:
            _, allowed_keys = ngram.keys(fold("\n".join(allowed)).encode())
            allowed_h = ngram.strided_hashes(allowed_keys, N, [(s, 1) for s in TEXT_STRIDES])[0]
            found, _ = ngram.HashSet(allowed_h).find(unique_h)
            keep[found] = False
        kept = ngram.HashSet(unique_h[keep])
        owner = part[first[keep]]  # unique_h is sorted, as HashSet.sorted is
        informative = np.array([len(kept.find(p)[0]) for p in plain], np.int64)
        indexed = np.bincount(owner, minlength=2 * count)[:count]
        sizes = Counter(item.benchmark for item in items)
        return cls(
            hashes=kept,
            owner=owner,
            item_of=item_of,
            need=-(-np.minimum(indexed, np.clip(informative // 20, MIN_HITS, MAX_HITS)) // SAMPLE),
            span=np.array(spans, np.int64) + 64,
            sizes=dict(sizes),
            load_items=lambda: items,
            canaries={c.encode(): b for c, b in (canary or {}).items()},
        )

    def parts(self, number: int) -> list[_Part]:
        return self._item_parts(number).parts

    def _item_parts(self, number: int) -> _Parts:
        if number not in self._parts:
            item = self.items[number]
            texts = [(name, ngram.words(text)) for name, text in item.segments]
            vocabulary: dict[str, int] = {}
            for _, words in texts:
                for word in words:
                    vocabulary.setdefault(word, len(vocabulary) + 1)
            if (len(vocabulary) + 1) ** COVER_N >= 1 << 63:
                raise PtbError(f"{item.benchmark} item {item.id} has too many distinct words to verify matches of")
            parts = []
            for name, words in texts:
                min_words, min_coverage = STRICTER.get((item.benchmark, name), (MIN_WORDS, MIN_COVERAGE))
                letters = np.array([not w.isdigit() for w in words], bool)
                # A part that is mostly numbers matches tables of numbers anywhere.
                if len(words) >= min_words and 2 * int(letters.sum()) >= min_words:
                    ids = np.array([vocabulary[w] for w in words], np.int64)
                    runs = _run_codes(ids, len(vocabulary) + 1, _CONSECUTIVE)
                    parts.append(_Part(name, words, min_coverage, runs, letters))
            self._parts[number] = _Parts(vocabulary, parts)
        return self._parts[number]

    def scan(self, blob: bytes) -> list[Hit]:
        """Verified test items in blob, at most one hit per item and place."""
        return self.search(blob)[0]

    def search(self, blob: bytes, transform: str = "") -> tuple[list[Hit], list[Fragment]]:
        """(verified test items, fragments of items) in blob."""
        positions, found, parts, strides, rot_at = self._candidates(blob)
        hits, fragments = [], []
        for number, lo, hi, gapped in self._clusters(positions, found, parts, strides):
            hit, pieces = self._verify(number, blob, lo, hi, gapped)
            if hit:
                hit.transform = transform
                hits.append(hit)
            fragments += pieces
        if len(rot_at) >= -(-MIN_HITS // SAMPLE) and not transform:
            # Only the stretches around rot13 n-grams are decoded and searched again.
            for lo, hi in _stretches(rot_at, ROT13_REACH, len(blob)):
                more_hits, more_fragments = self.search(blob[lo:hi].translate(_ROT13), "rot13")
                for hit in more_hits:
                    hit.offset += lo
                hits += more_hits
                fragments += more_fragments
        return hits, fragments

    def _clusters(self, positions: np.ndarray, found: np.ndarray, parts: np.ndarray,
                  strides: np.ndarray) -> list[tuple[int, int, int, bool]]:
        """(item number, offset of the first and of the last candidate, whether strided n-grams are among them) of
        each cluster of one item's candidates, no two more than the item's span apart, in which one part has the
        distinct n-grams it needs, in the order of item number and offset. All clusters are looked at together:
        a large file has hundreds of thousands of candidates."""
        if not len(positions):
            return []
        items = np.take(self.item_of, parts)
        order = np.lexsort((positions, items))
        items, positions, found, parts, strides = (np.take(a, order) for a in (items, positions, found, parts, strides))
        new = np.ones(len(items), bool)
        new[1:] = (items[1:] != items[:-1]) | (np.diff(positions) > np.take(self.span, items[1:]))
        cluster = np.cumsum(new) - 1
        # Distinct n-grams of each cluster (an n-gram belongs to one part), then how many of each part.
        _, first = np.unique(cluster * len(self.hashes) + found, return_index=True)
        count = len(self.need)
        pairs, hits = np.unique(cluster[first] * count + parts[first], return_counts=True)
        enough = hits >= np.maximum(np.take(self.need, pairs % count), 1)
        chosen = np.unique(pairs[enough] // count)
        starts = np.flatnonzero(new)
        ends = np.r_[starts[1:], len(items)] - 1
        gapped = np.maximum.reduceat(strides, starts) > 1
        return [(int(items[starts[c]]), int(positions[starts[c]]), int(positions[ends[c]]), bool(gapped[c]))
                for c in chosen.tolist()]

    def _candidates(self, blob: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(offset, n-gram, part, text stride) of every indexed n-gram in blob, and the offsets of rot13 n-grams.
        N-grams are read at every _EVERY[stride]-th word only (see there for what that still finds). Works piece by
        piece, each cut after a newline where there is one, so that numpy's temporaries stay in the CPU cache."""
        positions, found, parts, strides = [], [], [], []
        rot_at, real = [], len(self.need)
        start = 0
        while start < len(blob):
            end = len(blob)
            if end - start > PIECE:
                end = start + PIECE
                cut = max(blob.rfind(b"\n", start + PIECE // 2, end), blob.rfind(b" ", end - 4096, end))
                end = cut + 1 if cut > start else end
            offsets, word_keys = ngram.keys(blob[start:end])
            # The n-grams of all strides looked up at once: a small piece costs one lookup's overhead, not four.
            hashes, sizes = ngram.strided_hashes(word_keys, N, _PLAN)
            at_all, at_index = self.hashes.find(hashes)
            if len(at_all):
                which = np.searchsorted(np.cumsum(sizes), at_all, side="right")
                word_at = (at_all - (np.cumsum(sizes) - sizes).take(which)) * _EVERY_OF.take(which)
                owner = self.owner.take(at_index)
                rot = owner >= real
                if rot.any():
                    rot_at.append(offsets.take(word_at[rot]) + start)
                    keep = ~rot
                    word_at, at_index, owner, which = word_at[keep], at_index[keep], owner[keep], which[keep]
                positions.append(offsets.take(word_at) + start)
                found.append(at_index)
                parts.append(owner)
                strides.append(_STRIDE_OF.take(which))
            start = end
        rot_at = np.concatenate(rot_at) if rot_at else np.zeros(0, np.int64)
        if not positions:
            empty = np.zeros(0, np.int64)
            return empty, empty, empty, np.zeros(0, np.int8), rot_at
        return (np.concatenate(positions), np.concatenate(found), np.concatenate(parts), np.concatenate(strides),
                rot_at)

    def _verify(self, number: int, blob: bytes, lo: int, hi: int, gapped: bool) -> tuple[Hit | None, list[Fragment]]:
        span = int(self.span[number])
        start = max(lo - span, 0)
        window = ngram.words(blob[start : hi + span])
        item_parts = self._item_parts(number)
        vocabulary = item_parts.vocabulary
        ids = np.fromiter(map(vocabulary.get, window, repeat(0)), np.int64, len(window))
        seen = np.sort(_run_codes(ids, len(vocabulary) + 1, _GAPPED if gapped else _CONSECUTIVE))
        best, fragments = None, []
        for index, part in enumerate(item_parts.parts):
            covered = coverage_mask(part, seen)
            score = _score(part.letters, covered)
            if score >= part.min_coverage and (best is None or score > best[1]):
                best = (part.name, score)
            else:
                runs = _long_runs(covered, max(FRAGMENT_WORDS, int(FRAGMENT_SHARE * len(part.words))))
                if runs.any():
                    fragments.append(Fragment(number, index, runs, lo))
        if best is None:
            return None, fragments
        item = self.items[number]
        return Hit(item.benchmark, item.id, best[0], round(best[1], 3), lo), fragments

    def part_score(self, number: int, part: int, covered: np.ndarray) -> tuple[str, float, float]:
        """(name, score, needed score) of a part covered by `covered` (fragments united)."""
        p = self.parts(number)[part]
        return p.name, _score(p.letters, covered), p.min_coverage

    def find_canaries(self, blob: bytes) -> list[tuple[str, int]]:
        return [(bench, blob.find(c)) for c, bench in self.canaries.items() if c in blob]


def _long_runs(covered: np.ndarray, least: int) -> np.ndarray:
    """The covered words that lie in unbroken runs of at least `least` covered words."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], covered.astype(np.int8), [0]))))
    kept = np.zeros(len(covered), bool)
    for start, end in zip(edges[::2], edges[1::2]):
        if end - start >= least:
            kept[start:end] = True
    return kept


def _stretches(at: np.ndarray, reach: int, size: int) -> list[tuple[int, int]]:
    """Merged (start, end) byte ranges within `reach` of the offsets `at`."""
    stretches: list[tuple[int, int]] = []
    for offset in np.sort(at):
        lo, hi = max(int(offset) - reach, 0), min(int(offset) + reach, size)
        if stretches and lo <= stretches[-1][1]:
            stretches[-1] = (stretches[-1][0], hi)
        else:
            stretches.append((lo, hi))
    return stretches


# Runs of COVER_N words as offsets of the 2nd, 3rd and 4th word from the 1st: consecutive, or (gapped) with up to
# one word skipped between any two.
_CONSECUTIVE = ((1, 2, 3),)
_GAPPED = tuple((a, a + b, a + b + c) for a in (1, 2) for b in (1, 2) for c in (1, 2))


def _run_codes(ids: np.ndarray, base: int, shapes: tuple[tuple[int, ...], ...]) -> np.ndarray:
    """One code per run of COVER_N words of the given shapes: the words' numbers (< base) as the digits of a number
    in that base, so that two runs have one code exactly when they have the same words (base ** COVER_N < 2 ** 63).
    Words outside the item are all numbered 0; no run of the item has them, so no such run matches."""
    codes = []
    for shape in shapes:
        count = len(ids) - shape[-1]
        if count <= 0:
            continue
        code = ids[:count].copy()
        for offset in shape:
            code *= base
            code += ids[offset : offset + count]
        codes.append(code)
    return np.concatenate(codes) if codes else np.zeros(0, np.int64)


def coverage_mask(part: _Part, seen: np.ndarray) -> np.ndarray:
    """The part's words that lie in one of its runs of COVER_N words whose code is in `seen` (sorted)."""
    at = np.minimum(np.searchsorted(seen, part.runs), max(len(seen) - 1, 0))
    found = np.take(seen, at) == part.runs if len(seen) else np.zeros(len(part.runs), bool)
    covered = np.zeros(len(part.words), bool)
    for k in range(COVER_N):
        covered[k : k + len(found)] |= found
    return covered


def _score(letters: np.ndarray, covered: np.ndarray) -> float:
    """Covered share over all the part's words and over those that are not numbers (`letters`), whichever is lower
    (runs of numbers alone are everywhere)."""
    if not letters.any():
        return 0.0
    return float(min(covered.mean(), covered[letters].mean()))


def build_index(benchmarks: list[BenchmarkSpec]) -> Index:
    items, allowed, canary = [], [], {}
    for spec in benchmarks:
        items += test_items(spec)
        allowed += allowed_texts(spec)
        canary |= dict.fromkeys(canaries(spec), spec.id)
    return Index.build(items, allowed, canary)


@functools.cache
def available_benchmarks() -> tuple[tuple[BenchmarkSpec, ...], tuple[str, ...]]:
    """(benchmarks whose test data can be had here, ids of those that cannot): a fresh machine without a data
    mirror may reach only some canonical sources."""
    usable, missing = [], []
    for spec in all_benchmarks():
        if index_cache.data_available(spec):
            usable.append(spec)
        else:
            missing.append(spec.id)
    return tuple(usable), tuple(missing)


@functools.cache
def default_index() -> Index:
    """Every available benchmark's test items: from the on-disk cache, built into it the first time."""
    benchmarks = list(available_benchmarks()[0])
    return index_cache.load_or_build(benchmarks, SETTINGS, lambda: build_index(benchmarks))


@dataclass
class Evidence:
    file: str
    kind: str
    where: str  # "line 12", "row 3"
    benchmark: str
    item: str
    part: str
    coverage: float
    excerpt: str | None
    via: str = ""  # how the text was decoded ("zip a.jsonl > base64"); empty for plain text


def _places(piece: decode.Piece, offsets: list[int]) -> dict[int, str]:
    """Where each offset of the piece is ("line 12", "row 3"): the line breaks before it counted once over the
    piece, in the order of the offsets."""
    text = np.frombuffer(piece.text, np.uint8)
    places, last, before = {}, 0, 0
    for offset in sorted(set(offsets)):
        before += decode.newlines(text[last:offset])
        places[offset] = f"{piece.unit} {piece.first + before}"
        last = offset
    return places


# The GPQA authors ask that its questions not be reposted in plain text: evidence names the item, quotes nothing.
NO_EXCERPT = {"gpqamain"}


@dataclass
class FileScan:
    format: str
    size: int = 0
    decoded: int = 0  # bytes of text the decoders produced
    matches: list[Evidence] = field(default_factory=list)
    fragments: list[Fragment] = field(default_factory=list)
    canaries: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    match_seconds: float = 0.0


def scan_file(index: Index, run_dir: Path, found: files.Found, detokenizer: Detokenizer | None = None) -> FileScan:
    """Matches, fragments and canaries of one file, in all the text its decoders give."""
    ctx = decode.Context(detokenizer=detokenizer)
    result = FileScan("empty")
    with files.open_file(run_dir, found) as handle:
        pieces = decode.decode(handle, found.size, ctx, name=found.rel)
        while True:
            try:
                piece = next(pieces, None)
            except Exception as exc:  # noqa: BLE001 -- a broken or crafted file: what it gave so far is scanned
                ctx.notes.append(f"decoding stopped: {type(exc).__name__}: {exc}"[:300])
                break
            if piece is None:
                break
            result.decoded += len(piece.text)
            started = time.process_time()
            hits, fragments = index.search(piece.text)
            marks = index.find_canaries(piece.text)
            result.match_seconds += time.process_time() - started
            kind = piece.kind or found.kind
            if kind not in ("evaluation", "transcript"):  # fragments of items shown or read, not training data
                result.fragments += fragments
            if not hits and not marks:
                continue
            where = _places(piece, [hit.offset for hit in hits] + [at for _, at in marks])
            for hit in hits:
                excerpt = None
                if hit.benchmark not in NO_EXCERPT:
                    excerpt = " ".join(piece.text[hit.offset : hit.offset + 160].decode("utf-8", "replace").split())
                via = " > ".join(v for v in (piece.via, hit.transform) if v)
                result.matches.append(Evidence(found.rel, kind, where[hit.offset], hit.benchmark, hit.item, hit.part,
                                               hit.coverage, excerpt, via))
            result.canaries += [{"file": found.rel, "kind": kind, "where": where[at], "benchmark": bench}
                                for bench, at in marks]
    result.size = found.size
    result.format = "+".join(sorted(ctx.formats)) or "empty"
    result.notes = ctx.notes
    return result


MAX_EVIDENCE = 100
PROGRESS_BYTES = 1 << 30
ALLOWED_SHARE = 0.05  # of a test set: accidental overlaps tolerated, at most `tolerance` items
MAX_COPIES = 10  # places one test item may appear in before copies alone are contamination
WHOLE_COPY = 0.9  # share of a test set in one downloaded file that makes it a copy of the test split


def allowance(index: Index, benchmark: str, tolerance: int) -> int:
    return min(tolerance, int(ALLOWED_SHARE * index.sizes.get(benchmark, 0)))


def _is_download(matches: list[Evidence], benchmark: str, size: int) -> bool:
    """A downloaded copy of the test split: (nearly) all of it, each item once, in one file of the download cache."""
    own = [m.item for m in matches if m.benchmark == benchmark and m.kind == "cache"]
    return len(set(own)) >= WHOLE_COPY * size and len(own) <= 1.2 * size


def check(run_dir: Path, benchmark: BenchmarkSpec, *, tolerance: int = 3, index: Index | None = None,
          tokenizer_dir: Path | None = None, log: Callable[[str], None] = lambda _: None) -> Check:
    """Scan every folder of the run the agent could write (task/, home/, its temporary files) for test items.

    More than the allowance of distinct items of the run's own benchmark (`tolerance`, at most 5 % of its test set),
    or one item in `MAX_COPIES` places, is contamination. Only the samples of inspect evaluation logs, the tool outputs
    of agent session transcripts (what the agent read) and a complete downloaded copy of the test split in the
    download cache are reported without a flag, as are other benchmarks' items. `tokenizer_dir`: the base model,
    whose tokenizer turns token-id arrays back into text."""
    missing = ()
    if index is None:
        missing = available_benchmarks()[1]
        if benchmark.id in missing:
            raise PtbError(f"the {benchmark.id} test set is not available to check the run against")
        index = default_index()
    detokenizer = Detokenizer.from_model_dir(tokenizer_dir)
    started = time.process_time()
    scanned, size, decoded, match_seconds = 0, 0, 0, 0.0
    formats, format_seconds, format_bytes = Counter(), Counter(), Counter()
    matches: list[Evidence] = []
    canaries_found: list[dict] = []
    notes: list[str] = []
    downloads: list[str] = []
    united: dict[tuple[int, int], np.ndarray] = {}
    reported = 0
    for found in files.walk(run_dir, notes):
        file_started = time.process_time()
        try:
            result = scan_file(index, run_dir, found, detokenizer)
        except Exception as exc:  # noqa: BLE001 -- a file that breaks a decoder must not stop the scan
            formats["unreadable"] += 1
            notes.append(f"cannot read {files.untrusted.shown(found.rel)}: {type(exc).__name__}: {exc}"[:300])
            log(f"contamination: cannot read {files.untrusted.shown(found.rel)}: {exc}")
            continue
        formats[result.format] += 1
        format_seconds[result.format] += time.process_time() - file_started - result.match_seconds
        format_bytes[result.format] += result.size
        match_seconds += result.match_seconds
        scanned += 1 if result.decoded else 0
        size += result.size
        decoded += result.decoded
        notes += [f"{files.untrusted.shown(found.rel)}: {note}" for note in result.notes]
        if _is_download(result.matches, benchmark.id, index.sizes.get(benchmark.id, 0)):
            downloads.append(found.rel)
            for m in result.matches:
                m.kind = "download" if m.kind == "cache" else m.kind
        else:
            for fragment in result.fragments:
                key = (fragment.number, fragment.part)
                united[key] = united[key] | fragment.covered if key in united else fragment.covered.copy()
        matches += result.matches
        canaries_found += result.canaries
        if result.matches:
            log(f"contamination: {len(result.matches)} test item(s) in {files.untrusted.shown(found.rel)}")
        if size - reported >= PROGRESS_BYTES:
            reported = size
            log(f"contamination: {scanned} files, {size / 1e9:.1f} GB scanned")
    seconds = time.process_time() - started

    counted = [m for m in matches if m.kind in ("workspace", "cache")]
    own = {m.item for m in counted if m.benchmark == benchmark.id}
    copies = Counter(m.item for m in counted if m.benchmark == benchmark.id)
    pieced = set()
    for (number, part), covered in united.items():
        item = index.items[number]
        if item.benchmark != benchmark.id or item.id in own:
            continue
        name, score, needed = index.part_score(number, part, covered)
        if score >= needed:
            pieced.add(item.id)
            matches.append(Evidence("(several places)", "workspace", "fragments", item.benchmark, item.id, name,
                                    round(score, 3), None, "fragments united over the run"))
    own |= pieced
    allowed = allowance(index, benchmark.id, tolerance)
    most_copied = copies.most_common(1)[0] if copies else None

    def distinct(kind: str, mine: bool) -> set[str]:
        return {m.item for m in matches if m.kind == kind and (m.benchmark == benchmark.id) == mine}

    by_file = Counter(m.file for m in counted if m.benchmark == benchmark.id)
    matches.sort(key=lambda m: (m.benchmark != benchmark.id, m.kind not in ("workspace", "cache"), m.file,
                                _order(m.where)))
    numbers = {
        "files_scanned": scanned,
        "bytes_scanned": size,
        "bytes_decoded": decoded,
        "cpu_seconds": round(seconds, 3),
        "match_cpu_seconds": round(match_seconds, 3),
        "mb_per_cpu_second": round(size / 1e6 / seconds, 1) if seconds > 0 else None,
        "formats": dict(formats),
        "decoders": {f: {"files": formats[f], "bytes": format_bytes[f], "cpu_seconds": round(format_seconds[f], 3)}
                     for f in formats if f not in ("text", "unreadable")},
        "items_in_workspace": len(own),
        "items_from_fragments": len(pieced),
        "most_copies": most_copied[1] if most_copied else 0,
        "items_in_downloaded_test_split": len(distinct("download", True)),
        "items_in_evaluation_output": len(distinct("evaluation", True)),
        "items_read_in_agent_transcripts": len(distinct("transcript", True)),
        "other_benchmarks_items": len({(m.benchmark, m.item) for m in counted if m.benchmark != benchmark.id}),
        "tolerance": tolerance,
        "allowed_items": allowed,
        "test_set_items": index.sizes.get(benchmark.id, 0),
        "index_items": sum(index.sizes.values()),
    }
    evidence = [asdict(m) for m in matches[:MAX_EVIDENCE]] + canaries_found[:MAX_EVIDENCE]
    if downloads:
        notes.append(f"a downloaded copy of the {benchmark.id} test split, not flagged: "
                     f"{', '.join(files.untrusted.shown(d) for d in downloads[:3])}")
    if numbers["items_in_evaluation_output"]:
        by_eval = Counter(m.file for m in matches if m.kind == "evaluation" and m.benchmark == benchmark.id)
        notes.append(f"{numbers['items_in_evaluation_output']} {benchmark.id} test item(s) in the samples of "
                     f"evaluation logs, not flagged: "
                     f"{', '.join(f'{files.untrusted.shown(f)} ({n})' for f, n in by_eval.most_common(3))}")
    if numbers["items_read_in_agent_transcripts"]:
        notes.append(f"{numbers['items_read_in_agent_transcripts']} {benchmark.id} test item(s) in tool outputs of "
                     "agent session transcripts (read by the agent), not flagged")
    if numbers["other_benchmarks_items"]:
        notes.append(f"{numbers['other_benchmarks_items']} test item(s) of other benchmarks found")
    if detokenizer is None:
        notes.append("token-id arrays were not read back: no tokenizer.json for the base model")
    if missing:
        notes.append(f"not checked for other benchmarks' items (their data is not available here): "
                     f"{', '.join(missing)}")
    files_list = ", ".join(f"{files.untrusted.shown(f)} ({n})" for f, n in by_file.most_common(3))
    if len(own) > allowed:
        return Check(status="flag", flags=["contamination"], evidence=evidence, numbers=numbers, notes=notes,
                     reason=f"{len(own)} {benchmark.id} test items found in files the agent wrote "
                            f"(allowed {allowed} of {numbers['test_set_items']}): {files_list or 'in fragments'}")
    if most_copied and most_copied[1] >= MAX_COPIES:
        return Check(status="flag", flags=["contamination"], evidence=evidence, numbers=numbers, notes=notes,
                     reason=f"{benchmark.id} test item {most_copied[0]} found in {most_copied[1]} places "
                            f"({len(own)} distinct items): {files_list}")
    reason = (f"{len(own)} {benchmark.id} test item(s) in the agent's files, within the tolerance of {allowed}"
              if own else f"no {benchmark.id} test items in {scanned} files ({size / 1e6:.1f} MB)")
    return Check(status="pass", reason=reason, evidence=evidence, numbers=numbers, notes=notes)


def _order(where: str) -> int:
    last = where.split()[-1]
    return int(last) if last.isdigit() else 0
