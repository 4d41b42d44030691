"""An evaluation sandbox may start one nested sandbox (HumanEval's scorer confines each completion in one). Whatever
runs in the evaluation sandbox gets that far, and no further: a user namespace of its own, in which the read-only
mounts it inherited (the test data, the model, the interpreter) stay read-only and stay mounted, and the nested
sandbox gets the full filter with no further namespaces."""

import json
import platform
import shutil
import sys
import sysconfig
import tempfile
from pathlib import Path

import pytest
from test_humaneval_sandbox import _attacking_completion

from posttrainbench.evaluation import humaneval, humaneval_rpc
from posttrainbench.evaluation.data import data_file, read_jsonl
from posttrainbench.sandbox import Mount, SandboxRequest, python_mounts, run
from posttrainbench.sandbox.seccomp import DENIED
from posttrainbench.specs import get_benchmark

pytestmark = pytest.mark.bwrap
ENV = {"PATH": "/usr/bin:/bin", "HOME": "/ptb/out", "LANG": "C.UTF-8"}

# In a user namespace of its own (root there), try to make the inherited mounts writable, to take them away, and to
# write through them; then the calls the nested variant of the filter still denies.
_ESCAPE = r'''
import ctypes, errno, json, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
READ_ONLY, DENIED = json.loads(sys.argv[1]), json.loads(sys.argv[2])
report = {}
def attempt(name, result):
    report[name] = "ok" if result == 0 else errno.errorcode.get(ctypes.get_errno(), "failed")
def write(path):
    try:
        with open(path if os.path.isfile(path) else os.path.join(path, "planted.pth"), "a") as f:
            f.write("# planted\n")
        return 0
    except OSError as e:
        ctypes.set_errno(e.errno)
        return -1
uid = os.getuid()
attempt("unshare user+mount namespace", libc.unshare(0x10000000 | 0x00020000))
for name, text in (("setgroups", "deny"), ("uid_map", f"0 {uid} 1"), ("gid_map", f"0 {uid} 1")):
    with open(f"/proc/self/{name}", "w") as f:
        f.write(text)
attempt("make / private", libc.mount(None, b"/", None, 16384 | 1 << 18, None))
MS_REMOUNT, MS_BIND, MNT_DETACH = 32, 4096, 2
for path in READ_ONLY:
    attempt(f"remount-rw {path}", libc.mount(None, path.encode(), None, MS_REMOUNT | MS_BIND, None))
    attempt(f"remount-rw (no bind) {path}", libc.mount(None, path.encode(), None, MS_REMOUNT, None))
    attempt(f"write {path}", write(path))
    attempt(f"umount {path}", libc.umount2(path.encode(), MNT_DETACH))
    attempt(f"write after all {path}", write(path))
for name, nr in DENIED.items():
    attempt(f"syscall {name}", libc.syscall(ctypes.c_long(nr), 0, 0, 0, 0, 0))
print("REPORT " + json.dumps(report))
'''


@pytest.fixture
def outer() -> Path:
    """What an evaluation sandbox gets (evaluation/sandboxed.py): test data and model read-only, an output folder."""
    base = Path(tempfile.mkdtemp(prefix="ptb-nested-"))
    base.chmod(0o755)
    for name in ("data", "model", "out"):
        (base / name).mkdir()
    (base / "data" / "test.jsonl").write_text("{}\n")
    (base / "model" / "config.json").write_text("{}")
    yield base
    shutil.rmtree(base)


def _run_inside(base: Path, argv: list[str]) -> str:
    request = SandboxRequest(
        argv=argv, cwd="/ptb/out", env=ENV, allow_nested=True,
        mounts=[*python_mounts(), Mount(base / "data", "/ptb/data"), Mount(base / "model", "/ptb/model"),
                Mount(base / "out", "/ptb/out", writable=True)],
    )
    info = run(request, backend="bwrap", time_limit_s=300, grace_s=1, log_path=base / "log")
    log = (base / "log").read_text()
    assert info.status == "finished", (info, log[-3000:])
    return log


