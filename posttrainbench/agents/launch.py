"""Stage 2: run the agent in the sandbox with its clock, its mounts and a clean environment."""

import json
import os
import sys
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

from posttrainbench import sandbox, untrusted
from posttrainbench.agents import AgentContext
from posttrainbench.agents.reprompt import run_with_reprompt
from posttrainbench.agents.trajectory import build_trajectory, working_seconds, write_trajectory
from posttrainbench.egress.link import llm_link
from posttrainbench.egress.metering import Limits, read_log, upstreams_from_env
from posttrainbench.egress.redact import redact_files, secrets_from_env
from posttrainbench.egress.session import start_egress
from posttrainbench.errors import PtbError
from posttrainbench.evaluation.service import EvalService
from posttrainbench.specs import AgentSpec
from posttrainbench.workspace.layout import SANDBOX_DATA, SANDBOX_HOME, SANDBOX_TASK, RunLayout
from posttrainbench.workspace.manifest import RunManifest
from posttrainbench.workspace.timer import write_timer

HF_HOME = f"{SANDBOX_HOME}/.cache/huggingface"
GRACE_S = 30.0
# Host settings that must reach GPU code: on some multi-GPU hosts NVLink multicast has to stay off.
PASSTHROUGH_PREFIXES = ("NCCL_", "NVSHMEM_", "TORCH_SYMM_MEM_")
# The operator's vLLM settings (e.g. VLLM_USE_FLASHINFER_SAMPLER=0 where flashinfer's kernels are not installed)
# reach the harness's evaluation sandboxes, never the agent's; anything that looks like a credential stays out.
EVAL_PREFIXES = ("VLLM_",)
_SECRET_PARTS = ("KEY", "TOKEN", "SECRET", "PASSWORD")


def _passthrough_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith(PASSTHROUGH_PREFIXES)}


def evaluation_env() -> dict[str, str]:
    """What the harness's own evaluation sandboxes (final evaluation, evaluation service, memorisation) inherit."""
    vllm = {k: v for k, v in os.environ.items()
            if k.startswith(EVAL_PREFIXES) and not any(part in k.upper() for part in _SECRET_PARTS)}
    return _passthrough_env() | vllm


def _gpu_indices(count: int) -> list[int]:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [int(x) for x in visible.split(",") if x.strip().isdigit()][:count]
    return list(range(count))


# A login shell (Codex runs every command as `bash -lc`) reads /etc/profile, which sets PATH to the system's
# directories, dropping the run's Python. bash then reads the first of ~/.bash_profile, ~/.bash_login, ~/.profile
# (sh reads ~/.profile): these put the run's PATH back. PTB_PATH carries it, so the files hold no host path and
# work under every sandbox backend.
LOGIN_PROFILE = """# written by posttrainbench before each session: login shells see the run's Python environment
if [ -n "${PTB_PATH:-}" ]; then PATH="$PTB_PATH"; export PATH; fi
if [ -n "${BASH_VERSION:-}" ] && [ -f "$HOME/.bashrc" ]; then . "$HOME/.bashrc"; fi
"""
LOGIN_FILES = (".bash_profile", ".profile")


def python_path() -> str:
    """PATH of every sandboxed process: the run's interpreter (with torch, transformers, ...) first."""
    return f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin"


def shell_env(env: dict[str, str]) -> dict[str, str]:
    """`env` plus PTB_PATH, which the login profile restores PATH from."""
    return env | {"PTB_PATH": env["PATH"]}


def write_login_profile(home: Path) -> None:
    for name in LOGIN_FILES:
        (home / name).write_text(LOGIN_PROFILE)


def agent_env(manifest: RunManifest) -> dict[str, str]:
    env = {
        "PATH": python_path(),
        "HOME": SANDBOX_HOME,
        "USER": "agent",
        "LANG": "C.UTF-8",
        "TERM": "dumb",
        "TMPDIR": "/tmp",
        "HF_HOME": HF_HOME,
        "PTB_DATA_DIR": SANDBOX_DATA,
        "TOKENIZERS_PARALLELISM": "false",
        "NUM_GPUS": str(manifest.spec.gpus),
    }
    return env | _passthrough_env()


