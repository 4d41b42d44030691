"""Run a grid to the end on this machine or on Slurm, resume it after any crash, and report every cell.

The harness holds a lock on the grid while it drives it, so two harnesses never start the same cell. Each cell
gets one run, created when the cell first starts; every later attempt executes that run again from its first
unfinished stage. When the harness dies, its local workers die with it (their stage is recorded as interrupted)
while Slurm jobs go on; a resume restarts the former and picks the latter up again."""

import fcntl
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Literal, Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from posttrainbench import paths, units
from posttrainbench.errors import PtbError
from posttrainbench.executors.cells import CellRow, Cells
from posttrainbench.executors.failures import classify
from posttrainbench.executors.grid_status import CellStatus, open_store, statuses
from posttrainbench.executors.local import Ended, LocalExecutor, detect_gpus
from posttrainbench.executors.pipeline import create_run
from posttrainbench.executors.scheduler import Job
from posttrainbench.executors.slurm import SlurmExecutor
from posttrainbench.executors.stages import STAGES
from posttrainbench.specs.grid import Cell, Grid, expand, load_grid
from posttrainbench.store import Store
from posttrainbench.untrusted import clean_text, escape_text
from posttrainbench.workspace.layout import RunLayout

ExecutorName = Literal["local", "slurm"]
LOCK = ".grid.lock"


def run_grid(path: Path, *, executor: ExecutorName = "local", store: Path | None = None, runs_dir: Path | None = None,
             gpus: list[int] | None = None, cpu_slots: int = 1, retry_failed: bool = False,
             console: Console | None = None, poll_s: float = 2.0) -> list[CellStatus]:
    """Run every unfinished cell of the grid file at `path` (a grid already in the store continues where it is)."""
    grid = load_grid(Path(path))
    return _drive(grid, Path(path).resolve(), executor=executor, store_path=store, runs_dir=runs_dir, gpus=gpus,
                  cpu_slots=cpu_slots, retry_failed=retry_failed, console=console, poll_s=poll_s)


def resume_grid(name: str, *, executor: ExecutorName | None = None, store: Path | None = None,
                gpus: list[int] | None = None, cpu_slots: int = 1, retry_failed: bool = False,
                console: Console | None = None, poll_s: float = 2.0) -> list[CellStatus]:
    """Continue a stored grid by name, with the executor it last ran on unless another is named.
    `retry_failed` gives failed cells a fresh set of attempts (after fixing what made them fail)."""
    with open_store(store) as opened:
        info = Cells(opened).info(name)
    return _drive(info.grid, None, executor=executor or info.executor or "local", store_path=store,
                  runs_dir=Path(info.runs_dir), gpus=gpus, cpu_slots=cpu_slots, retry_failed=retry_failed,
                  console=console, poll_s=poll_s)


