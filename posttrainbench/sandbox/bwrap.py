"""The bubblewrap command line for a SandboxRequest.

The root is built from parts (binding / read-only and then mounting into it fails with EROFS on bwrap 0.8), so
everything of the host that is not listed here or in the request (/root, /work, /home, other runs) does not exist
inside.
"""

import os
import shutil
from pathlib import Path

from posttrainbench.errors import PtbError
from posttrainbench.sandbox.gpus import gpu_mounts_and_env
from posttrainbench.sandbox.request import SandboxRequest

HOSTNAME = "ptb-sandbox"
INSTALL_HINT = "apt-get install bubblewrap"
# The uid and gid the sandboxed processes have inside their user namespace, whoever they are on the host.
INSIDE_ID = "1000"
SETPRIV = "/usr/bin/setpriv"  # util-linux; under /usr, so the sandbox sees it


def find_bwrap() -> str:
    path = shutil.which("bwrap")
    if path is None:
        raise PtbError(f"bubblewrap (bwrap) is not installed: run `{INSTALL_HINT}` (or use backend `none` to debug)")
    return path


def bwrap_argv(request: SandboxRequest, *, bwrap: str = "bwrap", dev_root: Path = Path("/dev"),
               sources: list[str] | None = None, seccomp_fd: int | None = None,
               status_fd: int | None = None, setpriv_uid: int | None = None) -> list[str]:
    """`sources`, one per request mount, replace the mounts' host paths (the launcher's staged copies of them);
    `seccomp_fd` is a readable fd holding the filter program; bwrap writes JSON status lines to `status_fd`.

    Without `setpriv_uid` the sandbox gets a user namespace. With it (for a root harness on a host without
    unprivileged user namespaces) bwrap runs privileged and the command starts through setpriv, which takes that
    uid and gid and clears every capability, the bounding set included, before the agent's program runs."""
    argv = [bwrap, *(["--json-status-fd", str(status_fd)] if status_fd is not None else [])]
    argv += ["--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc"]
    argv += _merged_usr_links()
    argv += ["--dev", "/dev", "--perms", "1777", "--tmpfs", "/dev/shm", "--proc", "/proc"]
    argv += ["--perms", "1777", "--tmpfs", "/tmp"]
    if request.network == "host":
        argv += _resolver_mount()
    devices, gpu_env = gpu_mounts_and_env(request.gpus, dev_root)
    if request.gpus:
        # NVML and NCCL read the PCI topology from sysfs.
        argv += ["--ro-bind", "/sys", "/sys"]
    argv += _parent_dirs([m.target for m in request.mounts] + [inside for _, inside in devices])
    for index, mount in enumerate(request.mounts):
        source = sources[index] if sources is not None else str(mount.source)
        argv += ["--bind" if mount.writable else "--ro-bind", source, mount.target]
    for host, inside in devices:
        argv += ["--dev-bind", str(host), inside]
    # The root's own tmpfs (where mount points were made) would be writable space outside every mount and quota.
    argv += ["--remount-ro", "/"]
    argv += ["--chdir", request.cwd]
    argv += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--hostname", HOSTNAME]
    argv += ["--new-session", "--die-with-parent"]
    if setpriv_uid is None:
        # An unprivileged user namespace with no capabilities, which cannot make further ones (unless the request
        # allows one nested sandbox: seccomp.py says why that keeps these walls).
        argv += ["--unshare-user", *([] if request.allow_nested else ["--disable-userns"]), "--uid", INSIDE_ID,
                 "--gid", INSIDE_ID, "--cap-drop", "ALL"]
    if seccomp_fd is not None:
        argv += ["--seccomp", str(seccomp_fd)]
    if request.network == "none":
        argv.append("--unshare-net")
    argv.append("--clearenv")
    for key, value in {**request.env, **gpu_env}.items():
        argv += ["--setenv", key, value]
    if setpriv_uid is not None:
        ids = str(setpriv_uid)
        argv += ["--", SETPRIV, "--reuid", ids, "--regid", ids, "--clear-groups", "--bounding-set", "-all",
                 "--inh-caps", "-all", "--ambient-caps", "-all", "--no-new-privs"]
    return [*argv, "--", *request.argv]


def _parent_dirs(targets: list[str]) -> list[str]:
    """Folders on the sandbox's own root that lead to mount points, made traversable (0755) up front: bwrap makes
    them 0700 when it runs as root, which would lock the sandbox uid out of its own interpreter."""
    parents: set[str] = set()
    for target in targets:
        parent = os.path.dirname(target.rstrip("/"))
        while parent not in ("/", ""):
            parents.add(parent)
            parent = os.path.dirname(parent)
    on_root = [p for p in parents if not any(_within(p, t) for t in targets)]
    argv: list[str] = []
    for folder in sorted(on_root, key=lambda p: (p.count("/"), p)):
        argv += ["--perms", "0755", "--dir", folder]
    return argv


def _within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _merged_usr_links() -> list[str]:
    """Mirror /bin, /lib, ... as the host has them: symlinks into /usr on merged-/usr systems, else read-only dirs."""
    argv: list[str] = []
    for name in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(name):
            argv += ["--symlink", os.readlink(name), name]
        elif os.path.isdir(name):
            argv += ["--ro-bind", name, name]
    return argv


def _resolver_mount() -> list[str]:
    """/etc/resolv.conf often links into /run (systemd-resolved); without its target, DNS fails inside."""
    target = os.path.realpath("/etc/resolv.conf")
    if os.path.exists(target) and not target.startswith(("/etc/", "/usr/")):
        return ["--ro-bind", target, target]
    return []
