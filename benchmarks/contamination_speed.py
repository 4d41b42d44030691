"""Speed and recall of the contamination scan against the original's scanner, on the same corpus, and the cost of
the index and of each decoder.

    python benchmarks/contamination_speed.py --mb 64 --original-script contamination_check.py \
        --cl100k cl100k_base.tiktoken [--baseline-mb 8] [--decoder-mb 16] [--repeat 3] [--require 100]

The corpus mixes GSM8K train (from PTB_DATA_DIR, default ../shared/data beside the checkout) with the Python
standard library's sources, the prose and code that agents' training data is made of, with 60 GSM8K test items
planted in it in six shapes (verbatim JSON, reworded, a filler after every second word, homoglyphs, base64, cut in
three across the file). It is written into a run directory and scanned through `contamination.check`, the path a
run takes (walk, decoders, matcher); the same text without the plants is scanned too.

The original's scanner is PostTrainBench v1.1's `contamination_check.py` (aisa-group/PostTrainBench, commit c924408,
`src/disallowed_usage_judge/judge_tools/contamination_check.py`; it is not part of this repository: pass its path).
It runs in a subprocess on the same corpus, one document per line, against GSM8K's test set, and needs tiktoken's
cl100k_base rank file (sha256 checked; `cl100k_from_js_tiktoken.py` rebuilds it from an npm package where the
file's URL cannot be reached). Without the script, only a simplified stand-in (words instead of BPE tokens, no
per-line documents) is run; it is faster than the real script, so the speed-up it gives is a lower bound.
Speeds are MB per CPU second (time.process_time here, the child's rusage for the script: one core, the scan is
single-threaded numpy; on a loaded machine CPU time is the fair measure, wall time is mostly the wait for a core),
the best of --repeat scans. Files are written before the clock starts. Each decoder's row scans the same text in
that form and gives its speed in MB of decoded text per CPU second and its cost over the plain text's scan. With
--require, exits 1 if the scan of the planted corpus is slower.
"""

import argparse
import base64
import gzip
import hashlib
import io
import json
import os
import pickle
import re
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("PTB_DATA_DIR", str(REPO.parent / "shared" / "data"))

import numpy as np  # noqa: E402

from posttrainbench.integrity import contamination, index_cache  # noqa: E402
from posttrainbench.integrity.items import test_items  # noqa: E402
from posttrainbench.specs import get_benchmark  # noqa: E402

WORD = re.compile(r"[a-z0-9]+")
CYRILLIC = str.maketrans({"a": "а", "e": "е", "o": "о", "c": "с", "p": "р"})


def background(megabytes: float) -> bytes:
    """Valid UTF-8: the original's script reads text and stops at the first invalid byte (one stdlib test file)."""
    sources = [Path(os.environ["PTB_DATA_DIR"]) / "gsm8k" / "train.jsonl"]
    sources += sorted(Path(json.__file__).parents[1].rglob("*.py"))
    target, parts, size = int(megabytes * 1e6), [], 0
    while size < target:
        for path in sources:
            data = path.read_bytes().decode("utf-8", "replace").encode()
            parts.append(data)
            size += len(data)
            if size >= target:
                break
    return b"\n".join(parts)[:target].decode("utf-8", "ignore").encode()


def reworded(text: str) -> str:
    return " ".join("some" if i % 8 == 7 and not any(c.isdigit() for c in w) else w for i, w in enumerate(text.split()))


