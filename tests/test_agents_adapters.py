"""Adapters, install bookkeeping, trajectory conversion and the reprompt policy, without running any CLI."""

import json
import subprocess
import tomllib
from pathlib import Path
from types import SimpleNamespace

import pytest

from posttrainbench.agents import AgentContext, launch_for
from posttrainbench.agents import install
from posttrainbench.agents.reprompt import resume_launch, run_with_reprompt, time_remains_message
from posttrainbench.agents.trajectory import build_trajectory, render
from posttrainbench.egress.metering import relay_wrapper
from posttrainbench.errors import PtbError
from posttrainbench.specs import get_benchmark, get_model, parse_agent

BASE = "http://127.0.0.1:41987"
BINARIES = {
    "claude": "@anthropic-ai/claude-code-linux-x64/claude",
    "codex": "@openai/codex-linux-x64/vendor/x86_64-unknown-linux-musl/bin/codex",
    "gemini": "@google/gemini-cli/bundle/gemini.js",
    "opencode": "opencode-linux-x64/bin/opencode",
}


@pytest.fixture
def fake_installs(tmp_path, monkeypatch):
    """An agents dir that looks installed (package.json at the pinned version, empty binaries)."""
    monkeypatch.setenv("PTB_AGENTS_DIR", str(tmp_path / "agents"))
    monkeypatch.setattr(install, "_arch", lambda: "x64")
    for name, (package, version) in install.PACKAGES.items():
        modules = tmp_path / "agents" / name / "node_modules"
        (modules / package).mkdir(parents=True)
        (modules / package / "package.json").write_text(json.dumps({"version": version}))
        (modules / BINARIES[name]).parent.mkdir(parents=True, exist_ok=True)
        (modules / BINARIES[name]).write_text("")
    return tmp_path / "agents"


def context(tmp_path: Path, agent: str, command: list[str] | None = None, **overrides) -> AgentContext:
    fields = dict(agent=parse_agent(agent, command), model=get_model("smollm2-135m"), benchmark=get_benchmark("gsm8k"),
                  prompt="PROMPT TEXT", hours=2.0, gpus=1, run_dir=tmp_path, home=tmp_path / "home",
                  task=tmp_path / "home" / "task", llm_base_url=BASE + "/")
    return AgentContext(**(fields | overrides))


def test_claude_launch(fake_installs, tmp_path):
    ctx = context(tmp_path, "claude:claude-opus-4-6")
    ctx.agent.effort = "high"
    launch = launch_for(ctx)
    assert launch.argv[0] == str(fake_installs / "claude/node_modules" / BINARIES["claude"])
    assert launch.argv[1:] == ["--print", "--verbose", "--model", "claude-opus-4-6", "--output-format", "stream-json",
                               "--dangerously-skip-permissions", "--effort", "high", "PROMPT TEXT"]
    assert launch.env["ANTHROPIC_BASE_URL"] == BASE and launch.env["ANTHROPIC_API_KEY"] == "ptb-dummy-key"
    assert launch.env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] == "1" and launch.env["IS_SANDBOX"] == "1"
    assert launch.mounts == [fake_installs / "claude"]
    resumed = resume_launch(ctx, "MORE")
    assert "--continue" in resumed.argv and resumed.argv[-1] == "MORE"


def test_codex_launch(fake_installs, tmp_path):
    ctx = context(tmp_path, "codex:gpt-5.1-codex-max")
    ctx.agent.effort = "xhigh"
    launch = launch_for(ctx)
    assert launch.argv[1:4] == ["--search", "exec", "--json"]
    assert "model_reasoning_summary=detailed" in launch.argv and "model_reasoning_effort=xhigh" in launch.argv
    assert {"--skip-git-repo-check", "--yolo"} <= set(launch.argv) and launch.argv[-1] == "PROMPT TEXT"
    config = tomllib.loads(launch.files[".codex/config.toml"])
    assert config["model_provider"] == "ptb" and config["analytics"] == {"enabled": False}
    assert config["features"] == {"plugins": False}
    provider = config["model_providers"]["ptb"]
    assert provider["base_url"] == BASE + "/v1" and provider["wire_api"] == "responses"
    assert launch.env == {"CODEX_API_KEY": "ptb-dummy-key"}
    resumed = resume_launch(ctx, "MORE").argv
    assert resumed[1:5] == ["--search", "exec", "resume", "--last"] and resumed[-1] == "MORE"


