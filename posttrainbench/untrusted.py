"""The boundary between the harness and what the agent made.

Everything under a run's task/ and home/ (and every copy of it) was made by an adversary: its links, names, sizes,
holes and contents. The harness reads, copies, writes and shows such things only through this module:

- paths are walked from a harness-owned folder (`root`) one component at a time through folder descriptors, with
  O_NOFOLLOW on each: a symbolic link anywhere below `root`, the last component included, is refused, never
  followed. Relative names stay short (one component per system call), so no agent-made path is too long.
- reads and walks have caps (bytes, files, depth); JSON has a size and a nesting cap.
- copies keep holes as holes, so a sparse file cannot fill the host's disk, and are capped by apparent size.
- harness files written into agent-writable folders replace whatever is there (a link is replaced, not followed).
- text for a terminal, a log line or rich markup goes through `clean_text` / `escape_text`.

A violation raises `Refused` (a PtbError: one clear line), so callers decide what it means for the run.
"""

import errno
import hashlib
import json
import os
import re
import secrets
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal

from rich.markup import escape as _rich_escape

from posttrainbench.errors import PtbError

MAX_READ = 64 << 20  # read_bytes / read_text default
MAX_JSON = 16 << 20
MAX_JSON_DEPTH = 64
SHOWN_NAME = 200  # characters of an agent-made name shown in a message

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a planted FIFO must not hang the harness (it is then refused as not a regular file).
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_COPY_CHUNK = 1 << 20


class Refused(PtbError):
    """An agent-made file or name that the harness will not follow, read or copy."""


@dataclass(frozen=True)
class Caps:
    """Limits of a walk or a copy. `files` counts every entry (files, folders, links)."""

    files: int = 200_000
    depth: int = 64
    bytes: int = 1 << 40  # sum of the apparent sizes (st_size) of regular files


# For passes over a whole run directory (redaction, integrity scans): wide enough for an agent's caches.
SCAN_CAPS = Caps(files=10_000_000, depth=256, bytes=1 << 60)


@dataclass(frozen=True)
class Entry:
    rel: str  # '/'-joined path below the walked folder; agent-chosen: show it only through clean/escape_text
    kind: Literal["file", "dir", "link", "other"]
    size: int  # st_size
    allocated: int  # st_blocks * 512: what it takes on disk
    depth: int  # 1 for the walked folder's own entries


# --- display -------------------------------------------------------------------------------------------------

# CSI, OSC (ended by BEL or ST), DCS/SOS/PM/APC strings, and two/three-byte ESC sequences.
_ESCAPE_SEQUENCE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]?"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"
    r"|\x1b[ -/]*[0-~]?"
)
# C0 and C1 controls, DEL, bidirectional overrides and isolates (they reorder what follows them on screen), and
# lone surrogates (undecodable bytes of a file name: printing one raises UnicodeEncodeError).
_INVISIBLE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def clean_text(text: object, *, limit: int | None = None, newlines: bool = False) -> str:
    """`text` safe for a terminal, a log line or a file: escape sequences removed, tabs kept, line breaks kept
    only with `newlines` (else a space), other controls and bidi overrides shown as U+FFFD; at most `limit`
    characters (then ending in '…')."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    text = _ESCAPE_SEQUENCE.sub("", str(text))

    def replace(match: re.Match) -> str:
        char = match.group()
        if char == "\t" or (newlines and char == "\n"):
            return char
        return " " if char in "\r\n" else "\ufffd"

    text = _INVISIBLE.sub(replace, text)
    if limit is not None and len(text) > limit:
        text = text[: max(limit - 1, 0)] + "…"
    return text


def escape_text(text: object, *, limit: int | None = None, newlines: bool = False) -> str:
    """`clean_text`, then escaped for rich markup: what goes into console.print(...) with markup on."""
    return _rich_escape(clean_text(text, limit=limit, newlines=newlines))


def shown(rel: object) -> str:
    """An agent-made name, cleaned and shortened for a message."""
    return clean_text(rel, limit=SHOWN_NAME)


# --- opening ---------------------------------------------------------------------------------------------------


def _parts(rel: str | Path) -> list[str]:
    parts = [p for p in str(rel).split("/") if p not in ("", ".")]
    if ".." in parts:
        raise Refused(f"{shown(rel)}: '..' in a path")
    return parts


def _open_at(name: str, flags: int, dir_fd: int, rel: str) -> int:
    try:
        return os.open(name, flags, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
            try:
                is_link = stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
            except OSError:
                is_link = False
            raise Refused(f"{shown(rel)} is {'a symbolic link' if is_link else 'not a folder'}") from None
        if exc.errno == errno.ENAMETOOLONG:
            raise FileNotFoundError(errno.ENOENT, "name too long", shown(rel)) from None
        raise


def open_dir(root: Path, rel: str | Path = "") -> int:
    """A descriptor of the folder root/rel (the caller closes it). `root` is the harness's own folder; below it no
    link is followed, `rel`'s last component included. Raises Refused or FileNotFoundError."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    done: list[str] = []
    try:
        for part in _parts(rel):
            done.append(part)
            new = _open_at(part, _DIR, fd, "/".join(done))
            os.close(fd)
            fd = new
    except BaseException:
        os.close(fd)
        raise
    return fd