def shapes(text: str) -> list[bytes]:
    """The text of one planted item as a cheat would write it (some shapes in several places)."""
    words = text.split()
    third = -(-len(words) // 3)
    return [
        [json.dumps({"text": text}).encode()],
        [json.dumps({"text": reworded(text)}).encode()],
        [" ".join(w + (" indeed" if i % 2 else "") for i, w in enumerate(words)).encode()],
        [text.translate(CYRILLIC).encode()],
        [json.dumps({"blob": base64.b64encode(text.encode()).decode()}).encode()],
        [" ".join(words[q * third : (q + 1) * third]).encode() for q in range(3)],
    ]


def corpus(megabytes: float, planted: list[str]) -> bytes:
    blob = background(megabytes)
    pieces = [piece for i, text in enumerate(planted) for piece in shapes(text)[i % 6]]
    step = len(blob) // (len(pieces) + 1)
    chunks = [blob[i * step : (i + 1) * step] for i in range(len(pieces) + 1)]
    return b"".join(c + b"\n" + p + b"\n" for c, p in zip(chunks, pieces)) + chunks[-1]


class WordsStandIn:
    """A simplified stand-in for the original's checker, for when its script is not at hand: lowercased words, every
    test item's 5-grams in a dict, a sliding window over the text's words; an item counts when 80 % of its 5-grams
    are present. Faster than the real v1.1 script (no BPE tokenizer, no per-line documents) and weaker on recall."""

    def __init__(self, index: contamination.Index):
        self.grams: dict[tuple[str, ...], set[int]] = {}
        self.sizes: list[int] = []
        for number, item in enumerate(index.items):
            grams = set()
            for _, text in item.segments:
                words = WORD.findall(text.lower())
                grams |= {tuple(words[i : i + 5]) for i in range(len(words) - 4)}
            for gram in grams:
                self.grams.setdefault(gram, set()).add(number)
            self.sizes.append(len(grams))

    def scan(self, blob: bytes) -> set[int]:
        words = WORD.findall(blob.decode("utf-8", "replace").lower())
        hits: dict[int, set] = {}
        for i in range(len(words) - 4):
            gram = tuple(words[i : i + 5])
            for owner in self.grams.get(gram, ()):
                hits.setdefault(owner, set()).add(gram)
        return {owner for owner, found in hits.items() if len(found) >= 0.8 * self.sizes[owner]}


# The original's rank file, as tiktoken names it in its cache and checks it.
CL100K_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
CL100K_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"


class OriginalScript:
    """PostTrainBench v1.1's own checker (`contamination_check.py`: cl100k tokens of cleaned text, one document per
    line, 5-grams of the questions sampled every 10 tokens and grown into clusters, IDF-weighted scores per field
    against 0.8), run as its authors ran it, in a subprocess, on the run's benchmark's test set. Its CPU time is the
    child's, less that of the same call on an empty input (interpreter, tiktoken, building its index)."""

    def __init__(self, script: Path, cl100k: Path, items: list, folder: Path):
        if hashlib.sha256(cl100k.read_bytes()).hexdigest() != CL100K_SHA256:
            raise SystemExit(f"{cl100k} is not cl100k_base.tiktoken (sha256 differs)")
        self.script, self.folder = script, folder
        cache = folder / "tiktoken"
        cache.mkdir()
        (cache / hashlib.sha1(CL100K_URL.encode()).hexdigest()).write_bytes(cl100k.read_bytes())
        self.env = {**os.environ, "TIKTOKEN_CACHE_DIR": str(cache)}
        self.ids = [item.id for item in items]
        reference = [dict(item.segments) for item in items]
        (folder / "reference.json").write_text(json.dumps(reference))
        (folder / "empty.txt").write_bytes(b"")
        self.fixed = min(self._run(folder / "empty.txt")[1] for _ in range(2))

    def _run(self, text: Path) -> tuple[str, float]:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        done = subprocess.run([sys.executable, str(self.script), "--reference", str(self.folder / "reference.json"),
                               "--input", str(text), "--input-format", "text"],
                              env=self.env, capture_output=True, text=True, check=False)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode not in (0, 1):  # 1: it found contamination
            raise SystemExit(f"the original's script failed: {done.stderr.strip().splitlines()[-1:]}")
        return done.stdout, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)

    def scan(self, blob: bytes) -> tuple[set[str], float]:
        """(ids of the items it reports, CPU seconds of the scan)."""
        text = self.folder / "corpus.txt"
        text.write_bytes(blob)
        out, cpu = self._run(text)
        found = {self.ids[m["ref_index"]] for line in out.splitlines() for m in json.loads(line)["matches"]}
        return found, cpu - self.fixed


def timed(work):
    wall, cpu = time.perf_counter(), time.process_time()
    result = work()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def scan_run(files: dict[str, bytes], repeat: int = 1, tokenizer_dir: Path | None = None):
    """(check, wall seconds, CPU seconds) of the fastest of `repeat` scans of a run holding `files`."""
    with tempfile.TemporaryDirectory(prefix="ptb-speed-") as folder:
        run = Path(folder)
        for rel, data in files.items():
            (run / rel).parent.mkdir(parents=True, exist_ok=True)
            (run / rel).write_bytes(data)
        runs = [timed(lambda: contamination.check(run, get_benchmark("gsm8k"), tokenizer_dir=tokenizer_dir))
                for _ in range(repeat)]
        return min(runs, key=lambda r: r[2])


