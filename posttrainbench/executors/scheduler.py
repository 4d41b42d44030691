"""Which waiting runs start now on which free GPUs: the packing policy of the local executor.

Largest first (GPU-hours, then GPUs), skipping a run that does not fit the free GPUs so that smaller ones fill
them (backfill). Run lengths are known in advance (the agent's budget plus the evaluation), so this is the
classic longest-processing-time list schedule, whose makespan for many runs ends close to the lower bound
max(total GPU-hours / GPUs, longest run). `simulate` replays the same policy on a simulated clock."""

import heapq
from dataclasses import dataclass


@dataclass(frozen=True)
class Job:
    key: str
    gpus: int
    hours: float  # expected length: what the scheduler plans with


def priority(job: Job) -> tuple:
    return (-job.gpus * max(job.hours, 1e-9), -job.gpus, -job.hours, job.key)


def plan(waiting: list[Job], free_gpus: list[int], cpu_slots: int) -> list[tuple[Job, list[int]]]:
    """The runs to start now and the GPU indices each gets. Runs without GPUs take one of `cpu_slots` each."""
    free = sorted(free_gpus)
    starts = []
    for job in sorted(waiting, key=priority):
        if job.gpus == 0:
            if cpu_slots > 0:
                cpu_slots -= 1
                starts.append((job, []))
        elif job.gpus <= len(free):
            starts.append((job, free[: job.gpus]))
            free = free[job.gpus:]
    return starts


@dataclass
class SimResult:
    makespan: float
    lower_bound: float
    busy_gpu_hours: float

    @property
    def overhead(self) -> float:
        return self.makespan / self.lower_bound - 1 if self.lower_bound else 0.0


def lower_bound(durations: list[tuple[int, float]], gpus: int) -> float:
    """max(total GPU-hours / GPUs, longest run) for (gpus, hours) pairs."""
    gpu_runs = [(g, h) for g, h in durations if g > 0]
    if not gpu_runs:
        return 0.0
    return max(sum(g * h for g, h in gpu_runs) / gpus, max(h for _, h in gpu_runs))


def simulate(jobs: list[Job], gpus: int, actual: dict[str, float] | None = None, cpu_slots: int = 1,
             busy: list[tuple[float, list[int]]] | None = None) -> SimResult:
    """Replay `plan` on a simulated clock. `actual` gives true lengths where they differ from the planned ones;
    `busy` lists (hours left, GPU indices) of runs already going. Returns when the last run ends."""
    actual = actual or {}
    for job in jobs:
        if job.gpus > gpus:
            raise ValueError(f"run {job.key} needs {job.gpus} GPUs but only {gpus} exist")
    free = set(range(gpus))
    events: list[tuple[float, int, list[int]]] = []  # (end time, order, GPUs it frees; [] = a CPU slot)
    for order, (left, indices) in enumerate(busy or []):
        free -= set(indices)
        cpu_slots -= 0 if indices else 1
        heapq.heappush(events, (left, -1 - order, indices))
    waiting = list(jobs)
    now = makespan = busy_hours = 0.0
    order = 0
    while waiting or events:
        started = plan(waiting, sorted(free), cpu_slots)
        for job, indices in started:
            length = actual.get(job.key, job.hours)
            free -= set(indices)
            cpu_slots -= 0 if indices else 1
            busy_hours += length * len(indices)
            order += 1
            heapq.heappush(events, (now + length, order, indices))
        if started:
            chosen = {id(job) for job, _ in started}
            waiting = [job for job in waiting if id(job) not in chosen]
        if not events:
            raise ValueError(f"{len(waiting)} runs without GPUs can never start: no CPU slots")
        now, _, indices = heapq.heappop(events)
        makespan = max(makespan, now)
        free |= set(indices)
        cpu_slots += 0 if indices else 1
    bound = lower_bound([(job.gpus, actual.get(job.key, job.hours)) for job in jobs], gpus)
    return SimResult(makespan=makespan, lower_bound=bound, busy_gpu_hours=busy_hours)
