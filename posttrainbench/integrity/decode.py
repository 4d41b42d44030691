"""The text inside anything an agent wrote, decoded before it is matched against test items.

A file is recognised by its content, never by its name: archives (zip, tar) and compressed streams (gzip, bzip2,
xz, zstd) are opened and their members decoded in turn; Parquet and Arrow give their rows (and list-of-integer
columns as token ids); NumPy, safetensors and the raw storages of torch files give integer arrays, which the base
model's tokenizer turns back into text; SQLite gives the values of its tables; pickles give their string and
integer constants (read with `pickletools.genops`, never unpickled); UTF-16/32 is re-encoded. Inside text, runs of
base64 or hex are decoded, JSON lists of token ids are detokenised, and Unicode tricks are folded (`fold`).

Every decoder is bounded: nesting depth, bytes held in memory per layer, decoded bytes per file on disk, members
per archive, and SQLite steps. A bound reached stops that file's decoding with a note; it never costs the harness
more than the bound.

An inspect-ai evaluation log (the JSON that evaluate.py writes, or a .eval archive) is recognised by its structure:
its samples, where test items appear as inputs and targets next to the model's output, are given the kind
`evaluation`; the rest of the log is ordinary text. Likewise an agent CLI's session transcript (JSON lines with a
session id, or typed messages): the outputs of its tool calls (what the agent read) are given the kind
`transcript`; its own messages and tool inputs (what it wrote) are ordinary text.
"""

import bisect
import bz2
import gzip
import io
import json
import lzma
import os
import pickletools
import re
import sqlite3
import struct
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np

from posttrainbench.integrity import ngram
from posttrainbench.integrity.fold import fold_whole, inert
from posttrainbench.integrity.tokens import Detokenizer

# Text is scanned in pieces of about CHUNK bytes: small enough that the memory freed by one piece is reused by the
# next (16 MB pieces paid ~5 % of the scan in page faults of fresh memory), large enough that few items straddle
# two (those are found as fragments). A line longer than LONG_LINE is scanned in parts of that size.
CHUNK = 4 << 20
LONG_LINE = 64 << 20
MAX_DEPTH = 5  # layers of decoding (a base64 run in a jsonl in a tar in a gzip is 3)
BLOB_CAP = 256 << 20  # bytes of one decoded layer held in memory
FILE_CAP = 4 << 30  # decoded bytes of one file on disk, all layers together
MAX_MEMBERS = 50_000
MAX_JSON_LOG = 512 << 20
PICKLE_CAP = 64 << 20  # pickles are parsed opcode by opcode in Python: about 10 s for this much
SQLITE_STEPS = 50_000_000  # VM steps per database (a crafted schema must not spin)
MIN_RUN = 48  # characters of a base64 or hex run worth decoding

# Magic numbers.
_ZIP = (b"PK\x03\x04", b"PK\x05\x06")
_STREAMS = {b"\x1f\x8b": "gzip", b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz", b"\x28\xb5\x2f\xfd": "zstd"}
_SQLITE = b"SQLite format 3\x00"
_NPY = b"\x93NUMPY"


@dataclass
class Piece:
    text: bytes
    unit: str  # what `first` counts: "line", "row", "sample"
    first: int  # number of the unit the piece starts with (1-based)
    via: str = ""  # how it was decoded, e.g. "zip data/train.jsonl > base64"
    kind: str | None = None  # "evaluation" for the samples of an inspect log; None: the file's kind


@dataclass
class Context:
    """What one file's decoding may use and what it found out."""

    detokenizer: Detokenizer | None = None
    left: int = FILE_CAP
    formats: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)

    def take(self, size: int) -> bool:
        self.left -= size
        if self.left < 0:
            self._note(f"decoding stopped after {FILE_CAP >> 20} MB")
            return False
        return True

    def _note(self, note: str) -> None:
        if note not in self.notes:
            self.notes.append(note)


def _join(via: str, step: str) -> str:
    return f"{via} > {step}" if via else step


def _head(handle: BinaryIO, size: int = 8192) -> bytes:
    position = handle.tell()
    head = handle.read(size)
    handle.seek(position)
    return head


def _is_pickle(head: bytes) -> bool:
    return len(head) > 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def _is_safetensors(head: bytes, size: int) -> bool:
    if len(head) < 10:
        return False
    (length,) = struct.unpack("<Q", head[:8])
    return 2 <= length <= size - 8 and head[8:9] == b"{"