def mounts(manifest: RunManifest, layout: RunLayout) -> list[sandbox.Mount]:
    hf_repo = Path(manifest.hf_repo_dir)
    pristine = layout.pristine
    layout.sandbox_tmp.mkdir(exist_ok=True)
    return [
        *sandbox.python_mounts(),
        sandbox.Mount(layout.sandbox_tmp, "/tmp", writable=True),
        sandbox.Mount(layout.home, SANDBOX_HOME, writable=True),
        sandbox.Mount(layout.task, SANDBOX_TASK, writable=True),
        sandbox.Mount(pristine / "evaluate.py", f"{SANDBOX_TASK}/evaluate.py"),
        sandbox.Mount(pristine / "timer.sh", f"{SANDBOX_TASK}/timer.sh"),
        sandbox.Mount(pristine / "templates", f"{SANDBOX_TASK}/templates"),
        sandbox.Mount(pristine / "task_context", f"{SANDBOX_TASK}/task_context"),
        sandbox.Mount(Path(manifest.agent_data_dir or manifest.data_dir), SANDBOX_DATA),
        sandbox.Mount(hf_repo, f"{HF_HOME}/hub/{hf_repo.name}"),
    ]


def user_mounts(agent: AgentSpec) -> list[sandbox.Mount]:
    """The `--mount`s of a command agent; a source that is gone is an error before the agent starts."""
    missing = [m.source for m in agent.mounts if not Path(m.source).exists()]
    if missing:
        raise PtbError(f"--mount source {missing[0]} does not exist")
    return [sandbox.Mount(Path(m.source), m.target, writable=not m.read_only) for m in agent.mounts]


LLM_SCAFFOLDS = ("claude", "codex", "gemini", "opencode")


def _llm_link(manifest: RunManifest, layout: RunLayout, network: str):
    """The metering proxy for scaffolds that talk to an LLM API; the reference agent needs none."""
    scaffold = manifest.spec.agent.scaffold
    if scaffold == "reference":
        return nullcontext(None)
    require_llm_key(scaffold)
    return llm_link(layout.logs / "metering.jsonl", network, upstreams_from_env(),
                    limits=Limits.of(manifest.spec.llm))


def require_llm_key(scaffold: str) -> None:
    if scaffold in LLM_SCAFFOLDS and not upstreams_from_env():
        raise PtbError(f"the {scaffold} agent needs an LLM API key in the harness's environment "
                       "(e.g. ANTHROPIC_API_KEY, OPENAI_API_KEY, GEMINI_API_KEY); it never enters the sandbox")


def _eval_service(manifest: RunManifest, layout: RunLayout, deadline: float, backend: str):
    """With test access `hidden`, the service the agent's evaluate.py talks to; it closes (cancelling what runs)
    when the agent's sessions are over."""
    if manifest.spec.test_access != "hidden":
        return nullcontext(None)
    return EvalService(manifest, layout, deadline=deadline, backend=backend, gpus=_gpu_indices(manifest.spec.gpus),
                       env=evaluation_env())


def agent_failure(layout: RunLayout) -> str | None:
    """One line saying why the agent failed, from agent_exit.json and the last error line of its log; None when it
    finished normally. The text comes from inside the sandbox: it is cleaned of control sequences here and must
    still be escaped before rich markup."""
    try:
        record = json.loads(layout.agent_exit.read_text())
    except (OSError, ValueError):
        return None
    if record.get("status") == "finished" and record.get("returncode") in (0, None):
        return None
    cause = _last_error_line(layout.agent_log)
    detail = str(record.get("detail") or record.get("status") or "failed")
    return untrusted.clean_text(f"{detail}: {cause}" if cause else detail, limit=500)


def _last_error_line(log: Path, tail_bytes: int = 65536) -> str | None:
    """The last line that concludes a Python traceback ('ValueError: ...'), if any: other log lines (a relay's
    chatter, progress) say nothing about why the agent stopped."""
    try:
        with log.open("rb") as fh:
            fh.seek(max(0, log.stat().st_size - tail_bytes))
            lines = [line.strip() for line in fh.read().decode(errors="replace").splitlines() if line.strip()]
    except OSError:
        return None
    errors = [line for line in lines if _is_error(line)]
    return errors[-1][:300] if errors else None


def _is_error(line: str) -> bool:
    name, sep, _ = line.partition(":")
    parts = name.split(".")  # requests.exceptions.HTTPError
    return bool(sep) and all(p.isidentifier() for p in parts) and parts[-1].endswith(
        ("Error", "Exception", "Exit", "Interrupt"))