def test_gemini_launch(fake_installs, tmp_path):
    launch = launch_for(context(tmp_path, "gemini:gemini-3-pro-preview"))
    assert Path(launch.argv[0]).name.startswith("node")
    assert launch.argv[2:] == ["--yolo", "--model", "gemini-3-pro-preview", "--output-format", "stream-json",
                               "-p", "PROMPT TEXT"]
    settings = json.loads(launch.files[".gemini/settings.json"])
    assert settings["security"]["auth"]["selectedType"] == "gemini-api-key"
    assert settings["privacy"]["usageStatisticsEnabled"] is False
    assert launch.env["GOOGLE_GEMINI_BASE_URL"] == BASE and launch.env["GEMINI_CLI_TRUST_WORKSPACE"] == "true"
    assert resume_launch(context(tmp_path, "gemini"), "MORE").argv[-4:] == ["--resume", "latest", "-p", "MORE"]
    ctx = context(tmp_path, "gemini")
    ctx.agent.effort = "high"
    with pytest.raises(PtbError, match="no reasoning-effort switch"):
        launch_for(ctx)


def test_opencode_launch_builtin_and_custom_providers(fake_installs, tmp_path):
    launch = launch_for(context(tmp_path, "opencode:anthropic/claude-opus-4-5"))
    assert launch.argv[1:] == ["run", "--pure", "--model", "anthropic/claude-opus-4-5", "--format", "json",
                               "PROMPT TEXT"]
    config = json.loads(launch.files[".config/opencode/opencode.json"])
    assert config["permission"] == "allow"
    assert config["provider"] == {"anthropic": {"options": {"baseURL": BASE + "/v1", "apiKey": "ptb-dummy-key"}}}
    assert launch.env["OPENCODE_DISABLE_MODELS_FETCH"] == "1"

    custom = json.loads(launch_for(context(tmp_path, "opencode:zai/glm-4.6")).files[".config/opencode/opencode.json"])
    assert custom["provider"]["zai"]["npm"] == "@ai-sdk/openai-compatible"
    assert custom["provider"]["zai"]["models"] == {"glm-4.6": {"name": "glm-4.6", "tool_call": True}}
    assert "--continue" in resume_launch(context(tmp_path, "opencode"), "MORE").argv
    with pytest.raises(PtbError, match="provider/model"):
        launch_for(context(tmp_path, "opencode:glm-4.6"))


def test_command_agent_runs_as_given(tmp_path):
    ctx = context(tmp_path, "command", ["python", "solve.py", "--fast"])
    launch = launch_for(ctx)
    assert launch.argv == ["bash", "-c", "python solve.py --fast"]  # an argv, quoted word for word
    line = "python solve.py 'a b' && echo $PTB_HOURS | tee hours.txt"
    assert launch_for(context(tmp_path, "command", [line])).argv == ["bash", "-c", line]  # a shell line as written
    assert launch_for(context(tmp_path, "command", ["python", "a b.py"])).argv == ["bash", "-c", "python 'a b.py'"]
    assert launch.env["PTB_PROMPT"] == "PROMPT TEXT" and launch.env["OPENAI_BASE_URL"] == BASE + "/v1"
    assert launch.env["ANTHROPIC_API_KEY"] == "ptb-dummy-key" and launch.files == {} and launch.mounts == []
    assert resume_launch(ctx, "MORE").env["PTB_RESUMED"] == "1"


def test_cli_agents_need_the_proxy(fake_installs, tmp_path):
    with pytest.raises(PtbError, match="metering proxy"):
        launch_for(context(tmp_path, "claude", llm_base_url=None))


def test_install_bookkeeping(fake_installs, monkeypatch):
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("npm must not run when installed"))
    assert install.install_agents(None) == {name: version for name, (_, version) in install.PACKAGES.items()}
    with pytest.raises(PtbError, match="unknown agent CLI 'aider'"):
        install.install_agents(["aider"])
    (fake_installs / "codex" / "node_modules" / BINARIES["codex"]).unlink()
    with pytest.raises(PtbError, match="ptb agents install codex"):
        install.binary("codex")


