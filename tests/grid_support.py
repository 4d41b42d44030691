"""A small grid of scripted `command` agents for the grid executor tests, and what its results must be.

Two agents × two seeds on SmolLM2 / GSM8K (2 items): `stopper` copies a tiny model that ends every answer at
once (so its evaluation costs one forward pass per item; being another architecture than the base, the
integrity stage flags it and the run scores as the base model) and `crasher` exits 3 without a model, which is
the agent's own failure (a result scored as the base model), never a retry. Each agent writes the GPUs it saw and
when it ran to gpu.txt in its run dir, so tests can check that no two runs overlapped on a GPU."""

import shutil
from pathlib import Path

import yaml

CELLS = [f"{agent}/smollm2-135m/gsm8k/{seed}" for agent in ("stopper", "crasher") for seed in (0, 1)]
NO_MODEL = "the agent left no final_model folder"
SWAPPED = ("flagged: disallowed_model: final_model is not the base architecture (model_type: base 'llama', "
           "submitted 'qwen3') (lineage)")
EXPECTED = {key: ("done", "base", 0.0, SWAPPED if key.startswith("stopper") else NO_MODEL) for key in CELLS}
RECORD = 'echo "$CUDA_VISIBLE_DEVICES $(date +%s.%N)" > ../gpu.txt'


def make_stopper(tiny_model: Path, out: Path) -> Path:
    """The tiny model, changed so that end-of-sequence wins every step: layers add nothing to the residual
    stream, the final norm keeps one dimension, and the tied embedding of EOS is 50 times longer along it."""
    import torch
    from transformers import AutoModelForCausalLM

    if out.exists():
        return out
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    eos = model.generation_config.eos_token_id
    eos = eos[0] if isinstance(eos, list) else eos
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        embedding = model.model.embed_tokens.weight
        embedding[:, 0] = 1.0
        embedding[eos, 0] = 50.0
        model.model.norm.weight.zero_()
        model.model.norm.weight[0] = 10.0
    model.save_pretrained(out)
    for path in tiny_model.iterdir():
        if path.suffix != ".safetensors" and path.name not in ("config.json", "generation_config.json"):
            shutil.copy(path, out / path.name)
    return out


def write_grid(path: Path, stopper: Path, *, name: str, agent_seconds: float = 2) -> Path:
    stop = f"{RECORD}; sleep {agent_seconds}; date +%s.%N >> ../gpu.txt; cp -r {stopper} final_model"
    crash = f"{RECORD}; sleep {agent_seconds}; date +%s.%N >> ../gpu.txt; exit 3"
    grid = {
        "name": name,
        "agents": [
            {"label": "stopper", "scaffold": "command", "command": ["sh", "-c", stop]},
            {"label": "crasher", "scaffold": "command", "command": ["sh", "-c", crash]},
        ],
        "models": ["smollm2-135m"],
        "benchmarks": ["gsm8k"],
        "seeds": 2,
        "hours": 0.05,
        "gpus": 1,
        "sandbox": "none",
        "network": "offline",
        "limit": 2,
        "retry": {"attempts": 2, "backoff_s": 0},
        "slurm": {"time_margin_hours": 0.25},
    }
    path.write_text(yaml.safe_dump(grid, sort_keys=False))
    return path


def results(statuses) -> dict[str, tuple]:
    """Cell outcomes; a reason's '; agent exit code ...' (the agent's own failure, asserted apart) is left off."""
    return {s.key: (s.state, s.score_source, s.score, s.reason and s.reason.split("; agent ")[0]) for s in statuses}


def gpu_use(run_dirs: list[Path]) -> list[tuple[str, float, float]]:
    """(GPUs seen, start, end) of every agent, from the gpu.txt files the agents wrote."""
    use = []
    for run_dir in run_dirs:
        first, end = (run_dir / "gpu.txt").read_text().splitlines()
        gpus, start = first.rsplit(" ", 1)
        use.append((gpus, float(start), float(end)))
    return use


def assert_no_shared_gpu(use: list[tuple[str, float, float]], allowed: set[str]) -> None:
    assert {gpus for gpus, _, _ in use} <= allowed, use
    for i, (gpus_a, start_a, end_a) in enumerate(use):
        for gpus_b, start_b, end_b in use[i + 1:]:
            if start_a < end_b and start_b < end_a:
                assert gpus_a != gpus_b, f"two runs shared GPU {gpus_a} at the same time: {use}"


def warm_base_cache(folder: Path) -> None:
    """Evaluate the base model once, alone, before runs evaluate it concurrently.

    The first evaluations of one base model on one benchmark share a scratch folder in the baseline cache
    (executors/evaluate.py), so two of them at the same moment can spoil each other; afterwards all runs read
    the cached result."""
    from posttrainbench.executors.pipeline import create_run, execute
    from posttrainbench.specs import AgentSpec, RunSpec
    from posttrainbench.store import Store

    spec = RunSpec(agent=AgentSpec(scaffold="command", command=["true"]), model="smollm2-135m", benchmark="gsm8k",
                   hours=0.05, gpus=0, sandbox="none", network="offline", limit=2)
    store = Store(folder / "warm.sqlite")
    manifest = create_run(spec, store, runs_dir=folder / "runs")
    execute(folder / "runs" / manifest.run_id, store, log=lambda message: None)
    store.close()
