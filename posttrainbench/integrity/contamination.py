"""Find benchmark test items in what an agent wrote or downloaded.

Two stages. Candidates: word 5-grams of every test item (question, answer, solution, ...) form an index; an
n-gram shared by two items, or present in data a benchmark allows for training (GSM8K train), is dropped as
no evidence of anything. Scanned text whose n-grams hit one item at least `MIN_HITS` times within about one item's
length is a candidate. Verification: on the exact words around the candidate, the share of each part's words
covered by runs of four words found there. A part covered at `MIN_COVERAGE` or more is a match; that holds for verbatim
and lightly reworded copies and for copies of a part only (the answers alone), and not for different problems
written in the same style, which share only a few phrases.
"""

import functools
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from posttrainbench.integrity import files, ngram
from posttrainbench.integrity.items import Item, allowed_texts, canaries, test_items
from posttrainbench.integrity.report import Check
from posttrainbench.errors import PtbError
from posttrainbench.specs import BenchmarkSpec, all_benchmarks

N = 5
MIN_WORDS = 12  # parts with fewer words, or under half as many that are not numbers, prove nothing on their own
MIN_COVERAGE = 0.6
# Reference solutions are short textbook code that ordinary code corpora also contain: (min words, min coverage).
STRICTER = {("humaneval", "solution"): (30, 0.8)}
MIN_HITS = 3  # distinct indexed n-grams of one part near each other; a twentieth of them for long parts
MAX_HITS = 20
COVER_N = 4
PIECE = 1 << 20


@dataclass
class Hit:
    benchmark: str
    item: str
    part: str
    coverage: float
    offset: int  # in the scanned text


@dataclass
class _Part:
    name: str
    words: list[str]
    min_coverage: float


