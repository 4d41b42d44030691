"""The contamination index on disk, built once per (test data, settings, matcher code) and shared by every run and
grid on the machine: sorted arrays memory-mapped from PTB_CACHE/contamination-index/<key>/, validated by sha256.

The key hashes the sha256 of every data file of the indexed benchmarks (as the specs pin them), the matcher's
settings and the source of the modules that turn text into n-grams, so a change to any of them builds a new index
instead of reusing one that would match differently. A cached index whose files do not hash to what its record says
is rebuilt."""

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from posttrainbench import paths
from posttrainbench.errors import PtbError
from posttrainbench.evaluation.data import data_file
from posttrainbench.integrity import ngram
from posttrainbench.integrity.items import Item
from posttrainbench.specs import BenchmarkSpec

if TYPE_CHECKING:
    from posttrainbench.integrity.contamination import Index

ARRAYS = ("hashes", "bitmaps", "owner", "item_of", "need", "span")
_CODE = ("ngram.py", "fold.py", "items.py", "contamination.py", "index_cache.py")


def data_available(spec: BenchmarkSpec) -> bool:
    """Whether every data file of the benchmark can be had here (verified by its sha256)."""
    try:
        for entry in spec.data:
            data_file(spec, entry.name)
    except PtbError:
        return False
    return True


def key(benchmarks: list[BenchmarkSpec], settings: dict) -> str:
    here = Path(__file__).parent
    record = {
        "settings": settings,
        "data": {spec.id: sorted((entry.name, entry.sha256) for entry in spec.data) for spec in benchmarks},
        "code": {name: hashlib.sha256((here / name).read_bytes()).hexdigest() for name in _CODE},
    }
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def folder() -> Path:
    return paths.cache_dir() / "contamination-index"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save(index: "Index", where: Path) -> None:
    """Write the index into `where` (a new folder), atomically: a reader sees all of it or none."""
    where.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=where.parent))
    try:
        arrays = {"hashes": index.hashes.sorted, "bitmaps": index.hashes.packed(), "owner": index.owner,
                  "item_of": index.item_of,
                  "need": index.need, "span": index.span}
        for name, array in arrays.items():
            np.save(tmp / f"{name}.npy", np.ascontiguousarray(array))
        (tmp / "items.json").write_text(json.dumps(
            [[item.benchmark, item.id, [list(s) for s in item.segments]] for item in index.items]))
        record = {
            "sizes": index.sizes,
            "canaries": {c.decode(): b for c, b in index.canaries.items()},
            "sha256": {f"{name}.npy": _sha256(tmp / f"{name}.npy") for name in ARRAYS}
            | {"items.json": _sha256(tmp / "items.json")},
        }
        (tmp / "record.json").write_text(json.dumps(record))
        os.rename(tmp, where)
    except OSError:
        if where.is_dir():  # another process built the same index first
            shutil.rmtree(tmp, ignore_errors=True)
            return
        raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def load(where: Path) -> "Index | None":
    """The index kept in `where`, or None when it is missing or does not hash to its record."""
    from posttrainbench.integrity.contamination import Index

    try:
        record = json.loads((where / "record.json").read_text())
        os.utime(where / "record.json")  # in use: not stale
        for name in ARRAYS:
            if _sha256(where / f"{name}.npy") != record["sha256"][f"{name}.npy"]:
                return None
        # Plain arrays over the mapped files: numpy.memmap adds a cost to every operation on them.
        arrays = {name: np.asarray(np.load(where / f"{name}.npy", mmap_mode="r")) for name in ARRAYS}
    except (OSError, ValueError, KeyError):
        return None
    items_file, items_sha = where / "items.json", record["sha256"].get("items.json")

    def load_items() -> list[Item]:
        # Read only when a candidate needs verifying: a run with nothing to find never parses the test items.
        if _sha256(items_file) != items_sha:
            raise PtbError(f"{items_file} changed since the index was built; delete {where}")
        return [Item(bench, item_id, tuple(tuple(s) for s in segments))
                for bench, item_id, segments in json.loads(items_file.read_text())]

    return Index(
        hashes=ngram.HashSet(arrays["hashes"], packed=arrays["bitmaps"]),
        owner=arrays["owner"],
        item_of=arrays["item_of"],
        need=arrays["need"],
        span=arrays["span"],
        sizes=record["sizes"],
        load_items=load_items,
        canaries={c.encode(): b for c, b in record["canaries"].items()},
    )


def load_or_build(benchmarks: list[BenchmarkSpec], settings: dict, build: Callable[[], "Index"]) -> "Index":
    where = folder() / key(benchmarks, settings)
    index = load(where)
    if index is not None:
        return index
    index = build()
    if where.exists():  # there but invalid: replaced
        shutil.rmtree(where, ignore_errors=True)
    save(index, where)
    _forget_stale(where)
    return load(where) or index


STALE_S = 7 * 86400


def _forget_stale(keep: Path) -> None:
    """Indexes of other data or code not used for a week (each load touches its record): removed."""
    now = time.time()
    for other in keep.parent.iterdir():
        record = other / "record.json"
        if other != keep and other.is_dir() and record.is_file() and now - record.stat().st_mtime > STALE_S:
            shutil.rmtree(other, ignore_errors=True)