def run_agent(manifest: RunManifest, layout: RunLayout, *, backend: str = "bwrap") -> sandbox.ExitInfo:
    spec = manifest.spec
    used = _close_earlier_attempt(layout)
    deadline = time.time() + spec.hours * 3600 - used
    write_timer(layout.pristine / "timer.sh", deadline)
    ctx = AgentContext(
        agent=spec.agent,
        model=manifest.model,
        benchmark=manifest.benchmark,
        prompt=layout.prompt.read_text(),
        hours=spec.hours,
        gpus=spec.gpus,
        run_dir=layout.root,
        home=layout.home,
        task=layout.task,
        evaluation_service=spec.test_access == "hidden",
    )
    with (
        _recorded_interruption(layout),
        start_egress(spec.network, layout.root, base_model=manifest.model, benchmark=manifest.benchmark,
                     backend=backend) as egress,
        _llm_link(manifest, layout, egress.network) as link,
        _eval_service(manifest, layout, deadline, backend) as service,
    ):
        if link is not None:
            ctx.llm_base_url, ctx.llm_api_key = link.base_url, link.api_key

        def stop_reason() -> str | None:
            return egress.stop_reason() or (link.proxy.stop_reason if link else None)

        def run_once(launch, seconds_left: float) -> sandbox.ExitInfo:
            launch.write_files(layout.home)
            write_login_profile(layout.home)
            request = sandbox.SandboxRequest(
                argv=egress.wrap(link.wrap(launch.argv) if link else launch.argv),
                cwd=SANDBOX_TASK,
                mounts=[*mounts(manifest, layout), *(sandbox.Mount(p, str(p)) for p in launch.mounts),
                        *user_mounts(spec.agent),
                        *(link.mounts if link else []), *egress.mounts, *([service.mount] if service else [])],
                env=shell_env(agent_env(manifest) | launch.env | egress.env),
                gpus=_gpu_indices(spec.gpus),
                network=egress.network,
                identity=str(layout.root.resolve()),
            )
            return sandbox.run(request, backend=backend, time_limit_s=max(seconds_left, 1.0),
                               log_path=layout.agent_log, grace_s=GRACE_S, stop=stop_reason,
                               limits=spec.sandbox_limits)

        sessions = run_with_reprompt(ctx, run_once, deadline, stop=stop_reason)
        reason = stop_reason()
    return _record(manifest, layout, sessions, reason, earlier_s=used)


@contextmanager
def _recorded_interruption(layout: RunLayout):
    """On Ctrl-C (or SIGTERM turned into KeyboardInterrupt), agent_exit.json still records the attempt and its time,
    so that a resumed run knows how much of the budget is gone."""
    started = time.time()
    try:
        yield
    except KeyboardInterrupt:
        layout.agent_exit.write_text(json.dumps({"status": "interrupted", "returncode": None,
                                                 "wall_seconds": time.time() - started,
                                                 "detail": "the harness was interrupted"}, indent=2))
        raise


def _close_earlier_attempt(layout: RunLayout) -> float:
    """A run resumed after an interruption starts the agent again: the earlier attempt's agent_exit.json is kept
    as agent_exit.attempt-N.json, its log stays in agent.log (the new attempt appends below a marker line), and its
    time counts against the budget. Returns the seconds earlier attempts used."""
    earlier = sorted(layout.logs.glob("agent_exit.attempt-*.json"))
    if layout.agent_exit.exists():
        target = layout.logs / f"agent_exit.attempt-{len(earlier) + 1}.json"
        layout.agent_exit.rename(target)
        earlier.append(target)
    if layout.agent_log.is_file() and layout.agent_log.stat().st_size:
        with layout.agent_log.open("a") as log:
            log.write(f"[ptb] ---- agent attempt {len(earlier) + 1}: the run was resumed ----\n")
    used = 0.0
    for path in earlier:
        try:
            used += float(json.loads(path.read_text()).get("wall_seconds") or 0)
        except (OSError, ValueError):
            continue
    return used


def _record(manifest: RunManifest, layout: RunLayout, sessions: list[sandbox.ExitInfo],
            stop_reason: str | None, earlier_s: float = 0.0) -> sandbox.ExitInfo:
    """agent_exit.json: the last session's exit, the whole span, working time; then the trajectory."""
    last, first = sessions[-1], sessions[0]
    metering = layout.logs / "metering.jsonl"
    calls = read_log(metering) if metering.exists() else []
    wall = sum(s.wall_seconds for s in sessions) + earlier_s  # attempts before an interruption count too
    summary = last.model_copy(update={"started_at": first.started_at, "wall_seconds": wall})
    record = summary.model_dump() | {
        "sessions": [s.model_dump() for s in sessions],
        "stop_reason": stop_reason,
        "working_time_s": working_seconds(first.started_at, last.ended_at, calls) if calls else wall,
    }
    layout.agent_exit.write_text(json.dumps(record, indent=2))
    events = build_trajectory(layout.agent_log, manifest.spec.agent.scaffold, metering if calls else None)
    write_trajectory(events, layout.root / "trajectory.jsonl")
    redact_files(layout.root, secrets_from_env())
    return summary