@contextmanager
def _locked(runs_dir: Path, name: str) -> Iterator[None]:
    runs_dir.mkdir(parents=True, exist_ok=True)
    with open(runs_dir / LOCK, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PtbError(f"grid {name} is being run by another harness (lock {runs_dir / LOCK})") from None
        yield


def _drive(grid: Grid, source: Path | None, *, executor: str, store_path: Path | None, runs_dir: Path | None,
           gpus: list[int] | None, cpu_slots: int, retry_failed: bool, console: Console | None,
           poll_s: float) -> list[CellStatus]:
    console = console or Console(stderr=True)
    with open_store(store_path) as store:
        cells = Cells(store)
        registered = cells.runs_dir(grid.name)
        if registered and runs_dir and registered != Path(runs_dir).resolve():
            raise PtbError(f"grid {grid.name} keeps its runs in {registered}, not {runs_dir}")
        folder = (registered or runs_dir or paths.runs_dir() / grid.name).resolve()
        plan = expand(grid)
        with _locked(folder, grid.name):
            cells.register(grid, plan, runs_dir=folder, source=source)
            runner = _executor(executor, store, grid, gpus, cpu_slots)
            runner.check(max(cell.spec.gpus for cell in plan))
            cells.set_executor(grid.name, runner.name)
            driver = _Driver(grid, plan, folder, store, cells, runner, console)
            driver.recover(retry_failed)
            driver.loop(poll_s)
        return statuses(store, cells, grid.name)


class Executor(Protocol):
    name: str

    def check(self, gpus_per_run: int) -> None: ...
    def describe(self) -> str: ...
    def adopt(self, key: str, job_id: str | None, run_dir: Path, run_id: str) -> bool: ...
    def start(self, jobs: list[Job], prepare: Callable[[str], Path | None]) -> list[tuple[str, str, str | None]]: ...
    def poll(self) -> list[Ended]: ...
    def running(self) -> set[str]: ...
    def queued(self) -> int: ...
    def eta_hours(self, waiting: list[Job]) -> float | None: ...
    def stop(self) -> list[str]: ...


def _executor(name: str, store: Store, grid: Grid, gpus: list[int] | None, cpu_slots: int) -> Executor:
    if name == "local":
        return LocalExecutor(store.path.resolve(), detect_gpus() if gpus is None else gpus, cpu_slots)
    if name == "slurm":
        return SlurmExecutor(store, grid)
    raise PtbError(f"unknown executor '{name}' (local or slurm)")


class _Driver:
    def __init__(self, grid: Grid, plan: list[Cell], runs_dir: Path, store: Store, cells: Cells, runner: Executor,
                 console: Console):
        self.grid, self.runs_dir, self.store, self.cells, self.runner = grid, runs_dir, store, cells, runner
        self.by_key = {cell.key: cell for cell in plan}
        self.console = console

    def log(self, message: str) -> None:
        """`message` is rich markup: whatever in it quotes a run (errors, reasons) goes through escape_text."""
        self.console.print(f"[dim]grid {escape_text(self.grid.name)}[/] {message}", highlight=False)

    def rows(self) -> list[CellRow]:
        return [r for r in self.cells.rows(self.grid.name) if r.cell_key in self.by_key]

    def update(self, key: str, **fields) -> None:
        self.cells.update(self.grid.name, key, **fields)

    def job(self, key: str) -> Job:
        spec = self.by_key[key].spec
        return Job(key, spec.gpus, spec.hours)

    def recover(self, retry_failed: bool) -> None:
        """Bring the cells in line with what happened while no harness watched them."""
        self.store.reap_stale()
        self._link_orphan_runs()
        for row in self.rows():
            if row.state == "running":
                run_dir = Path(self.store.get(row.run_id).run_dir) if row.run_id else None
                if row.executor == "slurm" and row.job_id and self.runner.name != "slurm":
                    raise PtbError(f"cell {row.cell_key} is Slurm job {row.job_id}: resume with the slurm executor "
                                   f"or cancel the grid's jobs (scancel -n ptb-{self.grid.name})")
                if run_dir and self.runner.adopt(row.cell_key, row.job_id, run_dir, row.run_id):
                    self.log(f"{row.cell_key}: following {row.placement} again")
                    continue
                if row.run_id and self.store.get(row.run_id).status == "done":
                    self.settle(Ended(row.cell_key, "finished while no harness watched"))
                else:
                    self.update(row.cell_key, state="waiting", attempts=max(0, row.attempts - 1), job_id=None,
                                reason="interrupted: the harness stopped")
            elif row.state == "failed" and retry_failed:
                if row.run_id:
                    outcome = classify(self.store, row.run_id)
                    if outcome.reopen:
                        self._reopen(row.run_id, outcome.reopen, outcome.reason)
                self.update(row.cell_key, state="waiting", attempts=0, not_before=None, reason=None)

    def _link_orphan_runs(self) -> None:
        """A run created just before the harness died, before its cell learned its id, belongs to that cell."""
        linked = {r.run_id for r in self.cells.rows(self.grid.name) if r.run_id}
        unlinked = {r.cell_key: r for r in self.rows() if not r.run_id}
        if not unlinked:
            return
        for run in self.store.runs():
            if run.id in linked or Path(run.run_dir).parent != self.runs_dir:
                continue
            for key in list(unlinked):
                if self.by_key[key].spec.model_dump() == run.spec:
                    self.update(key, run_id=run.id)
                    del unlinked[key]
                    break

    def prepare(self, key: str) -> Path | None:
        row = self.cells.get(self.grid.name, key)
        if row.run_id:
            return Path(self.store.get(row.run_id).run_dir)
        try:
            manifest = create_run(self.by_key[key].spec, self.store, runs_dir=self.runs_dir)
        except Exception as exc:  # any failure to set a cell up is that cell's, not the whole grid's
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            self.update(key, state="failed", reason=f"preparing the run failed: {message}")
            self.log(f"[red]{key}: preparing the run failed:[/] {escape_text(message)}")
            return None
        self.update(key, run_id=manifest.run_id)
        return self.runs_dir / manifest.run_id

    def start(self) -> None:
        busy = self.runner.running()
        ready = [r for r in self.cells.ready(self.grid.name, set(self.by_key)) if r.cell_key not in busy]
        if not ready:
            return
        attempts = {r.cell_key: r.attempts for r in ready}
        jobs = [self.job(r.cell_key) for r in ready]
        for key, placement, job_id in self.runner.start(jobs, self.prepare):
            attempt = attempts[key] + 1
            self.update(key, state="running", attempts=attempt, executor=self.runner.name, job_id=job_id,
                        placement=placement, reason=None)
            run_id = self.cells.get(self.grid.name, key).run_id
            logs = (Path(self.store.get(run_id).run_dir) / "logs") if run_id else None
            # where to watch it: the agent's output, and the stages with evaluation progress
            where = f"; follow {logs / 'agent.log'} and {logs / 'worker.log'}" if logs else ""
            self.log(f"{key}: attempt {attempt} started on {placement}{where}")

    def settle(self, ended: Ended) -> None:
        row = self.cells.get(self.grid.name, ended.key)
        outcome = classify(self.store, row.run_id, ended.note)
        if outcome.kind == "result":
            run = self.store.get(row.run_id)
            self.update(ended.key, state="done", job_id=None, not_before=None, reason=None)
            note = f" ({run.error})" if run.score_source == "base" and run.error else ""
            self.log(f"[green]{ended.key}: done[/], score {units.percent(run.score)} from the {run.score_source} "
                     f"model{escape_text(note)}")
            return
        if outcome.kind == "retry":
            if outcome.reopen:
                self._reopen(row.run_id, outcome.reopen, outcome.reason)
            if row.attempts < self.grid.retry.attempts:
                delay = self.grid.retry.delay(row.attempts)
                self.update(ended.key, state="waiting", job_id=None, not_before=time.time() + delay,
                            reason=outcome.reason)
                self.log(f"[yellow]{ended.key}: {escape_text(outcome.reason)}[/]; retry {row.attempts + 1}/"
                         f"{self.grid.retry.attempts} in {_duration(delay)}")
                return
            reason = f"{outcome.reason} (gave up after {row.attempts} attempts)"
        else:
            reason = outcome.reason
        self.update(ended.key, state="failed", job_id=None, reason=reason)
        self.log(f"[red]{ended.key}: failed:[/] {escape_text(reason)}")

    def _reopen(self, run_id: str, first: str, reason: str | None) -> None:
        """Mark `first` and later stages of a run as not done, so that the next attempt does them again."""
        for stage in STAGES[STAGES.index(first):]:
            if self.store.stage_done(run_id, stage):
                self.store.stage_end(run_id, stage, error=f"reopened for a retry: {reason}"[:300])

    def loop(self, poll_s: float) -> None:
        total = len(self.by_key)
        self.log(self.runner.describe())
        progress = _GridProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TextColumn("{task.fields[eta]}"), console=self.console,
                                 transient=False)
        try:
            with progress:
                task = progress.add_task(self.grid.name, total=total, eta="")
                while True:
                    for ended in self.runner.poll():
                        self.settle(ended)
                    self.start()
                    rows = self.rows()
                    counts = {s: sum(1 for r in rows if r.state == s) for s in ("done", "running", "waiting", "failed")}
                    progress.cell_lines = self._cell_lines(rows)
                    progress.update(task, completed=counts["done"] + counts["failed"], eta=self._eta(rows),
                                    description=self._summary(counts))
                    if counts["running"] + counts["waiting"] == 0:
                        break
                    time.sleep(poll_s)
        except KeyboardInterrupt:
            for key in self.runner.stop():
                row = self.cells.get(self.grid.name, key)
                self.update(key, state="waiting", attempts=max(0, row.attempts - 1),
                            reason="interrupted: the harness stopped")
            going = sum(1 for r in self.rows() if r.state == "running")
            self.log(f"stopped{f'; {going} jobs go on without the harness' if going else ''}; "
                     f"`ptb grid resume {self.grid.name}` continues")
            raise
        done = sum(1 for r in self.rows() if r.state == "done")
        self.log(f"finished: {done} of {total} cells done, {total - done} failed")

    def _cell_lines(self, rows: list[CellRow]) -> list[str]:
        lines = []
        for row in rows:
            if row.state == "running" and row.run_id:
                stages = self.store.stages(row.run_id)
                state_file = RunLayout(Path(self.store.get(row.run_id).run_dir)).progress
                lines.append(clean_text(f"  {row.cell_key}: "
                                        f"{activity(stages, state_file, self.by_key[row.cell_key].spec.hours)}"))
        return lines

    def _summary(self, counts: dict[str, int]) -> str:
        parts = [f"{counts['done']} done", f"{counts['running']} running"]
        if self.runner.queued():
            parts[-1] += f" ({self.runner.queued()} queued)"
        parts += [f"{counts['waiting']} waiting", f"{counts['failed']} failed"]
        return f"{self.grid.name}: " + " · ".join(parts)

    def _eta(self, rows: list[CellRow]) -> str:
        left = [self.job(r.cell_key) for r in rows if r.state == "waiting"]
        hours = self.runner.eta_hours(left)
        return f"ETA ~{_duration(hours * 3600)}" if hours else ""


