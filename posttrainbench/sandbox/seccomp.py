"""The seccomp filter every sandbox runs under, as classic BPF (the form `bwrap --seccomp FD` loads).

The sandbox already runs as an unprivileged uid in its own user namespace with every capability dropped, so most of
these calls would fail anyway; the filter removes the kernel surface itself (new namespaces to regain capabilities
in, mount APIs, keyrings, eBPF, perf, module and kexec loading), so a kernel bug behind one of them is not reachable.
Denied calls fail with EPERM. A syscall of another ABI (x32, or 32-bit on a 64-bit host) kills the process: the
numbers below hold for the native ABI only.

pidfd_getfd stays allowed: NCCL and PyTorch pass CUDA memory handles between the agent's own processes with it, and
the pid namespace and uid keep it from reaching anything outside.

The `nested` variant is for sandboxes that must start one more sandbox of their own (an evaluation, whose HumanEval
scorer confines each completion): it lets bwrap make a user namespace and build its root there (NESTED: new
namespaces, mount, umount2, pivot_root, sethostname), everything else stays denied. That holds the outer walls
because the kernel, not the filter, guards them: the outer sandbox has no capability, so these calls only work
inside a new user namespace, and capabilities there apply to that namespace's own mounts and processes, never to its
parent's; every mount copied in from the outer sandbox is locked (MNT_LOCKED, and MNT_LOCK_READONLY for the
read-only ones), so the nested namespace can neither make them writable nor unmount them to see what they cover. The
nested sandbox itself gets the full filter and --disable-userns, so nesting stops at one level.
"""

import errno
import platform
import struct

# name -> (x86_64, aarch64) number, from the kernel's uapi headers (asm/unistd_64.h; asm-generic/unistd.h for aarch64).
DENIED = {
    "mount": (165, 40), "umount2": (166, 39), "pivot_root": (155, 41), "open_tree": (428, 428),
    "move_mount": (429, 429), "fsopen": (430, 430), "fsconfig": (431, 431), "fsmount": (432, 432),
    "fspick": (433, 433), "mount_setattr": (442, 442), "unshare": (272, 97), "setns": (308, 268),
    "ptrace": (101, 117), "process_vm_readv": (310, 270), "process_vm_writev": (311, 271),
    "keyctl": (250, 219), "add_key": (248, 217), "request_key": (249, 218), "bpf": (321, 280),
    "perf_event_open": (298, 241), "userfaultfd": (323, 282), "open_by_handle_at": (304, 265),
    "name_to_handle_at": (303, 264), "init_module": (175, 105), "finit_module": (313, 273),
    "delete_module": (176, 106), "kexec_load": (246, 104), "kexec_file_load": (320, 294), "swapon": (167, 224),
    "swapoff": (168, 225), "reboot": (169, 142), "sethostname": (170, 161), "setdomainname": (171, 162),
    "acct": (163, 89), "settimeofday": (164, 170), "clock_settime": (227, 112), "adjtimex": (159, 171),
    "clock_adjtime": (305, 266), "quotactl": (179, 60), "lookup_dcookie": (212, 18), "vhangup": (153, 58),
    "iopl": (172, None), "ioperm": (173, None),
}
# What bwrap needs to build a sandbox from inside another one (the `nested` variant).
NESTED = ("unshare", "mount", "umount2", "pivot_root", "sethostname")
# Creating processes and threads, for sandboxes that must not (HumanEval's candidate).
_SPAWN = {"fork": (57, None), "vfork": (58, None), "clone": (56, 220), "clone3": (435, 435)}
_CLONE, _CLONE3 = {"x86_64": 56, "aarch64": 220}, 435
# CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET, NEWTIME
CLONE_NAMESPACES = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000 | 0x80

_AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
_LD_W_ABS, _JEQ, _JGE, _JSET, _RET = 0x20, 0x15, 0x35, 0x45, 0x06
_ALLOW, _KILL = 0x7FFF0000, 0x80000000
_ERRNO = 0x00050000
_NR, _ARCH, _ARG0_LOW = 0, 4, 16  # offsets in struct seccomp_data (little-endian: low half of args[0] first)


def supported() -> bool:
    return platform.machine() in _AUDIT_ARCH


def sandbox_filter(*, no_spawn: bool = False, nested: bool = False) -> bytes:
    """The filter program; `no_spawn` also makes fork, vfork, clone and clone3 fail with EPERM; `nested` allows
    NESTED and clone with namespace flags (see the module's docstring)."""
    if no_spawn and nested:
        raise ValueError("a sandbox that may not spawn cannot start a nested one")
    machine = platform.machine()
    if machine not in _AUDIT_ARCH:
        raise OSError(f"no seccomp filter for {machine} (x86_64 and aarch64 only)")
    column = 0 if machine == "x86_64" else 1
    denied = {nrs[column] for name, nrs in DENIED.items()
              if nrs[column] is not None and not (nested and name in NESTED)}
    if no_spawn:
        denied |= {nrs[column] for nrs in _SPAWN.values() if nrs[column] is not None}
    # Each instruction: (code, jump-if-true, jump-if-false, k); jumps are relative to the next instruction.
    prog: list[tuple[int, int, int, int]] = [
        (_LD_W_ABS, 0, 0, _ARCH),
        (_JEQ, 1, 0, _AUDIT_ARCH[machine]),
        (_RET, 0, 0, _KILL),
        (_LD_W_ABS, 0, 0, _NR),
    ]
    if machine == "x86_64":
        prog.append((_JGE, 0, 1, 0x40000000))  # the x32 ABI: same arch value, numbers with this bit set
        prog.append((_RET, 0, 0, _KILL))
    for nr in sorted(denied):
        prog.append((_JEQ, 0, 1, nr))
        prog.append((_RET, 0, 0, _ERRNO | errno.EPERM))
    if not no_spawn:
        # clone3 passes its flags in a struct a filter cannot read: ENOSYS makes libc fall back to clone, whose
        # flags it can.
        prog.append((_JEQ, 0, 1, _CLONE3))
        prog.append((_RET, 0, 0, _ERRNO | errno.ENOSYS))
    if not no_spawn and not nested:
        prog.append((_JEQ, 0, 3, _CLONE[machine]))
        prog.append((_LD_W_ABS, 0, 0, _ARG0_LOW))
        prog.append((_JSET, 0, 1, CLONE_NAMESPACES))
        prog.append((_RET, 0, 0, _ERRNO | errno.EPERM))
    prog.append((_RET, 0, 0, _ALLOW))
    return b"".join(struct.pack("=HBBI", *insn) for insn in prog)
