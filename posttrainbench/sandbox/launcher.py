"""Between the harness and bwrap: join the sandbox's cgroups, set rlimits, and, when started as root, stage the
request's mounts and drop to the sandbox's own unprivileged uid; then exec bwrap with no_new_privs set.

Run as `python -I -S launcher.py SPEC_JSON` (stdlib only, no posttrainbench import: it must start fast and run
before anything of the sandbox exists).

Why staging: bwrap, once unprivileged, resolves every mount source with the sandbox uid's permissions, and the
harness's files (its interpreter under /root, run directories under 0700 folders) are not reachable for that uid.
So, still root, the launcher takes a private mount namespace, mounts a fresh tmpfs on a stage folder and bind-mounts
each source there (read-only ones remounted read-only, which the unprivileged namespace bwrap builds on top can
never undo); bwrap then takes its sources from the stage. Nothing of this is visible on the host.
"""

import ctypes
import json
import os
import resource
import sys

CLONE_NEWNS = 0x00020000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 32, 4096, 16384, 1 << 18
PR_SET_NO_NEW_PRIVS = 38

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = lambda s: s.encode() if s is not None else None  # noqa: E731
    _check(_libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)), f"mount {source} on {target}")


def stage(folder: str, binds: list[list]) -> None:
    _check(_libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    _mount("ptb-stage", folder, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755")
    for source, name, writable in binds:
        target = os.path.join(folder, name)
        if os.path.isdir(source):
            os.mkdir(target)
        else:
            os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o644))
        _mount(source, target, None, MS_BIND | MS_REC)
        flags = MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV | (0 if writable else MS_RDONLY)
        _mount(None, target, None, flags)
    os.chmod(folder, 0o755)


def main() -> None:
    spec = json.loads(sys.argv[1])
    for procs in spec["cgroups"]:
        with open(procs, "w") as f:
            f.write(str(os.getpid()))
    for name, value in spec["rlimits"]:
        resource.setrlimit(getattr(resource, name), (value, value))
    if spec["stage"] is not None:
        stage(spec["stage"], spec["binds"])
    if spec["uid"] is not None:
        # gid and groups first: after the uid changes, the right to change them is gone.
        os.setgroups([])
        os.setresgid(spec["gid"], spec["gid"], spec["gid"])
        os.setresuid(spec["uid"], spec["uid"], spec["uid"])
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")
    os.execv(spec["argv"][0], spec["argv"])


if __name__ == "__main__":
    try:
        main()
    except OSError as error:
        print(f"ptb sandbox launcher: {error}", file=sys.stderr)
        sys.exit(1)
