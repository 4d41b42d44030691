"""Throughput of the contamination scanner on text, against a straightforward implementation (words from a
regex, a Python set of 5-word tuples), on the same corpus with a few test items planted in it.

    python benchmarks/contamination_speed.py --mb 64 --baseline-mb 8 [--require 100]

The corpus mixes GSM8K train (from PTB_DATA_DIR, default ../shared/data beside the checkout) with the Python
standard library's sources, the prose and code that agents' training data is made of. Speeds are MB per CPU
second of this process (one core: the scanner is single-threaded numpy) and per wall second. The index of all
benchmarks' test items is built first and timed separately. With --require, exits 1 if the scanner is slower.
"""

import argparse
import io
import json
import os
import re
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("PTB_DATA_DIR", str(REPO.parent / "shared" / "data"))

from posttrainbench.integrity import contamination, files  # noqa: E402

WORD = re.compile(r"[a-z0-9]+")


def corpus(megabytes: float, planted: list[str]) -> bytes:
    sources = [Path(os.environ["PTB_DATA_DIR"]) / "gsm8k" / "train.jsonl"]
    sources += sorted(Path(json.__file__).parents[1].rglob("*.py"))
    target, parts, size = int(megabytes * 1e6), [], 0
    while size < target:
        for path in sources:
            data = path.read_bytes()
            parts.append(data)
            size += len(data)
            if size >= target:
                break
    blob = b"\n".join(parts)[:target]
    # Planted at fixed places so both implementations have something to find.
    step = len(blob) // (len(planted) + 1)
    pieces = [blob[i * step : (i + 1) * step] for i in range(len(planted) + 1)]
    return b"".join(p + b"\n" + json.dumps({"text": t}).encode() + b"\n" for p, t in zip(pieces, planted)) + pieces[-1]


class Baseline:
    """The obvious way: every test item's 5-word tuples in a dict, and a sliding window over the text's words."""

    def __init__(self, index: contamination.Index):
        self.grams: dict[tuple[str, ...], int] = {}
        for number, item in enumerate(index.items):
            for _, text in item.segments:
                words = WORD.findall(text.lower())
                for i in range(len(words) - contamination.N + 1):
                    self.grams.setdefault(tuple(words[i : i + contamination.N]), number)

    def scan(self, blob: bytes) -> set[int]:
        words = WORD.findall(blob.decode("utf-8", "replace").lower())
        hits: dict[int, int] = {}
        n = contamination.N
        for i in range(len(words) - n + 1):
            owner = self.grams.get(tuple(words[i : i + n]))
            if owner is not None:
                hits[owner] = hits.get(owner, 0) + 1
        return {owner for owner, count in hits.items() if count >= 10}


def timed(work):
    wall, cpu = time.perf_counter(), time.process_time()
    result = work()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=64, help="corpus size for the scanner")
    parser.add_argument("--baseline-mb", type=float, default=8, help="corpus size for the (slow) baseline")
    parser.add_argument("--require", type=float, default=None, help="minimum MB per CPU second of the scanner")
    args = parser.parse_args()

    index, wall, cpu = timed(contamination.default_index)
    print(f"index: {len(index.items)} test items, {len(index.hashes)} n-grams, built in {wall:.1f} s ({cpu:.1f} s CPU)")
    chosen = [item for item in index.items if item.benchmark == "gsm8k"][::100]
    planted = [dict(item.segments)["question"] for item in chosen]
    expected = {item.id for item in chosen}

    blob = corpus(args.mb, planted)
    pieces = list(files._text_pieces(io.BytesIO(blob).read))  # the 16 MB pieces files are scanned in

    def scan_all():
        return [hit for piece in pieces for hit in index.scan(piece.text)]

    hits, wall, cpu = timed(scan_all)
    found = {h.item for h in hits if h.benchmark == "gsm8k"}
    fast = len(blob) / 1e6 / cpu
    print(f"scanner: {len(blob) / 1e6:.1f} MB in {wall:.2f} s wall, {cpu:.2f} s CPU -> {fast:.0f} MB/CPU-s "
          f"({len(blob) / 1e6 / wall:.0f} MB/s wall); planted items found: {len(found & expected)}/{len(expected)}, "
          f"other hits: {sorted({(h.benchmark, h.item, h.part, h.coverage) for h in hits if h.item not in expected})}")

    baseline = Baseline(index)
    small = corpus(args.baseline_mb, planted[:5])
    owners, wall, cpu = timed(lambda: baseline.scan(small))
    slow = len(small) / 1e6 / cpu
    print(f"baseline (regex words + set of 5-word tuples): {len(small) / 1e6:.1f} MB in {wall:.2f} s wall, "
          f"{cpu:.2f} s CPU -> {slow:.1f} MB/CPU-s; items with >= 10 hits: {len(owners)}")
    print(f"speedup: {fast / slow:.1f}x")
    if args.require is not None and fast < args.require:
        print(f"FAIL: {fast:.0f} MB/CPU-s is below the required {args.require:g}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
