"""Overhead of one cached no-op run: `ptb run --agent command --command true`, offline, base score cached.

    PTB_CACHE=~/.cache/ptb-test PTB_DATA_DIR=/work/shared/data python benchmarks/run_overhead.py --repeat 3

Nothing is trained and the base model's score comes from the cache, so what is measured is the harness itself:
interpreter start and imports, each stage (from the sub-second stage timers in the store), and exit; wall time
and the CPU time of the harness's processes (the sandboxed agent included). The first
repetition also fills the base-score cache if it is empty (a real evaluation): it is reported but left out of the
medians. Target: <= 5 s in total on the 2-core machine.
"""

import argparse
import json
import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUN = ["run", "--agent", "command", "--command", "true", "--model", "smollm2-135m", "--benchmark", "humaneval",
       "--limit", "1", "--max-tokens", "16", "--hours", "0.1", "--gpus", "0", "--network", "offline"]


# Runs the CLI from another checkout's posttrainbench folder, ahead of the installed (editable) one.
FROM_CHECKOUT = """
import runpy, sys
sys.meta_path = [f for f in sys.meta_path if "editable" not in getattr(f, "__module__", "")]
sys.path.insert(0, sys.argv.pop(1))
runpy.run_module("posttrainbench.cli", run_name="__main__", alter_sys=True)
"""


def _one(home: Path, checkout: Path | None) -> dict:
    env = {**os.environ, "PTB_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    cli = ["-m", "posttrainbench.cli"] if checkout is None else ["-c", FROM_CHECKOUT, str(checkout)]
    started, used = time.monotonic(), _children_cpu()
    done = subprocess.run([sys.executable, *cli, *RUN], env=env, capture_output=True, text=True)
    wall, cpu = time.monotonic() - started, _children_cpu() - used
    # No final_model: the run is scored as the base model, which `ptb run` reports with exit status 1.
    if done.returncode != 0 and "scored as the base model" not in done.stderr + done.stdout:
        sys.exit(f"ptb run failed ({done.returncode}):\n{done.stdout[-1500:]}\n{done.stderr[-1500:]}")
    db = sqlite3.connect(home / "ptb.sqlite")
    run_id, = db.execute("SELECT id FROM runs ORDER BY created_at DESC LIMIT 1").fetchone()
    db.row_factory = sqlite3.Row
    # .get: a harness from before the stage timers (--checkout) has no seconds column
    stages = {row["stage"]: dict(row).get("seconds") for row in
              db.execute("SELECT * FROM stages WHERE run_id=? ORDER BY started_at", (run_id,))}
    db.close()
    staged = sum(s for s in stages.values() if s)
    return {"wall": round(wall, 2), "cpu": round(cpu, 2), "stages": {k: round(v, 3) for k, v in stages.items() if v is not None},
            "outside_stages": round(wall - staged, 2)}


def _children_cpu() -> float:
    """CPU seconds (user + system) of finished child processes: on a loaded machine wall time mostly measures
    the wait for a core, this what the harness itself spends."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs after the first (at least 1)")
    parser.add_argument("--checkout", type=Path, default=None,
                        help="folder holding another version's posttrainbench/ (e.g. a git archive), to compare")
    args = parser.parse_args()
    if args.checkout is not None:
        args.checkout = args.checkout.resolve()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    with tempfile.TemporaryDirectory(prefix="ptb-run-overhead-") as tmp:
        home = Path(tmp)
        first = _one(home, args.checkout)
        runs = [_one(home, args.checkout) for _ in range(args.repeat)]
    names = list(runs[0]["stages"])
    median = {
        "wall": statistics.median(r["wall"] for r in runs),
        "cpu": statistics.median(r["cpu"] for r in runs),
        "outside_stages": statistics.median(r["outside_stages"] for r in runs),
        "stages": {n: statistics.median(r["stages"].get(n, 0.0) for r in runs) for n in names},
    }
    print(json.dumps({"first": first, "runs": runs, "median": median, "load_average": os.getloadavg()[0],
                      "cpus": os.cpu_count()}, indent=2))


if __name__ == "__main__":
    main()