def _split(rel: str | Path) -> tuple[str, str]:
    parts = _parts(rel)
    if not parts:
        raise Refused("an empty file name")
    return "/".join(parts[:-1]), parts[-1]


def open_file(root: Path, rel: str | Path) -> BinaryIO:
    """root/rel opened for reading, no link followed below `root`; only a regular file is opened."""
    folder, name = _split(rel)
    dir_fd = open_dir(root, folder)
    try:
        fd = _open_at(name, _FILE, dir_fd, str(rel))
    finally:
        os.close(dir_fd)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise Refused(f"{shown(rel)} is not a regular file")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def lstat(root: Path, rel: str | Path) -> os.stat_result:
    """Status of root/rel itself (a link is not followed); the folders on the way are opened without following."""
    folder, name = _split(rel)
    dir_fd = open_dir(root, folder)
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            raise FileNotFoundError(errno.ENOENT, "name too long", shown(rel)) from None
        raise
    finally:
        os.close(dir_fd)


def is_file(root: Path, rel: str | Path) -> bool:
    """Whether root/rel is a regular file reached without links."""
    try:
        return stat.S_ISREG(lstat(root, rel).st_mode)
    except (OSError, Refused):
        return False


def is_dir(root: Path, rel: str | Path = "") -> bool:
    """Whether root/rel is a folder reached without links."""
    try:
        os.close(open_dir(root, rel))
        return True
    except (OSError, Refused):
        return False


def read_bytes(root: Path, rel: str | Path, *, limit: int = MAX_READ) -> bytes:
    with open_file(root, rel) as handle:
        if os.fstat(handle.fileno()).st_size > limit:
            raise Refused(f"{shown(rel)} is larger than {limit} bytes")
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise Refused(f"{shown(rel)} is larger than {limit} bytes")
    return data


def read_text(root: Path, rel: str | Path, *, limit: int = MAX_READ) -> str:
    """The file as text; undecodable bytes become U+FFFD."""
    return read_bytes(root, rel, limit=limit).decode("utf-8", "replace")


def sha256(root: Path, rel: str | Path) -> str:
    """sha256 of root/rel, read without following links."""
    digest = hashlib.sha256()
    with open_file(root, rel) as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def parse_json(data: bytes | str, *, name: str = "JSON", max_depth: int = MAX_JSON_DEPTH) -> Any:
    """JSON of agent-made text, nested at most `max_depth` deep; anything else raises Refused."""
    try:
        value = json.loads(data)
    except RecursionError:
        raise Refused(f"{shown(name)} is nested deeper than {max_depth} levels") from None
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError, and over-long integers
        raise Refused(f"{shown(name)} is not valid JSON: {clean_text(exc, limit=SHOWN_NAME)}") from None
    if _depth(value) > max_depth:
        raise Refused(f"{shown(name)} is nested deeper than {max_depth} levels")
    return value