def test_install_needs_npm_and_reports_its_failure(tmp_path, monkeypatch):
    monkeypatch.setattr(install.shutil, "which", lambda name: None)
    with pytest.raises(PtbError, match="npm is not installed"):
        install.install_agents(["claude"], prefix=tmp_path)
    monkeypatch.setattr(install.shutil, "which", lambda name: "/usr/bin/npm")
    monkeypatch.setattr(install.subprocess, "run", lambda *a, **k: SimpleNamespace(returncode=1, stdout="",
                                                                                    stderr="npm ERR! 404 Not Found"))
    with pytest.raises(PtbError, match="npm install @openai/codex@0.171.0 failed: npm ERR! 404"):
        install.install_agents(["codex"], prefix=tmp_path)


def test_relay_wrapper_execs_the_agent_after_the_relay():
    argv = relay_wrapper(["claude", "--print", "it's"], "/run/ptb/llm.sock", 41987)
    assert argv[:2] == ["/bin/sh", "-c"] and argv[-3:] == ["claude", "--print", "it's"]
    assert argv[3:6] == ["ptb-relay", "/run/ptb/llm.sock", "41987"] and 'exec "$@"' in argv[2]


# --- trajectories from canned CLI output (lines as the sandbox logs them) ---------------------------------------

def log_of(tmp_path: Path, *objects: dict, noise: str = "Warning: TERM=dumb") -> Path:
    lines = [f"[2026-01-01T00:00:0{i}Z] {json.dumps(o)}" for i, o in enumerate(objects)]
    path = tmp_path / "agent.log"
    path.write_text("\n".join([f"[2026-01-01T00:00:00Z] {noise}", *lines]) + "\n")
    return path


def kinds(events):
    return [(e["kind"], e.get("tool"), e.get("text")) for e in events]


def test_claude_trajectory(tmp_path):
    path = log_of(
        tmp_path,
        {"type": "system", "subtype": "init"},
        {"type": "assistant", "message": {"content": [{"type": "thinking", "thinking": "hmm"},
                                                      {"type": "tool_use", "id": "t1", "name": "Bash",
                                                       "input": {"command": "ls"}}]}},
        {"type": "user", "message": {"content": [{"type": "tool_result", "tool_use_id": "t1",
                                                  "content": [{"type": "text", "text": "x" * 5000}],
                                                  "is_error": True}]}},
        {"type": "result", "is_error": False, "result": "done", "total_cost_usd": 0.5,
         "usage": {"input_tokens": 10, "cache_read_input_tokens": 90, "output_tokens": 5}},
    )
    events = build_trajectory(path, "claude")
    assert kinds(events) == [("assistant", None, "hmm"), ("tool_call", "Bash", None), ("tool_result", "Bash", None),
                             ("result", None, "done")]
    assert events[2]["is_error"] and len(events[2]["output"]) < 2100 and "characters cut" in events[2]["output"]
    assert events[3]["tokens"] == {"input": 100, "cached": 90, "output": 5} and events[3]["cost_usd"] == 0.5


def test_codex_trajectory_with_a_failed_turn(tmp_path):
    path = log_of(
        tmp_path,
        {"type": "item.started", "item": {"type": "command_execution", "command": "bash -lc ls"}},
        {"type": "item.completed", "item": {"type": "command_execution", "aggregated_output": "a\n", "exit_code": 2}},
        {"type": "item.completed", "item": {"type": "file_change", "changes": [{"path": "x.py"}]}},
        {"type": "turn.failed", "error": {"message": "stream disconnected"}},
    )
    events = build_trajectory(path, "codex")
    assert kinds(events) == [("tool_call", "exec_command", None), ("tool_result", "exec_command", None),
                             ("tool_call", "file_change", None), ("error", None, "stream disconnected")]
    assert events[1]["is_error"] and events[1]["output"] == "a\n"