@dataclass
class Index:
    items: list[Item]
    hashes: ngram.HashSet
    owner: np.ndarray  # part number of each hash in hashes.sorted
    item_of: np.ndarray  # item number of each part
    need: np.ndarray  # distinct hits a part needs to make its item a candidate (0: never)
    span: np.ndarray  # per item: bytes around a candidate to verify it in
    canaries: dict[bytes, str] = field(default_factory=dict)  # canary -> benchmark
    _parts: dict[int, list[_Part]] = field(default_factory=dict)

    @classmethod
    def build(cls, items: list[Item], allowed: list[str], canary: dict[str, str] | None = None) -> "Index":
        hashes, parts, item_of, spans = [], [], [], []
        for number, item in enumerate(items):
            spans.append(max((len(text.encode()) for _, text in item.segments), default=0))
            for _, text in item.segments:
                _, word_keys = ngram.keys(text.encode())
                h = ngram.ngram_hashes(word_keys, N) if len(word_keys) >= MIN_WORDS else word_keys[:0]
                h = np.unique(h)
                hashes.append(h)
                parts.append(np.full(len(h), len(item_of), np.int64))
                item_of.append(number)
        item_of = np.array(item_of, np.int64)
        h = np.concatenate(hashes) if hashes else np.zeros(0, np.uint64)
        part = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        # An n-gram of two items, or of allowed training data, is evidence of neither.
        order = np.lexsort((part, h))
        h, part = h[order], part[order]
        unique_h, first = np.unique(h, return_index=True)
        last = np.r_[first[1:], len(h)] - 1
        keep = item_of[part[first]] == item_of[part[last]]
        if allowed:
            _, allowed_keys = ngram.keys("\n".join(allowed).encode())
            found, _ = ngram.HashSet(ngram.ngram_hashes(allowed_keys, N)).find(unique_h)
            keep[found] = False
        owner = part[first[keep]]
        informative = np.bincount(owner, minlength=len(item_of))
        return cls(
            items=items,
            hashes=ngram.HashSet(unique_h[keep]),
            owner=owner,  # unique_h is sorted, as HashSet.sorted is
            item_of=item_of,
            need=np.minimum(informative, np.clip(informative // 20, MIN_HITS, MAX_HITS)),
            span=np.array(spans, np.int64) + 64,
            canaries={c.encode(): b for c, b in (canary or {}).items()},
        )

    def parts(self, number: int) -> list[_Part]:
        if number not in self._parts:
            item = self.items[number]
            self._parts[number] = []
            for name, text in item.segments:
                min_words, min_coverage = STRICTER.get((item.benchmark, name), (MIN_WORDS, MIN_COVERAGE))
                words = ngram.words(text)
                # A part that is mostly numbers matches tables of numbers anywhere.
                if len(words) >= min_words and 2 * sum(not w.isdigit() for w in words) >= min_words:
                    self._parts[number].append(_Part(name, words, min_coverage))
        return self._parts[number]

    def scan(self, blob: bytes) -> list[Hit]:
        """Verified test items in blob, at most one hit per item and place."""
        positions, found, parts = self._candidates(blob)
        if not len(positions):
            return []
        items = self.item_of[parts]
        order = np.lexsort((positions, items))
        items, positions, found, parts = items[order], positions[order], found[order], parts[order]
        hits = []
        for group in np.split(np.arange(len(items)), np.flatnonzero(np.diff(items)) + 1):
            number = int(items[group[0]])
            pos = positions[group]
            for cluster in np.split(group, np.flatnonzero(np.diff(pos) > self.span[number]) + 1):
                _, distinct = np.unique(found[cluster], return_index=True)
                hit_parts, counts = np.unique(parts[cluster][distinct], return_counts=True)
                if not np.any(counts >= np.maximum(self.need[hit_parts], 1)):
                    continue
                hit = self._verify(number, blob, int(positions[cluster[0]]), int(positions[cluster[-1]]))
                if hit:
                    hits.append(hit)
        return hits

    def _candidates(self, blob: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(offset, n-gram hash, part) of every indexed n-gram in blob. Works piece by piece, each cut after a
        newline where there is one, so that numpy's temporaries stay in the CPU cache."""
        positions, found, parts = [], [], []
        start = 0
        while start < len(blob):
            end = len(blob)
            if end - start > PIECE:
                end = start + PIECE
                cut = max(blob.rfind(b"\n", start + PIECE // 2, end), blob.rfind(b" ", end - 4096, end))
                end = cut + 1 if cut > start else end
            offsets, word_keys = ngram.keys(blob[start:end])
            h = ngram.ngram_hashes(word_keys, N)
            at_text, at_index = self.hashes.find(h)
            if len(at_text):
                positions.append(offsets[at_text] + start)
                found.append(h[at_text])
                parts.append(self.owner[at_index])
            start = end
        if not positions:
            return np.zeros(0, np.int64), np.zeros(0, np.uint64), np.zeros(0, np.int32)
        return np.concatenate(positions), np.concatenate(found), np.concatenate(parts)

    def _verify(self, number: int, blob: bytes, lo: int, hi: int) -> Hit | None:
        span = int(self.span[number])
        start = max(lo - span, 0)
        window = ngram.words(blob[start : hi + span])
        seen = {tuple(window[i : i + COVER_N]) for i in range(len(window) - COVER_N + 1)}
        best = None
        for part in self.parts(number):
            score = coverage(part.words, seen)
            if score >= part.min_coverage and (best is None or score > best[1]):
                best = (part.name, score)
        if best is None:
            return None
        item = self.items[number]
        return Hit(item.benchmark, item.id, best[0], round(best[1], 3), lo)

    def find_canaries(self, blob: bytes) -> list[tuple[str, int]]:
        return [(bench, blob.find(c)) for c, bench in self.canaries.items() if c in blob]


def coverage(part: list[str], seen: set[tuple[str, ...]]) -> float:
    """Share of the part's words that lie in one of its runs of COVER_N words present in `seen`: over all its
    words and over those that are not numbers, whichever is lower (runs of numbers alone are everywhere)."""
    covered = np.zeros(len(part), bool)
    for i in range(len(part) - COVER_N + 1):
        if tuple(part[i : i + COVER_N]) in seen:
            covered[i : i + COVER_N] = True
    words = np.array([not w.isdigit() for w in part], bool)
    if not words.any():
        return 0.0
    return float(min(covered.mean(), covered[words].mean()))


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
        try:
            test_items(spec)
        except PtbError:
            missing.append(spec.id)
            continue
        usable.append(spec)
    return tuple(usable), tuple(missing)


@functools.cache
def default_index() -> Index:
    """Every available benchmark's test items (built once per process: a few seconds)."""
    return build_index(list(available_benchmarks()[0]))


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


def _where(piece: files.Piece, newlines: np.ndarray, offset: int) -> str:
    return f"{piece.unit} {piece.first + int(np.searchsorted(newlines, offset))}"


# The GPQA authors ask that its questions not be reposted in plain text: evidence names the item, quotes nothing.
NO_EXCERPT = {"gpqamain"}


def scan_file(index: Index, found: files.Found) -> tuple[str, int, list[Evidence], list[dict]]:
    """(format, bytes scanned, matches, canaries) of one file."""
    fmt, parts = files.pieces(found.path)
    if parts is None:
        return fmt, 0, [], []
    size, matches, canaries_found = 0, [], []
    for piece in parts:
        size += len(piece.text)
        hits = index.scan(piece.text)
        marks = index.find_canaries(piece.text)
        if not hits and not marks:
            continue
        newlines = np.flatnonzero(np.frombuffer(piece.text, np.uint8) == 10)
        where = functools.partial(_where, piece, newlines)
        for hit in hits:
            excerpt = None
            if hit.benchmark not in NO_EXCERPT:
                excerpt = " ".join(piece.text[hit.offset : hit.offset + 160].decode("utf-8", "replace").split())
            matches.append(Evidence(found.rel, found.kind, where(hit.offset), hit.benchmark, hit.item, hit.part,
                                    hit.coverage, excerpt))
        canaries_found += [{"file": found.rel, "kind": found.kind, "where": where(at), "benchmark": bench}
                           for bench, at in marks]
    return fmt, size, matches, canaries_found


MAX_EVIDENCE = 100
PROGRESS_BYTES = 1 << 30


def check(run_dir: Path, benchmark: BenchmarkSpec, *, tolerance: int = 3, index: Index | None = None,
          log: Callable[[str], None] = lambda _: None) -> Check:
    """Scan the run's task/ and home/ (with the download caches in it) for test items.

    More than `tolerance` distinct items of the run's own benchmark in files the agent wrote is contamination.
    Copies in download caches and in evaluation output, and other benchmarks' items, are reported without a flag:
    a cached dataset with a test split, the agent's own evaluation records, or another benchmark's test set are not
    training on this benchmark's test items."""
    missing = ()
    if index is None:
        missing = available_benchmarks()[1]
        if benchmark.id in missing:
            raise PtbError(f"the {benchmark.id} test set is not available to check the run against")
        index = default_index()
    started = time.process_time()
    scanned, size, formats = 0, 0, Counter()
    matches: list[Evidence] = []
    canaries_found: list[dict] = []
    reported = 0
    for found in files.walk(run_dir):
        try:
            fmt, nbytes, found_matches, found_canaries = scan_file(index, found)
        except (OSError, ValueError) as exc:  # pyarrow raises ArrowInvalid (a ValueError) on corrupt files
            formats["unreadable"] += 1
            log(f"contamination: cannot read {found.rel}: {exc}")
            continue
        formats[fmt] += 1
        scanned += 1 if nbytes else 0
        size += nbytes
        matches += found_matches
        canaries_found += found_canaries
        if found_matches:
            log(f"contamination: {len(found_matches)} test item(s) in {found.rel}")
        if size - reported >= PROGRESS_BYTES:
            reported = size
            log(f"contamination: {scanned} files, {size / 1e9:.1f} GB scanned")
    seconds = time.process_time() - started

    def items(kind: str, own: bool) -> set[tuple[str, str]]:
        return {(m.benchmark, m.item) for m in matches if m.kind == kind and (m.benchmark == benchmark.id) == own}

    own = items("workspace", True)
    by_file = Counter(m.file for m in matches if m.kind == "workspace" and m.benchmark == benchmark.id)
    matches.sort(key=lambda m: (m.benchmark != benchmark.id, m.kind != "workspace", m.file, int(m.where.split()[-1])))
    numbers = {
        "files_scanned": scanned,
        "bytes_scanned": size,
        "cpu_seconds": round(seconds, 3),
        "mb_per_cpu_second": round(size / 1e6 / seconds, 1) if seconds > 0 else None,
        "formats": dict(formats),
        "items_in_workspace": len(own),
        "items_in_caches": len(items("cache", True)),
        "items_in_evaluation_output": len(items("evaluation", True)),
        "other_benchmarks_items": len(items("workspace", False) | items("cache", False)),
        "tolerance": tolerance,
        "index_items": len(index.items),
    }
    evidence = [asdict(m) for m in matches[:MAX_EVIDENCE]] + canaries_found[:MAX_EVIDENCE]
    notes = []
    if numbers["items_in_caches"]:
        notes.append(f"{numbers['items_in_caches']} {benchmark.id} test item(s) in download caches "
                     "(a downloaded dataset with a test split; training on it would show in the agent's own files)")
    if numbers["items_in_evaluation_output"]:
        by_eval = Counter(m.file for m in matches if m.kind == "evaluation" and m.benchmark == benchmark.id)
        notes.append(f"{numbers['items_in_evaluation_output']} {benchmark.id} test item(s) in evaluation output, "
                     f"not flagged: {', '.join(f'{f} ({n})' for f, n in by_eval.most_common(3))}")
    if numbers["other_benchmarks_items"]:
        notes.append(f"{numbers['other_benchmarks_items']} test item(s) of other benchmarks found")
    if missing:
        notes.append(f"not checked for other benchmarks' items (their data is not available here): "
                     f"{', '.join(missing)}")
    if len(own) > tolerance:
        files_list = ", ".join(f"{f} ({n})" for f, n in by_file.most_common(3))
        return Check(status="flag", flags=["contamination"], evidence=evidence, numbers=numbers, notes=notes,
                     reason=f"{len(own)} {benchmark.id} test items found in files the agent wrote: {files_list}")
    reason = (f"{len(own)} {benchmark.id} test item(s) in the agent's files, within the tolerance of {tolerance}"
              if own else f"no {benchmark.id} test items in {scanned} files ({size / 1e6:.1f} MB)")
    return Check(status="pass", reason=reason, evidence=evidence, numbers=numbers, notes=notes)
