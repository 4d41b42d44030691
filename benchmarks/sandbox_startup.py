"""How long a sandbox takes to start and end: a whole `sandbox.run` of `python -c pass` with an agent's kind of
mounts (the harness's interpreter, a writable task folder holding N files), and one HumanEval check (two
sandboxes) of a canonical solution.

    python benchmarks/sandbox_startup.py --repeat 20

To compare with an older version, run the same script with that version first on the path, e.g. a `git worktree`
of the commit: `PYTHONPATH=OLD_CHECKOUT python benchmarks/sandbox_startup.py`.
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import posttrainbench
from posttrainbench.evaluation import humaneval
from posttrainbench.evaluation.data import data_file, read_jsonl
from posttrainbench.sandbox import Mount, SandboxRequest, python_mounts, run
from posttrainbench.specs import get_benchmark


def sandbox_run(folder: Path) -> float:
    request = SandboxRequest(argv=[sys.executable, "-c", "pass"], cwd="/task",
                             mounts=[*python_mounts(), Mount(folder / "task", "/task", True)],
                             env={"PATH": "/usr/bin:/bin"})
    started = time.monotonic()
    info = run(request, backend="bwrap", time_limit_s=60, log_path=folder / "agent.log", grace_s=1)
    if info.status != "finished":
        raise SystemExit(f"sandbox failed: {info.detail}")
    return time.monotonic() - started


def humaneval_check(problem: dict) -> float:
    started = time.monotonic()
    verdict = humaneval.run_check(problem["prompt"], problem["canonical_solution"], problem["test"],
                                  problem["entry_point"])
    if not verdict.passed:
        raise SystemExit(f"canonical solution failed: {verdict.reason}")
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--files", type=int, default=10_000, help="files in the writable task folder")
    args = parser.parse_args()
    problem = next(r for r in read_jsonl(data_file(get_benchmark("humaneval"), "test"))
                   if r["task_id"] == "HumanEval/53")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "task").mkdir()
        for i in range(args.files):
            (folder / "task" / f"f{i}").write_bytes(b"x")
        sandbox_run(folder)  # warm: the interpreter probe and the page cache
        runs = [sandbox_run(folder) for _ in range(args.repeat)]
        checks = [humaneval_check(problem) for _ in range(args.repeat)]
    print(json.dumps({
        "package": str(Path(posttrainbench.__file__).parent),
        "sandbox_run_median_s": round(statistics.median(runs), 3),
        "sandbox_run_max_s": round(max(runs), 3),
        "humaneval_check_median_s": round(statistics.median(checks), 3),
        "humaneval_check_max_s": round(max(checks), 3),
        "task_files": args.files,
        "repeat": args.repeat,
    }, indent=1))


if __name__ == "__main__":
    main()
