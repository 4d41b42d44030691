import random

import pytest

from posttrainbench.executors.scheduler import Job, lower_bound, plan, simulate


def test_plan_packs_largest_first_and_backfills():
    waiting = [Job("small", 1, 1.0), Job("wide", 4, 10.0), Job("long", 1, 20.0), Job("cpu", 0, 5.0),
               Job("cpu2", 0, 1.0)]
    started = plan(waiting, free_gpus=[3, 1, 2], cpu_slots=1)
    # "wide" (40 GPU-hours) does not fit three free GPUs: "long" and "small" fill them; one CPU slot, longest first.
    assert [(job.key, gpus) for job, gpus in started] == [("long", [1]), ("small", [2]), ("cpu", [])]
    started = plan(waiting, free_gpus=[0, 1, 2, 3, 4], cpu_slots=0)
    assert [(job.key, gpus) for job, gpus in started] == [("wide", [0, 1, 2, 3]), ("long", [4])]


def test_no_gpu_is_given_twice():
    rng = random.Random(1)
    jobs = [Job(f"r{i}", rng.choice([1, 1, 2, 4]), rng.uniform(0.1, 3)) for i in range(40)]
    free = list(range(8))
    started = plan(jobs, free, cpu_slots=0)
    given = [g for _, gpus in started for g in gpus]
    assert len(given) == len(set(given)) and set(given) <= set(free)
    assert all(len(gpus) == job.gpus for job, gpus in started)


@pytest.mark.parametrize("widths", [[1], [1, 1, 1, 2, 4]])
def test_thousand_runs_end_within_two_percent_of_the_lower_bound(widths):
    rng = random.Random(0)
    jobs, actual = [], {}
    for i in range(1000):
        budget = rng.choice([1, 2, 5, 10])
        job = Job(f"r{i}", rng.choice(widths), budget + 1.0)
        jobs.append(job)
        actual[job.key] = budget * rng.uniform(0.1, 1.0) + rng.uniform(0.2, 1.0)  # agents may stop early
    result = simulate(jobs, 8, actual)
    assert result.lower_bound == lower_bound([(j.gpus, actual[j.key]) for j in jobs], 8)
    assert result.busy_gpu_hours == pytest.approx(sum(j.gpus * actual[j.key] for j in jobs))
    assert result.lower_bound <= result.makespan <= 1.02 * result.lower_bound


def test_simulate_counts_runs_already_going():
    # GPU 0 is busy for 5 more hours, so GPU 1 takes the 3-hour run and then the 2-hour one (longest first);
    # at 5 h both are free and the 1-hour run ends at 6 h.
    jobs = [Job("a", 1, 3), Job("b", 1, 1), Job("c", 1, 2)]
    assert simulate(jobs, 2, busy=[(5.0, [0])]).makespan == 6.0
    with pytest.raises(ValueError, match="needs 4 GPUs"):
        simulate([Job("x", 4, 1)], 2)