def test_gemini_trajectory_merges_streamed_text(tmp_path):
    path = log_of(
        tmp_path,
        {"type": "message", "role": "user", "content": "prompt"},
        {"type": "message", "role": "assistant", "content": "Let me ", "delta": True},
        {"type": "message", "role": "assistant", "content": "look.", "delta": True},
        {"type": "tool_use", "tool_name": "run_shell_command", "tool_id": "a", "parameters": {"command": "ls"}},
        {"type": "tool_result", "tool_id": "a", "status": "error", "error": {"message": "denied"}},
        {"type": "result", "status": "success", "stats": {"input_tokens": 7, "cached": 1, "output_tokens": 2}},
    )
    events = build_trajectory(path, "gemini")
    assert kinds(events)[:2] == [("assistant", None, "Let me look."), ("tool_call", "run_shell_command", None)]
    assert events[2]["output"] == "denied" and events[2]["is_error"]
    assert events[3]["tokens"] == {"input": 7, "cached": 1, "output": 2}


def test_opencode_trajectory_sums_steps(tmp_path):
    finish = {"type": "step_finish", "part": {"tokens": {"input": 80, "output": 5, "cache": {"read": 20, "write": 0}},
                                              "cost": 0.25}}
    path = log_of(
        tmp_path,
        {"type": "tool_use", "part": {"tool": "bash", "state": {"status": "completed", "input": {"command": "ls"},
                                                                "output": "a"}}},
        finish,
        {"type": "text", "part": {"text": "done"}},
        finish,
        {"type": "error", "error": {"name": "APIError", "data": {"message": "ptb proxy: limit"}}},
    )
    events = build_trajectory(path, "opencode")
    assert kinds(events) == [("tool_call", "bash", None), ("tool_result", "bash", None), ("assistant", None, "done"),
                             ("error", None, "ptb proxy: limit"), ("result", None, None)]
    assert events[-1]["tokens"] == {"input": 200, "cached": 40, "output": 10} and events[-1]["cost_usd"] == 0.5


def test_proxy_retries_join_the_trajectory_and_totals_close_it(tmp_path):
    path = log_of(tmp_path, {"type": "result", "result": "done", "usage": {}})
    calls = [{"t": "2026-01-01T00:00:00.500+00:00", "provider": "anthropic", "latency_s": 2.0, "retry_s": 1.5,
              "failures": [{"t": "2026-01-01T00:00:00.600+00:00", "status": 529, "delay_s": 1.0},
                           {"t": "2026-01-01T00:00:01.700+00:00", "status": None, "error": "reset", "delay_s": 0.5}],
              "input_tokens": 100, "cached_tokens": 0, "output_tokens": 10, "cost_usd": 0.01}]
    (tmp_path / "calls.jsonl").write_text("".join(json.dumps(c) + "\n" for c in calls))
    events = build_trajectory(path, "claude", tmp_path / "calls.jsonl")
    assert kinds(events) == [("result", None, "done"),
                             ("error", None, "anthropic HTTP 529: retried after 1.0 s"),
                             ("error", None, "anthropic reset: retried after 0.5 s"),
                             ("result", None, "1 LLM calls metered")]
    assert events[-1]["cost_usd"] == 0.01 and [e["step"] for e in events] == [1, 2, 3, 4]
    text = render(events)
    assert "(proxy)" in text and "tokens: 100 in (0 cached), 10 out, $0.0100" in text


# --- reprompt policy ---------------------------------------------------------------------------------------------

class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def scripted_runs(clock: Clock, durations: list[float], statuses: list[str] | None = None):
    launches = []

    def run_once(launch, seconds_left):
        launches.append((launch, seconds_left))
        clock.now += durations[len(launches) - 1]
        status = statuses[len(launches) - 1] if statuses else "finished"
        return SimpleNamespace(status=status)

    return run_once, launches


def test_reprompt_resumes_until_less_than_the_threshold_is_left(tmp_path):
    ctx = context(tmp_path, "command", ["agent"])
    ctx.agent.reprompt_minutes = 30
    clock = Clock()
    run_once, launches = scripted_runs(clock, [3600, 1700, 1200, 600])
    outcomes = run_with_reprompt(ctx, run_once, deadline=7200, clock=clock)
    # Left after each run: 3600, 1900, 700 (not more than 30 min: stop).
    assert len(outcomes) == 3
    assert [left for _, left in launches] == [7200, 3600, 1900]
    assert "PTB_RESUMED" not in launches[0][0].env
    assert launches[1][0].env["PTB_PROMPT"] == time_remains_message(3600, 2.0)
    assert "1h 00m" in launches[1][0].env["PTB_PROMPT"] and "0h 31m" in launches[2][0].env["PTB_PROMPT"]


