"""Makespan of the local executor's packing policy on a simulated grid, against the lower bound
max(total GPU-hours / GPUs, longest run). Simulated clock: no processes, runs in about a second.

    python benchmarks/scheduler.py --runs 1000 --gpus 8

Runs get budgets of 1, 2, 5 or 10 hours; the scheduler plans with budget + 1 h of evaluation, while the actual
length is what an agent that may stop early uses (10–100 % of its budget) plus 0.2–1 h of evaluation. Scenarios:
every run on one GPU, and a mix of 1-, 2-, 4- and 8-GPU runs. Exits 1 if a makespan exceeds the bound by more
than --tolerance.
"""

import argparse
import json
import random
import time

from posttrainbench.executors.scheduler import Job, simulate

SCENARIOS = {"1 GPU per run": ([1], [1]), "mixed 1/2/4/8 GPUs": ([1, 2, 4, 8], [70, 20, 8, 2])}


def grid(runs: int, widths: list[int], weights: list[int], rng: random.Random) -> tuple[list[Job], dict[str, float]]:
    jobs, actual = [], {}
    for i in range(runs):
        budget = rng.choice([1, 2, 5, 10])
        job = Job(f"run{i}", rng.choices(widths, weights)[0], budget + 1.0)
        jobs.append(job)
        actual[job.key] = budget * rng.uniform(0.1, 1.0) + rng.uniform(0.2, 1.0)
    return jobs, actual


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tolerance", type=float, default=0.02, help="allowed makespan / lower bound - 1")
    args = parser.parse_args()

    rows = []
    for name, (widths, weights) in SCENARIOS.items():
        jobs, actual = grid(args.runs, [w for w in widths if w <= args.gpus], weights[: len(widths)],
                            random.Random(args.seed))
        started = time.perf_counter()
        result = simulate(jobs, args.gpus, actual)
        rows.append({
            "scenario": name,
            "runs": args.runs,
            "gpus": args.gpus,
            "gpu_hours": round(result.busy_gpu_hours, 1),
            "lower_bound_h": round(result.lower_bound, 2),
            "makespan_h": round(result.makespan, 2),
            "over_bound_pct": round(100 * result.overhead, 3),
            "utilisation_pct": round(100 * result.busy_gpu_hours / (args.gpus * result.makespan), 2),
            "simulation_s": round(time.perf_counter() - started, 2),
        })
    print(f"{'scenario':<20} {'runs':>5} {'GPUs':>4} {'GPU-h':>8} {'bound h':>8} {'makespan h':>10} "
          f"{'over %':>7} {'util %':>7}")
    for row in rows:
        print(f"{row['scenario']:<20} {row['runs']:>5} {row['gpus']:>4} {row['gpu_hours']:>8} "
              f"{row['lower_bound_h']:>8} {row['makespan_h']:>10} {row['over_bound_pct']:>7} "
              f"{row['utilisation_pct']:>7}")
    print(json.dumps(rows))
    if any(row["over_bound_pct"] > 100 * args.tolerance for row in rows):
        raise SystemExit(f"a makespan is more than {100 * args.tolerance:g} % above its lower bound")


if __name__ == "__main__":
    main()
