"""The sandbox: isolation of files, environment, processes and network under bubblewrap; the wall clock; exit
classification; GPU passthrough (computed against a fake /dev); the unisolated `none` backend."""

import json
import logging
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from posttrainbench.errors import PtbError
from posttrainbench.sandbox import Mount, SandboxRequest, bwrap_argv, gpu_mounts_and_env, python_mounts, run

REPO = Path(__file__).resolve().parents[1]
TASK = "/home/agent/task"
MODEL = "/ptb/base_model"
STAMP = re.compile(r"^\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\] ")
BASE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/home/agent", "LANG": "C.UTF-8"}


@pytest.fixture
def run_dir(tmp_path) -> Path:
    (tmp_path / "task").mkdir()
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "evaluate.py").write_text("print('pristine')\n")
    (tmp_path / "task" / "evaluate.py").write_text("")  # mount point for the read-only copy
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    return tmp_path


def _request(run_dir: Path, argv: list[str], **kwargs) -> SandboxRequest:
    mounts = [
        *python_mounts(),
        Mount(run_dir / "task", TASK, writable=True),
        Mount(run_dir / "eval" / "evaluate.py", f"{TASK}/evaluate.py"),
        Mount(run_dir / "model", MODEL),
    ]
    return SandboxRequest(argv=argv, cwd=TASK, mounts=mounts, env=dict(BASE_ENV), **kwargs)


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


def _run(run_dir: Path, request: SandboxRequest, **kwargs):
    log = run_dir / "agent.log"
    kwargs = {"backend": "bwrap", "time_limit_s": 30, "grace_s": 1, **kwargs}
    info = run(request, log_path=log, **kwargs)
    return info, log.read_text() if log.exists() else ""


def _output(log: str) -> list[str]:
    return [STAMP.sub("", line) for line in log.splitlines()]


def _marker() -> str:
    """A unique `sleep` duration: it shows up in the argv of every process we must not leave behind."""
    return f"1000.{secrets.randbelow(10**9):09d}"


def _survivors(marker: str) -> list[str]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if marker in " ".join(process.info["cmdline"] or []):
            found.append(f"{process.pid}: {' '.join(process.info['cmdline'])}")
    return found


