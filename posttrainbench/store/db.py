"""The SQLite store. One connection per Store; WAL so readers never block a running harness."""

import json
import os
import socket
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel

from posttrainbench.errors import PtbError

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
  id TEXT PRIMARY KEY,
  kind TEXT NOT NULL DEFAULT 'agent',
  agent TEXT NOT NULL,
  model TEXT NOT NULL,
  benchmark TEXT NOT NULL,
  seed INTEGER NOT NULL,
  hours REAL NOT NULL,
  run_dir TEXT NOT NULL,
  spec TEXT NOT NULL,
  status TEXT NOT NULL,
  created_at TEXT NOT NULL,
  started_at TEXT,
  ended_at TEXT,
  error TEXT,
  score REAL,
  score_source TEXT,
  flag TEXT,
  time_used_s REAL,
  harness_host TEXT,
  harness_pid INTEGER
);
CREATE TABLE IF NOT EXISTS stages (
  run_id TEXT NOT NULL REFERENCES runs(id),
  stage TEXT NOT NULL,
  status TEXT NOT NULL,
  started_at TEXT,
  ended_at TEXT,
  error TEXT,
  seconds REAL,
  PRIMARY KEY (run_id, stage)
);
CREATE TABLE IF NOT EXISTS metrics (
  run_id TEXT NOT NULL REFERENCES runs(id),
  label TEXT NOT NULL,
  name TEXT NOT NULL,
  value REAL,
  PRIMARY KEY (run_id, label, name)
);
"""

RUN_STATUSES = ("created", "running", "done", "failed")


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def now_precise() -> str:
    """Stage timestamps: most stages of a cached run take well under a second."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


class RunRow(BaseModel):
    id: str
    kind: str
    agent: str
    model: str
    benchmark: str
    seed: int
    hours: float
    run_dir: str
    spec: dict
    status: str
    created_at: str
    started_at: str | None = None
    ended_at: str | None = None
    error: str | None = None
    score: float | None = None
    score_source: str | None = None
    flag: str | None = None
    time_used_s: float | None = None


