"""The grid driver with scripted attempts instead of worker processes: retries, results, fatal errors, resume
after the harness died, and one run per cell whatever happens. Fast: no model, no evaluation."""

import fcntl
import itertools
import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from posttrainbench import paths
from posttrainbench.errors import PtbError
from posttrainbench.executors import facts
from posttrainbench.executors import grid as grid_module
from posttrainbench.executors import local as local_module
from posttrainbench.executors.failures import classify
from posttrainbench.executors.grid import resume_grid, run_grid
from posttrainbench.executors.grid_status import grid_status, list_grids
from posttrainbench.executors.local import Ended, LocalExecutor
from posttrainbench.executors.scheduler import Job
from posttrainbench.executors.slurm import copy_run, job_script
from posttrainbench.executors.stages import STAGES
from posttrainbench.executors.worker import reset_from
from posttrainbench.specs.grid import load_grid
from posttrainbench.store import Store
from posttrainbench.workspace.layout import RunLayout

NO_GPU = "GPUs [0] requested but /dev/nvidiactl does not exist (no NVIDIA driver on this machine?)"
EVAL_OOM = "evaluating final_model on gsm8k failed: evaluation exited with code -9; see results/final/evaluate.log"


class HarnessDied(BaseException):
    """Stands for SIGKILL: nothing in the harness gets to clean up."""


def measured(stage, **fields) -> facts.Facts:
    """What the harness measured at a failure; the defaults: nothing wrong with the host."""
    return facts.Facts(**({"stage": stage, "at": 0.0, "free_bytes": 100 << 30, "run_bytes": 0} | fields))


def finish(source="final", score=0.5, error=None, evaluation: facts.Facts | None = None):
    def attempt(store: Store, run_id: str) -> None:
        if evaluation is not None:
            layout = RunLayout(Path(store.get(run_id).run_dir))
            layout.results("final").mkdir(parents=True, exist_ok=True)
            facts.record(facts.evaluation_facts(layout), evaluation)
        store.set_status(run_id, "running")
        for stage in STAGES:
            if not store.stage_done(run_id, stage):
                store.stage_start(run_id, stage)
                store.stage_end(run_id, stage)
        store.update(run_id, score=score, score_source=source, error=error)
        store.set_status(run_id, "done", error)
    return attempt


def fail(stage, error, found: facts.Facts | None = None):
    def attempt(store: Store, run_id: str) -> None:
        facts.record(facts.stage_facts(RunLayout(Path(store.get(run_id).run_dir))), found or measured(stage))
        store.set_status(run_id, "running")
        store.stage_start(run_id, stage)
        store.stage_end(run_id, stage, error=error)
        store.set_status(run_id, "failed", error)
    return attempt


def vanish(store: Store, run_id: str) -> None:
    store.set_status(run_id, "running")
    store.stage_start(run_id, "agent")


def die(store: Store, run_id: str) -> None:
    vanish(store, run_id)
    raise HarnessDied


class Scripted:
    """An executor whose attempts are scripted per agent label; each attempt 'ends' at the next poll."""

    name = "local"

    def __init__(self, store_path: Path, script: dict[str, list]):
        self.store_path = store_path
        self.script = {label: iter(steps) for label, steps in script.items()}
        self.going: dict[str, Path] = {}
        self.seen: list[tuple[str, dict]] = []  # (cell key, stage statuses when the attempt started)

    def check(self, gpus_per_run): pass
    def describe(self): return "scripted executor"
    def adopt(self, key, job_id, run_dir, run_id): return False
    def running(self): return set(self.going)
    def queued(self): return 0
    def eta_hours(self, waiting): return None

    def start(self, jobs, prepare):
        started = []
        for job in jobs:
            run_dir = prepare(job.key)
            if run_dir is not None:
                self.going[job.key] = run_dir
                started.append((job.key, "GPUs 0", None))
        return started

    def poll(self):
        ended = []
        for key, run_dir in list(self.going.items()):
            store = Store(self.store_path)
            self.seen.append((key, {s["stage"]: s["status"] for s in store.stages(run_dir.name)}))
            next(self.script[key.split("/")[0]])(store, run_dir.name)
            del self.going[key]
            store.close()
            ended.append(Ended(key, "worker exit code 0"))
        return ended

    def stop(self):
        stopped = list(self.going)
        self.going.clear()
        return stopped


