"""A real local grid: worker processes, GPU pinning, and a harness killed with SIGKILL mid-grid and resumed."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from grid_support import EXPECTED, assert_no_shared_gpu, gpu_use, make_stopper, results, warm_base_cache, write_grid

from posttrainbench import paths
from posttrainbench.errors import PtbError
from posttrainbench.executors.grid import resume_grid, run_grid
from posttrainbench.executors.grid_status import grid_status
from posttrainbench.store import Store

pytestmark = pytest.mark.slow

HARNESS = ("import sys; from posttrainbench.executors.grid import run_grid; "
           "run_grid(sys.argv[1], gpus=[0, 1], poll_s=0.2)")


@pytest.fixture(scope="module")
def stopper(tiny_model, shared_data, tmp_path_factory):
    os.environ["OMP_NUM_THREADS"] = "1"
    warm_base_cache(tmp_path_factory.mktemp("warm"))
    return make_stopper(tiny_model, tmp_path_factory.mktemp("stopper") / "model")


def _wait_for_kill_point(harness: subprocess.Popen, log: Path):
    """Until one cell is done and another's agent is running (it has written gpu.txt)."""
    deadline = time.time() + 600
    while time.time() < deadline:
        assert harness.poll() is None, log.read_text()
        try:
            statuses = grid_status("killed")
        except PtbError:  # not registered yet
            statuses = []
        done = [s for s in statuses if s.state == "done"]
        busy = [s for s in statuses if s.state == "running" and s.stage == "agent"
                and (paths.runs_dir() / "killed" / s.run_id / "gpu.txt").exists()]
        if done and busy:
            return done, busy
        time.sleep(0.2)
    raise AssertionError(f"the grid never reached the kill point:\n{log.read_text()}")


def test_sigkill_mid_grid_then_resume(tmp_path, stopper):
    path = write_grid(tmp_path / "grid.yaml", stopper, name="killed", agent_seconds=5)
    log = tmp_path / "harness.log"
    with open(log, "w") as out:
        harness = subprocess.Popen([sys.executable, "-c", HARNESS, str(path)], stdout=out, stderr=out)
    try:
        done, busy = _wait_for_kill_point(harness, log)
        store = Store(paths.store_path())
        finished_agents = {s.key: store.stages(s.run_id) for s in done}
        harness.send_signal(signal.SIGKILL)
        harness.wait()
    finally:
        harness.kill()

    statuses = resume_grid("killed", gpus=[0, 1], poll_s=0.2)

    assert results(statuses) == EXPECTED
    assert all("; agent exit code 3" in s.reason for s in statuses if s.key.startswith("crasher"))
    runs = store.runs()
    assert sorted(r.id for r in runs) == sorted(s.run_id for s in statuses)  # one run per cell: none lost or doubled
    by_key = {s.key: s for s in statuses}
    for key, stages in finished_agents.items():
        assert store.stages(by_key[key].run_id) == stages  # finished cells were not run again
    for cell in busy:
        after = by_key[cell.key]
        assert (after.run_id, after.attempts) == (cell.run_id, 1)  # same run; the interruption is not an attempt
        old_logs = Path(store.get(after.run_id).run_dir) / "logs" / "attempt-1"
        assert (old_logs / "agent.log").is_file()  # the agent started again in a clean workspace
    assert_no_shared_gpu(gpu_use([Path(r.run_dir) for r in runs]), {"0", "1"})


@pytest.mark.skipif(Path("/dev/nvidiactl").exists(), reason="this machine has an NVIDIA driver")
def test_no_usable_gpu_is_retried_then_given_up(tmp_path, small_model, shared_data, bwrap):
    path = tmp_path / "nogpu.yaml"
    path.write_text("agents: [{scaffold: command, command: 'true'}]\nmodels: [smollm2-135m]\nbenchmarks: [gsm8k]\n"
                    "hours: 0.05\ngpus: 1\nlimit: 2\nretry: {attempts: 2, backoff_s: 0}\n")
    (status,) = run_grid(path, gpus=[0], poll_s=0.2)
    assert (status.state, status.attempts, status.stage) == ("failed", 2, "agent")
    # Decided by the harness's own GPU check, not by the words of the error.
    assert status.reason.startswith("no usable GPU: /dev/nvidiactl does not exist (the agent stage failed: GPUs [0]")
    assert status.reason.endswith("(gave up after 2 attempts)")
    (run,) = Store(paths.store_path()).runs()
    assert run.id == status.run_id
    assert (Path(run.run_dir) / "logs" / "worker.log").read_text().count("agent: started") == 2
