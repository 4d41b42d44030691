"""Grid state in the store's SQLite file: which grids exist, and for every cell its run, attempts and state.

A cell has at most one run. Retries and resumes execute that same run again (its finished stages are skipped),
so re-running a grid never duplicates runs."""

import json
import time
from pathlib import Path

from pydantic import BaseModel, ValidationError

from posttrainbench.errors import PtbError
from posttrainbench.specs.grid import Cell, Grid
from posttrainbench.specs.run import RunSpec
from posttrainbench.store import Store
from posttrainbench.store.db import now

SCHEMA = """
CREATE TABLE IF NOT EXISTS grids (
  name TEXT PRIMARY KEY,
  grid TEXT NOT NULL,
  runs_dir TEXT NOT NULL,
  source TEXT,
  executor TEXT,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS grid_cells (
  grid TEXT NOT NULL,
  cell_key TEXT NOT NULL,
  agent TEXT NOT NULL,
  model TEXT NOT NULL,
  benchmark TEXT NOT NULL,
  seed INTEGER NOT NULL,
  spec_hash TEXT NOT NULL,
  run_id TEXT,
  state TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  not_before REAL,
  executor TEXT,
  job_id TEXT,
  placement TEXT,
  reason TEXT,
  updated_at TEXT NOT NULL,
  PRIMARY KEY (grid, cell_key)
);
"""

CELL_STATES = ("waiting", "running", "done", "failed")


class CellRow(BaseModel):
    grid: str
    cell_key: str
    agent: str
    model: str
    benchmark: str
    seed: int
    spec_hash: str
    run_id: str | None = None
    state: str
    attempts: int = 0
    not_before: float | None = None  # unix time before which a retry must not start
    executor: str | None = None
    job_id: str | None = None  # the Slurm job of the current attempt
    placement: str | None = None  # where the current or last attempt ran: "GPUs 0,1", "CPU", "Slurm job 12"
    reason: str | None = None  # why the cell waits for a retry or failed
    updated_at: str


class GridInfo(BaseModel):
    name: str
    grid: Grid
    runs_dir: str
    source: str | None
    executor: str | None
    created_at: str
    updated_at: str


class Cells:
    def __init__(self, store: Store):
        self.store = store
        self.db = store.db
        self.db.executescript(SCHEMA)

    def register(self, grid: Grid, cells: list[Cell], *, runs_dir: Path, source: Path | None) -> None:
        """Record the grid and add its new cells. A cell whose run exists must keep its settings: a changed
        budget or sandbox would make that run answer a different question than the rest of the grid."""
        existing = {row.cell_key: row for row in self.rows(grid.name)}
        for cell in cells:
            row = existing.get(cell.key)
            if row and row.run_id and row.spec_hash != cell.spec_hash:
                old = self.store.get(row.run_id).spec
                if _same_settings(old, cell.spec):
                    continue  # stored before a setting with a default existed: the run answers the same question
                new = cell.spec.model_dump()
                changed = ", ".join(f"{k} {old.get(k)!r} → {new[k]!r}" for k in new if old.get(k) != new[k])
                raise PtbError(f"grid {grid.name}: cell {cell.key} already has run {row.run_id} with other settings "
                               f"({changed}); give the changed grid a new name")
        stamp = now()
        self.db.execute(
            "INSERT INTO grids (name, grid, runs_dir, source, created_at, updated_at) VALUES (?,?,?,?,?,?)"
            " ON CONFLICT(name) DO UPDATE SET grid=excluded.grid, source=COALESCE(excluded.source, source),"
            " updated_at=excluded.updated_at",
            (grid.name, grid.model_dump_json(), str(runs_dir), str(source) if source else None, stamp, stamp),
        )
        for cell in cells:
            spec = cell.spec
            self.db.execute(
                "INSERT INTO grid_cells (grid, cell_key, agent, model, benchmark, seed, spec_hash, state, updated_at)"
                " VALUES (?,?,?,?,?,?,?,'waiting',?)"
                " ON CONFLICT(grid, cell_key) DO UPDATE SET spec_hash=excluded.spec_hash",
                (grid.name, cell.key, cell.agent, spec.model, spec.benchmark, spec.seed, cell.spec_hash, stamp),
            )

    def info(self, name: str) -> GridInfo:
        row = self.db.execute("SELECT * FROM grids WHERE name=?", (name,)).fetchone()
        if row is None:
            known = ", ".join(g.name for g in self.grids()) or "none yet"
            raise PtbError(f"no grid '{name}' in the store {self.store.path} (grids: {known})")
        data = dict(row)
        try:
            data["grid"] = Grid.model_validate(json.loads(data["grid"]))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise PtbError(f"the stored grid {name} no longer validates ({where}: {first['msg']}); "
                           "run its grid file again") from None
        return GridInfo(**data)

    def runs_dir(self, name: str) -> Path | None:
        row = self.db.execute("SELECT runs_dir FROM grids WHERE name=?", (name,)).fetchone()
        return Path(row["runs_dir"]) if row else None

    def grids(self) -> list[GridInfo]:
        names = [r["name"] for r in self.db.execute("SELECT name FROM grids ORDER BY created_at, name")]
        return [self.info(name) for name in names]

    def set_executor(self, name: str, executor: str) -> None:
        self.db.execute("UPDATE grids SET executor=?, updated_at=? WHERE name=?", (executor, now(), name))

    def rows(self, grid: str) -> list[CellRow]:
        rows = self.db.execute("SELECT * FROM grid_cells WHERE grid=? ORDER BY rowid", (grid,))
        return [CellRow(**dict(r)) for r in rows]

    def get(self, grid: str, key: str) -> CellRow:
        row = self.db.execute("SELECT * FROM grid_cells WHERE grid=? AND cell_key=?", (grid, key)).fetchone()
        return CellRow(**dict(row))

    def update(self, grid: str, key: str, **fields) -> None:
        allowed = {"run_id", "state", "attempts", "not_before", "executor", "job_id", "placement", "reason"}
        assert set(fields) <= allowed, set(fields) - allowed
        assert fields.get("state", "waiting") in CELL_STATES, fields["state"]
        sets = ", ".join(f"{k}=?" for k in fields)
        self.db.execute(f"UPDATE grid_cells SET {sets}, updated_at=? WHERE grid=? AND cell_key=?",
                        (*fields.values(), now(), grid, key))

    def ready(self, grid: str, keys: set[str]) -> list[CellRow]:
        """Cells of `keys` waiting to start whose backoff, if any, has passed."""
        t = time.time()
        return [r for r in self.rows(grid) if r.cell_key in keys and r.state == "waiting"
                and (r.not_before or 0) <= t]


def _same_settings(stored: dict, spec: RunSpec) -> bool:
    try:
        return RunSpec.model_validate(stored) == spec
    except ValidationError:
        return False