def _wait_for_no_survivors(marker: str, seconds: float = 3.0) -> list[str]:
    deadline = time.monotonic() + seconds
    while (left := _survivors(marker)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


@pytest.mark.bwrap
def test_read_only_mounts_hold_and_writable_mount_works(bwrap, run_dir):
    script = """
        import errno, os
        def attempt(name, action):
            try:
                action()
                print(name, "ok")
            except OSError as e:
                # read-only mount, or (the sandbox's uid) not the owner: blocked either way
                print(name, "denied" if e.errno in (errno.EROFS, errno.EACCES) else errno.errorcode[e.errno])
        def append(path):
            with open(path, "a") as f:
                f.write("# hacked")
        attempt("write_eval", lambda: append("evaluate.py"))
        attempt("delete_eval", lambda: os.remove("evaluate.py"))
        open("fake.py", "w").write("print('forged')")
        attempt("replace_eval", lambda: os.replace("fake.py", "evaluate.py"))
        attempt("write_model", lambda: append("/ptb/base_model/config.json"))
        attempt("add_to_model", lambda: open("/ptb/base_model/extra.bin", "w").close())
        attempt("write_task", lambda: open("final_model.txt", "w").write("mine"))
        attempt("write_tmp", lambda: open("/tmp/scratch", "w").write("x"))
        attempt("write_usr", lambda: open("/usr/evil", "w").close())
    """
    info, log = _run(run_dir, _request(run_dir, _python(script)))
    assert info.status == "finished", (info, log)
    results = dict(line.split() for line in _output(log))
    assert results == {
        "write_eval": "denied",
        "delete_eval": "EBUSY",
        "replace_eval": "EBUSY",
        "write_model": "denied",
        "add_to_model": "denied",
        "write_task": "ok",
        "write_tmp": "ok",
        "write_usr": "denied",
    }
    assert (run_dir / "eval" / "evaluate.py").read_text() == "print('pristine')\n"
    assert sorted(p.name for p in (run_dir / "model").iterdir()) == ["config.json"]
    assert (run_dir / "model" / "config.json").read_text() == "{}"
    assert (run_dir / "task" / "final_model.txt").read_text() == "mine"


@pytest.mark.bwrap
def test_environment_is_exactly_the_requested_one(bwrap, run_dir, monkeypatch):
    monkeypatch.setenv("SECRET_KEY", "hunter2")
    request = _request(run_dir, ["/usr/bin/env"])
    request.env["HF_HOME"] = "/home/agent/hf"
    info, log = _run(run_dir, request)
    assert info.status == "finished", (info, log)
    inside = dict(line.split("=", 1) for line in _output(log))
    gpu_env = {"CUDA_VISIBLE_DEVICES": "", "CUDA_DEVICE_ORDER": "PCI_BUS_ID", "NUM_GPUS": "0"}
    # bwrap's --chdir sets PWD.
    assert inside == {**request.env, **gpu_env, "PWD": TASK}
    assert "hunter2" not in log and "/root" not in log


@pytest.mark.bwrap
def test_host_files_are_invisible(bwrap, run_dir):
    mounted = [str(m.source) for m in python_mounts()]
    home = Path.home()
    # Everything in the harness user's home except the folders leading to the interpreter.
    hidden_in_home = [
        str(p) for p in home.iterdir() if not any(m == str(p) or m.startswith(f"{p}/") for m in mounted)
    ]
    planted = run_dir / "secret.txt"
    planted.write_text("do not read")
    probes = [str(REPO / "tests"), str(REPO / "tests" / "test_sandbox.py"), str(planted), *hidden_in_home]
    script = f"""
        import json, os, socket
        print(json.dumps({{"visible": [p for p in {probes!r} if os.path.exists(p)], "host": socket.gethostname()}}))
    """
    info, log = _run(run_dir, _request(run_dir, _python(script)))
    assert info.status == "finished", (info, log)
    report = json.loads(_output(log)[-1])
    assert report == {"visible": [], "host": "ptb-sandbox"}
    assert all(os.path.exists(p) for p in probes)


@pytest.mark.bwrap
def test_posttrainbench_imports_inside(bwrap, run_dir):
    script = "import posttrainbench.sandbox, sys; print('imported', sys.executable)"
    info, log = _run(run_dir, _request(run_dir, _python(script)))
    assert info.status == "finished", (info, log)
    assert _output(log) == [f"imported {sys.executable}"]


def test_python_mounts_leave_the_checkout_out():
    mounts = python_mounts()
    assert all(not m.writable and str(m.source) == m.target for m in mounts)
    for source in {str(m.source) for m in mounts}:
        assert not (REPO / "tests").is_relative_to(source), f"{source} would expose the tests folder"


@pytest.mark.bwrap
def test_time_limit_kills_detached_children(bwrap, run_dir):
    marker = _marker()
    script = f"""
        setsid sleep {marker} &
        nohup sleep {marker} >/dev/null 2>&1 &
        (sleep {marker} &) &
        trap '' TERM
        while true; do echo tick; sleep 0.5; done
    """
    request = _request(run_dir, ["/bin/sh", "-c", script])
    started = time.monotonic()
    info, log = _run(run_dir, request, time_limit_s=2, grace_s=1)
    assert info.status == "timed_out", (info, log)
    assert 2.9 <= time.monotonic() - started < 6  # TERM was ignored: KILL came after the grace
    assert info.returncode == 128 + signal.SIGKILL
    assert _wait_for_no_survivors(marker) == []
    lines = log.splitlines()
    assert len(lines) >= 4 and all(STAMP.match(line) and line.endswith("tick") for line in lines)
    assert lines[0][:22] != lines[-1][:22], "lines must be stamped as they arrive"


@pytest.mark.bwrap
def test_time_limit_sends_term_first(bwrap, run_dir):
    script = "trap 'echo got TERM; exit 0' TERM; while true; do sleep 0.1; done"
    started = time.monotonic()
    info, log = _run(run_dir, _request(run_dir, ["/bin/sh", "-c", script]), time_limit_s=1, grace_s=10)
    assert info.status == "timed_out", (info, log)
    assert time.monotonic() - started < 5
    assert "got TERM" in _output(log)
    assert "within the grace" in info.detail


@pytest.mark.bwrap
def test_crash_is_reported_with_returncode(bwrap, run_dir):
    info, log = _run(run_dir, _request(run_dir, ["/bin/sh", "-c", "echo working; echo boom >&2; exit 3"]))
    assert (info.status, info.returncode) == ("crashed", 3)
    assert "boom" in info.detail
    assert _output(log) == ["working", "boom"]

    # bwrap's own failures also exit 1: an agent's exit 1 must still count as its crash.
    info, _ = _run(run_dir, _request(run_dir, ["/bin/sh", "-c", "exit 1"]))
    assert (info.status, info.returncode) == ("crashed", 1)

    info, _ = _run(run_dir, _request(run_dir, ["/bin/sh", "-c", "kill -SEGV $$"]))
    assert (info.status, info.returncode) == ("crashed", 128 + signal.SIGSEGV)
    assert "SIGSEGV" in info.detail


@pytest.mark.bwrap
def test_sandbox_that_cannot_start_is_failed_to_start(bwrap, run_dir):
    info, _ = _run(run_dir, _request(run_dir, ["/no/such/agent"]))
    assert info.status == "failed_to_start"
    assert "/no/such/agent" in info.detail

    request = _request(run_dir, ["true"])
    request.mounts.append(Mount(run_dir / "model" / "config.json", "/usr/planted.json"))
    info, _ = _run(run_dir, request)
    assert info.status == "failed_to_start"
    assert "Read-only file system" in info.detail


@pytest.mark.bwrap
def test_network_none_cannot_reach_host_server(bwrap, run_dir):
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    script = f"""
        import socket
        try:
            socket.create_connection(("127.0.0.1", {port}), timeout=2).close()
            print("connected")
        except OSError as e:
            print("refused", type(e).__name__)
    """
    try:
        info, log = _run(run_dir, _request(run_dir, _python(script)))
        assert info.status == "finished", (info, log)
        assert _output(log)[-1].startswith("refused")
        (run_dir / "agent.log").unlink()
        info, log = _run(run_dir, _request(run_dir, _python(script), network="host"))
        assert _output(log)[-1] == "connected"
    finally:
        server.close()


HARNESS = """
import sys
from pathlib import Path
from posttrainbench.sandbox import Mount, SandboxRequest, run
task, marker, log = sys.argv[1:]
script = f"setsid sleep {marker} & sleep {marker} & echo ready; wait"
request = SandboxRequest(argv=["/bin/sh", "-c", script], cwd="/w", mounts=[Mount(Path(task), "/w", True)],
                         env={"PATH": "/usr/bin:/bin"})
run(request, backend="bwrap", time_limit_s=60, log_path=Path(log), grace_s=30)
"""


@pytest.mark.bwrap
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_interrupted_harness_leaves_no_orphans(bwrap, run_dir, sig):
    marker = _marker()
    log = run_dir / "harness.log"
    # SIGINT's default disposition, as a terminal gives it: a shell that backgrounds a job leaves it ignored
    harness = subprocess.Popen([sys.executable, "-c", HARNESS, str(run_dir / "task"), marker, str(log)],
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        # wait on events (the sandbox says it is ready; the harness exits); the limits only catch a hang, so they
        # are wide enough for a loaded machine
        deadline = time.monotonic() + 300
        while not (log.exists() and "ready" in log.read_text()):
            assert time.monotonic() < deadline and harness.poll() is None, "sandbox never started"
            time.sleep(0.05)
        harness.send_signal(sig)
        code = harness.wait(timeout=300)
    finally:
        harness.kill()
    assert code == -sig  # Python dies of an unhandled KeyboardInterrupt by SIGINT, too
    assert _wait_for_no_survivors(marker) == []


def _fake_dev(root: Path, gpus: int) -> Path:
    dev = root / "dev"
    (dev / "dri").mkdir(parents=True)
    for name in [*(f"nvidia{i}" for i in range(gpus)), "nvidiactl", "nvidia-uvm", "nvidia-uvm-tools"]:
        (dev / name).touch()
    return dev


def test_gpu_passthrough_binds_only_requested_devices(tmp_path):
    dev = _fake_dev(tmp_path, 4)
    binds, env = gpu_mounts_and_env([3, 1], dev_root=dev)
    assert binds == [
        (dev / "nvidia1", "/dev/nvidia1"),
        (dev / "nvidia3", "/dev/nvidia3"),
        (dev / "nvidiactl", "/dev/nvidiactl"),
        (dev / "nvidia-uvm", "/dev/nvidia-uvm"),
        (dev / "nvidia-uvm-tools", "/dev/nvidia-uvm-tools"),
        (dev / "dri", "/dev/dri"),
    ]
    assert env == {"CUDA_VISIBLE_DEVICES": "0,1", "CUDA_DEVICE_ORDER": "PCI_BUS_ID", "NUM_GPUS": "2"}
    assert gpu_mounts_and_env([], dev_root=dev) == ([], {**env, "CUDA_VISIBLE_DEVICES": "", "NUM_GPUS": "0"})


def test_gpu_passthrough_rejects_missing_or_bad_devices(tmp_path):
    dev = _fake_dev(tmp_path, 2)
    with pytest.raises(PtbError, match="nvidia2"):
        gpu_mounts_and_env([2], dev_root=dev)
    with pytest.raises(PtbError, match="distinct"):
        gpu_mounts_and_env([0, 0], dev_root=dev)
    (dev / "nvidiactl").unlink()
    with pytest.raises(PtbError, match="nvidiactl"):
        gpu_mounts_and_env([0], dev_root=dev)


def test_bwrap_command_line_for_gpus(tmp_path):
    dev = _fake_dev(tmp_path, 2)
    request = SandboxRequest(argv=["agent", "--go"], cwd="/w", mounts=[Mount(tmp_path, "/w", True)],
                             env={"PATH": "/usr/bin", "CUDA_VISIBLE_DEVICES": "7"}, gpus=[1])
    argv = bwrap_argv(request, dev_root=dev)
    pairs = list(zip(argv, argv[1:], argv[2:]))
    assert ("--dev-bind", str(dev / "nvidia1"), "/dev/nvidia1") in pairs
    assert ("--dev-bind", str(dev / "nvidiactl"), "/dev/nvidiactl") in pairs
    assert not any(str(dev / "nvidia0") in arg for arg in argv)
    assert ("--setenv", "CUDA_VISIBLE_DEVICES", "0") in pairs
    assert ("--bind", str(tmp_path), "/w") in pairs
    assert "--unshare-net" in argv and "--clearenv" in argv and "--die-with-parent" in argv
    assert argv[-3:] == ["--", "agent", "--go"]
    assert "--unshare-net" not in bwrap_argv(SandboxRequest(["a"], "/", [], {"PATH": "/usr/bin"}, network="host"))


@pytest.mark.skipif(Path("/dev/nvidia0").exists(), reason="this machine has a GPU")
def test_requesting_a_gpu_without_one_is_an_error(run_dir):
    with pytest.raises(PtbError, match="nvidia"):
        bwrap_argv(_request(run_dir, ["true"], gpus=[0]))


def test_missing_bwrap_names_the_package(run_dir, monkeypatch):
    monkeypatch.setenv("PATH", str(run_dir))
    with pytest.raises(PtbError, match="apt-get install bubblewrap"):
        run(_request(run_dir, ["true"]), backend="bwrap", time_limit_s=5, log_path=run_dir / "x.log")


def test_request_needs_path(run_dir):
    request = _request(run_dir, ["true"])
    del request.env["PATH"]
    with pytest.raises(PtbError, match="PATH"):
        run(request, backend="none", time_limit_s=5, log_path=run_dir / "x.log")


def test_none_backend_maps_sandbox_paths_to_host_and_warns(run_dir, caplog):
    request = _request(run_dir, ["/bin/sh", "-c", 'pwd; echo "$MODEL_DIR"; cat "$EVAL"'], gpus=[2, 0])
    request.env |= {"MODEL_DIR": MODEL, "EVAL": f"{TASK}/evaluate.py"}
    with caplog.at_level(logging.WARNING):
        info, log = _run(run_dir, request, backend="none")
    assert info.status == "finished", (info, log)
    assert "UNISOLATED" in caplog.text and "UNSANDBOXED" in info.detail
    assert _output(log) == [str(run_dir / "task"), str(run_dir / "model"), "print('pristine')"]


def test_none_backend_enforces_the_time_limit(run_dir):
    marker = _marker()
    request = _request(run_dir, ["/bin/sh", "-c", f"sleep {marker} & echo started; sleep {marker}"])
    info, log = _run(run_dir, request, backend="none", time_limit_s=1, grace_s=0.5)
    assert info.status == "timed_out"
    assert _output(log) == ["started"]
    assert _wait_for_no_survivors(marker) == []


def test_none_backend_leaves_no_background_processes(run_dir):
    marker = _marker()
    info, _ = _run(run_dir, _request(run_dir, ["/bin/sh", "-c", f"sleep {marker} >/dev/null & exit 0"]), backend="none")
    assert info.status == "finished"
    assert _wait_for_no_survivors(marker) == []
