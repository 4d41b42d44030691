"""HumanEval: real test set, canonical solutions pass, exploits fail without hanging, code extraction."""

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from posttrainbench.evaluation import humaneval
from posttrainbench.evaluation.data import data_file
from posttrainbench.specs import get_benchmark


@pytest.fixture(scope="module")
def problems(shared_data):
    from posttrainbench.evaluation.data import read_jsonl

    return {r["task_id"]: r for r in read_jsonl(data_file(get_benchmark("humaneval"), "test"))}


def check(problem: dict, completion: str) -> humaneval.Verdict:
    code = humaneval.find_code(completion, problem["entry_point"])
    return humaneval.run_check(problem["prompt"], code, problem["test"], problem["entry_point"])


def test_loader_reads_all_164(shared_data):
    samples = humaneval.load_samples(data_file(get_benchmark("humaneval"), "test"))
    assert len(samples) == 164
    assert samples[0].id == "HumanEval/0"
    assert samples[0].input.endswith(samples[0].metadata["prompt"])


def test_canonical_solutions_all_pass(problems):
    def run(problem):
        return humaneval._run_limited(
            problem["prompt"], problem["canonical_solution"], problem["test"], problem["entry_point"]
        )

    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        verdicts = dict(zip(problems, pool.map(run, problems.values())))
    failed = {k: v.reason for k, v in verdicts.items() if not v.passed}
    assert not failed
    assert time.monotonic() - started < 60


ADD = "HumanEval/53"  # add(x: int, y: int): tests with random ints, `candidate(x, y) == x + y`

EXPLOITS = {
    "sys.exit before the asserts": "    import sys\n    sys.exit(0)\n",
    "exit() at import": "    return 0\nexit(0)\n",
    "os._exit inside the call": "    import os\n    os._exit(0)\n",
    "raise SystemExit inside the call": "    raise SystemExit(0)\n",
    "always-equal object": (
        "    class Anything:\n"
        "        def __eq__(self, other):\n            return True\n"
        "        def __ne__(self, other):\n            return False\n"
        "        __hash__ = object.__hash__\n"
        "    return Anything()\n"
    ),
    "always-equal int subclass": (
        "    class Int(int):\n        def __eq__(self, other):\n            return True\n"
        "        __hash__ = int.__hash__\n"
        "    return Int(0)\n"
    ),
    "patched AssertionError and assert hook": (
        "    return 0\n"
        "import builtins, sys\n"
        "builtins.AssertionError = type('Quiet', (Exception,), {})\n"
        "sys.excepthook = lambda *a: None\n"
    ),
    "patched builtins used by tests": (
        "    return 0\nimport builtins\nbuiltins.abs = lambda x: 0\nbuiltins.tuple = lambda x=(): ()\n"
    ),
    "infinite loop in the call": "    while True:\n        pass\n",
    "infinite loop at import": "    return 0\nwhile True:\n    pass\n",
    "fake success output": "    return 0\nprint('PASSED'); print('OK')\nimport sys; sys.stdout.flush()\n",
    "token hunt in own source and re-exec with -O": (
        "    return 0\n"
        "import os, sys, re\n"
        "for pid in os.listdir('/proc'):\n"
        "    try:\n"
        "        text = open(f'/proc/{pid}/cmdline', 'rb').read().decode(errors='ignore')\n"
        "        for token in re.findall(r'[0-9a-f]{32}', text):\n"
        "            print(token)\n"
        "    except OSError:\n"
        "        pass\n"
        "os.execv(sys.executable, [sys.executable, '-O', '-c', 'print(1)'])\n"
    ),
    "atexit hook and signal games": (
        "    return 0\nimport atexit, os, signal\natexit.register(lambda: os._exit(0))\n"
        "os.kill(os.getppid(), signal.SIGKILL)\n"
    ),
}


@pytest.fixture
def short_deadline(monkeypatch):
    """Exploits that hang are cut off at the deadline; a short one keeps the suite fast."""
    monkeypatch.setattr(humaneval, "WALL_SECONDS", 5)
    monkeypatch.setattr(humaneval, "CPU_SECONDS", 3)


@pytest.mark.parametrize("name", list(EXPLOITS))
def test_exploits_fail_without_hanging(problems, name, short_deadline):
    started = time.monotonic()
    verdict = check(problems[ADD], EXPLOITS[name])
    assert not verdict.passed, name
    assert time.monotonic() - started < humaneval.WALL_SECONDS + 10


def test_fork_bomb_is_stopped_by_the_seccomp_filter(problems, bwrap):
    bomb = "    import os\n    while True:\n        os.fork()\n"
    started = time.monotonic()
    verdict = check(problems[ADD], bomb)
    assert not verdict.passed
    assert "Operation not permitted" in verdict.reason
    assert time.monotonic() - started < 10


def test_a_right_answer_passes_and_a_wrong_one_fails(problems):
    assert check(problems[ADD], "    return x + y\n").passed
    wrong = check(problems[ADD], "    return x - y\n")
    assert not wrong.passed
    assert "AssertionError" in wrong.reason


def test_results_cross_the_sandbox_as_plain_data(problems):
    # numpy results are converted, tuples stay tuples (HumanEval/107 expects a tuple)
    even_odd = problems["HumanEval/107"]
    body = (
        "    import numpy as np\n"
        "    pal = [str(i) == str(i)[::-1] for i in range(1, n + 1)]\n"
        "    even = sum(1 for i in range(1, n + 1) if pal[i - 1] and i % 2 == 0)\n"
        "    return (np.int64(even), np.int64(sum(pal) - even))\n"
    )
    assert check(even_odd, body).passed
    assert not check(even_odd, body.replace("return (np.int64(even), np.int64(sum(pal) - even))",
                                            "return [even, sum(pal) - even]")).passed


@pytest.mark.parametrize(
    "completion, expected",
    [
        ("```python\ndef add(x, y):\n    return x + y\n```", "\ndef add(x, y):\n    return x + y\n"),
        ("Here:\n```py\nimport math\n\ndef add(x, y):\n    return x + y\n```\nDone.",
         "\nimport math\n\ndef add(x, y):\n    return x + y\n"),
        ("```\n    return x + y\n```", "    return x + y\n"),
        ("    return x + y\n", "    return x + y\n"),
        ("<think>def add(x, y): pass</think>\n```python\ndef add(x, y):\n    return y + x\n```",
         "\ndef add(x, y):\n    return y + x\n"),
        ("```python\nprint(1)\n```\n```python\ndef add(x, y):\n    return x + y\n```",
         "\ndef add(x, y):\n    return x + y\n"),
    ],
)
def test_find_code(completion, expected):
    assert humaneval.find_code(completion, "add") == expected
