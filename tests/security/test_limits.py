"""Resource exhaustion by the agent: memory, processes and disk stop it with a clear status (`limit: memory`, ...)
that is recorded in logs/agent_exit.json, and such a run is the agent's own failure, scored as the base model."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cli_support import ptb

from posttrainbench.executors.failures import classify
from posttrainbench.executors.pipeline import create_run, execute
from posttrainbench.sandbox import Mount, SandboxRequest, python_mounts, run
from posttrainbench.sandbox import limits as limits_module
from posttrainbench.sandbox import tree
from posttrainbench.sandbox.limits import LimitGuard, disk_usage
from posttrainbench.specs import AgentSpec, RunSpec
from posttrainbench.specs.grid import expand, load_grid
from posttrainbench.specs.limits import SandboxLimits
from posttrainbench.store import Store
from posttrainbench.workspace.layout import RunLayout

SMALL = SandboxLimits(memory_gb=0.25, pids=64, disk_gb=0.05)


def _run(tmp_path: Path, argv: list[str], limits: SandboxLimits = SMALL):
    (tmp_path / "task").mkdir(exist_ok=True)
    request = SandboxRequest(argv=argv, cwd="/task", mounts=[*python_mounts(), Mount(tmp_path / "task", "/task", True)],
                             env={"PATH": "/usr/bin:/bin"})
    log = tmp_path / "agent.log"
    info = run(request, backend="bwrap", time_limit_s=120, grace_s=2, log_path=log, limits=limits)
    return info, log.read_text() if log.exists() else ""


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


@pytest.mark.bwrap
def test_memory_limit_stops_the_agent(bwrap, tmp_path, root_mode):
    info, log = _run(tmp_path, _python("""
        import time
        hog = bytearray(1 << 30)  # 1 GiB of zero pages, touched so they count
        for i in range(0, len(hog), 4096):
            hog[i] = 1
        time.sleep(100)
    """))
    assert info.status == "limit" and info.limit == "memory", (info, log)
    assert info.detail.startswith("limit: memory")


@pytest.mark.bwrap
def test_process_limit_stops_the_agent(bwrap, tmp_path, root_mode):
    marker = "1000.424242"
    info, log = _run(tmp_path, ["/bin/sh", "-c", f"while true; do sleep {marker} & done"])
    assert info.status == "limit" and info.limit == "pids", (info, log)
    left = subprocess.run(["pgrep", "-f", f"sleep {marker}"], capture_output=True, text=True).stdout.split()
    assert not left


@pytest.mark.bwrap
def test_disk_limit_stops_the_agent(bwrap, tmp_path, root_mode):
    info, log = _run(tmp_path, ["/bin/sh", "-c", "for i in 1 2 3 4 5 6 7 8; do head -c 10000000 /dev/zero > f$i; done;"
                                                 " sleep 100"])
    assert info.status == "limit" and info.limit == "disk", (info, log)


@pytest.mark.bwrap
def test_within_limits_is_not_a_limit(bwrap, tmp_path):
    info, log = _run(tmp_path, _python("open('small', 'wb').write(b'x' * 1_000_000)"))
    assert info.status == "finished" and info.limit is None, (info, log)


def test_disk_usage_counts_allocated_blocks_once(tmp_path):
    (tmp_path / "sparse").write_bytes(b"")
    with open(tmp_path / "sparse", "r+b") as f:
        f.truncate(1 << 30)  # 1 GiB that takes no space
    (tmp_path / "full").write_bytes(b"x" * (1 << 20))
    (tmp_path / "hardlink").hardlink_to(tmp_path / "full")
    (tmp_path / "link").symlink_to("/usr")
    assert (1 << 20) <= disk_usage([tmp_path]) < (1 << 20) + (1 << 16)


@pytest.mark.bwrap
@pytest.mark.slow
def test_a_run_that_fills_its_disk_is_scored_as_base_not_retried(bwrap, tmp_path, small_model):
    store = Store(tmp_path / "store.sqlite")
    script = "head -c 100000000 /dev/zero > big; sleep 1000"
    spec = RunSpec(agent=AgentSpec(scaffold="command", command=["bash", "-c", script]), model="smollm2-135m",
                   hours=0.05, gpus=0, network="offline", benchmark="humaneval", limit=1, max_tokens=16,
                   sandbox_limits=SandboxLimits(disk_gb=0.05))
    manifest = create_run(spec, store, runs_dir=tmp_path / "runs")
    layout = RunLayout(tmp_path / "runs" / manifest.run_id)
    row = execute(layout.root, store, log=lambda _: None)
    exit_info = json.loads(layout.agent_exit.read_text())
    assert exit_info["status"] == "limit" and exit_info["limit"] == "disk"
    assert row.status == "done" and row.score_source == "base" and row.error == "limit: disk"
    assert classify(store, row.id).kind == "result"


def test_a_grid_sets_the_limits_of_every_run(tmp_path):
    path = tmp_path / "grid.yaml"
    path.write_text("agents: [{scaffold: reference}]\nmodels: [qwen3-1.7b-base]\nbenchmarks: [gsm8k]\n"
                    "sandbox_limits: {memory_gb: 32, disk_gb: 50, cpus: 4}\n")
    cells = expand(load_grid(path))
    assert cells[0].spec.sandbox_limits == SandboxLimits(memory_gb=32, disk_gb=50, cpus=4)
    assert RunSpec(agent=AgentSpec(scaffold="reference"), model="m", benchmark="b").sandbox_limits == SandboxLimits()


def test_a_bad_limit_is_one_clear_line(tmp_path):
    done = ptb("run", "--agent", "reference", "--model", "smollm2-135m", "--benchmark", "gsm8k", "--disk-gb", "0",
               env={"PTB_HOME": str(tmp_path)})
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1] == "error: sandbox_limits.disk_gb: Input should be greater than 0"


@pytest.mark.bwrap
def test_memory_limit_without_a_cgroup_is_polled(bwrap, tmp_path, monkeypatch):
    """As for a non-root harness without a delegated cgroup: the harness watches the processes instead."""
    monkeypatch.setattr(limits_module, "_make_v2", lambda name, wanted: None)
    monkeypatch.setattr(limits_module, "_make_v1", lambda name, wanted: [])
    info, log = _run(tmp_path, _python("""
        import time
        hog = bytearray(1 << 30)
        for i in range(0, len(hog), 4096):
            hog[i] = 1
        time.sleep(100)
    """))
    assert info.status == "limit" and info.limit == "memory", (info, log)
    assert "the processes used" in info.detail


def test_folders_too_deep_to_measure_count_as_over_the_disk_limit(tmp_path):
    folder = tmp_path / "task"
    folder.mkdir()
    fd = os.open(folder, os.O_RDONLY)
    for _ in range(tree.MAX_DEPTH + 5):  # relative to fds: the path grows past what a path can name
        os.mkdir("d" * 200, dir_fd=fd)
        child = os.open("d" * 200, os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = child
    os.close(fd)
    guard = LimitGuard(SandboxLimits(memory_gb=None, pids=None, disk_gb=1), [folder], dedicated_uid=False)
    hit = guard.exceeded(final=True)
    assert hit is not None and hit[0] == "disk" and "nested deeper" in hit[1]
