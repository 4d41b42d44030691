"""The agent's prompt: our own wording, with the original's variables and its seven rules."""

from pathlib import Path

from jinja2 import Environment, StrictUndefined

from posttrainbench.specs import BenchmarkSpec, ModelSpec

TEMPLATE = Path(__file__).with_name("prompt.txt.jinja")


def gpu_info(gpus: int) -> str:
    if gpus == 0:
        return "no GPU: everything runs on the CPU."
    if gpus == 1:
        return "one NVIDIA H100 GPU."
    return f"{gpus} NVIDIA H100 GPUs."


def render_prompt(model: ModelSpec, benchmark: BenchmarkSpec, *, hours: float, gpus: int, network: str,
                  test_access: str = "hidden") -> str:
    env = Environment(undefined=StrictUndefined, keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)
    allowed = ", ".join(f"the {name} split" for name in benchmark.allowed_training_data)
    return env.from_string(TEMPLATE.read_text()).render(
        model=model.hf_id,
        benchmark=benchmark.name,
        num_hours=f"{hours:g}",
        gpu_info=gpu_info(gpus),
        inspect_note=benchmark.inspect_note,
        allowed_data=allowed,
        network=network,
        hidden=test_access == "hidden",
    )
