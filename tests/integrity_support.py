"""Scripted run directories for the integrity tests: a real prepared run (manifest, pristine evaluation files,
staged data), the empty mount points the sandbox leaves in task/, and whatever a scripted agent would have
written, without running one. The base model is the tiny random model, so lineage checks take milliseconds."""

import json
import shutil
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from posttrainbench.specs import RunSpec, parse_agent
from posttrainbench.workspace.collect import collect
from posttrainbench.workspace.layout import RunLayout
from posttrainbench.workspace.manifest import write_manifest
from posttrainbench.workspace.prepare import prepare
from posttrainbench.workspace.timer import write_timer

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def make_run(root: Path, base_model: Path, benchmark: str = "gsm8k") -> RunLayout:
    spec = RunSpec(agent=parse_agent("command", ["true"]), model="smollm2-135m", benchmark=benchmark, hours=1,
                   gpus=0, network="offline")
    manifest = prepare(spec, runs_dir=root)
    layout = RunLayout(root / manifest.run_id)
    write_manifest(layout.manifest, manifest.model_copy(update={"base_model_dir": str(base_model)}))
    write_timer(layout.pristine / "timer.sh", time.time() + 3600)
    for name in ("evaluate.py", "timer.sh"):
        (layout.task / name).touch()
    for name in ("templates", "task_context"):
        (layout.task / name).mkdir()
    return layout


def submit(layout: RunLayout, base_model: Path, change=None) -> None:
    """Leave task/final_model: the base model with `change(name, tensor) -> tensor` applied, then collect it."""
    target = layout.submitted_model
    shutil.copytree(base_model, target)
    if change is not None:
        weights = target / "model.safetensors"
        tensors = load_file(weights)
        save_file({name: change(name, t).contiguous() for name, t in tensors.items()}, weights)
    result = collect(target, layout.final_model, base_model)
    assert result.status == "ok", result.reason


def fine_tuned(scale: float = 0.02, seed: int = 0):
    """What a fine-tune does to weights: small moves, relative to each tensor's spread."""
    generator = torch.Generator().manual_seed(seed)

    def change(name, tensor):
        return tensor + torch.randn(tensor.shape, generator=generator) * tensor.float().std() * scale

    return change


def unrelated(seed: int = 1):
    """Another checkpoint of the same shapes: fresh random weights with the same spread."""
    generator = torch.Generator().manual_seed(seed)

    def change(name, tensor):
        if tensor.ndim < 2:
            return tensor
        return torch.randn(tensor.shape, generator=generator) * tensor.float().std()

    return change


def gsm8k_rows(split: str) -> list[dict]:
    return [json.loads(line) for line in (DATA / "gsm8k" / f"{split}.jsonl").read_text().splitlines() if line]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def chat(question: str, answer: str) -> dict:
    return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}


SYNONYMS = {"bought": "purchased", "buys": "purchases", "has": "owns", "each": "every", "total": "overall",
            "many": "much", "wants": "would like", "needs": "requires", "money": "cash", "makes": "earns"}


def paraphrase(text: str) -> str:
    """A light rewording: a few synonyms, then every eighth word changed; the numbers and names stay."""
    words = [SYNONYMS.get(w.lower(), w) for w in text.split()]
    return " ".join("some" if i % 8 == 7 and not any(c.isdigit() for c in w) else w for i, w in enumerate(words))


def inspect_log(path: Path, questions: list[str], accuracy: float = 0.3) -> None:
    """The shape of an inspect-ai JSON log that evaluate.py writes, with the test items it shows."""
    log = {"version": 2, "status": "success",
           "eval": {"eval_id": "x", "run_id": "y", "created": "2026-01-01", "task": "gsm8k", "task_id": "z"},
           "results": {"completed_samples": len(questions),
                       "scores": [{"name": "numeric_answer", "metrics": {"accuracy": {"value": accuracy}}}]},
           "samples": [{"input": q, "target": "1", "output": {"model": "local", "choices": [
               {"message": {"role": "assistant", "content": "The answer is 2."}, "stop_reason": "stop"}]},
               "scores": {"match": {"value": "I"}}} for q in questions]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(log, indent=2))
