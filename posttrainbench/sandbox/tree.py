"""Walking a folder the agent wrote, as the harness (often root) must: relative to open directory fds, never
following a link, so no path is ever too long to reach and no link leads out of the folder."""

import os
import stat
from collections.abc import Callable

# Deeper nesting is refused rather than walked: every level holds one open fd.
MAX_DEPTH = 256
_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class TooDeep(Exception):
    pass


def walk(root: str, visit: Callable[[int, str, os.stat_result], None]) -> None:
    """Call `visit(dir_fd, name, lstat)` for `root` (dir_fd -1, its path as the name) and every entry below it.
    Entries that vanish or cannot be read are skipped; nesting past MAX_DEPTH raises TooDeep."""
    try:
        st = os.lstat(root)
    except OSError:
        return
    visit(-1, root, st)
    if stat.S_ISDIR(st.st_mode):
        try:
            fd = os.open(root, _OPEN_DIR)
        except OSError:
            return
        _walk(fd, 1, visit)


def _walk(fd: int, depth: int, visit: Callable[[int, str, os.stat_result], None]) -> None:
    try:
        with os.scandir(fd) as entries:
            listed = list(entries)
        for entry in listed:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            visit(fd, entry.name, st)
            if stat.S_ISDIR(st.st_mode):
                if depth >= MAX_DEPTH:
                    raise TooDeep(f"folders nested deeper than {MAX_DEPTH} levels")
                try:
                    child = os.open(entry.name, _OPEN_DIR, dir_fd=fd)
                except OSError:
                    continue
                _walk(child, depth + 1, visit)
    except OSError:
        pass
    finally:
        os.close(fd)
