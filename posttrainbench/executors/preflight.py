"""What a run needs from this machine, checked before the run exists: a run that could never start is not stored
as a failed result, and the user learns the cause in one line."""

from pathlib import Path

from posttrainbench.agents.launch import require_llm_key, user_mounts
from posttrainbench.errors import PtbError
from posttrainbench.specs import RunSpec, get_benchmark, get_model

DEV = Path("/dev")


def check_machine(spec: RunSpec, *, dev_root: Path = DEV) -> None:
    """GPUs asked for are present; the sandbox's and the egress proxy's tools are installed; an LLM agent has a
    key for its provider; vLLM is there when the harness's evaluations ask for it. (Model and data are resolved by
    the run's preparation, which also comes before the run is stored.) A wrong model or benchmark id is named
    first."""
    get_model(spec.model)
    get_benchmark(spec.benchmark)
    if spec.gpus > 0:
        nodes = sorted(dev_root.glob("nvidia[0-9]*"))
        if not (dev_root / "nvidiactl").exists() or not nodes:
            raise PtbError(f"--gpus {spec.gpus} asks for GPUs but this machine has none (no {dev_root}/nvidiactl): "
                           "pass --gpus 0 to train on CPU")
        if len(nodes) < spec.gpus:
            raise PtbError(f"--gpus {spec.gpus} asks for more GPUs than this machine has ({len(nodes)})")
    if spec.sandbox == "bwrap":
        from posttrainbench.sandbox.bwrap import find_bwrap

        find_bwrap()
    if spec.network == "proxied":
        from posttrainbench.egress.proxy import mitmproxy_python

        mitmproxy_python()
    if spec.evaluation.backend == "vllm":
        from posttrainbench.evaluation.vllm_server import require_vllm

        require_vllm()
    require_llm_key(spec.agent.scaffold)
    user_mounts(spec.agent)