def test_reprompt_stops_on_timeout_stop_signal_crash_loop_or_when_disabled(tmp_path):
    ctx = context(tmp_path, "command", ["agent"])
    clock = Clock()
    run_once, launches = scripted_runs(clock, [10] * 10)
    assert len(run_with_reprompt(ctx, run_once, deadline=7200, clock=clock)) == 1  # no reprompt_minutes

    ctx.agent.reprompt_minutes = 1
    for statuses, stop, expected in [
        (["timed_out"], None, 1),
        (["failed_to_start"], None, 1),
        (["finished"] * 10, "token limit reached", 1),
        (["crashed"] * 10, None, 3),
        (["crashed", "finished", "crashed", "crashed", "crashed", "finished"], None, 5),
    ]:
        clock.now = 0.0
        run_once, launches = scripted_runs(clock, [10] * 10, statuses)
        outcomes = run_with_reprompt(ctx, run_once, deadline=7200, clock=clock, stop=lambda: stop)
        assert len(outcomes) == expected, statuses


@pytest.mark.bwrap
def test_command_agent_sees_its_mounts_and_a_shell(tmp_path):
    """A command agent's shell line runs in the sandbox with --mount folders where it asked for them."""
    import shutil

    from posttrainbench import sandbox
    from posttrainbench.agents.launch import user_mounts

    if not shutil.which("bwrap"):
        pytest.skip("bubblewrap is not installed")
    host = tmp_path / "mine"
    host.mkdir()
    (host / "train.py").write_text("print('trained')\n")
    out = tmp_path / "out"
    out.mkdir()
    line = "python3 /opt/mine/train.py > /mnt/out/log.txt && echo \"$PTB_HOURS h\" >> /mnt/out/log.txt"
    agent = parse_agent("command", [line], [f"{host}:/opt/mine:ro", f"{out}:/mnt/out"])
    ctx = context(tmp_path, "command", [line])
    ctx.agent = agent
    launch = launch_for(ctx)
    request = sandbox.SandboxRequest(argv=launch.argv, cwd="/", mounts=[*sandbox.python_mounts(), *user_mounts(agent)],
                                     env={"PATH": "/usr/bin:/bin", **launch.env})
    info = sandbox.run(request, backend="bwrap", time_limit_s=120, log_path=tmp_path / "agent.log", grace_s=1)
    assert info.status == "finished", (tmp_path / "agent.log").read_text()
    assert (out / "log.txt").read_text() == f"trained\n{ctx.hours} h\n"
    with pytest.raises(PtbError, match="does not exist"):
        user_mounts(parse_agent("command", ["x"], [f"{tmp_path / 'gone'}:/opt/gone"]))
    with pytest.raises(PtbError, match="only a `command` agent"):
        parse_agent("reference", None, [f"{host}:/opt/mine"])
    with pytest.raises(PtbError, match="SRC:DST"):
        parse_agent("command", ["x"], ["/a:/b:rx"])


def test_reference_and_command_trajectories_record_what_they_printed(tmp_path):
    path = tmp_path / "agent.log"
    path.write_text("[2026-01-01T00:00:01Z] loading base model\n[2026-01-01T00:00:01Z] 2 hub sets\n"
                    "[2026-01-01T00:00:09Z] epoch 1 loss 0.91\n"
                    "[2026-01-01T00:00:10Z] requests.exceptions.HTTPError: 502 Bad Gateway\n")
    for scaffold in ("reference", "command"):
        events = build_trajectory(path, scaffold)
        assert [(e["kind"], e["step"]) for e in events] == [("output", 1), ("output", 2), ("error", 3)]
        assert events[0]["text"] == "loading base model\n2 hub sets" and events[2]["is_error"]
        assert "epoch 1 loss 0.91" in render(events)