@pytest.fixture
def fake_runs(monkeypatch):
    """create_run without models or data: a run dir and a store row."""
    counter = itertools.count(1)

    def create_run(spec, store, *, runs_dir=None, kind="agent"):
        run_id = f"run{next(counter)}"
        (runs_dir / run_id / "logs").mkdir(parents=True)
        store.add_run(run_id, kind=kind, agent=spec.agent.name, model=spec.model, benchmark=spec.benchmark,
                      seed=spec.seed, hours=spec.hours, run_dir=runs_dir / run_id, spec=spec.model_dump())
        return SimpleNamespace(run_id=run_id)

    monkeypatch.setattr(grid_module, "create_run", create_run)
    return create_run


def use_script(monkeypatch, script) -> list[Scripted]:
    made = []

    def executor(name, store, grid, gpus, cpu_slots):
        made.append(Scripted(store.path, script))
        return made[-1]

    monkeypatch.setattr(grid_module, "_executor", executor)
    return made


def grid_file(tmp_path, labels, attempts=2, hours=0.05) -> Path:
    grid = {"name": "g", "agents": [{"label": label, "scaffold": "command", "command": "true"} for label in labels],
            "models": ["smollm2-135m"], "benchmarks": ["gsm8k"], "hours": hours, "gpus": 1,
            "retry": {"attempts": attempts, "backoff_s": 0}}
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump(grid))
    return path


def by_agent(statuses):
    return {s.agent: s for s in statuses}


def test_results_retries_and_errors(tmp_path, monkeypatch, fake_runs):
    made = use_script(monkeypatch, {
        "good": [finish()],
        "nogpu": [fail("agent", NO_GPU, measured("agent", gpu_problem="/dev/nvidiactl does not exist")), finish()],
        "oom": [finish("base", 0.1, EVAL_OOM, measured("evaluate", returncode=facts.OOM_EXIT)), finish("final", 0.3)],
        "crashed": [finish("base", 0.1, "the agent left no final_model folder")],
        "bug": [fail("collect", "TypeError: boom")],
        "lost": [vanish, vanish],
    })
    statuses = by_agent(run_grid(grid_file(tmp_path, ["good", "nogpu", "oom", "crashed", "bug", "lost"]),
                                 poll_s=0.01))
    summary = {agent: (s.state, s.attempts, s.score_source) for agent, s in statuses.items()}
    assert summary == {
        "good": ("done", 1, "final"),
        "nogpu": ("done", 2, "final"),  # no usable GPU: infrastructure, retried
        "oom": ("done", 2, "final"),  # evaluation OOM: retried from the evaluation on
        "crashed": ("done", 1, "base"),  # the agent's own failure is a result
        "bug": ("failed", 1, None),  # a retry would not fix a harness bug
        "lost": ("failed", 2, None),
    }
    assert statuses["bug"].reason == "TypeError: boom"
    assert statuses["lost"].reason.startswith("the worker stopped before the run finished")
    assert "gave up after 2 attempts" in statuses["lost"].reason
    assert statuses["crashed"].reason == "the agent left no final_model folder"
    # The OOM retry did the evaluation again but not the agent.
    oom_attempts = [stages for key, stages in made[0].seen if key.startswith("oom/")]
    assert oom_attempts[1]["agent"] == "done" and oom_attempts[1]["evaluate"] == "failed"
    store = Store(paths.store_path())
    assert sorted(r.id for r in store.runs()) == sorted(s.run_id for s in statuses.values())


def test_sigkilled_harness_resumes_without_duplicates(tmp_path, monkeypatch, fake_runs):
    path = grid_file(tmp_path, ["a", "b"])
    use_script(monkeypatch, {"a": [finish()], "b": [die]})
    with pytest.raises(HarnessDied):
        run_grid(path, poll_s=0.01)
    before = by_agent(grid_status("g"))
    assert (before["b"].state, before["b"].attempts) == ("running", 1)
    use_script(monkeypatch, {"a": [], "b": [finish()]})
    after = by_agent(resume_grid("g", poll_s=0.01))
    assert {a: (s.state, s.attempts, s.run_id) for a, s in after.items()} == {
        "a": ("done", 1, before["a"].run_id), "b": ("done", 1, before["b"].run_id)}  # interruption not counted
    assert len(Store(paths.store_path()).runs()) == 2
    assert [g.executor for g in list_grids()] == ["local"]


