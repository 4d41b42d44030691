"""Stage 2: run the agent in the sandbox with its clock, its mounts and a clean environment."""

import os
import sys
import time
from pathlib import Path

from posttrainbench import sandbox
from posttrainbench.agents import AgentContext, launch_for
from posttrainbench.workspace.layout import SANDBOX_DATA, SANDBOX_HOME, SANDBOX_TASK, RunLayout
from posttrainbench.workspace.manifest import RunManifest
from posttrainbench.workspace.timer import write_timer

HF_HOME = f"{SANDBOX_HOME}/.cache/huggingface"
GRACE_S = 30.0
# Host settings that must reach GPU code: on some multi-GPU hosts NVLink multicast has to stay off.
PASSTHROUGH_PREFIXES = ("NCCL_", "NVSHMEM_", "TORCH_SYMM_MEM_")


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
    if manifest.spec.network == "offline":
        env |= {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env |= {k: v for k, v in os.environ.items() if k.startswith(PASSTHROUGH_PREFIXES)}
    return env


def mounts(manifest: RunManifest, layout: RunLayout) -> list[sandbox.Mount]:
    hf_repo = Path(manifest.hf_repo_dir)
    pristine = layout.pristine
    return [
        *sandbox.python_mounts(),
        sandbox.Mount(layout.home, SANDBOX_HOME, writable=True),
        sandbox.Mount(layout.task, SANDBOX_TASK, writable=True),
        sandbox.Mount(pristine / "evaluate.py", f"{SANDBOX_TASK}/evaluate.py"),
        sandbox.Mount(pristine / "timer.sh", f"{SANDBOX_TASK}/timer.sh"),
        sandbox.Mount(pristine / "templates", f"{SANDBOX_TASK}/templates"),
        sandbox.Mount(pristine / "task_context", f"{SANDBOX_TASK}/task_context"),
        sandbox.Mount(Path(manifest.data_dir), SANDBOX_DATA),
        sandbox.Mount(hf_repo, f"{HF_HOME}/hub/{hf_repo.name}"),
    ]


def run_agent(manifest: RunManifest, layout: RunLayout, *, backend: str = "bwrap") -> sandbox.ExitInfo:
    spec = manifest.spec
    budget_s = spec.hours * 3600
    write_timer(layout.pristine / "timer.sh", time.time() + budget_s)
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
    )
    launch = launch_for(ctx)
    for rel, content in launch.files.items():
        target = layout.home / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
    request = sandbox.SandboxRequest(
        argv=launch.argv,
        cwd=SANDBOX_TASK,
        mounts=mounts(manifest, layout),
        env=agent_env(manifest) | launch.env,
        gpus=_gpu_indices(spec.gpus),
        network="none" if spec.network == "offline" else "host",
    )
    info = sandbox.run(request, backend=backend, time_limit_s=budget_s, log_path=layout.agent_log, grace_s=GRACE_S)
    layout.agent_exit.write_text(info.model_dump_json(indent=2))
    return info