def test_a_nested_namespace_cannot_touch_the_evaluations_read_only_mounts(bwrap, outer, root_mode):
    column = 0 if platform.machine() == "x86_64" else 1
    still_denied = {name: DENIED[name][column] for name in ("setns", "ptrace", "keyctl", "bpf", "open_tree",
                                                              "fsopen", "move_mount", "mount_setattr", "init_module")}
    site = sysconfig.get_paths()["purelib"]
    read_only = ["/ptb/data", "/ptb/data/test.jsonl", "/ptb/model", "/usr", site]
    log = _run_inside(outer, [sys.executable, "-c", _ESCAPE, json.dumps(read_only), json.dumps(still_denied)])
    [line] = [line.split("REPORT ", 1)[1] for line in log.splitlines() if "REPORT " in line]
    report = json.loads(line)
    # The controls: the nesting the scorer needs is there (else every refusal below would prove nothing).
    assert report.pop("unshare user+mount namespace") == "ok" and report.pop("make / private") == "ok"
    went_through = sorted(name for name, result in report.items() if result == "ok")
    assert went_through == [], f"went through: {went_through}"
    assert all(report[f"syscall {name}"] == "EPERM" for name in still_denied)
    assert (outer / "data" / "test.jsonl").read_text() == "{}\n"
    assert (outer / "model" / "config.json").read_text() == "{}"
    assert sorted(p.name for p in (outer / "data").iterdir()) == ["test.jsonl"]
    assert not list(Path(site).glob("planted*"))


def test_humaneval_scores_inside_an_evaluation_sandbox_and_its_completions_stay_held(bwrap, outer, shared_data):
    """The scorer runs its nested sandboxes from inside the evaluation's: a right answer passes, a wrong one fails,
    and the attacking completion of test_humaneval_sandbox passes only because all its attacks were refused."""
    problem = next(r for r in read_jsonl(data_file(get_benchmark("humaneval"), "test"))
                   if r["task_id"] == "HumanEval/53")
    rpc = Path(humaneval_rpc.__file__)
    codes = {
        "right": problem["canonical_solution"],
        "wrong": "    return x - y\n",
        "attack": humaneval.find_code(_attacking_completion([str(rpc), "/ptb/data/test.jsonl"]),
                                      problem["entry_point"]),
    }
    score = ("import json, sys\nfrom posttrainbench.evaluation import humaneval\n"
             "p, codes = json.loads(sys.argv[1]), json.loads(sys.argv[2])\n"
             "for name, code in codes.items():\n"
             "    v = humaneval.run_check(p['prompt'], code, p['test'], p['entry_point'])\n"
             "    print('VERDICT', name, v.passed, flush=True)\n")
    before = rpc.read_bytes()
    log = _run_inside(outer, [sys.executable, "-c", score, json.dumps(problem), json.dumps(codes)])
    verdicts = dict(line.split("VERDICT ", 1)[1].split() for line in log.splitlines() if "VERDICT " in line)
    assert verdicts == {"right": "True", "wrong": "False", "attack": "True"}, log[-3000:]
    assert rpc.read_bytes() == before and (outer / "data" / "test.jsonl").read_text() == "{}\n"


def test_a_scoring_sandbox_that_cannot_start_is_an_error_not_a_wrong_answer(bwrap, outer):
    """Inside a sandbox that does not allow nesting, the scorer's own sandbox cannot start: that must fail the
    evaluation loudly, never count as a failed sample (a silent 0)."""
    score = ("from posttrainbench.evaluation import humaneval\n"
             "humaneval.run_check('def f(x):\\n    \"\"\"one\"\"\"\\n', '    return 1\\n', "
             "'def check(c):\\n    assert c(0) == 1\\n', 'f')\n")
    request = SandboxRequest(argv=[sys.executable, "-c", score], cwd="/ptb/out", env=ENV,
                             mounts=[*python_mounts(), Mount(outer / "out", "/ptb/out", writable=True)])
    info = run(request, backend="bwrap", time_limit_s=300, grace_s=1, log_path=outer / "log")
    log = (outer / "log").read_text()
    assert info.status == "crashed" and "the scorer's sandbox could not start (HumanEval): bwrap: " in log, log[-2000:]