def read_json(root: Path, rel: str | Path, *, limit: int = MAX_JSON, max_depth: int = MAX_JSON_DEPTH) -> Any:
    return parse_json(read_bytes(root, rel, limit=limit), name=str(rel), max_depth=max_depth)


# --- walking ---------------------------------------------------------------------------------------------------


def _kind(mode: int) -> Literal["file", "dir", "link", "other"]:
    if stat.S_ISLNK(mode):
        return "link"
    if stat.S_ISDIR(mode):
        return "dir"
    return "file" if stat.S_ISREG(mode) else "other"


def walk(root: Path, rel: str | Path = "", *, caps: Caps = Caps(), prune: Callable[[Entry], bool] | None = None,
         on_cap: Callable[[str], None] | None = None) -> Iterator[Entry]:
    """Every entry below root/rel, depth first in name order, links reported (kind "link") and never followed.

    `prune(entry)` True: a folder is not entered. A cap reached raises Refused, or, with `on_cap`, is reported to
    it and the walk goes on without the too-deep folder / stops at the file or byte cap."""
    top = open_dir(root, rel)
    counted = {"files": 0, "bytes": 0, "stop": False}
    prefix = "/".join(_parts(rel))

    def capped(message: str) -> None:
        if on_cap is None:
            raise Refused(f"{shown(prefix or root.name)}: {message}")
        on_cap(message)

    def entries(fd: int, here: str, depth: int) -> Iterator[Entry]:
        names = []
        with os.scandir(fd) as listing:
            for item in listing:
                counted["files"] += 1
                if counted["files"] > caps.files:
                    capped(f"more than {caps.files} files")
                    counted["stop"] = True
                    return
                names.append(item.name)
        for name in sorted(names):
            try:
                info = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            entry = Entry(f"{here}/{name}" if here else name, _kind(info.st_mode), info.st_size,
                          info.st_blocks * 512, depth)
            if entry.kind == "file":
                counted["bytes"] += entry.size
                if counted["bytes"] > caps.bytes:
                    capped(f"more than {caps.bytes} bytes")
                    counted["stop"] = True
                    return
            yield entry
            if entry.kind != "dir" or (prune is not None and prune(entry)):
                continue
            if depth >= caps.depth:
                capped(f"{shown(entry.rel)}: folders nested deeper than {caps.depth}")
                continue
            try:
                child = _open_at(name, _DIR, fd, entry.rel)
            except (Refused, FileNotFoundError):
                continue  # replaced since it was listed
            try:
                yield from entries(child, entry.rel, depth + 1)
            finally:
                os.close(child)
            if counted["stop"]:
                return

    try:
        yield from entries(top, "", 1)
    finally:
        os.close(top)


# --- copying ---------------------------------------------------------------------------------------------------