def test_run_created_just_before_death_is_linked_not_duplicated(tmp_path, monkeypatch, fake_runs):
    def create_then_die(spec, store, *, runs_dir=None, kind="agent"):
        fake_runs(spec, store, runs_dir=runs_dir, kind=kind)
        raise HarnessDied

    monkeypatch.setattr(grid_module, "create_run", create_then_die)
    use_script(monkeypatch, {"a": []})
    with pytest.raises(HarnessDied):
        run_grid(grid_file(tmp_path, ["a"]), poll_s=0.01)
    assert grid_status("g")[0].run_id is None
    monkeypatch.setattr(grid_module, "create_run", fake_runs)
    use_script(monkeypatch, {"a": [finish()]})
    (status,) = resume_grid("g", poll_s=0.01)
    assert (status.state, status.run_id) == ("done", "run1")
    assert [r.id for r in Store(paths.store_path()).runs()] == ["run1"]


def test_ctrl_c_stops_and_resume_finishes(tmp_path, monkeypatch, fake_runs):
    def interrupt(store, run_id):
        vanish(store, run_id)
        raise KeyboardInterrupt

    use_script(monkeypatch, {"a": [interrupt]})
    with pytest.raises(KeyboardInterrupt):
        run_grid(grid_file(tmp_path, ["a"]), poll_s=0.01)
    assert (grid_status("g")[0].state, grid_status("g")[0].attempts) == ("waiting", 0)
    use_script(monkeypatch, {"a": [finish()]})
    assert [(s.state, s.attempts) for s in resume_grid("g", poll_s=0.01)] == [("done", 1)]


def test_failed_cells_get_new_attempts_only_when_asked(tmp_path, monkeypatch, fake_runs):
    path = grid_file(tmp_path, ["a"], attempts=1)
    use_script(monkeypatch, {"a": [fail("evaluate", "TypeError: boom")]})
    assert run_grid(path, poll_s=0.01)[0].state == "failed"
    use_script(monkeypatch, {"a": []})
    assert run_grid(path, poll_s=0.01)[0].state == "failed"  # nothing to do
    made = use_script(monkeypatch, {"a": [finish()]})
    assert [(s.state, s.attempts) for s in resume_grid("g", retry_failed=True, poll_s=0.01)] == [("done", 1)]
    assert made[0].seen[0][1]["evaluate"] == "failed"


def test_prepare_failure_fails_that_cell_only(tmp_path, monkeypatch, fake_runs):
    def create_run(spec, store, *, runs_dir=None, kind="agent"):
        if spec.agent.command == ["false"]:
            raise PtbError("model fetch failed: connection refused")
        return fake_runs(spec, store, runs_dir=runs_dir, kind=kind)

    monkeypatch.setattr(grid_module, "create_run", create_run)
    use_script(monkeypatch, {"a": [finish()], "b": []})
    path = grid_file(tmp_path, ["a", "b"])
    text = yaml.safe_load(path.read_text())
    text["agents"][1]["command"] = "false"
    path.write_text(yaml.safe_dump(text))
    statuses = by_agent(run_grid(path, poll_s=0.01))
    assert statuses["a"].state == "done"
    assert (statuses["b"].state, statuses["b"].reason) == (
        "failed", "preparing the run failed: model fetch failed: connection refused")


def test_changed_settings_of_a_started_cell_are_refused(tmp_path, monkeypatch, fake_runs):
    use_script(monkeypatch, {"a": [finish()]})
    run_grid(grid_file(tmp_path, ["a"]), poll_s=0.01)
    with pytest.raises(PtbError, match=r"cell a/smollm2-135m/gsm8k/0 already has run run1 .*hours 0.05 → 0.1"):
        run_grid(grid_file(tmp_path, ["a"], hours=0.1), poll_s=0.01)


