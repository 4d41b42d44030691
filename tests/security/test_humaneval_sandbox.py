"""A model completion is code the agent can train its model to emit: HumanEval's scoring sandbox must hold it like
the agent's own sandbox. The completion below attacks (remount, write the scorer's files and site-packages, ptrace,
new namespaces) and answers correctly only if every attack was refused, so a pass proves they all were."""

import sysconfig
from pathlib import Path

import pytest

from posttrainbench.evaluation import humaneval, humaneval_rpc
from posttrainbench.evaluation.data import data_file, read_jsonl
from posttrainbench.sandbox import seccomp
from posttrainbench.specs import get_benchmark

pytestmark = pytest.mark.bwrap


def _attacking_completion(targets: list[str]) -> str:
    numbers = {name: seccomp.DENIED[name][0 if __import__("platform").machine() == "x86_64" else 1]
               for name in ("ptrace", "unshare", "mount")}
    return f'''
    import ctypes, errno
    libc = ctypes.CDLL(None, use_errno=True)
    refused = []
    def syscall(nr, *args):
        result = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args])
        refused.append(result == -1 and ctypes.get_errno() == errno.EPERM)
    syscall({numbers["ptrace"]}, 0, 0, 0, 0)  # PTRACE_TRACEME
    syscall({numbers["unshare"]}, 0x10000000)  # CLONE_NEWUSER
    refused.append(libc.mount(None, b"/", None, ctypes.c_ulong(32 | 4096), None) == -1)  # remount / rw
    for path in {targets!r}:
        try:
            with open(path, "a") as f:
                f.write("# planted")
            refused.append(False)
        except OSError:
            refused.append(True)
    return x + y if all(refused) and len(refused) == {3 + len(targets)} else x - y
'''


def test_a_completion_that_attacks_the_scorer_gets_nowhere(bwrap, shared_data, root_mode):
    problem = next(r for r in read_jsonl(data_file(get_benchmark("humaneval"), "test"))
                   if r["task_id"] == "HumanEval/53")
    rpc = Path(humaneval_rpc.__file__)
    pth = Path(sysconfig.get_paths()["purelib"]) / "planted.pth"
    before = rpc.read_bytes()
    code = humaneval.find_code(_attacking_completion([str(rpc), str(pth)]), problem["entry_point"])
    verdict = humaneval.run_check(problem["prompt"], code, problem["test"], problem["entry_point"])
    assert verdict.passed, verdict.reason  # it answers right only when every attack was refused
    assert rpc.read_bytes() == before and not pth.exists()