def _wide_encoding(head: bytes) -> str | None:
    """UTF-16/32 by byte-order mark, or by the zero bytes of mostly-ASCII text in it."""
    for bom, name in ((b"\xff\xfe\x00\x00", "utf-32-le"), (b"\x00\x00\xfe\xff", "utf-32-be"),
                      (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be")):
        if head.startswith(bom):
            return name
    sample = head[: len(head) // 4 * 4]
    if len(sample) < 16 or b"\0" not in sample:  # each test below needs zero bytes
        return None
    b = np.frombuffer(sample, np.uint8)
    zero = b == 0
    if zero[1::4].all() and zero[2::4].all() and zero[3::4].all() and not zero[0::4].all():
        return "utf-32-le"
    if zero[0::4].all() and zero[1::4].all() and zero[2::4].all() and not zero[3::4].all():
        return "utf-32-be"
    if zero[1::2].mean() > 0.9 and zero[0::2].mean() < 0.1:
        return "utf-16-le"
    if zero[0::2].mean() > 0.9 and zero[1::2].mean() < 0.1:
        return "utf-16-be"
    return None


def decode(handle: BinaryIO, size: int, ctx: Context, depth: int = 0, via: str = "",
           name: str = "") -> Iterator[Piece]:
    """The text pieces of one blob (a seekable handle positioned at its start; `size` its length)."""
    if depth > MAX_DEPTH:
        ctx._note(f"nested deeper than {MAX_DEPTH} layers: not decoded further")
        return
    head = _head(handle)
    if head.startswith(_ZIP):
        yield from _zip(handle, ctx, depth, via)
    elif len(head) >= 262 and head[257:262] == b"ustar":
        yield from _tar(tarfile.open(fileobj=handle, mode="r:"), ctx, depth, via)
    elif head.startswith(tuple(_STREAMS)):
        kind = next(k for magic, k in _STREAMS.items() if head.startswith(magic))
        yield from _stream(kind, handle, ctx, depth, via)
    elif head.startswith(b"PAR1"):
        yield from _parquet(handle, ctx, via)
    elif head.startswith((b"ARROW1", b"\xff\xff\xff\xff")):
        yield from _arrow(handle, head, ctx, via)
    elif head.startswith(_SQLITE):
        yield from _sqlite(handle, ctx, depth, via)
    elif head.startswith(_NPY):
        yield from _npy(handle, ctx, depth, via)
    elif _is_pickle(head):
        yield from _pickle(_read(handle, ctx, "pickle", PICKLE_CAP), ctx, depth, via)
    elif _is_safetensors(head, size):
        yield from _safetensors(handle, size, ctx, depth, via)
    elif (encoding := _wide_encoding(head)) is not None:
        ctx.formats.add(encoding)
        data = _read(handle, ctx, encoding).decode(encoding, "replace").encode()
        yield from _text(io.BytesIO(data), ctx, depth, _join(via, encoding))
    elif b"\0" in head:
        ctx.formats.add("binary")
        yield from _raw_ids(handle, ctx, via, name)
    else:
        yield from _json_log_or_text(handle, head, size, ctx, depth, via)


def _read(handle: BinaryIO, ctx: Context, what: str, cap: int = BLOB_CAP) -> bytes:
    data = handle.read(cap + 1)
    if len(data) > cap:
        ctx._note(f"{what} larger than {cap >> 20} MB: only its start decoded")
        data = data[:cap]
    return data


def _member(data: bytes, ctx: Context, depth: int, via: str, name: str) -> Iterator[Piece]:
    """One decoded layer. A member that breaks its decoder (truncated, corrupt, crafted) is noted and the rest of
    the file is still decoded: what it gave before the break has been scanned."""
    if not ctx.take(len(data)):
        return
    try:
        yield from decode(io.BytesIO(data), len(data), ctx, depth + 1, via, name)
    except Exception as exc:  # noqa: BLE001 -- every decoder's own error types; the scan must go on
        ctx._note(f"{via or 'a member'}: decoding stopped: {type(exc).__name__}: {exc}"[:300])


# --- containers --------------------------------------------------------------------------------------------------


def _zip(handle: BinaryIO, ctx: Context, depth: int, via: str) -> Iterator[Piece]:
    ctx.formats.add("zip")
    with zipfile.ZipFile(handle) as archive:
        infos = [i for i in archive.infolist() if not i.is_dir()]
        if len(infos) > MAX_MEMBERS:
            ctx._note(f"archive with {len(infos)} members: the first {MAX_MEMBERS} decoded")
        inspect_eval = any(i.filename == "header.json" for i in infos)
        for info in infos[:MAX_MEMBERS]:
            step = _join(via, f"zip {info.filename}")
            try:
                with archive.open(info) as member:
                    if _STORAGE.search(info.filename):  # torch's raw tensor storages: read in chunks
                        yield from _raw_ids(member, ctx, step, info.filename)
                        continue
                    data = _read(member, ctx, info.filename)
            except (RuntimeError, OSError, ValueError, EOFError, zipfile.BadZipFile, NotImplementedError) as exc:
                # An encrypted, corrupt or unsupported member: noted, and the other members are still read.
                ctx._note(f"{step}: not readable: {type(exc).__name__}: {exc}"[:300])
                continue
            if inspect_eval and info.filename.startswith("samples/"):
                sample = _json_or_none(data)
                if _is_sample(sample):
                    yield Piece(json.dumps(sample).encode(), "sample", 1, step, "evaluation")
                    continue
            yield from _member(data, ctx, depth, step, info.filename)


_STORAGE = re.compile(r"(^|/)data/\d+$")


def _tar(archive: tarfile.TarFile, ctx: Context, depth: int, via: str) -> Iterator[Piece]:
    ctx.formats.add("tar")
    with archive:
        for count, info in enumerate(archive):
            if count >= MAX_MEMBERS:
                ctx._note(f"archive with more than {MAX_MEMBERS} members: the first ones decoded")
                return
            if not info.isreg():  # links and devices in an archive are names, not content
                continue
            member = archive.extractfile(info)
            if member is None:
                continue
            yield from _member(_read(member, ctx, info.name), ctx, depth, _join(via, f"tar {info.name}"), info.name)


def _stream(kind: str, handle: BinaryIO, ctx: Context, depth: int, via: str) -> Iterator[Piece]:
    ctx.formats.add(kind)
    if kind == "gzip":
        stream = gzip.GzipFile(fileobj=handle)
    elif kind == "bzip2":
        stream = bz2.BZ2File(handle)
    elif kind == "xz":
        stream = lzma.LZMAFile(handle)
    else:
        import zstandard

        stream = zstandard.ZstdDecompressor().stream_reader(handle)
    step = _join(via, kind)
    with stream:
        first = stream.read(8192)
        if len(first) >= 262 and first[257:262] == b"ustar":
            yield from _tar(tarfile.open(fileobj=_Chained(first, stream), mode="r|"), ctx, depth + 1, step)
        elif b"\0" not in first and _wide_encoding(first) is None:
            # Plain text of any length: streamed in pieces, counted against the file's cap as it goes.
            yield from _text(_Chained(first, stream), ctx, depth + 1, step, capped=True)
        else:
            data = first + stream.read(BLOB_CAP - len(first))
            yield from _member(data, ctx, depth, step, "")


class _Chained(io.RawIOBase):
    """A stream with bytes already read from it put back in front."""

    def __init__(self, first: bytes, rest):
        self._first, self._rest = first, rest

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self._first:
            out = self._first if size < 0 else self._first[:size]
            self._first = self._first[len(out) :]
            if size < 0 or len(out) < size:
                out += self._rest.read(-1 if size < 0 else size - len(out))
            return out
        return self._rest.read(size)

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


# --- tables ------------------------------------------------------------------------------------------------------


def _row_pieces(batches, ctx: Context, via: str) -> Iterator[Piece]:
    import pyarrow as pa

    row = 1
    for batch in batches:
        texts, ids = [], []
        for column, name in zip(batch.columns, batch.schema.names):
            if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
                if pa.types.is_integer(column.type.value_type):
                    ids.append((name, column))
        plain = batch.drop_columns([name for name, _ in ids]) if ids else batch
        rows = plain.to_pylist()
        texts = [json.dumps(r, default=str) for r in rows]
        if ctx.detokenizer is not None:
            for name, column in ids:
                decoded = ctx.detokenizer.decode_rows(column.to_pylist())
                if decoded is None:
                    continue
                ctx.formats.add("token ids")
                lines = decoded.split("\n")
                if len(lines) == len(texts):
                    texts = [f"{t}\n{line}" for t, line in zip(texts, lines)]
                else:
                    texts.append(decoded)
        if texts:
            data = "\n".join(t.replace("\n", " ") for t in texts).encode()
            if not ctx.take(len(data)):
                return
            yield Piece(data, "row", row, via)
            row += batch.num_rows


def _parquet(handle: BinaryIO, ctx: Context, via: str) -> Iterator[Piece]:
    import pyarrow.parquet as pq

    ctx.formats.add("parquet")
    yield from _row_pieces(pq.ParquetFile(handle).iter_batches(batch_size=4096), ctx, via)


def _arrow(handle: BinaryIO, head: bytes, ctx: Context, via: str) -> Iterator[Piece]:
    import pyarrow as pa

    ctx.formats.add("arrow")
    source = pa.PythonFile(handle, mode="r")
    if head.startswith(b"ARROW1"):
        reader = pa.ipc.open_file(source)
        batches = (reader.get_batch(i) for i in range(reader.num_record_batches))
    else:
        batches = pa.ipc.open_stream(source)
    yield from _row_pieces(batches, ctx, via)


def _sqlite(handle: BinaryIO, ctx: Context, depth: int, via: str) -> Iterator[Piece]:
    ctx.formats.add("sqlite")
    with tempfile.TemporaryDirectory(prefix="ptb-sqlite-") as folder:
        if isinstance(handle, io.BufferedReader):
            path = f"/proc/self/fd/{handle.fileno()}"  # the opened file itself: no name of the agent's followed
        else:
            path = os.path.join(folder, "db")
            with open(path, "wb") as out:
                out.write(_read(handle, ctx, "database"))
        db = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
        try:
            steps = {"left": SQLITE_STEPS // 1000}

            def progress() -> int:
                steps["left"] -= 1
                return 1 if steps["left"] < 0 else 0

            db.set_progress_handler(progress, 1000)
            db.execute("PRAGMA trusted_schema = OFF")
            tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            for table in tables:
                quoted = '"' + table.replace('"', '""') + '"'
                lines, blobs, row = [], [], 1
                for values in db.execute(f"SELECT * FROM {quoted}"):  # noqa: S608 -- a quoted identifier
                    lines.append("\t".join(str(v).replace("\n", " ") for v in values if not isinstance(v, bytes)))
                    blobs += [v for v in values if isinstance(v, bytes) and len(v) >= 16]
                    if len(lines) >= 4096:
                        yield from _sqlite_piece(lines, blobs, row, ctx, depth, _join(via, f"sqlite {table}"))
                        row += len(lines)
                        lines, blobs = [], []
                yield from _sqlite_piece(lines, blobs, row, ctx, depth, _join(via, f"sqlite {table}"))
        except sqlite3.OperationalError as exc:
            if "interrupted" not in str(exc):
                raise
            ctx._note(f"database: stopped after {SQLITE_STEPS} steps")
        finally:
            db.close()


def _sqlite_piece(lines, blobs, row, ctx, depth, via) -> Iterator[Piece]:
    data = "\n".join(lines).encode()
    if data and ctx.take(len(data)):
        yield Piece(data, "row", row, via)
    for blob in blobs:
        yield from _member(blob, ctx, depth, via, "")


# --- arrays and objects ------------------------------------------------------------------------------------------


def _ids_piece(values: np.ndarray, ctx: Context, depth: int, via: str) -> Iterator[Piece]:
    if ctx.detokenizer is None:
        return
    text = ctx.detokenizer.decode(values)
    if text is None:
        return
    ctx.formats.add("token ids")
    data = text.encode()
    if ctx.take(len(data)):
        yield from _text_blob(data, ctx, depth + 1, _join(via, "token ids"))


def _npy(handle: BinaryIO, ctx: Context, depth: int, via: str) -> Iterator[Piece]:
    ctx.formats.add("npy")
    version = np.lib.format.read_magic(handle)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read_header(handle, max_header_size=1 << 16)
    if dtype.hasobject:  # the rest is a pickle
        yield from _pickle(_read(handle, ctx, "npy"), ctx, depth, via)
        return
    count = int(np.prod(shape)) if shape else 1
    if count * dtype.itemsize > BLOB_CAP:
        ctx._note(f"array larger than {BLOB_CAP >> 20} MB: only its start decoded")
        count = BLOB_CAP // max(dtype.itemsize, 1)
        shape = (count,)
    values = np.frombuffer(handle.read(count * dtype.itemsize), dtype, count=-1)
    if dtype.kind in "US":
        data = "\n".join(str(v) for v in values.ravel()).encode()
        if ctx.take(len(data)):
            yield from _text_blob(data, ctx, depth + 1, via)
        return
    if len(values) == count and len(shape) <= 2:
        values = values.reshape(shape, order="F" if fortran else "C")
    yield from _ids_piece(values, ctx, depth, via)


_SAFETENSORS_INTS = {"I64": "<i8", "I32": "<i4", "I16": "<i2", "U16": "<u2", "U32": "<u4", "U64": "<u8"}


def _safetensors(handle: BinaryIO, size: int, ctx: Context, depth: int, via: str) -> Iterator[Piece]:
    ctx.formats.add("safetensors")
    (length,) = struct.unpack("<Q", handle.read(8))
    if length > 100 << 20:
        ctx._note("safetensors header larger than 100 MB: not decoded")
        return
    header = _json_or_none(handle.read(length))
    if not isinstance(header, dict):
        return
    metadata = header.pop("__metadata__", None)
    if isinstance(metadata, dict):
        yield Piece("\n".join(f"{k}: {v}" for k, v in metadata.items()).encode(), "line", 1,
                    _join(via, "safetensors metadata"))
    for name, info in header.items():
        dtype = _SAFETENSORS_INTS.get(info.get("dtype")) if isinstance(info, dict) else None
        offsets = info.get("data_offsets") if dtype else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            continue
        begin, end = offsets
        if not 0 <= begin <= end <= size - 8 - length or end - begin > BLOB_CAP:
            continue
        handle.seek(8 + length + begin)
        values = np.frombuffer(handle.read(end - begin), dtype)
        shape = info.get("shape")
        if isinstance(shape, list) and len(shape) == 2 and int(np.prod(shape)) == len(values):
            values = values.reshape(shape)
        yield from _ids_piece(values, ctx, depth, _join(via, f"tensor {name}"))


_RAW_DTYPES = ("<i8", "<i4")


def _raw_ids(handle: BinaryIO, ctx: Context, via: str, name: str) -> Iterator[Piece]:
    """Token ids written as raw integers (torch storages, nanoGPT-style .bin files), read in chunks."""
    if ctx.detokenizer is None:
        return
    dtypes = _RAW_DTYPES + (("<u2",) if name.endswith(".bin") else ())
    chosen, size = None, 1 << 20  # a small first chunk: most binaries are not ids, and that shows at once
    while ctx.left > 0:
        chunk = handle.read(size)
        size = 64 << 20
        if not chunk:
            return
        candidates = (chosen,) if chosen else dtypes
        for dtype in candidates:
            width = np.dtype(dtype).itemsize
            values = np.frombuffer(chunk[: len(chunk) // width * width], dtype)
            text = ctx.detokenizer.decode(values)
            if text is not None:
                chosen = dtype
                ctx.formats.add("token ids")
                data = text.encode()
                if ctx.take(len(data)):
                    yield from _text_blob(data, ctx, MAX_DEPTH, _join(via, "token ids"))
                break
        else:
            return


_STRING_OPS = {"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE",
               "BINUNICODE8"}
_BYTES_OPS = {"BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8"}
_INT_OPS = {"BININT", "BININT1", "BININT2", "INT", "LONG", "LONG1", "LONG4"}
# Opcodes between the items of a list or tuple: they do not end a run of integers.
_LIST_OPS = {"MARK", "APPENDS", "APPEND", "MEMOIZE", "BINPUT", "LONG_BINPUT", "EMPTY_LIST", "TUPLE"}


def _pickle(data: bytes, ctx: Context, depth: int, via: str) -> Iterator[Piece]:
    """String constants, byte strings and runs of integers of one or more concatenated pickles."""
    ctx.formats.add("pickle")
    strings, blobs, runs, run = [], [], [], []
    start = 0
    while start < len(data) and _is_pickle(data[start : start + 3]):
        stream = io.BytesIO(data)
        stream.seek(start)
        end = len(data)
        try:
            for opcode, arg, position in pickletools.genops(stream):
                if opcode.name in _INT_OPS and isinstance(arg, int):
                    run.append(arg)
                    continue
                if opcode.name not in _LIST_OPS and run:
                    runs.append(run)
                    run = []
                if opcode.name in _STRING_OPS and isinstance(arg, str | bytes):
                    strings.append(arg if isinstance(arg, str) else arg.decode("latin-1"))
                elif opcode.name in _BYTES_OPS and isinstance(arg, bytes | bytearray) and len(arg) >= 16:
                    blobs.append(bytes(arg))
                elif opcode.name == "STOP":
                    end = position + 1
        except (ValueError, EOFError, struct.error, UnicodeDecodeError, OverflowError):
            ctx._note("a pickle could not be parsed to its end")
        start = end
    runs.append(run)
    text = "\n".join(s.replace("\n", " ") for s in strings if s).encode()
    if text and ctx.take(len(text)):
        yield from _text_blob(text, ctx, depth + 1, _join(via, "pickle strings"))
    if ctx.detokenizer is not None:
        rows = [r for r in runs if len(r) >= 8]
        if rows:
            decoded = ctx.detokenizer.decode_rows(rows)
            if decoded is not None:
                ctx.formats.add("token ids")
                yield from _text_blob(decoded.encode(), ctx, depth + 1, _join(via, "pickle token ids"))
    for blob in blobs:
        yield from _member(blob, ctx, depth, _join(via, "pickle bytes"), "")
        if ctx.detokenizer is not None and len(blob) % 4 == 0:
            yield from _raw_ids(io.BytesIO(blob), ctx, _join(via, "pickle bytes"), "")


# --- text --------------------------------------------------------------------------------------------------------


def _json_or_none(data: bytes):
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        return None


def _is_sample(sample) -> bool:
    """An inspect sample: the test item as input and target next to the model's output."""
    if not isinstance(sample, dict) or "input" not in sample or "target" not in sample:
        return False
    output = sample.get("output")
    return isinstance(output, dict) and isinstance(output.get("choices"), list)


def _inspect_log(log) -> bool:
    return (isinstance(log, dict) and isinstance(log.get("eval"), dict) and "task" in log["eval"]
            and isinstance(log.get("samples"), list) and len(log["samples"]) > 0
            and all(_is_sample(s) for s in log["samples"]))


# What an agent CLI's session transcript (Claude Code, Codex, ...) calls the output of a tool call: the files and
# command output the agent read. Reading test items is allowed; writing them is not (tool inputs stay ordinary text).
_TOOL_OUTPUTS = {"tool_result", "function_call_output", "custom_tool_call_output"}


def _is_transcript_line(record) -> bool:
    return isinstance(record, dict) and (
        "sessionId" in record or "session_id" in record
        or ("type" in record and ("message" in record or "payload" in record)))


def _split_transcript(value, outputs: list[str], rest: list[str], reading: bool = False) -> None:
    """Strings of a transcript record, sorted into tool outputs and everything else."""
    if isinstance(value, dict):
        reading = reading or value.get("type") in _TOOL_OUTPUTS
        for key, item in value.items():
            _split_transcript(item, outputs, rest, reading or key == "toolUseResult")
    elif isinstance(value, list):
        for item in value:
            _split_transcript(item, outputs, rest, reading)
    elif isinstance(value, str):
        (outputs if reading else rest).append(value.replace("\n", " "))


def _transcript(data: bytes, via: str) -> Iterator[Piece] | None:
    lines = [line for line in data.split(b"\n") if line.strip()]
    records = [_json_or_none(line) for line in lines]
    if not records or sum(_is_transcript_line(r) for r in records) < 0.9 * len(records):
        return None
    outputs: list[str] = []
    rest: list[str] = []
    for record in records:
        _split_transcript(record, outputs, rest)
    return iter([Piece("\n".join(rest).encode(), "line", 1, via),
                 Piece("\n".join(outputs).encode(), "line", 1, _join(via, "tool output"), "transcript")])


def _json_log_or_text(handle: BinaryIO, head: bytes, size: int, ctx: Context, depth: int,
                      via: str) -> Iterator[Piece]:
    first = head.split(b"\n", 1)[0]
    if first.lstrip().startswith(b"{") and size <= MAX_JSON_LOG and _is_transcript_line(_json_or_none(first)):
        data = handle.read()
        pieces = _transcript(data, via)
        if pieces is not None:
            ctx.formats.add("agent transcript")
            yield from pieces
            return
        handle = io.BytesIO(data)
    if head.lstrip().startswith(b"{") and b'"eval"' in head and size <= MAX_JSON_LOG:
        data = handle.read()
        log = _json_or_none(data)
        if _inspect_log(log):
            ctx.formats.add("inspect log")
            samples = log.pop("samples")
            yield Piece(json.dumps(log).encode(), "line", 1, via)
            for number in range(0, len(samples), 256):
                text = "\n".join(json.dumps(s) for s in samples[number : number + 256]).encode()
                yield Piece(text, "sample", number + 1, via, "evaluation")
            return
        handle = io.BytesIO(data)
    yield from _text(handle, ctx, depth, via)


def _text_pieces(read) -> Iterator[tuple[bytes, int]]:
    """Pieces of about CHUNK bytes cut after a line break (a line longer than LONG_LINE is cut where it reaches
    that), with the number of the line each starts with. The text after the last line break of a block waits for
    the next; the last block is read ahead so that the text after the last line break stays with the lines before
    it (a copy in a file's last two lines is not cut in two). No block is copied more than once."""
    line, carry, carried = 1, [], 0  # the text after the last line break so far, in parts
    block = read(CHUNK)
    while block:
        following = read(CHUNK)
        cut = block.rfind(b"\n") + 1 if following else len(block)
        if cut == 0:
            carry.append(block)
            carried += len(block)
            block = following
            if carried < LONG_LINE:
                continue
            piece = b"".join(carry)  # one enormous line: scan it in parts
            carry, carried = [], 0
        else:
            piece = b"".join((*carry, memoryview(block)[:cut]))
            carry, carried = [block[cut:]], len(block) - cut
            block = following
        yield piece, line
        line += newlines(np.frombuffer(piece, np.uint8))


def _text(handle, ctx: Context, depth: int, via: str, capped: bool = False) -> Iterator[Piece]:
    ctx.formats.add("text")
    for data, line in _text_pieces(handle.read):
        if capped and not ctx.take(len(data)):
            return
        yield from _expand(data, line, ctx, depth, via)


def _text_blob(data: bytes, ctx: Context, depth: int, via: str) -> Iterator[Piece]:
    for piece, line in _text_pieces(io.BytesIO(data).read):
        yield from _expand(piece, line, ctx, depth, via)


# The escapes undone in lines that have one worth undoing. The byte escapes (\\x, octal, percent) are undone only
# where they give an ASCII letter or digit: above 0x7F they are bytes of some encoding, not characters.
_ESCAPE = re.compile(r"\\u(?P<high>[dD][89abAB][0-9a-fA-F]{2})\\u(?P<low>[dD][c-fC-F][0-9a-fA-F]{2})"
                     r"|\\u(?P<u>[0-9a-fA-F]{4})|\\U(?P<U>[0-9a-fA-F]{8})|\\x(?P<x>[0-9a-fA-F]{2})"
                     r"|\\(?P<octal>[0-7]{3})|%(?P<percent>[0-9a-fA-F]{2})"
                     r"|&#(?P<decimal>[0-9]{1,7});?|&#[xX](?P<hex>[0-9a-fA-F]{1,6});?")
_BASE = {"u": 16, "U": 16, "x": 16, "octal": 8, "percent": 16, "decimal": 10, "hex": 16}
_BYTE_ESCAPES = {"x", "octal", "percent"}
_ALNUM = np.zeros(256, bool)
_ALNUM[list(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")] = True


def _letter_or_digit(codes: np.ndarray) -> np.ndarray:
    """Per code (-1: none): an ASCII letter or digit."""
    return (codes >= 0) & (codes < 0x80) & _ALNUM.take(codes & 0x7F)


def _suspect_escapes(b: np.ndarray) -> np.ndarray:
    """Offsets of the escapes that hide what folding and the word splitter must see. A text written as escapes letter
    by letter reads as plain text to whatever loads it (json.loads, a string literal, an HTML parser, a URL decoder),
    so every escape of an ASCII letter or digit counts: `\\uXXXX`, `\\UXXXXXXXX`, `\\xHH`, octal `\\NNN`,
    `%HH`; so do the `\\u` and `\\U` escapes of other characters that folding may change (all but inert ones;
    surrogates too: the halves of mathematical alphanumerics) and every HTML numeric character reference (`&#74;`).
    Found from the backslashes, percent signs and ampersands with numpy."""
    marks = _where_byte(b[:-3], lambda block: (block == 92) | (block == 37) | (block == 38))
    kinds = b.take(marks)
    after = b.take(marks + 1)
    found = [marks[(kinds == 38) & (after == ord("#"))]]
    slashes, after_slash = marks[kinds == 92], after[kinds == 92]
    for letter, skip, digits, base in ((ord("u"), 2, 4, 16), (ord("U"), 2, 8, 16), (ord("x"), 2, 2, 16)):
        at = slashes[(after_slash == letter) & (slashes < len(b) - skip - digits + 1)]
        codes = ngram.escaped_codes(b, at, skip, digits, base)
        suspect = _letter_or_digit(codes)
        if letter != ord("x"):  # a character: suspect unless inert (outside the BMP always, as 𝐚 is)
            foldable = (codes >= 0x80) & (codes <= 0x10FFFF)
            foldable[foldable] = ~inert().take(np.where(codes[foldable] < 0x10000, codes[foldable], 0))
            suspect |= foldable
        found.append(at[suspect])
    octal = slashes[(after_slash >= ord("0")) & (after_slash <= ord("3"))]
    codes = ngram.escaped_codes(b, octal, 1, 3, 8)
    found.append(octal[_letter_or_digit(codes)])
    percent = marks[kinds == 37]
    codes = ngram.escaped_codes(b, percent, 1, 2, 16)
    found.append(percent[_letter_or_digit(codes)])
    return np.unique(np.concatenate(found))


def _unescape(match: re.Match) -> str:
    name = match.lastgroup
    if name == "low":
        high, low = int(match.group("high"), 16), int(match.group("low"), 16)
        return chr(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))
    code = int(match.group(name), _BASE[name])
    # Other escapes stay: \\u000a must not add a line, lone surrogates are no characters; the word splitter reads
    # what stays as separators.
    if code < 0x80:
        return chr(code) if chr(code).isalnum() else match.group(0)
    if name in _BYTE_ESCAPES or 0xD800 <= code < 0xE000 or code > 0x10FFFF:
        return match.group(0)
    return chr(code)


def _folded(data: bytes) -> bytes:
    """The piece with its Unicode folded (`fold`) and, where escapes hide letters or characters that folding
    changes (`_suspect_escapes`), unescaped first; the same object when nothing changes. Only lines with such escapes or with characters that
    folding may change (not inert ones) are decoded to text, all of them in one string (folding never adds or
    removes a line break, and acts within lines), so a piece with many such lines costs a few passes of C code, not a
    few Python calls per line."""
    # One backslash, ampersand or percent sign is looked for first (memchr, stops at the first).
    b = np.frombuffer(data, np.uint8)
    escapes = _suspect_escapes(b) if b"\\" in data or b"&" in data or b"%" in data else np.zeros(0, np.int64)
    if not len(escapes) and data.isascii():
        return data
    escaped_lines = _lines_of(data, escapes)
    marked_lines = _lines_of(data, _foldable(b))
    if escaped_lines:
        taken = set(escaped_lines)
        marked_lines = [bounds for bounds in marked_lines if bounds not in taken]
    replaced: list[tuple[int, int, str]] = []
    for bounds, escaped in ((marked_lines, False), (escaped_lines, True)):
        if not bounds:
            continue
        texts = b"\n".join(data[start:end] for start, end in bounds).decode("utf-8", "replace")
        if escaped:
            texts = _ESCAPE.sub(_unescape, texts)
        folded = fold_whole(texts)
        if folded is texts and not escaped:
            continue
        # Escaped lines are always written back unescaped; others only where folding changed them.
        replaced += [(start, end, after) for (start, end), before, after
                     in zip(bounds, texts.split("\n"), folded.split("\n"), strict=True) if escaped or after != before]
    if not replaced:
        return data
    # Long stretches between the lines are joined from views (copied once, by the join); short ones as bytes, which
    # cost less per item where nearly every line changed.
    out, last, view = [], 0, memoryview(data)
    for start, end, text in sorted(replaced):
        out += [view[last:start] if start - last > 4096 else data[last:start], text.encode("utf-8", "replace")]
        last = end
    out.append(view[last:])
    return b"".join(out)


def _foldable(b: np.ndarray) -> np.ndarray:
    """Offsets of the non-ASCII bytes that folding may change: all but those of inert characters (`fold.inert`:
    accented letters, typographic quotes, most scripts), which in most text are nearly all of them."""
    high = _where_byte(b, lambda block: block >= 0x80)
    at, points = ngram.utf8_chars(b, high[b.take(high) >= 0xC2])
    at = at[inert().take(points)]
    if not len(at):
        return high
    drop = np.concatenate([at, at + 1, (at + 2)[b.take(at) >= 0xE0]])  # each with its continuation bytes
    keep = np.ones(len(high), bool)
    keep[np.searchsorted(high, drop)] = False
    return high[keep]


def _lines_of(data: bytes, offsets: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) of each line holding one of the (sorted) offsets, line break excluded, in order. Where the
    offsets are few (a few accented names in code), the lines are found around them: finding every line break of
    the piece costs more; where they are many (text in another script), from all line breaks at once."""
    if len(offsets) * 64 > len(data):
        ends = _where_byte(np.frombuffer(data, np.uint8), lambda block: block == 10)
        numbers = np.searchsorted(ends, offsets)
        numbers = numbers[np.r_[True, numbers[1:] != numbers[:-1]]]
        starts = np.concatenate(([0], ends + 1)).take(numbers)
        ends = np.concatenate((ends, [len(data)])).take(numbers)
        return list(zip(starts.tolist(), ends.tolist()))
    at_list, lines, i = offsets.tolist(), [], 0
    while i < len(at_list):
        at = at_list[i]
        start, end = data.rfind(b"\n", 0, at) + 1, data.find(b"\n", at)
        end = len(data) if end < 0 else end
        lines.append((start, end))
        i = bisect.bisect_right(at_list, end, i + 1)
    return lines


_SLICE = 1 << 20


def newlines(b: np.ndarray) -> int:
    """How many line breaks the bytes `b` hold: numpy a slice at a time is several times faster than bytes.count."""
    return sum(int(np.count_nonzero(b[lo : lo + _SLICE] == 10)) for lo in range(0, len(b), _SLICE))


def _where_byte(b: np.ndarray, test) -> np.ndarray:
    """Offsets of the bytes for which `test` (a numpy comparison) holds, a slice at a time: comparisons of a
    16 MB piece in one go run out of the CPU cache and page-fault on their fresh temporaries."""
    found = [np.flatnonzero(test(b[lo : lo + _SLICE])) + lo for lo in range(0, len(b), _SLICE)]
    return np.concatenate(found) if found else np.zeros(0, np.int64)


_STANDARD = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_SCREEN = bytes(1 if c in _STANDARD else 0 for c in range(256))
_ONES = np.uint64(0x0101010101010101)
_INSIDE = bytes(1 if c in _STANDARD + b"-_=" else 0 for c in range(256))
_HEX_DIGITS = b"0123456789abcdefABCDEF"
_HIGHS = np.uint64(0x8080808080808080)
_BELOW_PLUS = np.uint64(0x0101010101010101 * ord("+"))
_ID_LIST = re.compile(rb"\[\s*\d{1,7}(?:\s*,\s*\d{1,7}){15,}\s*\]")


def _expand(data: bytes, line: int, ctx: Context, depth: int, via: str) -> Iterator[Piece]:
    """A text piece as the matcher should see it, then whatever is encoded inside it."""
    folded = _folded(data)
    if folded is not data:
        data, via = folded, _join(via, "unicode folded")
    yield Piece(data, "line", line, via)
    if depth >= MAX_DEPTH:
        return
    # Decoded runs of plain text are scanned together (one layer for all of them), and so are small one-line JSON
    # objects (a .jsonl of base64 lines), apart from the plain ones; other formats one by one. In a joined layer the
    # evidence's "line k" is the k-th joined run of this piece (of its lines, for plain runs).
    texts: dict[tuple[str, bool], list[bytes]] = {}
    for kind, run in _encoded_runs(data):
        decoded = _decode_run(kind, run)
        if decoded is None or not _worth_decoding(decoded):
            continue
        if _is_plain(decoded):
            texts.setdefault((kind, False), []).append(decoded)
        elif _is_json_line(decoded):
            texts.setdefault((kind, True), []).append(decoded)
        else:
            yield from _member(decoded, ctx, depth, _join(via, kind), "")
    for (kind, _), runs in texts.items():
        yield from _member(b"\n".join(runs), ctx, depth, _join(via, kind), "")
    if ctx.detokenizer is not None and b"[" in data:
        rows = [[int(v) for v in re.findall(rb"\d+", m.group(0))] for m in _ID_LIST.finditer(data)]
        decoded = ctx.detokenizer.decode_rows(rows) if rows else None
        if decoded is not None:
            ctx.formats.add("token ids")
            yield Piece(decoded.encode(), "line", line, _join(via, "token ids"))


def _encoded_runs(data: bytes) -> Iterator[tuple[str, bytes]]:
    """Runs of at least MIN_RUN base64 (or hex) characters. Such a run covers a whole aligned block of MIN_RUN / 2
    bytes, so text without such a block (most text) is passed over after one look at its blocks."""
    end = 0
    for block_start in _screened_blocks(data, MIN_RUN // 2).tolist():
        if block_start < end:
            continue  # inside the run found last
        start, end = _run_edge(data, block_start, -1), _run_edge(data, block_start + MIN_RUN // 2, 1)
        if end - start >= MIN_RUN:
            run = data[start:end]
            yield ("hex" if not run.translate(None, _HEX_DIGITS) else "base64"), run


def _screened_blocks(data: bytes, block: int) -> np.ndarray:
    """Offsets of the aligned blocks of `block` bytes (a multiple of 8) made of the standard base64 alphabet only.
    The screen leaves the URL-safe '-' and '_' out: snake_case names are not base64, and a URL-safe run this long
    nearly always has a block without them. A block with a byte below '+' (a space, a line break, a quote) cannot
    qualify, which takes three integer operations per eight bytes to tell ((x - n) & ~x has the high bit of a byte
    set where a byte is below n, and perhaps above it); only the few blocks that pass are looked at byte by byte.
    A slice at a time, so that the temporaries stay in the CPU cache."""
    width = block // 8
    words = np.frombuffer(data, "<u8", count=len(data) // block * width)
    step = width << 15
    maybe = []
    for lo in range(0, len(words), step):
        w = words[lo : lo + step]
        x = w - _BELOW_PLUS
        x &= ~w
        x = x.reshape(-1, width)
        bad = x[:, 0].copy()
        for column in range(1, width):
            bad |= x[:, column]
        bad &= _HIGHS
        maybe.append(np.flatnonzero(bad == 0) + lo // width)
    number = np.concatenate(maybe) if maybe else np.zeros(0, np.int64)
    if not len(number):
        return number
    # The blocks that passed, copied whole rows at a time, their bytes mapped to 1 (in the alphabet) or 0 in one
    # pass of C: a block qualifies where all its 8-byte words are all ones.
    rows = np.frombuffer(data, np.uint8, count=len(data) // block * block).reshape(-1, block)
    marks = np.frombuffer(rows.take(number, axis=0).tobytes().translate(_SCREEN), "<u8").reshape(-1, width)
    return number[(marks == _ONES).all(axis=1)] * block


def _run_edge(data: bytes, at: int, step: int) -> int:
    """Where the run of base64 characters (URL-safe and padding included) around `at` ends going left (step -1:
    its first index) or right (its end)."""
    reach = 256
    while True:
        if step < 0:
            low = max(at - reach, 0)
            outside = data[low:at].translate(_INSIDE).rfind(b"\0")
            if outside >= 0:
                return low + outside + 1
            if low == 0:
                return 0
        else:
            outside = data[at : at + reach].translate(_INSIDE).find(b"\0")
            if outside >= 0:
                return at + outside
            if at + reach >= len(data):
                return len(data)
        reach *= 4


def _decode_run(kind: str, run: bytes) -> bytes | None:
    import base64
    import binascii

    try:
        if kind == "hex":
            return bytes.fromhex(run[: len(run) // 2 * 2].decode())
        run = run.rstrip(b"=")
        if len(run) % 4 == 1:  # not base64 at this length; a character too many
            run = run[:-1]
        run += b"=" * (-len(run) % 4)
        if b"-" in run or b"_" in run:
            return base64.urlsafe_b64decode(run)
        return base64.b64decode(run)
    except (ValueError, binascii.Error):
        return None


def _is_plain(data: bytes) -> bool:
    head = data[:8192]
    return not (head.startswith(_ZIP) or head.startswith(tuple(_STREAMS)) or _is_pickle(head)
                or head.lstrip().startswith(b"{") or _wide_encoding(head) is not None)


JSON_LINE_CAP = 64 << 10  # joining saves a layer's fixed cost (tens of µs), which larger runs amortise anyway


def _is_json_line(data: bytes) -> bool:
    """A small one-line JSON object that decode() would read as text whether alone or first of several lines: no
    zero byte (binary), not an agent transcript line, nothing an inspect log's test looks at ('"eval"')."""
    return (len(data) <= JSON_LINE_CAP and data.lstrip().startswith(b"{") and b"\n" not in data
            and b"\0" not in data and b'"eval"' not in data and not _is_transcript_line(_json_or_none(data)))


_LETTERS = bytes(range(0x80, 0x100)) + b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"  # and non-ASCII
_TEXT_BYTES = _LETTERS + bytes(range(0x20, 0x7F)) + b"\t\n\r"


def _share(data: bytes, among: bytes) -> float:
    """Share of the bytes of `data` that are among the bytes `among` (bytes.translate deletes them, in C)."""
    return (len(data) - len(data.translate(None, among))) / len(data)


def _worth_decoding(data: bytes) -> bool:
    """Text, or a format decode() reads; not the random bytes of hashes and keys."""
    head = data[:8192]
    if head.startswith(_ZIP) or head.startswith(tuple(_STREAMS)) or _is_pickle(head):
        return True
    if len(head) < 16 or _share(head, _TEXT_BYTES) < 0.97 or _share(head, _LETTERS) < 0.3:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start >= len(head) - 4  # a character cut at the end of the head
    return True