class Store:
    def __init__(self, path: Path):
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(path, timeout=30, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.executescript(SCHEMA)
            _add_missing_columns(self.db)
        except (OSError, sqlite3.Error) as exc:
            raise PtbError(f"cannot open the store at {path}: {exc}") from None
        self.db.row_factory = sqlite3.Row
        self.path = path
        # Monotonic starts of the stages this process opened: their durations do not depend on the wall clock.
        self._started: dict[tuple[str, str], float] = {}

    def close(self) -> None:
        self.db.close()

    def add_run(self, run_id: str, *, kind: str, agent: str, model: str, benchmark: str, seed: int,
                hours: float, run_dir: Path, spec: dict) -> None:
        self.db.execute(
            "INSERT INTO runs (id, kind, agent, model, benchmark, seed, hours, run_dir, spec, status, created_at)"
            " VALUES (?,?,?,?,?,?,?,?,?,'created',?)",
            (run_id, kind, agent, model, benchmark, seed, hours, str(run_dir), json.dumps(spec), now()),
        )

    def set_status(self, run_id: str, status: str, error: str | None = None) -> None:
        assert status in RUN_STATUSES, status
        if status == "running":
            self.db.execute(
                "UPDATE runs SET status=?, error=NULL, started_at=COALESCE(started_at, ?), ended_at=NULL,"
                " harness_host=?, harness_pid=? WHERE id=?",
                (status, now(), socket.gethostname(), os.getpid(), run_id),
            )
        else:
            self.db.execute(
                "UPDATE runs SET status=?, error=?, ended_at=? WHERE id=?", (status, error, now(), run_id)
            )

    def update(self, run_id: str, **fields) -> None:
        allowed = {"score", "score_source", "flag", "time_used_s", "error"}
        unknown = set(fields) - allowed
        assert not unknown, unknown
        sets = ", ".join(f"{k}=?" for k in fields)
        self.db.execute(f"UPDATE runs SET {sets} WHERE id=?", (*fields.values(), run_id))

    def stage_start(self, run_id: str, stage: str) -> None:
        self._started[(run_id, stage)] = time.monotonic()
        self.db.execute(
            "INSERT INTO stages (run_id, stage, status, started_at) VALUES (?,?,'running',?)"
            " ON CONFLICT(run_id, stage) DO UPDATE SET status='running', started_at=excluded.started_at,"
            " ended_at=NULL, error=NULL, seconds=NULL",
            (run_id, stage, now_precise()),
        )

    def stage_end(self, run_id: str, stage: str, error: str | None = None) -> None:
        """Close a stage; `seconds` is its monotonic duration when this Store opened it, else from the timestamps."""
        ended = now_precise()
        started = self._started.pop((run_id, stage), None)
        if started is not None:
            seconds = time.monotonic() - started
        else:
            row = self.db.execute(
                "SELECT started_at FROM stages WHERE run_id=? AND stage=?", (run_id, stage)
            ).fetchone()
            seconds = (
                (datetime.fromisoformat(ended) - datetime.fromisoformat(row["started_at"])).total_seconds()
                if row is not None and row["started_at"] else None
            )
        self.db.execute(
            "UPDATE stages SET status=?, ended_at=?, error=?, seconds=? WHERE run_id=? AND stage=?",
            ("failed" if error else "done", ended, error, seconds, run_id, stage),
        )

    def stages(self, run_id: str) -> list[dict]:
        rows = self.db.execute("SELECT * FROM stages WHERE run_id=? ORDER BY started_at", (run_id,))
        return [dict(r) for r in rows]

    def stage_done(self, run_id: str, stage: str) -> bool:
        row = self.db.execute("SELECT status FROM stages WHERE run_id=? AND stage=?", (run_id, stage)).fetchone()
        return row is not None and row["status"] == "done"

    def put_metrics(self, run_id: str, label: str, metrics: dict) -> None:
        numeric = {k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)}
        self.db.executemany(
            "INSERT OR REPLACE INTO metrics (run_id, label, name, value) VALUES (?,?,?,?)",
            [(run_id, label, k, v) for k, v in numeric.items()],
        )

    def metrics(self, run_id: str) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for row in self.db.execute("SELECT label, name, value FROM metrics WHERE run_id=?", (run_id,)):
            out.setdefault(row["label"], {})[row["name"]] = row["value"]
        return out

    def get(self, run_id: str) -> RunRow:
        row = self.db.execute("SELECT * FROM runs WHERE id=?", (run_id,)).fetchone()
        if row is None:
            raise PtbError(f"no run '{run_id}' in the store {self.path}")
        return _row(row)

    def resolve(self, text: str) -> str:
        """The run id that `text` names: the id itself, or (like git) a unique prefix of the id or of its random
        tail, the short id tables show."""
        ids = [r[0] for r in self.db.execute("SELECT id FROM runs")]
        if text in ids:
            return text
        found = [i for i in ids if text and (i.startswith(text) or short_id(i).startswith(text))]
        if len(found) == 1:
            return found[0]
        if not found:
            raise PtbError(f"no run '{text}' in the store {self.path}")
        shown = ", ".join(sorted(found)[:5]) + (" ..." if len(found) > 5 else "")
        raise PtbError(f"'{text}' names {len(found)} runs ({shown}); give more of the id")

    def runs(self, **where) -> list[RunRow]:
        clause = " AND ".join(f"{k}=?" for k in where)
        sql = "SELECT * FROM runs" + (f" WHERE {clause}" if clause else "") + " ORDER BY created_at, id"
        return [_row(r) for r in self.db.execute(sql, tuple(where.values()))]

    def stale(self) -> list[str]:
        """The runs marked running whose harness process on this host is gone (it crashed or was killed)."""
        host = socket.gethostname()
        rows = self.db.execute("SELECT id, harness_pid FROM runs WHERE status='running' AND harness_host=?", (host,))
        return [row["id"] for row in rows.fetchall() if not _alive(row["harness_pid"])]

    def reap_stale(self) -> list[str]:
        """Mark the stale runs (`stale`) failed, and their running stage interrupted."""
        reaped = self.stale()
        for run_id in reaped:
            self.set_status(run_id, "failed", "the harness stopped before the run finished")
            self.db.execute(
                "UPDATE stages SET status='failed', ended_at=?, error='interrupted' WHERE run_id=? AND status='running'",
                (now(), run_id),
            )
        return reaped


def short_id(run_id: str) -> str:
    """The random tail of a run id (20260101-120000-a1b2c3 -> a1b2c3), or the whole id when it has none."""
    tail = run_id.rpartition("-")[2]
    return tail if len(tail) == 6 and all(ch in "0123456789abcdef" for ch in tail) else run_id
def _add_missing_columns(db: sqlite3.Connection) -> None:
    """Stores made before a column existed get it (NULL for their old rows)."""
    have = {row[1] for row in db.execute("PRAGMA table_info(stages)")}
    if "seconds" not in have:
        try:
            db.execute("ALTER TABLE stages ADD COLUMN seconds REAL")
        except sqlite3.OperationalError as exc:  # another harness added it first
            if "duplicate column" not in str(exc):
                raise


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _row(row: sqlite3.Row) -> RunRow:
    data = dict(row)
    data["spec"] = json.loads(data["spec"])
    data.pop("harness_host"), data.pop("harness_pid")
    return RunRow(**data)
