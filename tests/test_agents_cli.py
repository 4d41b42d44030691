"""The four real agent CLIs, at their pinned versions, inside the bwrap sandbox without network, against the
scripted fake LLM server through the metering proxy (unix socket + in-sandbox relay)."""

import json
import shutil
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from posttrainbench import sandbox
from posttrainbench.agents import AgentContext, launch_for
from posttrainbench.agents.install import PACKAGES, install_agents
from posttrainbench.agents.launch import python_path, shell_env, write_login_profile
from posttrainbench.agents.reprompt import resume_launch, run_with_reprompt
from posttrainbench.agents.trajectory import build_trajectory, render, working_seconds
from posttrainbench.egress.link import llm_link
from posttrainbench.egress.metering import Limits, RetryPolicy, Upstream, read_log
from posttrainbench.egress.prices import cost_usd
from posttrainbench.egress.redact import find_secret
from posttrainbench.specs import get_benchmark, get_model, parse_agent

sys.path.insert(0, str(Path(__file__).parent))
from fake_llm import FakeLLM  # noqa: E402

pytestmark = pytest.mark.bwrap

REAL_KEY = "sk-ant-REALKEY-0123456789abcdefghijklmnop"
SCRIPT = [
    "echo hello > notes.txt",
    "python3 -c 'print(6*7)' > answer.txt",
    "env > env.txt && mkdir -p final_model && echo '{}' > final_model/config.json",
]
AGENTS = {
    "claude": "claude:claude-sonnet-4-5",
    "codex": "codex:gpt-5.1-codex",
    "gemini": "gemini:gemini-2.5-pro",
    "opencode": "opencode:anthropic/claude-sonnet-4-5",
}
FAST_RETRY = RetryPolicy(attempts=5, base_delay_s=0.05, max_delay_s=0.2)
HOME, TASK = "/home/agent", "/home/agent/task"


@pytest.fixture(scope="session")
def agent_clis():
    if shutil.which("npm") is None or shutil.which("socat") is None:
        pytest.skip("needs npm (agent CLIs) and socat (sandbox relay)")
    return install_agents(list(PACKAGES))


@dataclass
class Run:
    root: Path
    fake: FakeLLM
    calls: list[dict]
    outcomes: list
    summary: dict
    scaffold: str
    client_key: str

    @property
    def task(self) -> Path:
        return self.root / "home" / "task"

    def trajectory(self) -> list[dict]:
        return build_trajectory(self.root / "agent.log", self.scaffold, self.root / "llm_calls.jsonl")


def run_agent(root: Path, agent: str, fake_url: str, fake: FakeLLM, *, reprompt_minutes=None, budget_s=120.0,
              limits=None, resume_once=False) -> Run:
    home = root / "home"
    (home / "task").mkdir(parents=True, exist_ok=True)
    spec = parse_agent(agent)
    spec.reprompt_minutes = reprompt_minutes
    upstreams = {p: Upstream(fake_url, REAL_KEY) for p in ("anthropic", "openai", "gemini")}
    with llm_link(root / "llm_calls.jsonl", "none", upstreams, policy=FAST_RETRY, limits=limits) as link:
        ctx = AgentContext(agent=spec, model=get_model("smollm2-135m"), benchmark=get_benchmark("gsm8k"),
                           prompt="Post-train the model.", hours=budget_s / 3600, gpus=0, run_dir=root,
                           home=home, task=home / "task", llm_base_url=link.base_url, llm_api_key=link.api_key)

        def run_once(launch, seconds_left):
            # the harness's own shell environment: its Python mounted and first on PATH, login shells included
            launch.write_files(home)
            write_login_profile(home)
            request = sandbox.SandboxRequest(
                argv=link.wrap(launch.argv),
                cwd=TASK,
                mounts=[*sandbox.python_mounts(), sandbox.Mount(home, HOME, writable=True),
                        *[sandbox.Mount(p, str(p)) for p in launch.mounts], *link.mounts],
                env=shell_env({"PATH": python_path(), "HOME": HOME, "TERM": "dumb", "LANG": "C.UTF-8",
                               **launch.env}),
            )
            return sandbox.run(request, backend="bwrap", time_limit_s=max(seconds_left, 1), log_path=root / "agent.log",
                               grace_s=5)

        deadline = time.time() + budget_s
        if resume_once:
            outcomes = [run_once(launch_for(ctx), budget_s)]
            outcomes.append(run_once(resume_launch(ctx, "You still have 1h 00m of your budget."), budget_s))
        else:
            outcomes = run_with_reprompt(ctx, run_once, deadline, stop=lambda: link.proxy.stop_reason)
        summary = link.proxy.summary()
    return Run(root, fake, read_log(root / "llm_calls.jsonl"), outcomes, summary, spec.scaffold, link.api_key)


