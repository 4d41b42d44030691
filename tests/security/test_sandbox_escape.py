"""An agent attacking its sandbox from inside, with the harness as root (as CI and most GPU boxes run it) and as an
ordinary user: remounts, writes to everything the harness later trusts, secrets, namespaces, the denied syscalls.

Everything the agent sees here mirrors a real run's mounts (agents/launch.py): the harness's interpreter and
site-packages, a writable task folder with evaluate.py mounted read-only inside, the model cache and the data."""

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import pytest
from attacks import argv as attack_argv
from attacks import report as attack_report

from posttrainbench.sandbox import Mount, SandboxRequest, python_mounts, run
from posttrainbench.sandbox import confine as confine_module

TASK = "/home/agent/task"
ENV = {"PATH": "/usr/bin:/bin", "HOME": "/home/agent", "LANG": "C.UTF-8"}
SYSTEM_PYTHON = "/usr/bin/python3"

pytestmark = pytest.mark.bwrap


def _site_packages() -> str:
    """The harness interpreter's site-packages, where a planted .pth would run in every later harness process."""
    return sysconfig.get_paths()["purelib"]


@pytest.fixture
def victim() -> Path:
    """A run folder every user can reach (pytest's tmp_path is not: the non-root test needs one)."""
    base = Path(tempfile.mkdtemp(prefix="ptb-security-"))
    base.chmod(0o755)
    root = base / "run"
    for name in ("task", "eval", "cache/model", "data"):
        (root / name).mkdir(parents=True)
    (root / "eval" / "evaluate.py").write_text("print('pristine')\n")
    (root / "cache" / "model" / "config.json").write_text("{}")
    (root / "data" / "test.jsonl").write_text("{}\n")
    secret = base / "secret.txt"  # the harness's, next to the run: not mounted, so not even there inside
    secret.write_text("api key")
    secret.chmod(0o600)
    yield root
    shutil.rmtree(base)


def _mounts(root: Path) -> list[Mount]:
    return [
        Mount(root / "task", TASK, writable=True),
        Mount(root / "eval" / "evaluate.py", f"{TASK}/evaluate.py"),
        Mount(root / "cache" / "model", "/home/agent/.cache/huggingface/hub/model"),
        Mount(root / "data", "/ptb/data"),
    ]


def _targets(read_only: list[str], secrets: list[str]) -> dict:
    return {
        "read_only": [f"{TASK}/evaluate.py", "/home/agent/.cache/huggingface/hub/model/config.json", "/ptb/data",
                      "/usr/lib", *read_only],
        "secret": ["/etc/shadow", *secrets],
        "owned": f"{TASK}/made_inside.txt",
    }


def _check(report: dict, root: Path) -> None:
    # bwrap makes /root only as the way to the interpreter's mount, when that lies under /root
    leading = {Path(m.target).relative_to("/root").parts[0] for m in python_mounts() if m.target.startswith("/root/")}
    assert set(report.pop("/root holds")) <= leading
    went_through = sorted(name for name, result in report.items() if result == "ok")
    assert went_through == [], f"attacks that went through: {went_through}"
    for name, result in report.items():
        if name.startswith(("syscall ", "clone ")):
            assert result == "EPERM", (name, result)  # the seccomp filter's answer, whatever the arguments
    assert report["CapEff"] == "0000000000000000" and report["CapBnd"] == "0000000000000000"
    assert report["NoNewPrivs"] == "1" and report["Seccomp"] == "2"
    assert (root / "eval" / "evaluate.py").read_text() == "print('pristine')\n"
    assert (root / "cache" / "model" / "config.json").read_text() == "{}"
    assert sorted(p.name for p in (root / "data").iterdir()) == ["test.jsonl"]
    made = root / "task" / "made_inside.txt"
    assert made.read_text() == "made inside"
    assert made.stat().st_uid != 0, "the agent's files belong to host root"


@pytest.mark.skipif(os.geteuid() != 0, reason="the harness runs as root here")
def test_agent_of_a_root_harness_cannot_escape(bwrap, victim, root_mode):
    site = _site_packages()
    package = str(Path(confine_module.__file__).parents[1])
    # and the harness's own home, past what leads to the interpreter
    leading = {str(Path(m.target).parent) for m in python_mounts()}
    home = [str(p) for p in Path.home().iterdir() if not any(lead.startswith(str(p)) for lead in leading)]
    secrets = [str(victim.parent / "secret.txt"), *home]
    request = SandboxRequest(argv=attack_argv(sys.executable, _targets([site, package], secrets)), cwd=TASK,
                             mounts=[*python_mounts(), *_mounts(victim)], env=ENV)
    info = run(request, backend="bwrap", time_limit_s=120, grace_s=1, log_path=victim / "agent.log")
    log = (victim / "agent.log").read_text()
    assert info.status == "finished", (info, log)
    _check(attack_report(log), victim)
    assert not list(Path(site).glob("planted*")) and not list(Path(package).glob("planted*"))


@pytest.mark.skipif(os.geteuid() != 0 or not Path(SYSTEM_PYTHON).exists(),
                    reason="needs root to become another user, and a system python every user can run")
def test_agent_of_a_non_root_harness_cannot_escape(bwrap, victim, monkeypatch):
    """The harness as `nobody`: bwrap runs as that user (no uid of the sandbox's own), with the same hardening.
    The harness's own interpreter is out of reach of other users here, so the launcher and the attack use the
    system python; the paths of a non-root harness are all its own."""
    user = 65534
    for path in [victim, *victim.rglob("*")]:
        os.lchown(path, user, user)
    secrets = [str(victim.parent / "secret.txt"), "/root"]
    request = SandboxRequest(argv=attack_argv(SYSTEM_PYTHON, _targets([], secrets)), cwd=TASK, mounts=_mounts(victim),
                             env=ENV)
    monkeypatch.setattr(confine_module.os, "geteuid", lambda: user)
    confined = confine_module.confine(request, None)
    assert confined.uid is None
    try:
        done = subprocess.run([SYSTEM_PYTHON, *confined.argv[1:]], pass_fds=confined.pass_fds, user=user,
                              group=user, extra_groups=[], capture_output=True, text=True, env={}, timeout=120)
    finally:
        confined.close()
    log = done.stdout + done.stderr
    assert done.returncode == 0, log
    report = attack_report(log)
    _check(report, victim)
    assert (victim / "task" / "made_inside.txt").stat().st_uid == user


@pytest.mark.skipif(os.geteuid() != 0, reason="the harness gives the writable folders away only as root")
def test_links_the_agent_plants_do_not_make_the_harness_give_away_its_files(bwrap, victim, root_mode):
    """Between sessions the root harness gives the writable folders to the sandbox uid: a link the agent left
    there must be changed itself, never what it points at."""
    harness_file = victim.parent / "harness.db"
    harness_file.write_text("store")
    plant = (f"import os; os.symlink({str(harness_file)!r}, 'to_store'); os.symlink('/', 'to_root');"
             f"os.makedirs('deep/er'); os.symlink({str(victim.parent)!r}, 'deep/er/up')")
    request = SandboxRequest(argv=[sys.executable, "-c", plant], cwd=TASK, mounts=[*python_mounts(), *_mounts(victim)],
                             env=ENV)
    for _ in range(2):  # the second start walks what the first left
        info = run(request, backend="bwrap", time_limit_s=60, grace_s=1, log_path=victim / "agent.log")
        assert info.status in ("finished", "crashed"), info
    assert harness_file.stat().st_uid == 0 and victim.parent.stat().st_uid == 0 and Path("/").stat().st_uid == 0
    assert (victim / "task" / "to_store").lstat().st_uid != 0