def decoder_inputs(text: bytes, tokenizer) -> dict[str, dict[str, bytes]]:
    lines = text.decode("utf-8", "replace").splitlines()
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("a.txt", text)
    import pyarrow as pa
    import pyarrow.parquet as pq
    import zstandard

    parquet = io.BytesIO()
    pq.write_table(pa.table({"text": lines}), parquet)
    with tempfile.TemporaryDirectory() as folder:
        with sqlite3.connect(Path(folder) / "db") as db:
            db.execute("CREATE TABLE t (line TEXT)")
            db.executemany("INSERT INTO t VALUES (?)", [(line,) for line in lines])
        db.close()
        database = (Path(folder) / "db").read_bytes()
    inputs = {
        "gzip": {"task/a.txt.gz": gzip.compress(text, 6)},
        "zstd": {"task/a.txt.zst": zstandard.ZstdCompressor().compress(text)},
        "zip": {"task/a.zip": zipped.getvalue()},
        "utf-16": {"task/a.txt": text.decode("utf-8", "replace").encode("utf-16")},
        "base64 runs": {"task/a.json": json.dumps([base64.b64encode(line.encode()).decode() for line in lines
                                                    if len(line) > 40]).encode()},
        "parquet": {"task/a.parquet": parquet.getvalue()},
        "sqlite": {"task/a.db": database},
        "pickle": {"task/a.pkl": pickle.dumps(lines)},
    }
    if tokenizer is not None:
        ids = [e.ids for e in tokenizer.encode_batch(lines)]
        flat = np.array([t for row in ids for t in row], np.int32)
        inputs["npy token ids"] = {"task/a.npy": _npy(flat)}
    return inputs


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=64, help="corpus size for the scan")
    parser.add_argument("--baseline-mb", type=float, default=8, help="corpus size for the (slow) stand-in")
    parser.add_argument("--original-script", type=Path, default=None,
                        help="the original's contamination_check.py (PostTrainBench v1.1, commit c924408)")
    parser.add_argument("--cl100k", type=Path, default=None, help="cl100k_base.tiktoken, for the original's script")
    parser.add_argument("--decoder-mb", type=float, default=16, help="text size for each decoder")
    parser.add_argument("--tokenizer-dir", type=Path, default=None, help="a model folder with tokenizer.json")
    parser.add_argument("--repeat", type=int, default=1, help="scans of each input; the fastest counts")
    parser.add_argument("--require", type=float, default=None, help="minimum MB per CPU second of the scan")
    args = parser.parse_args()
    if (args.original_script is None) != (args.cl100k is None):
        parser.error("--original-script and --cl100k go together")

    benchmarks, missing = contamination.available_benchmarks()
    if "gsm8k" in missing:
        parser.error(f"GSM8K's test set is not available: set PTB_DATA_DIR (now {os.environ['PTB_DATA_DIR']})")
    benchmarks = list(benchmarks)
    with tempfile.TemporaryDirectory(prefix="ptb-index-") as cache:
        os.environ["PTB_CACHE"] = cache
        index, wall, cpu = timed(lambda: index_cache.load_or_build(
            benchmarks, contamination.SETTINGS, lambda: contamination.build_index(benchmarks)))
        print(f"index: {sum(index.sizes.values())} test items, {len(index.hashes)} n-grams; built and stored in "
              f"{wall:.1f} s ({cpu:.1f} s CPU)")
        _, wall, cpu = timed(lambda: index_cache.load(
            index_cache.folder() / index_cache.key(benchmarks, contamination.SETTINGS)))
        print(f"index from the cache (validated by sha256): {wall:.3f} s ({cpu:.3f} s CPU)")
        contamination.default_index.cache_clear()
        contamination.default_index()

        chosen = [i for i, item in enumerate(index.items) if item.benchmark == "gsm8k"][::22][:60]
        planted = [dict(index.items[i].segments)["question"] + "\n" + dict(index.items[i].segments)["answer"]
                   for i in chosen]
        expected = {index.items[i].id for i in chosen}

        blob = corpus(args.mb, planted)
        check, wall, cpu = scan_run({"task/data.jsonl": blob}, args.repeat)
        found = {e["item"] for e in check.evidence if e["benchmark"] == "gsm8k"}
        fast = len(blob) / 1e6 / cpu
        print(f"scan: {len(blob) / 1e6:.1f} MB in {wall:.2f} s wall, {cpu:.2f} s CPU -> {fast:.0f} MB/CPU-s "
              f"({len(blob) / 1e6 / wall:.0f} MB/s wall); planted items found {len(found & expected)}/60, "
              f"others {sorted(found - expected)}; matcher alone {check.numbers['match_cpu_seconds']:.2f} s CPU")
        clean = background(args.mb)
        check, wall, cpu = scan_run({"task/data.jsonl": clean}, args.repeat)
        print(f"scan of the same text without plants: {len(clean) / 1e6:.1f} MB in {cpu:.2f} s CPU -> "
              f"{len(clean) / 1e6 / cpu:.0f} MB/CPU-s; items found {len(check.evidence)}")

        if args.original_script is not None:
            with tempfile.TemporaryDirectory(prefix="ptb-original-") as folder:
                script = OriginalScript(args.original_script, args.cl100k, test_items(get_benchmark("gsm8k")),
                                        Path(folder))
                owners, cpu = min((script.scan(blob) for _ in range(args.repeat)), key=lambda r: r[1])
            slow = len(blob) / 1e6 / cpu
            print(f"original's v1.1 script (cl100k tokens, sampled 5-grams, IDF-weighted 80 %; GSM8K's items only): "
                  f"{len(blob) / 1e6:.1f} MB in {cpu:.2f} s CPU (less {script.fixed:.2f} s on an empty input) -> "
                  f"{slow:.2f} MB/CPU-s; planted items found {len(owners & expected)}/60")
            print(f"speedup over the original's script: {fast / slow:.1f}x at recall {len(found & expected)}/60 vs "
                  f"{len(owners & expected)}/60")

        stand_in = WordsStandIn(index)
        small = corpus(args.baseline_mb, planted)
        owners, wall, cpu = min((timed(lambda: stand_in.scan(small)) for _ in range(args.repeat)), key=lambda r: r[2])
        slow = len(small) / 1e6 / cpu
        stand_in_found = {index.items[o].id for o in owners} & expected
        print(f"simplified stand-in (words, dict of 5-grams, 80 % of an item's 5-grams): {len(small) / 1e6:.1f} MB in "
              f"{wall:.2f} s wall, {cpu:.2f} s CPU -> {slow:.1f} MB/CPU-s; planted items found "
              f"{len(stand_in_found)}/60")
        print(f"speedup over the stand-in: {fast / slow:.1f}x at recall {len(found & expected)}/60 vs "
              f"{len(stand_in_found)}/60")

        tokenizer = None
        if args.tokenizer_dir is not None:
            from tokenizers import Tokenizer

            tokenizer = Tokenizer.from_file(str(args.tokenizer_dir / "tokenizer.json"))
        text = background(args.decoder_mb)
        _, _, plain = scan_run({"task/a.txt": text}, args.repeat)
        per_mb = plain / (len(text) / 1e6)
        print(f"decoders, {len(text) / 1e6:.0f} MB of the same text in each form (whole check(): decoding and "
              f"matching; plain text {len(text) / 1e6 / plain:.0f} MB/CPU-s, {per_mb * 1e3:.1f} ms CPU per MB):")
        for name, files in decoder_inputs(text, tokenizer).items():
            check, wall, cpu = scan_run(files, args.repeat, args.tokenizer_dir)
            decoded = check.numbers["bytes_decoded"]
            extra = (cpu - per_mb * decoded / 1e6) / (decoded / 1e6)
            print(f"  {name}: {sum(len(d) for d in files.values()) / 1e6:.1f} MB on disk, {decoded / 1e6:.1f} MB "
                  f"decoded, {cpu:.2f} s CPU -> {decoded / 1e6 / cpu:.0f} MB/CPU-s; cost over plain text "
                  f"{extra * 1e3:+.1f} ms CPU per decoded MB")
    if args.require is not None and fast < args.require:
        print(f"FAIL: {fast:.0f} MB/CPU-s is below the required {args.require:g}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
