"""The command that starts one hardened bwrap sandbox, whoever runs the harness.

bwrap started by root keeps every capability and makes no user namespace, so a root harness first drops to a uid
of the sandbox's own (launcher.py): bwrap then runs unprivileged, in a user namespace, with all capabilities
dropped, no_new_privs and the seccomp filter of seccomp.py. The writable mounts are given to that uid; everything
else it sees stays owned by others and read-only. A non-root harness runs bwrap as itself, with the same flags.

Where unprivileged user namespaces are forbidden (a sysctl, AppArmor), a root harness cannot take that route: bwrap
then runs as root, and the sandbox's first program is setpriv, which drops to the sandbox uid with no
capabilities, no bounding set and no_new_privs before the agent's program starts; the seccomp filter is the same.
"""

import functools
import hashlib
import json
import os
import secrets
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from posttrainbench.errors import PtbError
from posttrainbench.sandbox import seccomp
from posttrainbench.sandbox.bwrap import SETPRIV, bwrap_argv, find_bwrap
from posttrainbench.sandbox.limits import LimitGuard
from posttrainbench.sandbox.request import Mount, SandboxRequest
from posttrainbench.sandbox.tree import TooDeep, walk
from posttrainbench.specs.limits import SandboxLimits

# Sandbox uids: far above any real account's (no passwd entry is needed), one per set of writable folders, so the
# sessions of a run share one and two runs never do.
UID_BASE = 2_000_000_000
UID_SPAN = 100_000_000
# Where the launcher stages mount sources for the unprivileged bwrap: a tmpfs mounted over it in the launcher's own
# mount namespace, so nothing appears there on the host. Any folder every uid can reach works.
STAGE = "/dev/shm"
LAUNCHER = str(Path(__file__).with_name("launcher.py"))


@dataclass
class Confined:
    """A started-to-be sandbox: Popen `argv` with `pass_fds` (plus the caller's own); `guard` watches its limits."""

    argv: list[str]
    pass_fds: tuple[int, ...]
    guard: LimitGuard
    uid: int | None

    def close(self) -> None:
        for fd in self.pass_fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self.pass_fds = ()
        self.guard.close()


def sandbox_uid(request: SandboxRequest) -> int:
    writable = sorted(str(m.source) for m in request.mounts if m.writable)
    if request.identity is not None:
        key = request.identity.encode()
    else:
        key = "\0".join(writable).encode() if writable else secrets.token_bytes(16)
    return UID_BASE + int.from_bytes(hashlib.sha256(key).digest()[:8], "big") % UID_SPAN


def confine(request: SandboxRequest, limits: SandboxLimits | None, *, no_spawn: bool = False,
            status_fd: int | None = None) -> Confined:
    """Prepare `request` to run hardened; `no_spawn` also denies new processes and threads (seccomp); bwrap reports
    its JSON status on `status_fd` when given."""
    if not seccomp.supported():
        raise PtbError("the sandbox's seccomp filter exists for x86_64 and aarch64 only")
    bwrap = find_bwrap()
    root = os.geteuid() == 0
    uid = sandbox_uid(request) if root else None
    if uid is not None:
        give_to(request.mounts, uid)
    # Root on a host without unprivileged user namespaces: bwrap stays root, setpriv drops inside (bwrap.py).
    inside_drop = uid is not None and not userns_available()
    writable = [Path(m.source) for m in request.mounts if m.writable]
    guard = LimitGuard(limits or SandboxLimits(memory_gb=None, pids=None, disk_gb=None), writable, root)
    guard.setup()
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, seccomp.sandbox_filter(no_spawn=no_spawn, nested=request.allow_nested))
        staged = root and not inside_drop
        sources = [f"{STAGE}/{i}" for i in range(len(request.mounts))] if staged else None
        spec = {
            "cgroups": guard.procs_files(),
            "rlimits": guard.rlimits(),
            "stage": STAGE if staged else None,
            "binds": [[str(m.source), str(i), m.writable] for i, m in enumerate(request.mounts)],
            "uid": None if inside_drop else uid,
            "gid": None if inside_drop else uid,
            "argv": bwrap_argv(request, bwrap=bwrap, sources=sources, seccomp_fd=read_end, status_fd=status_fd,
                               setpriv_uid=uid if inside_drop else None),
        }
    except BaseException:
        os.close(read_end)
        guard.close()
        raise
    finally:
        os.close(write_end)
    argv = [sys.executable, "-I", "-S", LAUNCHER, json.dumps(spec)]
    return Confined(argv=argv, pass_fds=(read_end,), guard=guard, uid=uid)


@functools.cache
def userns_available() -> bool:
    """Whether an unprivileged user may make a user namespace here (a kernel or AppArmor setting can forbid it)."""
    probe = [SETPRIV, "--reuid", str(UID_BASE - 1), "--regid", str(UID_BASE - 1), "--clear-groups",
             "unshare", "--user", "true"]
    try:
        return subprocess.run(probe, capture_output=True, env={"PATH": "/usr/bin:/bin"}).returncode == 0
    except OSError:
        return False


def give_to(mounts: list[Mount], uid: int) -> None:
    """Make the writable mounts, and sockets the sandbox must connect to, the sandbox uid's. Links are changed
    themselves, never followed; the sandbox is not running, so nothing moves under the walk."""
    for mount in mounts:
        source = Path(mount.source)
        if mount.writable:
            _chown_tree(source, uid)
        elif stat.S_ISSOCK(source.lstat().st_mode):
            os.lchown(source, uid, uid)


def _chown_tree(root: Path, uid: int) -> None:
    def chown(dir_fd: int, name: str, st: os.stat_result) -> None:
        if st.st_uid != uid or st.st_gid != uid:
            if dir_fd < 0:  # the writable folder itself: without it the sandbox cannot work
                os.chown(name, uid, uid, follow_symlinks=False)
                return
            try:
                os.chown(name, uid, uid, dir_fd=dir_fd, follow_symlinks=False)
            except OSError:
                pass  # gone since it was listed: nothing to give

    try:
        walk(str(root), chown)
    except TooDeep:
        pass  # only the agent nests that deep, and what it made is its own already