def expected_cost(fake: FakeLLM, model_of) -> float:
    total = 0.0
    for request in fake.requests:
        if request.get("reply"):
            usage = request["reply"]["usage"]
            total += cost_usd(model_of(request), usage["input"], usage["output"], usage["cached"])
    return total


def request_model(request: dict) -> str:
    return request["body"].get("model") or request["path"].split("/models/")[1].split(":")[0]


@pytest.mark.parametrize("name", list(AGENTS))
def test_cli_runs_script_in_sandbox(name, agent_clis, tmp_path):
    with FakeLLM(SCRIPT) as fake:
        run = run_agent(tmp_path, AGENTS[name], fake.url, fake, resume_once=True)
    first, resumed = run.outcomes
    assert first.status == "finished", (first.detail, (tmp_path / "agent.log").read_text()[-3000:])
    assert resumed.status == "finished", resumed.detail
    assert (run.task / "notes.txt").read_text() == "hello\n"
    assert (run.task / "answer.txt").read_text() == "42\n"
    assert (run.task / "final_model" / "config.json").is_file()

    # Inside, the agent held only the dummy key (environment or config file); the proxy sent the real one upstream.
    assert REAL_KEY not in (run.task / "env.txt").read_text()
    assert find_secret(run.root / "home", run.client_key)
    turns = fake.turns()
    assert len(turns) == len(SCRIPT) + 2  # 3 tool calls, final text, and one turn after the resume
    for request in fake.requests:
        headers = {k.lower(): v for k, v in request["headers"].items()}
        sent = headers.get("x-api-key") or headers.get("x-goog-api-key") or headers.get("authorization", "")
        assert sent.endswith(REAL_KEY)
    assert find_secret(tmp_path, REAL_KEY) == []

    # The resumed session continued the conversation (all 3 tool results) and got the message.
    last = json.dumps(turns[-1]["body"])
    assert "You still have 1h 00m" in last
    assert last.count("notes.txt") >= 1

    # Everything the real CLI asked for is on the metering proxy's list of endpoints.
    assert [c["path"] for c in run.calls if c["status"] == 403] == []

    # Token counts and cost: the proxy's totals match what the fake server sent.
    usage = fake.usage_total()
    assert run.summary["input_tokens"] == usage["input"]
    assert run.summary["cached_tokens"] == usage["cached"]
    assert run.summary["output_tokens"] == usage["output"]
    assert run.summary["cost_usd"] == pytest.approx(expected_cost(fake, request_model))
    assert run.summary["cost_usd"] > 0 and run.summary["failed_attempts"] == 0

    events = run.trajectory()
    calls = [e for e in events if e["kind"] == "tool_call"]
    results = [e for e in events if e["kind"] == "tool_result"]
    commands = [json.dumps(e["input"]) for e in calls]
    for step, command in zip(SCRIPT, commands):
        assert step.split(" ")[0] in command
    assert len(calls) == len(results) == len(SCRIPT)
    assert [e["text"] for e in events if e["kind"] == "assistant"][-2:] == ["done", "done"]
    proxy_result = events[-1]
    assert proxy_result["source"] == "proxy" and proxy_result["cost_usd"] == pytest.approx(run.summary["cost_usd"])
    assert proxy_result["tokens"] == {"input": usage["input"], "cached": usage["cached"], "output": usage["output"]}
    assert [e["step"] for e in events] == list(range(1, len(events) + 1))
    assert "python3 -c" in render(events)