def test_a_second_harness_is_refused(tmp_path, monkeypatch, fake_runs):
    use_script(monkeypatch, {"a": []})
    folder = paths.runs_dir() / "g"
    folder.mkdir(parents=True)
    with open(folder / ".grid.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with pytest.raises(PtbError, match="being run by another harness"):
            run_grid(grid_file(tmp_path, ["a"]), poll_s=0.01)


def _run(store: Store, tmp_path: Path, agent_exit: dict | None = None) -> str:
    run_dir = tmp_path / "r1"
    (run_dir / "logs").mkdir(parents=True)
    store.add_run("r1", kind="agent", agent="command", model="m", benchmark="b", seed=0, hours=1, run_dir=run_dir,
                  spec={})
    if agent_exit:
        RunLayout(run_dir).agent_exit.write_text(json.dumps(agent_exit))
    return "r1"


AGENT_CHOSEN = "evaluating the agent's model failed: no file 'out of memory' in final_model (CUDA error: unknown)"


@pytest.mark.parametrize("agent_exit, source, error, evaluation, expected", [
    ({"status": "crashed", "stop_reason": None}, "base", "the agent left no final_model folder", None,
     ("result", None)),
    ({"status": "timed_out", "stop_reason": "token limit reached (100 >= 50)"}, "base", "no model", None,
     ("result", None)),
    ({"status": "crashed", "stop_reason": "LLM API unreachable: upstream failed after 8 attempts (HTTP 529)"},
     "base", "the agent left no final_model folder", None, ("retry", "agent")),
    ({"status": "failed_to_start", "detail": "bwrap: Can't mount proc"}, "base", "no model", None,
     ("retry", "agent")),
    # A reprompt session that could not start, after the agent had run: what it left may be why.
    ({"status": "failed_to_start", "detail": "bwrap: Can't mount", "sessions": [
        {"status": "finished"}, {"status": "failed_to_start", "detail": "bwrap: Can't mount"}]}, "base", "no model",
     None, ("result", None)),
    ({"status": "finished"}, "base", EVAL_OOM, {"returncode": facts.OOM_EXIT}, ("retry", "evaluate")),
    ({"status": "finished"}, "base", EVAL_OOM, {"returncode": -9}, ("retry", "evaluate")),
    ({"status": "finished"}, "base", "no model", {"free_bytes": 1 << 20, "run_bytes": 1 << 20},
     ("retry", "evaluate")),
    # The agent's words in the message decide nothing; its own files filling the disk are its own doing.
    ({"status": "finished"}, "base", AGENT_CHOSEN, None, ("result", None)),
    ({"status": "finished"}, "base", AGENT_CHOSEN, {"returncode": 1}, ("result", None)),
    ({"status": "finished"}, "base", "no model", {"free_bytes": 1 << 20, "run_bytes": 50 << 30}, ("result", None)),
    ({"status": "finished"}, "base", "evaluating final_model on gsm8k failed: config.json has no model_type",
     {"returncode": 3}, ("result", None)),
])
def test_classify_finished_runs(tmp_path, agent_exit, source, error, evaluation, expected):
    store = Store(tmp_path / "s.sqlite")
    run_id = _run(store, tmp_path, agent_exit)
    if evaluation is not None:
        finish(source, 0.1, error, measured("evaluate", **evaluation))(store, run_id)
    store.update(run_id, score=0.1, score_source=source, error=error)
    store.set_status(run_id, "done", error)
    outcome = classify(store, run_id)
    assert (outcome.kind, outcome.reopen) == expected


def test_classify_failed_and_vanished_runs(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    run_id = _run(store, tmp_path)
    store.set_status(run_id, "running")
    assert classify(store, run_id, "Slurm job 7 TIMEOUT").reason == (
        "the worker stopped before the run finished (Slurm job 7 TIMEOUT)")
    attempts = [
        ("agent", NO_GPU, measured("agent", gpu_problem="/dev/nvidiactl does not exist"), "retry"),
        ("evaluate", "evaluating the base model failed", measured("evaluate", returncode=facts.OOM_EXIT), "retry"),
        ("agent", "interrupted", measured("agent", exception="builtins.KeyboardInterrupt"), "retry"),
        ("collect", "database is locked", measured("collect", exception="sqlite3.OperationalError"), "retry"),
        ("collect", "ValueError: bad", measured("collect", exception="builtins.ValueError"), "fatal"),
        # Messages that quote agent-made names: only the measurements count.
        ("agent", "No space left on device: 'task/out of memory'",
         measured("agent", exception="builtins.OSError", errno=28, free_bytes=1 << 20, run_bytes=10 << 30), "fatal"),
        ("integrity", "CUDA out of memory; NVML; Stale file handle", measured("integrity"), "fatal"),
        ("evaluate", "interrupted", None, "retry"),  # the store's own mark for a vanished worker
        ("evaluate", "CUDA out of memory. Tried to allocate", None, "fatal"),  # nothing measured
    ]
    for stage, error, found, kind in attempts:
        path = facts.stage_facts(RunLayout(tmp_path / "r1"))
        path.unlink(missing_ok=True)
        if found is not None:
            facts.record(path, found)
        store.stage_start(run_id, stage)
        store.stage_end(run_id, stage, error=error)
        store.set_status(run_id, "failed", error)
        assert classify(store, run_id).kind == kind, error
        store.stage_start(run_id, stage)
        store.stage_end(run_id, stage)


def test_reset_from_agent_keeps_the_old_logs_aside(tmp_path):
    layout = RunLayout(tmp_path / "run")
    for folder in (layout.task, layout.home, layout.logs, layout.final_model, layout.results("final")):
        folder.mkdir(parents=True)
    (layout.task / "half_trained.bin").write_text("x")
    for name in ("agent.log", "agent_exit.json", "worker.log", "job.sbatch", "slurm-3.log"):
        (layout.logs / name).write_text(name)
    reset_from(layout, "agent")
    assert list(layout.task.iterdir()) == [] and list(layout.home.iterdir()) == []
    assert not layout.final_model.exists() and not layout.results("final").exists()
    assert sorted(p.name for p in (layout.logs / "attempt-1").iterdir()) == ["agent.log", "agent_exit.json"]
    assert sorted(p.name for p in layout.logs.iterdir()) == ["attempt-1", "job.sbatch", "slurm-3.log", "worker.log"]


def test_slurm_job_script_and_store_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("PTB_DATA_DIR", "/data dir")
    grid = load_grid(grid_file(tmp_path, ["a"]))
    grid.slurm.partition, grid.slurm.setup = "gpu", ["module load cuda"]
    script = job_script(grid, tmp_path / "run1", gpus=2, hours=0.05)
    assert "#SBATCH --gres=gpu:2\n" in script and "#SBATCH --partition=gpu\n" in script
    assert "#SBATCH --time=123\n" in script  # 0.05 h budget + 2 h margin, in minutes, rounded up
    assert "export PTB_DATA_DIR='/data dir'\n" in script and "\nmodule load cuda\n" in script
    assert script.rstrip().endswith(f"--store {tmp_path / 'run1' / 'run.sqlite'}")
    assert "--gres" not in job_script(grid, tmp_path / "run1", gpus=0, hours=1)

    main = Store(tmp_path / "main.sqlite")
    run_id = _run(main, tmp_path)
    copy_run(main, tmp_path / "job.sqlite", run_id, into_other=True)
    job = Store(tmp_path / "job.sqlite")
    finish(score=0.75)(job, run_id)
    job.put_metrics(run_id, "final", {"accuracy": 0.75})
    job.close()
    copy_run(main, tmp_path / "job.sqlite", run_id, into_other=False)
    row = main.get(run_id)
    assert (row.status, row.score) == ("done", 0.75)
    assert [s["status"] for s in main.stages(run_id)] == ["done"] * len(STAGES)
    assert main.metrics(run_id) == {"final": {"accuracy": 0.75}}


def test_local_executor_pins_gpus_and_never_shares_one(tmp_path, monkeypatch):
    launched = {}

    class FakeProcess:
        def __init__(self, argv, env, **kwargs):
            self.argv, self.env, self.code = argv, env, None
            launched[Path(argv[3]).name] = self

        def poll(self):
            return self.code

    monkeypatch.setattr(local_module.subprocess, "Popen", FakeProcess)
    executor = LocalExecutor(tmp_path / "s.sqlite", gpus=[0, 1, 2, 3], cpu_slots=1)

    def prepare(key):
        (tmp_path / key).mkdir(exist_ok=True)
        return tmp_path / key

    jobs = [Job("a", 1, 10), Job("wide", 2, 5), Job("b", 1, 1), Job("c", 1, 1), Job("cpu", 0, 3), Job("cpu2", 0, 3)]
    started = executor.start(jobs, prepare)
    assert [(key, where) for key, where, _ in started] == [
        ("wide", "GPUs 0,1"), ("a", "GPUs 2"), ("b", "GPUs 3"), ("cpu", "CPU")]
    assert {k: p.env["CUDA_VISIBLE_DEVICES"] for k, p in launched.items()} == {
        "wide": "0,1", "a": "2", "b": "3", "cpu": ""}
    assert launched["a"].argv[-2:] == ["--parent", str(os.getpid())]
    assert executor.start([Job("c", 1, 1), Job("cpu2", 0, 3)], prepare) == []  # all GPUs and the CPU slot busy
    launched["a"].code = 0
    assert executor.poll() == [Ended("a", "worker exit code 0")]
    assert [(key, where) for key, where, _ in executor.start([Job("c", 1, 1)], prepare)] == [("c", "GPUs 2")]
    with pytest.raises(PtbError, match="needs 5 GPUs but this machine offers GPUs 0, 1, 2, 3"):
        executor.check(5)


def test_facts_are_measured_by_the_harness(tmp_path):
    layout = RunLayout(tmp_path / "run")
    layout.task.mkdir(parents=True)
    (layout.task / "data.bin").write_bytes(b"x" * (1 << 20))
    found = facts.measure(layout, "collect", OSError(5, "Input/output error"))
    assert (found.exception, found.errno) == ("builtins.OSError", 5)
    assert found.run_bytes >= 1 << 20 and found.free_bytes > 0
    assert found.infra() == "filesystem: Input/output error"
    assert facts.gpu_problem(0, dev=tmp_path) is None
    assert facts.gpu_problem(1, dev=tmp_path) == f"{tmp_path / 'nvidiactl'} does not exist"
    oom = facts.measure(layout, "evaluate", facts.EvaluationFailed("evaluating failed", facts.OOM_EXIT))
    assert oom.returncode == facts.OOM_EXIT and oom.infra() == "the evaluation ran out of memory"


def test_a_running_cell_shows_its_stage_items_and_time_left(tmp_path):
    """The grid's console shows, under its bar, what each running cell does: the agent against its budget, the
    evaluation's items, tok/s and ETA from the worker's progress file; a malformed file shows only the stage."""
    from datetime import UTC, datetime

    from posttrainbench.executors.grid import activity

    start = datetime(2026, 1, 1, tzinfo=UTC)
    at = start.timestamp() + 1800
    agent = [{"stage": "agent", "status": "running", "started_at": start.isoformat()}]
    assert activity(agent, tmp_path / "none.json", hours=1.0, now=at) == "agent 0:30:00 (50% of 1 h)"
    evaluating = [{"stage": "agent", "status": "done", "started_at": start.isoformat()},
                  {"stage": "evaluate", "status": "running", "started_at": start.isoformat()}]
    state = tmp_path / "progress.json"
    assert activity(evaluating, state, hours=1.0, now=at) == "evaluate 0:30:00"
    state.write_text(json.dumps({"label": "the agent's model", "done": 12, "total": 20, "tok_s": 41.6,
                                 "eta_s": 95, "updated": at}))
    assert (activity(evaluating, state, hours=1.0, now=at)
            == "evaluating the agent's model: 12/20 items, 42 tok/s, about 0:01:35 left")
    state.write_text(json.dumps({"label": "x", "done": "12", "total": 20, "tok_s": None, "eta_s": None}))
    assert activity(evaluating, state, hours=1.0, now=at) == "evaluate 0:30:00"
    assert activity([], state, hours=1.0, now=at) == "starting"
