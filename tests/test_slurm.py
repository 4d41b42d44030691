"""A real single-node Slurm (munged, slurmctld and slurmd started here, two fake GPUs through gres) runs the
grid of scripted agents; its harness is killed with SIGKILL while the jobs run, and a resume follows the same
jobs to the end. The results must equal those of a local run of the same grid."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from grid_support import EXPECTED, assert_no_shared_gpu, gpu_use, make_stopper, results, warm_base_cache, write_grid
from slurm_cluster import SlurmCluster, missing

from posttrainbench.errors import PtbError
from posttrainbench.executors.grid import resume_grid, run_grid
from posttrainbench.executors.grid_status import grid_status
from posttrainbench.store import Store

pytestmark = [pytest.mark.slow, pytest.mark.skipif(missing() is not None, reason=missing() or "")]

HARNESS = ("import sys; from pathlib import Path; from posttrainbench.executors.grid import run_grid; "
           "run_grid(sys.argv[1], executor='slurm', store=Path(sys.argv[2]), runs_dir=Path(sys.argv[3]), poll_s=0.2)")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"), gpus=2).start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def stopper(tiny_model, shared_data, tmp_path_factory):
    warm_base_cache(tmp_path_factory.mktemp("warm"))
    return make_stopper(tiny_model, tmp_path_factory.mktemp("stopper") / "model")


def test_slurm_grid_survives_its_harness_and_equals_a_local_run(tmp_path, cluster, stopper, monkeypatch):
    monkeypatch.setenv("SLURM_CONF", str(cluster.conf))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    path = write_grid(tmp_path / "grid.yaml", stopper, name="cluster", agent_seconds=5)
    store_path, runs = tmp_path / "slurm.sqlite", tmp_path / "slurm-runs"
    log = tmp_path / "harness.log"
    with open(log, "w") as out:
        harness = subprocess.Popen([sys.executable, "-c", HARNESS, str(path), str(store_path), str(runs)],
                                   stdout=out, stderr=out)
    try:
        deadline = time.time() + 300
        while True:  # kill the harness once every cell has its job and some still run
            assert harness.poll() is None and time.time() < deadline, log.read_text()
            try:
                statuses = grid_status("cluster", store=store_path)
            except PtbError:
                statuses = []
            if statuses and all(s.placement for s in statuses) and any(s.state != "done" for s in statuses):
                break
            time.sleep(0.2)
        harness.send_signal(signal.SIGKILL)
        harness.wait()
    finally:
        harness.kill()
    submitted = {s.key: s.placement for s in statuses}

    on_slurm = resume_grid("cluster", store=store_path, poll_s=0.2)

    assert {s.key: s.placement for s in on_slurm} == submitted  # the same jobs, none submitted twice
    assert sorted(submitted.values()) == [f"Slurm job {i}" for i in range(1, 5)]
    assert results(on_slurm) == EXPECTED
    run_dirs = [Path(r.run_dir) for r in Store(store_path).runs()]
    assert len(run_dirs) == 4
    assert all("#SBATCH --gres=gpu:1\n" in (d / "logs" / "job.sbatch").read_text() for d in run_dirs)
    assert_no_shared_gpu(gpu_use(run_dirs), {"0", "1"})

    local = run_grid(path, executor="local", store=tmp_path / "local.sqlite", runs_dir=tmp_path / "local-runs",
                     gpus=[0, 1], poll_s=0.2)
    assert results(local) == results(on_slurm)
