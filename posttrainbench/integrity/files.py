"""The files an agent left behind, what kind each is, and their text in pieces that can be scanned.

Kinds: `workspace` (anything the agent wrote: its data, scripts, outputs), `cache` (what libraries downloaded for
it: the Hugging Face, pip and torch caches), `evaluation` (inspect logs written by evaluate.py, and files whose name
or folder says they hold evaluation output: predictions, results, scores, error analyses). Looking at test items
is allowed, and agents often save their own evaluations with the questions and the gold answers next to the
model's; such files are reported, not flagged. The agent CLIs' own state (session transcripts) is left out: it is
the trajectory, not data.
"""

import gzip
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

CHUNK = 16 << 20
CLI_STATE = (".claude", ".claude.json", ".codex", ".gemini", ".local/share/opencode", ".local/state/opencode",
             ".config/opencode", ".cache/opencode", ".npm")
CACHES = (".cache/huggingface", ".cache/pip", ".cache/uv", ".cache/torch")
SKIP_DIRS = {".git", "__pycache__", "node_modules", "site-packages"}
# Weights, archives and media: no training text to read in them.
SKIP_SUFFIXES = {".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".onnx", ".npy", ".npz", ".pkl",
                 ".pickle", ".h5", ".msgpack", ".so", ".pyc", ".whl", ".zip", ".tar", ".eval", ".png", ".jpg",
                 ".jpeg", ".gif", ".pdf", ".lock", ".incomplete"}


@dataclass
class Piece:
    text: bytes
    unit: str  # "line" or "row"
    first: int  # number of the unit the piece starts with (1-based)


@dataclass
class Found:
    path: Path
    rel: str  # relative to the run directory
    kind: str  # workspace | cache | evaluation


# Words (or their starts) that name evaluation output, matched against the file's and its folder's name.
EVALUATION_WORDS = ("eval", "pred", "result", "output", "metric", "score", "analys", "error", "fail", "debug",
                    "inspect", "judg")
EVALUATION_NAMES = {"log", "logs"}


def _under(rel: str, prefixes: tuple[str, ...]) -> bool:
    return any(rel == p or rel.startswith(p + "/") for p in prefixes)


def _is_inspect_log(path: Path) -> bool:
    if path.suffix != ".json":
        return False
    with path.open("rb") as handle:
        head = handle.read(4096)
    return head.lstrip().startswith(b"{") and b'"eval"' in head and b'"task_id"' in head and b'"run_id"' in head


def _named_as_evaluation(path: Path) -> bool:
    words = re.findall(r"[a-z]+", f"{path.parent.name} {path.name}".lower())
    return any(w.startswith(EVALUATION_WORDS) or w in EVALUATION_NAMES for w in words)


def walk(run_dir: Path, roots: tuple[str, ...] = ("task", "home")) -> Iterator[Found]:
    """Regular files under the run's task/ and home/, symbolic links not followed."""
    for root_name in roots:
        root = run_dir / root_name
        if not root.is_dir():
            continue
        stack = [root]
        while stack:
            folder = stack.pop()
            try:
                entries = sorted(folder.iterdir())
            except OSError:
                continue
            for path in entries:
                home_rel = str(path.relative_to(root))
                if path.is_symlink() or (root_name == "home" and _under(home_rel, CLI_STATE)):
                    continue
                if path.is_dir():
                    if path.name not in SKIP_DIRS:
                        stack.append(path)
                    continue
                if not path.is_file() or path.suffix.lower() in SKIP_SUFFIXES:
                    continue
                if root_name == "home" and _under(home_rel, CACHES):
                    kind = "cache"
                elif _named_as_evaluation(path) or _is_inspect_log(path):
                    kind = "evaluation"
                else:
                    kind = "workspace"
                yield Found(path, str(path.relative_to(run_dir)), kind)


def _text_pieces(read) -> Iterator[Piece]:
    line, carry = 1, b""
    while True:
        block = read(CHUNK)
        data = carry + block
        if not block:
            if data:
                yield Piece(data, "line", line)
            return
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            carry = data
            if len(carry) < 4 * CHUNK:
                continue
            cut = len(data)  # one enormous line: scan it in parts
        piece, carry = data[:cut], data[cut:]
        yield Piece(piece, "line", line)
        line += piece.count(b"\n")


def _row_pieces(batches) -> Iterator[Piece]:
    row = 1
    for batch in batches:
        rows = batch.to_pylist()
        if rows:
            yield Piece("\n".join(json.dumps(r, default=str) for r in rows).encode(), "row", row)
            row += len(rows)


def pieces(path: Path) -> tuple[str, Iterator[Piece] | None]:
    """(format, pieces of text) of one file; pieces is None for a format without text (binary, archive)."""
    with path.open("rb") as handle:
        head = handle.read(8192)
    if head.startswith(b"PAR1"):
        import pyarrow.parquet as pq

        return "parquet", _row_pieces(pq.ParquetFile(path).iter_batches(batch_size=4096))
    if head.startswith((b"ARROW1", b"\xff\xff\xff\xff")):
        import pyarrow as pa

        def batches():
            with pa.memory_map(str(path)) as source:
                reader = pa.ipc.open_file(source) if head.startswith(b"ARROW1") else pa.ipc.open_stream(source)
                if isinstance(reader, pa.ipc.RecordBatchFileReader):
                    yield from (reader.get_batch(i) for i in range(reader.num_record_batches))
                else:
                    yield from reader

        return "arrow", _row_pieces(batches())
    if head.startswith(b"\x1f\x8b"):

        def unzipped():
            with gzip.open(path, "rb") as handle:
                yield from _text_pieces(handle.read)

        return "gzip", unzipped()
    if b"\0" in head:
        return "binary", None

    def text():
        with path.open("rb") as handle:
            yield from _text_pieces(handle.read)

    return "text", text()
