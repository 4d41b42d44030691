"""Memory, process, CPU and disk limits of one sandbox, and how to tell that one was hit.

Memory, processes and CPU go through a cgroup made for the sandbox: cgroup v2 where the host's controllers live
there, else the v1 hierarchies of memory, pids and cpu (hybrid hosts). Where no cgroup can be made (a non-root
harness without a delegated subtree) the harness polls the sandbox's process tree instead, and with a dedicated
sandbox uid RLIMIT_NPROC bounds the processes in the kernel. CPU has no fallback: it is a rate, not a stop.

Disk: the harness sums the blocks allocated under the writable mounts (hard links once, links never followed) every
DISK_POLL_S (longer when the walk is slow), and RLIMIT_FSIZE keeps any single file under the quota in the kernel.
Between two polls the agent can overshoot by what it writes in that time; the quota is then enforced at the next.
"""

import logging
import os
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import psutil

from posttrainbench.sandbox.tree import TooDeep, walk
from posttrainbench.specs.limits import SandboxLimits

log = logging.getLogger(__name__)

Kind = Literal["memory", "pids", "disk"]
DISK_POLL_S = 10.0
CPU_PERIOD_US = 100_000
_GIB = 1 << 30


@dataclass
class _Group:
    """One cgroup folder (v2, or one v1 hierarchy) with the limit files it got."""

    path: Path
    version: int
    controllers: set[str]

    def write(self, name: str, value: str) -> None:
        (self.path / name).write_text(value)

    def counter(self, file: str, key: str) -> int:
        try:
            for line in (self.path / file).read_text().splitlines():
                parts = line.split()
                if len(parts) == 2 and parts[0] == key:
                    return int(parts[1])
        except OSError:
            pass
        return 0


def _mounts() -> list[tuple[str, str, set[str]]]:
    """(fstype, mount point, options) of the cgroup file systems, from /proc/self/mountinfo."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(tail) >= 3 and tail[0] in ("cgroup", "cgroup2") and fields[3] == "/":
            found.append((tail[0], fields[4], set(tail[2].split(","))))
    return found


def _own_paths() -> dict[str, str]:
    """controller (or "" for v2) -> this process's cgroup path, from /proc/self/cgroup."""
    paths = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for name in controllers.split(",") if controllers else [""]:
            paths[name] = path
    return paths


def _make_v2(name: str, wanted: set[str]) -> _Group | None:
    own = _own_paths().get("")
    for fstype, point, _ in _mounts():
        if fstype != "cgroup2" or own is None:
            continue
        available = set((Path(point) / "cgroup.controllers").read_text().split())
        if not wanted <= available:
            continue
        # Under our own group when it may hold children with controllers, else under the root (root only).
        for parent in (Path(point + own.rstrip("/")), Path(point)):
            try:
                enabled = set((parent / "cgroup.subtree_control").read_text().split())
                if not wanted <= enabled:
                    (parent / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in wanted - enabled))
                path = parent / name
                path.mkdir()
                return _Group(path, 2, set(wanted))
            except OSError:
                continue
    return None


def _make_v1(name: str, wanted: set[str]) -> list[_Group]:
    own = _own_paths()
    groups = []
    for fstype, point, options in _mounts():
        controllers = (options & wanted) - {g for group in groups for g in group.controllers}
        if fstype != "cgroup" or not controllers or next(iter(controllers)) not in own:
            continue
        path = Path(point + own[next(iter(controllers))].rstrip("/")) / name
        try:
            path.mkdir()
        except OSError:
            continue
        groups.append(_Group(path, 1, controllers))
    return groups


