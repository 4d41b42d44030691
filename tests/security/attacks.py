"""Attacks an agent can try from inside its sandbox, as one Python program that prints a JSON report.

Each attack reports "ok" when it went through and the errno name (or "missing") when it was blocked. The program
uses only the standard library, so it runs under the harness's interpreter and under /usr/bin/python3 alike.
"""

import json
import platform
import textwrap

from posttrainbench.sandbox.seccomp import CLONE_NAMESPACES, DENIED

_PROGRAM = r'''
import ctypes, errno, json, os, subprocess, sys
TARGETS = json.loads(sys.argv[1])
NUMBERS = json.loads(sys.argv[2])
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
report = {}

def attempt(name, action):
    try:
        action()
        report[name] = "ok"
    except OSError as e:
        report[name] = errno.errorcode.get(e.errno, str(e.errno)) if e.errno else "failed"

def call(nr, *args):
    def go():
        if libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args]) == -1:
            raise OSError(ctypes.get_errno(), "")
    return go

def mount(source, target, flags, fstype=None):
    def go():
        if libc.mount(source, target.encode(), fstype, ctypes.c_ulong(flags), None) != 0:
            raise OSError(ctypes.get_errno(), "")
    return go

def write(path):
    def go():
        with open(path, "a") as f:
            f.write("# planted\n")
    return go

def run(argv):
    def go():
        done = subprocess.run(argv, capture_output=True)
        if done.returncode != 0:
            raise OSError(errno.EPERM, "")
    return go

MS_RDONLY, MS_REMOUNT, MS_BIND = 1, 32, 4096
for path in TARGETS["read_only"]:
    attempt(f"remount-rw {path}", mount(None, path, MS_REMOUNT | MS_BIND))
    attempt(f"write {path}", write(path if os.path.isfile(path) else os.path.join(path, "planted.pth")))
attempt("mount(8) remount-rw /usr", run(["mount", "-o", "remount,bind,rw", "/usr"]))
attempt("mount tmpfs over /usr", mount(b"tmpfs", "/usr", 0, b"tmpfs"))
try:
    report["/root holds"] = sorted(os.listdir("/root"))
except OSError:
    report["/root holds"] = []
for path in TARGETS["secret"]:
    attempt(f"read {path}", lambda p=path: os.listdir(p) if os.path.isdir(p) else open(p).read())
for name, nr in NUMBERS["syscalls"].items():
    attempt(f"syscall {name}", call(nr, 0, 0, 0, 0, 0))
attempt("clone with namespace flags", call(NUMBERS["clone"], NUMBERS["clone_flags"] | 17, 0, 0, 0, 0))
attempt("unshare(1)", run(["unshare", "--user", "--map-root-user", "true"]))
status = dict(line.split(":\t", 1) for line in open("/proc/self/status").read().splitlines() if ":\t" in line)
report["CapEff"] = status["CapEff"].strip()
report["CapBnd"] = status["CapBnd"].strip()
report["NoNewPrivs"] = status["NoNewPrivs"].strip()
report["Seccomp"] = status["Seccomp"].strip()
with open(TARGETS["owned"], "w") as f:
    f.write("made inside")
print("REPORT " + json.dumps(report))
'''


def program() -> str:
    return textwrap.dedent(_PROGRAM)


def numbers() -> dict:
    """The syscall numbers the program tries, for this machine's ABI (probes with zero arguments: every one of
    them is denied before its arguments matter)."""
    column = 0 if platform.machine() == "x86_64" else 1
    chosen = ("unshare", "setns", "ptrace", "keyctl", "add_key", "request_key", "bpf", "perf_event_open",
              "open_by_handle_at", "kexec_load", "init_module", "finit_module", "delete_module", "swapon", "reboot",
              "pivot_root", "fsopen", "open_tree", "userfaultfd", "process_vm_readv")
    syscalls = {name: DENIED[name][column] for name in chosen}
    clone = 56 if column == 0 else 220
    return {"syscalls": syscalls, "clone": clone, "clone_flags": CLONE_NAMESPACES}


def report(log: str) -> dict:
    lines = [line.split("REPORT ", 1)[1] for line in log.splitlines() if "REPORT " in line]
    assert lines, f"the attack program printed no report:\n{log[-3000:]}"
    return json.loads(lines[-1])


def argv(python: str, targets: dict) -> list[str]:
    return [python, "-c", program(), json.dumps(targets), json.dumps(numbers())]
