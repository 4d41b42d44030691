import signal
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from posttrainbench.errors import PtbError
from posttrainbench.store import Store


def _add(store: Store, run_id: str, tmp_path) -> None:
    store.add_run(run_id, kind="agent", agent="reference", model="smollm2-135m", benchmark="humaneval", seed=0,
                  hours=0.1, run_dir=tmp_path / run_id, spec={"k": 1})


def test_stages_metrics_and_status(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    _add(store, "r1", tmp_path)
    store.set_status("r1", "running")
    store.stage_start("r1", "agent")
    assert not store.stage_done("r1", "agent")
    store.stage_end("r1", "agent")
    store.stage_start("r1", "evaluate")
    store.stage_end("r1", "evaluate", error="model not loadable")
    store.put_metrics("r1", "final", {"accuracy": 0.25, "stderr": 0.1, "backend": "hf", "flag": True})
    store.update("r1", score=0.25, score_source="final")
    store.set_status("r1", "done")
    row = store.get("r1")
    assert (row.status, row.score, row.spec) == ("done", 0.25, {"k": 1})
    assert store.stage_done("r1", "agent") and not store.stage_done("r1", "evaluate")
    assert [s["status"] for s in store.stages("r1")] == ["done", "failed"]
    assert store.metrics("r1") == {"final": {"accuracy": 0.25, "stderr": 0.1}}


def test_unknown_run_is_a_clear_error(tmp_path):
    with pytest.raises(PtbError, match="no run 'nope'"):
        Store(tmp_path / "s.sqlite").get("nope")


def test_unwritable_store_location(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(PtbError, match="cannot open the store"):
        Store(blocker / "s.sqlite")


def test_store_survives_a_harness_killed_mid_run(tmp_path):
    db = tmp_path / "s.sqlite"
    store = Store(db)
    _add(store, "finished", tmp_path)
    store.set_status("finished", "running")
    store.put_metrics("finished", "final", {"accuracy": 0.5})
    store.set_status("finished", "done")

    child = textwrap.dedent(f"""
        import os, signal
        from posttrainbench.store import Store
        s = Store({str(db)!r})
        s.add_run("crashing", kind="agent", agent="a", model="m", benchmark="b", seed=0, hours=1.0,
                  run_dir={str(tmp_path)!r}, spec={{}})
        s.set_status("crashing", "running")
        s.stage_start("crashing", "agent")
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", child])
    assert proc.returncode == -signal.SIGKILL

    reopened = Store(db)
    assert reopened.get("crashing").status == "running"
    assert reopened.reap_stale() == ["crashing"]
    crashed = reopened.get("crashing")
    assert crashed.status == "failed" and "harness stopped" in crashed.error
    assert reopened.stages("crashing")[0]["status"] == "failed"
    intact = reopened.get("finished")
    assert intact.status == "done" and reopened.metrics("finished") == {"final": {"accuracy": 0.5}}


def test_a_unique_prefix_names_a_run_like_git(tmp_path):
    store = Store(tmp_path / "ptb.sqlite")
    for run_id in ("20260101-120000-a1b2c3", "20260101-120001-a1ff00", "published-instruct-m-gsm8k"):
        store.add_run(run_id, kind="agent", agent="reference", model="m", benchmark="gsm8k", seed=0, hours=1.0,
                      run_dir=tmp_path, spec={})
    assert store.resolve("20260101-120000-a1b2c3") == "20260101-120000-a1b2c3"
    assert store.resolve("a1b") == "20260101-120000-a1b2c3"  # the short id tables show
    assert store.resolve("20260101-120001") == "20260101-120001-a1ff00"
    assert store.resolve("published") == "published-instruct-m-gsm8k"
    with pytest.raises(PtbError, match="'a1' names 2 runs"):
        store.resolve("a1")
    with pytest.raises(PtbError, match="no run 'zz'"):
        store.resolve("zz")
def test_stage_durations_are_sub_second_and_old_stores_gain_the_column(tmp_path):
    path = tmp_path / "s.sqlite"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE stages (run_id TEXT NOT NULL, stage TEXT NOT NULL, status TEXT NOT NULL, started_at TEXT,"
        " ended_at TEXT, error TEXT, PRIMARY KEY (run_id, stage));"
        "INSERT INTO stages VALUES ('old', 'agent', 'done', '2026-01-01T00:00:00+00:00',"
        " '2026-01-01T00:00:01+00:00', NULL);"
    )
    old.commit()
    old.close()
    store = Store(path)
    _add(store, "r1", tmp_path)
    store.stage_start("r1", "prepare")
    store.stage_end("r1", "prepare")
    store.stage_start("r1", "agent")
    # A stage closed by another process (a worker) is timed from its stored timestamps.
    Store(path).stage_end("r1", "agent")
    stages = {s["stage"]: s for s in store.stages("r1")}
    assert 0 <= stages["prepare"]["seconds"] < 1  # monotonic, not rounded to whole seconds
    assert "." in stages["prepare"]["started_at"]
    assert stages["agent"]["seconds"] is not None and stages["agent"]["seconds"] >= 0
    assert store.stages("old")[0]["seconds"] is None
