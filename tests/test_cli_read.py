"""Read commands: they never write, fit 80 columns, take short run ids, and speak JSON and CSV."""

import csv
import io
import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from cli_support import ptb  # noqa: E402

from posttrainbench import paths
from posttrainbench.store import Store, short_id

NARROW = {"COLUMNS": "80"}


@pytest.fixture
def store(tmp_path):
    store = Store(paths.store_path())
    for index, (agent, score) in enumerate((("claude:claude-opus-4-6", 0.25), ("codex:gpt-5.1-codex", 0.125))):
        run_id = f"20260101-12000{index}-a{index}b2c3"
        run_dir = tmp_path / run_id
        (run_dir / "logs").mkdir(parents=True)
        scaffold, _, model = agent.partition(":")
        store.add_run(run_id, kind="agent", agent=agent, model="qwen3-1.7b-base", benchmark="arenahardwriting",
                      seed=0, hours=10.0, run_dir=run_dir, spec={"agent": {"scaffold": scaffold, "model": model}})
        store.set_status(run_id, "running")
        store.put_metrics(run_id, "final", {"accuracy": score, "n_samples": 164})
        store.update(run_id, score=score, score_source="final", time_used_s=5590.0)
        store.set_status(run_id, "done")
        (run_dir / "logs" / "agent.log").write_text("[2026-01-01T00:00:01Z] epoch 1 loss 0.9\n")
        (run_dir / "trajectory.jsonl").write_text(json.dumps(
            {"t": "2026-01-01T00:00:01Z", "step": 1, "kind": "output", "text": "epoch 1 loss 0.9"}) + "\n")
        (run_dir / "logs" / "agent_exit.json").write_text(json.dumps(
            {"status": "finished", "returncode": 0, "wall_seconds": 5590.0, "working_time_s": 5500.0}))
    return store


def _widest(text: str) -> int:
    return max(len(line) for line in text.splitlines())


def test_results_fit_80_columns_and_speak_json_and_csv(store):
    table = ptb("results", env=NARROW)
    assert table.returncode == 0, table.stderr
    assert _widest(table.stdout) <= 80, table.stdout
    assert "a0b2c3" in table.stdout and "25.0%" in table.stdout and "1:33:10 16%" in table.stdout
    rows = json.loads(ptb("results", "--json").stdout)
    assert [r["score"] for r in rows] == [0.25, 0.125] and rows[0]["time_used_s"] == 5590.0
    parsed = list(csv.DictReader(io.StringIO(ptb("results", "--csv").stdout)))
    assert parsed[1]["agent"] == "codex:gpt-5.1-codex"


def test_short_run_ids_like_git(store):
    shown = ptb("show", "a1b2")
    assert shown.returncode == 0, shown.stderr
    assert "20260101-120001-a1b2c3" in shown.stdout and "12.5%" in shown.stdout
    assert "trajectory 1 steps" in shown.stdout and "agent log:" in shown.stdout
    story = json.loads(ptb("show", "20260101-120000", "--json").stdout)
    assert story["run"]["id"] == "20260101-120000-a0b2c3" and story["agent_exit"]["status"] == "finished"
    ambiguous = ptb("show", "2026")
    assert ambiguous.returncode == 1 and "names 2 runs" in ambiguous.stderr
    assert short_id("20260101-120000-a0b2c3") == "a0b2c3" and short_id("published-x") == "published-x"
    steps = ptb("trajectory", "a0b")
    assert steps.returncode == 0 and "epoch 1 loss 0.9" in steps.stdout


def test_scores_reads_without_writing_and_fits_80_columns(store):
    before = len(store.runs())
    board = ptb("scores", "--published", env=NARROW)
    assert board.returncode == 0, board.stderr
    assert _widest(board.stdout) <= 80, board.stdout
    assert "Official instruct" in board.stdout
    assert len(Store(paths.store_path()).runs()) == before  # a read command stores nothing
    rows = json.loads(ptb("scores", "--json", "--by", "benchmark").stdout)
    assert {r["benchmark"] for r in rows} >= {"arenahardwriting"}
    runs = list(csv.DictReader(io.StringIO(ptb("scores", "--csv", "--by", "run").stdout)))
    assert {r["run"] for r in runs} == {r.id for r in store.runs()}
    assert _widest(ptb("scores", "--by", "benchmark", env=NARROW).stdout) <= 80
    assert _widest(ptb("scores", "--by", "run", env=NARROW).stdout) <= 80


def test_read_commands_name_a_dead_harness_run_but_leave_it_as_stored(store, tmp_path):
    import socket
    import subprocess

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    run_id = "20260101-120009-dead00"
    store.add_run(run_id, kind="agent", agent="claude:claude-opus-4-6", model="qwen3-1.7b-base",
                  benchmark="gsm8k", seed=0, hours=10.0, run_dir=tmp_path / run_id, spec={})
    store.set_status(run_id, "running")
    store.db.execute("UPDATE runs SET harness_host=?, harness_pid=? WHERE id=?",
                     (socket.gethostname(), int(gone.stdout), run_id))  # as if that process had run it
    for argv in (("results",), ("show", "dead00"), ("scores",), ("trajectory", "dead00")):
        shown = ptb(*argv, env=NARROW)
        assert f"run {run_id} was interrupted" in shown.stdout + shown.stderr, argv
        assert Store(paths.store_path()).get(run_id).status == "running", argv  # a read command writes nothing
    assert store.reap_stale() == [run_id] and Store(paths.store_path()).get(run_id).status == "failed"
