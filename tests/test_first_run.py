"""A first real run: preconditions checked before a run exists, and the agent's real failure on screen."""

import json
import sys
from pathlib import Path

import pytest

from posttrainbench.agents.launch import agent_failure
from posttrainbench.errors import PtbError
from posttrainbench.executors.preflight import check_machine
from posttrainbench.specs import RunSpec, parse_agent
from posttrainbench.specs.run import EvalSettings
from posttrainbench.workspace.layout import RunLayout

sys.path.insert(0, str(Path(__file__).parent))
from cli_support import ptb  # noqa: E402


def _spec(agent="reference", gpus=1):
    return RunSpec(agent=parse_agent(agent), model="smollm2-135m", benchmark="gsm8k", gpus=gpus)


def test_gpus_asked_for_must_exist(tmp_path):
    with pytest.raises(PtbError, match="has none .* --gpus 0"):
        check_machine(_spec(gpus=1), dev_root=tmp_path)
    (tmp_path / "nvidiactl").touch()
    (tmp_path / "nvidia0").touch()
    check_machine(_spec(gpus=1), dev_root=tmp_path)
    with pytest.raises(PtbError, match="more GPUs than this machine has \\(1\\)"):
        check_machine(_spec(gpus=2), dev_root=tmp_path)
    check_machine(_spec(gpus=0), dev_root=tmp_path / "nothing")


def test_an_llm_agent_needs_a_key(monkeypatch, tmp_path):
    for name in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(PtbError, match="needs an LLM API key"):
        check_machine(_spec("claude:claude-opus-4-6", gpus=0), dev_root=tmp_path)


def test_a_run_that_cannot_start_is_never_stored():
    result = ptb("run", "--agent", "reference", "--model", "smollm2-135m", "--benchmark", "gsm8k", "--gpus", "1")
    if Path("/dev/nvidiactl").exists():
        pytest.skip("this machine has a GPU")
    assert result.returncode == 1 and "--gpus 0" in result.stderr
    from posttrainbench import paths
    from posttrainbench.store import Store

    assert Store(paths.store_path()).runs() == []


def test_the_agent_crash_is_the_line_the_user_sees(tmp_path):
    layout = RunLayout(tmp_path)
    layout.logs.mkdir(parents=True)
    layout.agent_log.write_text("loading data\nTraceback (most recent call last):\n  File \"x.py\", line 3\n"
                                "requests.exceptions.HTTPError: 502 Server Error: Bad Gateway for url: "
                                "https://huggingface.co/api/datasets\n[rich markup] stays text\n")
    layout.agent_exit.write_text(json.dumps({"status": "crashed", "returncode": 1, "detail": "exited with 1"}))
    assert agent_failure(layout) == ("exited with 1: requests.exceptions.HTTPError: 502 Server Error: Bad Gateway "
                                     "for url: https://huggingface.co/api/datasets")
    layout.agent_log.write_text("socat: bind: Address already in use\n")  # chatter is no cause
    assert agent_failure(layout) == "exited with 1"
    layout.agent_exit.write_text(json.dumps({"status": "finished", "returncode": 0, "detail": "exited with 0"}))
    assert agent_failure(layout) is None


@pytest.mark.slow
def test_ctrl_c_says_how_to_continue_and_resume_continues(tmp_path, small_model):
    import os
    import signal
    import subprocess
    import time

    from posttrainbench import paths
    from posttrainbench.store import Store

    argv = [sys.executable, "-m", "posttrainbench.cli", "run", "--agent", "command", "--command",
            "if [ -f attempted ]; then echo again; else touch attempted; echo started; sleep 600; fi",
            "--model", "smollm2-135m", "--benchmark", "gsm8k", "--gpus", "0",
            "--network", "offline", "--sandbox", "none", "--limit", "1", "--max-tokens", "8"]
    # A shell that starts a job in the background (as CI runners may) leaves SIGINT ignored in its children:
    # give the harness the default disposition, as a terminal would.
    harness = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 600  # a hang guard; the loop waits on the agent's first line
        logs = []
        while not any("started" in log.read_text() for log in logs):
            assert time.monotonic() < deadline and harness.poll() is None, harness.stderr.read()
            time.sleep(0.2)
            logs = list(paths.runs_dir().glob("*/logs/agent.log"))
        harness.send_signal(signal.SIGINT)
        _, stderr = harness.communicate(timeout=600)
    finally:
        harness.kill()
    assert harness.returncode == 130, stderr
    [row] = Store(paths.store_path()).runs()
    assert f"ptb resume {row.id}" in stderr and row.status == "failed"
    exit_info = json.loads((Path(row.run_dir) / "logs" / "agent_exit.json").read_text())
    assert exit_info["status"] == "interrupted" and exit_info["wall_seconds"] > 0

    resumed = ptb("resume", row.id[-6:])  # the short id is enough
    assert "resuming run" in resumed.stderr and "agent: done" in resumed.stderr, resumed.stderr
    row = Store(paths.store_path()).get(row.id)
    assert row.status == "done" and row.score_source == "base"  # the second attempt left no model
    assert "started" in (Path(row.run_dir) / "logs" / "agent.log").read_text()  # the first attempt's log is kept
    assert (Path(row.run_dir) / "logs" / "agent_exit.attempt-1.json").is_file()
    again = ptb("resume", row.id)
    assert again.returncode == 1 and "nothing to resume" in again.stderr