@dataclass
class LimitGuard:
    """The limits of one sandbox while it runs: what the launcher must do, and whether a limit was hit."""

    limits: SandboxLimits
    writable: list[Path]
    dedicated_uid: bool  # the sandbox runs as a uid of its own (the harness is root)
    groups: list[_Group] = field(default_factory=list)
    _root_pid: int | None = None
    _next_disk: float = 0.0

    def setup(self) -> None:
        wanted = {c for c, v in (("memory", self.limits.memory_gb), ("pids", self.limits.pids),
                                 ("cpu", self.limits.cpus)) if v is not None}
        if not wanted:
            return
        name = f"ptb-sandbox-{secrets.token_hex(6)}"
        group = _make_v2(name, wanted)
        self.groups = [group] if group is not None else _make_v1(name, wanted)
        try:
            for group in self.groups:
                self._configure(group)
        except OSError:
            self.close()
            raise
        missing = wanted - {c for g in self.groups for c in g.controllers}
        if missing:
            log.info("no cgroup for %s: the harness polls the sandbox's processes instead", ", ".join(sorted(missing)))

    def _configure(self, group: _Group) -> None:
        memory = int(self.limits.memory_gb * _GIB) if self.limits.memory_gb else None
        cpu_quota = int(self.limits.cpus * CPU_PERIOD_US) if self.limits.cpus else None
        if group.version == 2:
            if memory and "memory" in group.controllers:
                group.write("memory.max", str(memory))
                if (group.path / "memory.swap.max").exists():
                    group.write("memory.swap.max", "0")
            if self.limits.pids and "pids" in group.controllers:
                group.write("pids.max", str(self.limits.pids))
            if cpu_quota and "cpu" in group.controllers:
                group.write("cpu.max", f"{cpu_quota} {CPU_PERIOD_US}")
            return
        if memory and "memory" in group.controllers:
            group.write("memory.limit_in_bytes", str(memory))
            if (group.path / "memory.memsw.limit_in_bytes").exists():
                group.write("memory.memsw.limit_in_bytes", str(memory))
        if self.limits.pids and "pids" in group.controllers:
            group.write("pids.max", str(self.limits.pids))
        if cpu_quota and "cpu" in group.controllers:
            group.write("cpu.cfs_period_us", str(CPU_PERIOD_US))
            group.write("cpu.cfs_quota_us", str(cpu_quota))

    def _has(self, controller: str) -> bool:
        return any(controller in g.controllers for g in self.groups)

    def procs_files(self) -> list[str]:
        return [str(g.path / "cgroup.procs") for g in self.groups]

    def rlimits(self) -> list[tuple[str, int]]:
        out = [("RLIMIT_CORE", 0)]
        if self.limits.disk_gb:
            out.append(("RLIMIT_FSIZE", int(self.limits.disk_gb * _GIB)))
        if self.limits.pids and self.dedicated_uid and not self._has("pids"):
            out.append(("RLIMIT_NPROC", self.limits.pids))
        return out

    def started(self, pid: int) -> None:
        self._root_pid = pid
        self._next_disk = time.monotonic() + DISK_POLL_S

    def exceeded(self, *, final: bool = False) -> tuple[Kind, str] | None:
        """The limit that was hit and a line about it, or None; `final` (the sandbox has ended) always measures the
        disk."""
        for group in self.groups:
            if "memory" in group.controllers:
                kills = group.counter("memory.events" if group.version == 2 else "memory.oom_control", "oom_kill")
                if kills:
                    return "memory", f"the kernel killed {kills} process(es) at the {self.limits.memory_gb:g} GB limit"
            if "pids" in group.controllers and group.counter("pids.events", "max"):
                return "pids", f"a new process or thread was refused at the {self.limits.pids} limit"
        polled = self._poll_tree()
        if polled:
            return polled
        if self.limits.disk_gb and (final or time.monotonic() >= self._next_disk):
            started = time.monotonic()
            try:
                used = disk_usage(self.writable)
            except TooDeep as error:
                return "disk", f"cannot measure what the agent wrote: {error}"  # fail closed
            # A walk of a big home (pip and HF caches) costs a core for seconds: keep it under a tenth of one.
            self._next_disk = time.monotonic() + max(DISK_POLL_S, 10 * (time.monotonic() - started))
            # RLIMIT_FSIZE stops a single file at the limit itself, so reaching it counts.
            if used >= self.limits.disk_gb * _GIB:
                return "disk", f"{used / _GIB:.3g} GB written, at or over the {self.limits.disk_gb:g} GB limit"
        return None

    def _poll_tree(self) -> tuple[Kind, str] | None:
        need_memory = self.limits.memory_gb and not self._has("memory")
        need_pids = self.limits.pids and not self._has("pids")
        if self._root_pid is None or not (need_memory or need_pids):
            return None
        try:
            tree = psutil.Process(self._root_pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return None
        rss, threads = 0, 0
        for process in tree:
            try:
                rss += process.memory_info().rss
                threads += process.num_threads()
            except psutil.Error:
                continue
        if need_memory and rss > self.limits.memory_gb * _GIB:
            return "memory", f"the processes used {rss / _GIB:.1f} GB, over the {self.limits.memory_gb:g} GB limit"
        if need_pids and threads > self.limits.pids:
            return "pids", f"{threads} processes and threads, over the {self.limits.pids} limit"
        return None

    def close(self) -> None:
        """Remove the cgroups (their processes are gone or going: the sandbox's pid namespace died with it)."""
        for group in self.groups:
            kill = group.path / "cgroup.kill"
            for _ in range(50):
                try:
                    if kill.exists():
                        kill.write_text("1")
                    group.path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.1)
            else:
                log.warning("could not remove the cgroup %s", group.path)
        self.groups = []


def disk_usage(roots: Iterable[Path]) -> int:
    """Bytes allocated under `roots`: sparse files count what they hold, hard links once, links are not followed.
    Raises TooDeep for folders nested too deep to measure."""
    seen: set[tuple[int, int]] = set()
    total = 0

    def count(dir_fd: int, name: str, st: os.stat_result) -> None:
        nonlocal total
        if (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            total += st.st_blocks * 512

    for root in roots:
        walk(str(root), count)
    return total
