"""Stage 2: run the agent in the sandbox with its clock, its mounts and a clean environment."""

import json
import os
import sys
import time
from contextlib import nullcontext
from pathlib import Path

from posttrainbench import sandbox
from posttrainbench.agents import AgentContext
from posttrainbench.agents.reprompt import run_with_reprompt
from posttrainbench.agents.trajectory import build_trajectory, working_seconds, write_trajectory
from posttrainbench.egress.link import llm_link
from posttrainbench.egress.metering import Limits, read_log, upstreams_from_env
from posttrainbench.egress.redact import redact_files, secrets_from_env
from posttrainbench.egress.session import start_egress
from posttrainbench.errors import PtbError
from posttrainbench.evaluation.service import EvalService
from posttrainbench.workspace.layout import SANDBOX_DATA, SANDBOX_HOME, SANDBOX_TASK, RunLayout
from posttrainbench.workspace.manifest import RunManifest
from posttrainbench.workspace.timer import write_timer

HF_HOME = f"{SANDBOX_HOME}/.cache/huggingface"
GRACE_S = 30.0
# Host settings that must reach GPU code: on some multi-GPU hosts NVLink multicast has to stay off.
PASSTHROUGH_PREFIXES = ("NCCL_", "NVSHMEM_", "TORCH_SYMM_MEM_")


def _passthrough_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith(PASSTHROUGH_PREFIXES)}


def _gpu_indices(count: int) -> list[int]:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [int(x) for x in visible.split(",") if x.strip().isdigit()][:count]
    return list(range(count))


def agent_env(manifest: RunManifest) -> dict[str, str]:
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
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


LLM_SCAFFOLDS = ("claude", "codex", "gemini", "opencode")


def _llm_link(manifest: RunManifest, layout: RunLayout, network: str):
    """The metering proxy for scaffolds that talk to an LLM API; the reference agent needs none."""
    scaffold = manifest.spec.agent.scaffold
    if scaffold == "reference":
        return nullcontext(None)
    upstreams = upstreams_from_env()
    if scaffold in LLM_SCAFFOLDS and not upstreams:
        raise PtbError(f"the {scaffold} agent needs an LLM API key in the harness's environment "
                       "(e.g. ANTHROPIC_API_KEY, OPENAI_API_KEY, GEMINI_API_KEY); it never enters the sandbox")
    return llm_link(layout.logs / "metering.jsonl", network, upstreams, limits=Limits.of(manifest.spec.llm))


def _eval_service(manifest: RunManifest, layout: RunLayout, deadline: float, backend: str):
    """With test access `hidden`, the service the agent's evaluate.py talks to; it closes (cancelling what runs)
    when the agent's sessions are over."""
    if manifest.spec.test_access != "hidden":
        return nullcontext(None)
    return EvalService(manifest, layout, deadline=deadline, backend=backend, gpus=_gpu_indices(manifest.spec.gpus),
                       env=_passthrough_env())


def run_agent(manifest: RunManifest, layout: RunLayout, *, backend: str = "bwrap") -> sandbox.ExitInfo:
    spec = manifest.spec
    deadline = time.time() + spec.hours * 3600
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
            request = sandbox.SandboxRequest(
                argv=egress.wrap(link.wrap(launch.argv) if link else launch.argv),
                cwd=SANDBOX_TASK,
                mounts=[*mounts(manifest, layout), *(sandbox.Mount(p, str(p)) for p in launch.mounts),
                        *(link.mounts if link else []), *egress.mounts, *([service.mount] if service else [])],
                env=agent_env(manifest) | launch.env | egress.env,
                gpus=_gpu_indices(spec.gpus),
                network=egress.network,
                identity=str(layout.root.resolve()),
            )
            return sandbox.run(request, backend=backend, time_limit_s=max(seconds_left, 1.0),
                               log_path=layout.agent_log, grace_s=GRACE_S, stop=stop_reason,
                               limits=spec.sandbox_limits)

        sessions = run_with_reprompt(ctx, run_once, deadline, stop=stop_reason)
        reason = stop_reason()
    return _record(manifest, layout, sessions, reason)


def _record(manifest: RunManifest, layout: RunLayout, sessions: list[sandbox.ExitInfo],
            stop_reason: str | None) -> sandbox.ExitInfo:
    """agent_exit.json: the last session's exit, the whole span, working time; then the trajectory."""
    last, first = sessions[-1], sessions[0]
    metering = layout.logs / "metering.jsonl"
    calls = read_log(metering) if metering.exists() else []
    wall = sum(s.wall_seconds for s in sessions)
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
