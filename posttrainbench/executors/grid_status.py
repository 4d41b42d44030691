"""A grid's cells as the store records them, read without loading the pipeline (`ptb grid status` stays fast)."""

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pydantic import BaseModel

from posttrainbench import paths
from posttrainbench.executors.cells import Cells, GridInfo
from posttrainbench.executors.slurm import queue_states
from posttrainbench.executors.stages import STAGES
from posttrainbench.specs.grid import expand
from posttrainbench.store import Store


class CellStatus(BaseModel):
    key: str
    agent: str
    model: str
    benchmark: str
    seed: int
    state: str  # waiting, retry-wait, running, queued (Slurm), done, failed
    attempts: int
    run_id: str | None = None
    stage: str | None = None  # the run's current or last stage
    score: float | None = None
    score_source: str | None = None  # final: the agent's model; base: the base model's score stands in
    placement: str | None = None
    reason: str | None = None  # why it waits for a retry or failed; for a base-scored run, why


def grid_status(name: str, *, store: Path | None = None) -> list[CellStatus]:
    """Every cell of the grid, in grid order."""
    with open_store(store) as opened:
        return statuses(opened, Cells(opened), name)


def list_grids(*, store: Path | None = None) -> list[GridInfo]:
    with open_store(store) as opened:
        return Cells(opened).grids()


@contextmanager
def open_store(path: Path | None) -> Iterator[Store]:
    store = Store(path or paths.store_path())
    try:
        yield store
    finally:
        store.close()


def statuses(store: Store, cells: Cells, name: str) -> list[CellStatus]:
    info = cells.info(name)
    order = {cell.key: i for i, cell in enumerate(expand(info.grid))}
    rows = sorted((r for r in cells.rows(name) if r.cell_key in order), key=lambda r: order[r.cell_key])
    queue = queue_states([r.job_id for r in rows if r.state == "running" and r.job_id])
    out = []
    for row in rows:
        run = store.get(row.run_id) if row.run_id else None
        stages = {s["stage"] for s in store.stages(row.run_id)} if row.run_id else set()
        stage = next((s for s in reversed(("prepare", *STAGES)) if s in stages), None)
        state = row.state
        if state == "waiting" and row.not_before and row.not_before > time.time():
            state = "retry-wait"
        if state == "running" and queue.get(row.job_id or "") == "PENDING":
            state = "queued"
        reason = row.reason or (run.error if run and run.score_source == "base" else None)
        out.append(CellStatus(key=row.cell_key, agent=row.agent, model=row.model, benchmark=row.benchmark,
                              seed=row.seed, state=state, attempts=row.attempts, run_id=row.run_id,
                              stage=stage, score=run.score if run else None,
                              score_source=run.score_source if run else None, placement=row.placement,
                              reason=reason))
    return out