def _data_ranges(fd: int, size: int) -> list[tuple[int, int]]:
    """(start, end) of the parts of the file that hold data, as the filesystem reports its holes."""
    ranges, offset = [], 0
    while offset < size:
        try:
            start = os.lseek(fd, offset, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # only a hole is left
                break
            if exc.errno in (errno.EINVAL, errno.EOPNOTSUPP):
                return [(0, size)]
            raise
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        ranges.append((start, end))
        offset = end
    return ranges


def _copy_range(source: int, target: int, start: int, end: int) -> None:
    """The kernel's copy (a reflink where the filesystem can), read and write where it cannot."""
    position = start
    while position < end:
        try:
            copied = os.copy_file_range(source, target, end - position, position, position)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                raise
            _copy_skipping_zeros(source, target, position, end)
            return
        if copied == 0:  # the file shrank while copying
            return
        position += copied


def _copy_skipping_zeros(source: int, target: int, start: int, end: int) -> None:
    position = start
    while position < end:
        block = os.pread(source, min(_COPY_CHUNK, end - position), position)
        if not block:
            return
        if block.count(0) != len(block):
            os.pwrite(target, block, position)
        position += len(block)


def _copy_sparse(source: int, target: int, size: int, allocated: int) -> None:
    """Copy `source` into `target` keeping its holes. On a filesystem that does not report holes, a file that
    takes far less disk than its size is read block by block and its all-zero blocks become holes."""
    ranges = _data_ranges(source, size)
    if sum(end - start for start, end in ranges) > 2 * allocated + (1 << 20):
        for start, end in ranges:
            _copy_skipping_zeros(source, target, start, end)
    else:
        for start, end in ranges:
            _copy_range(source, target, start, end)
    os.ftruncate(target, size)


def copy_file(root: Path, rel: str | Path, dest: Path, *, limit: int = Caps.bytes) -> int:
    """Copy root/rel (no link followed) to the harness path `dest`, holes kept as holes; returns its size."""
    with open_file(root, rel) as handle:
        info = os.fstat(handle.fileno())
        if info.st_size > limit:
            raise Refused(f"{shown(rel)} is larger than {limit} bytes")
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            _copy_sparse(handle.fileno(), fd, info.st_size, info.st_blocks * 512)
        finally:
            os.close(fd)
    return info.st_size


def copy_tree(root: Path, rel: str | Path, dest: Path, *, caps: Caps = Caps(),
              select: Callable[[Entry], bool] | None = None) -> list[Entry]:
    """Copy the folder root/rel to the new harness folder `dest`: the folder itself and everything in it reached
    without links; any link or special file in it is refused, as is a tree over `caps`. `select(entry)` False
    leaves a file or folder out (it is still checked). Returns the files copied."""
    entries = list(walk(root, rel, caps=caps))
    for entry in entries:
        if entry.kind in ("link", "other"):
            raise Refused(f"{shown(rel)} contains {'a symbolic link' if entry.kind == 'link' else 'a special file'}: "
                          f"{shown(entry.rel)}")
    dest.mkdir(parents=True)
    copied, left_out = [], []
    for entry in entries:
        if any(entry.rel.startswith(folder + "/") for folder in left_out) or (select and not select(entry)):
            if entry.kind == "dir":
                left_out.append(entry.rel)
            continue
        target = dest / entry.rel
        try:
            if entry.kind == "dir":
                target.mkdir()
            else:
                copy_file(root, f"{rel}/{entry.rel}", target, limit=caps.bytes)
                copied.append(entry)
        except OSError as exc:
            if exc.errno != errno.ENAMETOOLONG:
                raise
            raise Refused(f"{shown(rel)} contains a path too long to copy: {shown(entry.rel)}") from None
    return copied


# --- writing into agent-writable folders -------------------------------------------------------------------------


def _move_aside(name: str, dir_fd: int) -> None:
    os.rename(name, f"{name}.moved-by-ptb-{secrets.token_hex(4)}", src_dir_fd=dir_fd, dst_dir_fd=dir_fd)


def _real_dir(name: str, dir_fd: int) -> int:
    """The folder `name` in dir_fd, made a real one if the agent put a link or a file there (moved aside)."""
    try:
        return os.open(name, _DIR, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
        _move_aside(name, dir_fd)
    os.mkdir(name, 0o755, dir_fd=dir_fd)
    return os.open(name, _DIR, dir_fd=dir_fd)


def write_file(root: Path, rel: str | Path, data: bytes | str, *, mode: int = 0o644) -> None:
    """Write a harness file at root/rel, inside a folder the agent can write: links or files where folders should
    be, and a folder where the file should be, are moved aside; the file is written under a fresh name and renamed
    over whatever is at rel (a planted link is replaced, never followed)."""
    folder, name = _split(rel)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in _parts(folder):
            new = _real_dir(part, fd)
            os.close(fd)
            fd = new
        try:
            if stat.S_ISDIR(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode):
                _move_aside(name, fd)
        except FileNotFoundError:
            pass
        temp = f".{name[:200]}.ptb-{secrets.token_hex(6)}"
        out = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=fd)
        try:
            with os.fdopen(out, "wb") as handle:
                handle.write(data.encode() if isinstance(data, str) else data)
            os.rename(temp, name, src_dir_fd=fd, dst_dir_fd=fd)
        except BaseException:
            try:
                os.unlink(temp, dir_fd=fd)
            except OSError:
                pass
            raise
    finally:
        os.close(fd)
