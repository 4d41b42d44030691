"""One real run on a GPU machine: the reference agent post-trains a model of Qwen3-1.7B's exact shape (random
weights: the hub is unreachable there) inside the bubblewrap sandbox with the GPU passed through; then the harness
collects final_model, evaluates it on the GPU exactly as a run does (inspect-ai, transformers backend) and times
plain batched decoding.

    PTB_DATA_DIR=DIR python benchmarks/gpu_run.py --tokenizer TOKENIZER_DIR [--minutes 8] [--benchmark gsm8k]

Prints the agent's plan and training throughput, the sandbox exit, the collect result, the evaluation's metrics
and decode tokens/s.
Needs bwrap on PATH and a CUDA GPU."""

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen3Config

from posttrainbench import models
from posttrainbench.agents.launch import run_agent
from posttrainbench.executors.evaluate import run_evaluation
from posttrainbench.specs import AgentSpec, RunSpec, get_model
from posttrainbench.workspace.collect import collect
from posttrainbench.workspace.layout import RunLayout
from posttrainbench.workspace.prepare import prepare


def stage_random_base(model_id: str, tokenizer: Path) -> Path:
    """Random weights of the real shape, placed where models.fetch finds the pinned snapshot."""
    spec = get_model(model_id)
    snap = models.repo_dir(spec) / "snapshots" / models.revision(spec)
    if snap.exists():
        return snap
    tok = AutoTokenizer.from_pretrained(tokenizer)
    cfg = Qwen3Config(vocab_size=151936, hidden_size=2048, intermediate_size=6144, num_hidden_layers=28,
                      num_attention_heads=16, num_key_value_heads=8, head_dim=128, tie_word_embeddings=True,
                      max_position_embeddings=32768, rope_theta=1e6, bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    model.save_pretrained(snap)
    tok.save_pretrained(snap)
    (snap.parents[1] / "refs").mkdir(exist_ok=True)
    (snap.parents[1] / "refs" / "main").write_text(snap.name)
    return snap


def decode_speed(model_dir: Path, batch: int, prompt_len: int = 256, new: int = 128) -> float:
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16).cuda().eval()
    ids = torch.randint(100, 1000, (batch, prompt_len), device="cuda")
    with torch.no_grad():
        model.generate(ids[:, :16], max_new_tokens=4, min_new_tokens=4, do_sample=False)
        torch.cuda.synchronize()
        start = time.perf_counter()
        model.generate(ids, max_new_tokens=new, min_new_tokens=new, do_sample=False)
        torch.cuda.synchronize()
    return batch * new / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokenizer", type=Path, required=True)
    parser.add_argument("--minutes", type=float, default=8)
    parser.add_argument("--benchmark", default="gsm8k")
    parser.add_argument("--model", default="qwen3-1.7b-base")
    parser.add_argument("--eval-limit", type=int, default=32, help="items of the GPU evaluation (0: skip it)")
    parser.add_argument("--eval-max-tokens", type=int, default=256)
    args = parser.parse_args()

    start = time.time()
    base = stage_random_base(args.model, args.tokenizer)
    print(f"base model staged at {base} in {time.time() - start:.0f}s", flush=True)
    spec = RunSpec(agent=AgentSpec(scaffold="reference"), model=args.model, benchmark=args.benchmark,
                   hours=args.minutes / 60, gpus=1, network="offline", sandbox="bwrap")
    runs = Path(tempfile.mkdtemp(prefix="ptb-gpu-runs-"))
    manifest = prepare(spec, runs_dir=runs)
    layout = RunLayout(runs / manifest.run_id)
    info = run_agent(manifest, layout, backend="bwrap")
    print("agent exit:", info.status, info.returncode, f"{info.wall_seconds:.0f}s", info.detail, flush=True)
    for line in layout.agent_log.read_text().splitlines():
        if any(k in line for k in ("device:", "plan:", "probe:", "step ", "saved", "done in", "GPU", "cuda", "Error")):
            print("  ", line[:300])
    result = collect(layout.submitted_model, layout.final_model, Path(manifest.base_model_dir))
    print("collect:", result.status, result.reason or "", json.dumps(sorted(result.files)), flush=True)
    if result.status == "ok" and args.eval_limit:
        started = time.time()
        metrics = run_evaluation(layout.final_model, args.benchmark, base_model=args.model,
                                 out_dir=layout.results("final"), limit=args.eval_limit,
                                 max_tokens=args.eval_max_tokens, label="the collected model")
        keys = ("accuracy", "n_samples", "output_tokens", "eval_seconds", "backend", "device")
        print("evaluation:", {k: metrics.get(k) for k in keys}, f"wall {time.time() - started:.0f}s", flush=True)
    if result.status == "ok":
        for batch in (1, 16, 64):
            print(f"decode of the collected model, batch {batch}: {decode_speed(layout.final_model, batch):.0f} tok/s",
                  flush=True)
    print(f"total {time.time() - start:.0f}s; CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')}")


if __name__ == "__main__":
    main()