IMPORTS = "python3 -c 'import sys, torch, transformers; print(sys.executable, torch.__name__, transformers.__name__)'"


@pytest.mark.slow
@pytest.mark.parametrize("name", list(AGENTS))
def test_every_cli_shell_sees_the_run_python(name, agent_clis, tmp_path):
    """Each CLI's own shell tool (Codex's is a login shell, `bash -lc`, which resets PATH in /etc/profile) runs
    the run's interpreter, with torch and transformers."""
    with FakeLLM([f"{IMPORTS} > imports.txt 2>&1"]) as fake:
        run = run_agent(tmp_path, AGENTS[name], fake.url, fake, budget_s=900.0)
    assert run.outcomes[-1].status == "finished", run.outcomes[-1].detail
    found = (run.task / "imports.txt").read_text()
    executable, *modules = found.split()
    assert Path(executable).parent == Path(sys.executable).parent and modules == ["torch", "transformers"], found


def test_provider_errors_are_retried_and_visible(agent_clis, tmp_path):
    with FakeLLM(SCRIPT, faults=["429", "529", "500", "reset"]) as fake:
        run = run_agent(tmp_path, AGENTS["claude"], fake.url, fake)
    assert run.outcomes[0].status == "finished", run.outcomes[0].detail
    failures = [f for call in run.calls for f in call["failures"]]
    assert [f["status"] for f in failures] == [429, 529, 500, None]
    assert "reset" in failures[-1]["error"].lower()
    errors = [e for e in run.trajectory() if e["kind"] == "error" and e.get("source") == "proxy"]
    assert [e["text"].split(":")[0] for e in errors] == [
        "anthropic HTTP 429", "anthropic HTTP 529", "anthropic HTTP 500", "anthropic ClientOSError"]
    info = run.outcomes[0]
    blocked = sum(call["retry_s"] for call in run.calls)
    assert blocked > 0
    assert working_seconds(info.started_at, info.ended_at, run.calls) == pytest.approx(
        max(info.wall_seconds - blocked, 0), abs=1.5)


@pytest.mark.parametrize("name", list(AGENTS))
def test_dead_api_ends_run_quickly(name, agent_clis, tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"  # nothing listens once the probe is closed
    started = time.monotonic()
    with FakeLLM(SCRIPT) as fake:
        run = run_agent(tmp_path, AGENTS[name], dead, fake)
    assert time.monotonic() - started < 60
    assert run.outcomes[0].status == "crashed"
    assert run.summary["stop_reason"].startswith("LLM API unreachable")
    assert "ptb proxy" in (tmp_path / "agent.log").read_text()


def test_reprompt_resumes_until_budget_is_nearly_used(agent_clis, tmp_path):
    budget, threshold_s = 14.0, 4.0
    started = time.monotonic()
    with FakeLLM(SCRIPT) as fake:
        run = run_agent(tmp_path, AGENTS["claude"], fake.url, fake, reprompt_minutes=threshold_s / 60, budget_s=budget)
    elapsed = time.monotonic() - started
    assert len(run.outcomes) >= 3
    assert all(o.status == "finished" for o in run.outcomes)
    assert budget - threshold_s - 3 <= elapsed <= budget
    resumed = [t for t in fake.turns() if "You still have" in json.dumps(t["body"])]
    assert len(resumed) == len(run.outcomes) - 1


def test_token_limit_stops_the_agent(agent_clis, tmp_path):
    with FakeLLM(SCRIPT) as fake:
        run = run_agent(tmp_path, AGENTS["claude"], fake.url, fake, limits=Limits(max_tokens=2000),
                        reprompt_minutes=0.01)
    assert run.summary["stop_reason"].startswith("token limit reached")
    assert len(fake.turns()) == 2 and len(run.outcomes) == 1
    assert run.outcomes[0].status == "crashed"
    assert not (run.task / "final_model").exists()