class _GridProgress(Progress):
    """The grid's bar, and under it one line per running cell: its stage, items and time left."""

    def __init__(self, *columns, **kwargs) -> None:
        self.cell_lines: list[str] = []  # set first: the base class renders while it starts
        super().__init__(*columns, **kwargs)

    def get_renderables(self):
        yield self.make_tasks_table(self.tasks)
        for line in self.cell_lines:
            yield Text(line, no_wrap=True, overflow="ellipsis")


def activity(stages: list[dict], progress_file: Path, hours: float, now: float | None = None) -> str:
    """What a running cell does now: its stage and how long it has run (the agent's against its budget), and
    during evaluation the items done, tok/s and time left that the worker keeps in `progress_file`."""
    now = time.time() if now is None else now
    running = [s for s in stages if s["status"] == "running" and s.get("started_at")]
    if not running:
        return "starting"
    stage = running[-1]
    elapsed = max(0.0, now - datetime.fromisoformat(stage["started_at"]).timestamp())
    if stage["stage"] == "agent":
        return f"agent {units.budget_share(elapsed, hours)}"
    state = _progress_state(progress_file) if stage["stage"] == "evaluate" else None
    if state is None:
        return f"{stage['stage']} {units.duration(elapsed)}"
    text = f"evaluating {state['label']}: {state['done']}/{state['total'] if state['total'] is not None else '?'} items"
    if state["tok_s"] is not None:
        text += f", {state['tok_s']:.0f} tok/s"
    if state["eta_s"] is not None:
        text += f", about {units.duration(state['eta_s'])} left"
    return text


def _progress_state(path: Path) -> dict | None:
    """The worker's progress file (evaluation/progress.py), or None when absent, being replaced or malformed."""
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    numbers = ("done", "total", "tok_s", "eta_s")
    if not isinstance(state, dict) or not isinstance(state.get("label"), str) or not all(
            state.get(k) is None or (isinstance(state.get(k), int | float) and not isinstance(state.get(k), bool))
            for k in numbers) or not isinstance(state.get("done"), int):
        return None
    return state


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    hours, minutes = divmod(seconds // 60, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"