def test_a_resumed_agent_keeps_the_earlier_attempt_and_its_time(tmp_path):
    from posttrainbench.agents.launch import _close_earlier_attempt

    layout = RunLayout(tmp_path)
    layout.logs.mkdir(parents=True)
    layout.agent_log.write_text("[t] first attempt\n")
    layout.agent_exit.write_text(json.dumps({"status": "interrupted", "wall_seconds": 120.0}))
    assert _close_earlier_attempt(layout) == 120.0
    assert not layout.agent_exit.exists() and (layout.logs / "agent_exit.attempt-1.json").is_file()
    assert layout.agent_log.read_text().startswith("[t] first attempt\n[ptb] ---- agent attempt 2")


def test_gpus_is_a_count_everywhere(tmp_path):
    grid = tmp_path / "g.yaml"
    grid.write_text("agents: [{scaffold: reference}]\nmodels: [smollm2-135m]\nbenchmarks: [gsm8k]\n")
    both = ptb("grid", "run", str(grid), "--gpus", "1", "--gpu-ids", "0")
    assert both.returncode == 1 and "not both" in both.stderr
    if not Path("/dev/nvidiactl").exists():
        more = ptb("grid", "run", str(grid), "--gpus", "1", env={"CUDA_VISIBLE_DEVICES": ""})
        assert more.returncode == 1 and "has 0 GPU(s)" in more.stderr


def test_the_sandbox_and_proxy_tools_are_checked_before_a_run_exists(monkeypatch, tmp_path):
    import importlib.util

    monkeypatch.setenv("PATH", str(tmp_path))  # neither bwrap nor mitmdump on it
    monkeypatch.delenv("PTB_MITMPROXY_PYTHON", raising=False)
    with pytest.raises(PtbError, match="bubblewrap \\(bwrap\\) is not installed"):
        check_machine(RunSpec(agent=parse_agent("reference"), model="smollm2-135m", benchmark="gsm8k", gpus=0,
                              network="offline"))
    spec = RunSpec(agent=parse_agent("reference"), model="smollm2-135m", benchmark="gsm8k", gpus=0,
                   sandbox="none", network="proxied")
    if importlib.util.find_spec("mitmproxy") is None:
        with pytest.raises(PtbError, match="mitmproxy .* is needed for proxied runs"):
            check_machine(spec)
    check_machine(spec.model_copy(update={"network": "offline"}))


# What must never reach a first run's console: Python warnings, tqdm bars, pip's lines, library log records.
NOISE = ("Warning", "warnings.warn", "it/s]", "s/it]", "%|", "Collecting ", "Downloading ", "Successfully ",
         "Looking in ", "Loading weights", "Writing model", " INFO ", " WARNING ")


@pytest.mark.slow
@pytest.mark.bwrap
def test_the_demo_is_quiet_and_shows_each_stage(small_model, bwrap):
    """The whole demo pipeline at its smallest (a budget too short to train, one item of 8 tokens): stage lines,
    evaluation log paths and the result line on the console, no library's noise."""
    import os
    import subprocess

    done = subprocess.run([sys.executable, "-m", "posttrainbench.cli", "demo", "--hours", "0.02", "--limit", "1",
                           "--max-tokens", "8"], capture_output=True, text=True, env=os.environ | {"COLUMNS": "120"})
    console = done.stdout + done.stderr
    assert done.returncode == 0, console[-3000:]
    assert [n for n in NOISE if n in console] == [], console
    for line in ("ptb agent: started", "ptb evaluate: started", "its log: ", "HumanEval pass@1 on 1 items"):
        assert line in console, console


def test_evaluation_settings_of_a_run_are_checked_before_it_exists(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no vllm on it
    monkeypatch.delenv("PTB_VLLM", raising=False)
    spec = RunSpec(agent=parse_agent("reference"), model="smollm2-135m", benchmark="gsm8k", gpus=0, sandbox="none",
                   network="offline", evaluation={"backend": "vllm"})
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        with pytest.raises(PtbError, match="backend vllm asked for but vllm is not installed"):
            check_machine(spec)
    check_machine(spec.model_copy(update={"evaluation": EvalSettings(backend="hf")}))
    bad = ptb("run", "--agent", "reference", "--model", "smollm2-135m", "--benchmark", "gsm8k", "--gpus", "0",
              "--max-connections", "0")
    assert bad.returncode == 1 and "evaluation.max_connections" in bad.stderr
