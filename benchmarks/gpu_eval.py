"""Our evaluator against vLLM's offline engine on the same model, prompts, max tokens and sampling parameters.

    PTB_DATA_DIR=DIR python benchmarks/gpu_eval.py --tokenizer TOK --work DIR [--benchmark gsm8k] [--max-tokens 512]

1. Builds a model of Qwen3-1.7B's shape with random bf16 weights and TOK's tokenizer in WORK/model (kept if there).
2. Evaluates it with posttrainbench's evaluator, vLLM backend, harness defaults (every item in flight, one
   `vllm serve`), and times it from the moment the server answers to the end of the evaluation (the attempt's
   `serving_s`; inspect sets its samples up during the start-up, which is reported apart).
3. Sends the exact chat conversations of that log to `vllm.LLM.chat` with the same chat template, max tokens,
   stop tokens and sampling parameters (the evaluator's per-request seed included), then once more without the
   per-request seed, and times each.
Prints one JSON object: output tokens/s of each and the ratio evaluator / engine. Needs a CUDA GPU and vLLM; set
VLLM_WORKER_MULTIPROC_METHOD=spawn (this process has touched CUDA before the engine starts).
"""

import argparse
import json
import os
import time
from pathlib import Path

QWEN3_1_7B = dict(hidden_size=2048, intermediate_size=6144, num_hidden_layers=28, num_attention_heads=16,
                  num_key_value_heads=8, head_dim=128, tie_word_embeddings=True, max_position_embeddings=32768,
                  rope_theta=1e6)


def build_model(dest: Path, tokenizer_dir: Path) -> Path:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen3Config

    if (dest / "config.json").is_file():
        return dest
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    vocab = -(-len(tok) // 64) * 64
    cfg = Qwen3Config(vocab_size=vocab, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id, **QWEN3_1_7B)
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    model.save_pretrained(dest)
    tok.save_pretrained(dest)
    return dest


def conversations(log_dir: Path) -> list[list[dict]]:
    """The chat messages each sample sent, in the order of the log (the model's answer left off)."""
    from inspect_ai.log import read_eval_log

    [path] = sorted(log_dir.glob("*.json"))
    convs = []
    for sample in read_eval_log(str(path)).samples:
        messages = sample.messages[:-1] if sample.messages[-1].role == "assistant" else sample.messages
        convs.append([{"role": m.role, "content": m.text} for m in messages])
    return convs


def engine_runs(model: Path, convs: list[list[dict]], metrics: dict, template: str, memory: float) -> list[dict]:
    from vllm import LLM, SamplingParams

    gen = metrics["generation"]
    started = time.monotonic()
    llm = LLM(model=str(model), gpu_memory_utilization=memory, seed=gen["seed"], enable_prefix_caching=True,
              generation_config="vllm")
    start_s = time.monotonic() - started
    results = []
    for per_request_seed in (gen["seed"], None):
        params = SamplingParams(max_tokens=gen["max_tokens"], temperature=gen["temperature"] or 0.0,
                                top_p=gen["top_p"] or 1.0, top_k=gen["top_k"] or 0, seed=per_request_seed,
                                stop_token_ids=gen["stop_token_ids"])
        llm.chat(convs[:8], params, chat_template=template, chat_template_kwargs={"enable_thinking": True},
                 use_tqdm=False)  # warm the prefix cache like the evaluator's first requests do
        began = time.monotonic()
        outs = llm.chat(convs, params, chat_template=template, chat_template_kwargs={"enable_thinking": True},
                        use_tqdm=False)
        seconds = time.monotonic() - began
        tokens = sum(len(o.outputs[0].token_ids) for o in outs)
        prompt = sum(len(o.prompt_token_ids) for o in outs)
        results.append({"per_request_seed": per_request_seed, "seconds": round(seconds, 1), "output_tokens": tokens,
                        "prompt_tokens": prompt, "output_tok_s": round(tokens / seconds, 1),
                        "engine_start_s": round(start_s, 1)})
        print(json.dumps(results[-1]), flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", required=True, type=Path)
    parser.add_argument("--work", required=True, type=Path)
    parser.add_argument("--benchmark", default="gsm8k")
    parser.add_argument("--base-model", default="qwen3-1.7b-base", help="picks the chat template")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--max-connections", type=int, default=None, help="default: the harness's (all items)")
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.9)
    parser.add_argument("--skip-engine", action="store_true")
    args = parser.parse_args()

    from posttrainbench.evaluation.chat_templates import chat_template
    from posttrainbench.evaluation.runner import evaluate
    from posttrainbench.specs import get_model

    os.environ.setdefault("VLLM_USE_FLASHINFER_SAMPLER", "0")
    os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")
    model = build_model(args.work / "model", args.tokenizer)
    out = args.work / f"eval-{time.strftime('%H%M%S')}"
    started = time.monotonic()
    metrics = evaluate(model, args.benchmark, base_model=args.base_model, out_dir=out, limit=args.limit,
                       backend="vllm", max_tokens=args.max_tokens, max_connections=args.max_connections,
                       gpu_memory_utilization=args.gpu_memory_utilization)
    wall = time.monotonic() - started
    serving = metrics["attempts"][-1]["serving_s"]
    ours = {"n_samples": metrics["n_samples"], "output_tokens": metrics["output_tokens"],
            "input_tokens": metrics["input_tokens"], "serving_s": serving, "eval_seconds": metrics["eval_seconds"],
            "output_tok_s": round(metrics["output_tokens"] / serving, 1),
            "server_start_s": metrics["attempts"][0].get("server_start_s"), "wall_s": round(wall, 1),
            "max_connections": metrics["generation"]["max_connections"]}
    print(json.dumps({"evaluator": ours}), flush=True)
    result = {"benchmark": args.benchmark, "max_tokens": args.max_tokens, "evaluator": ours}
    if not args.skip_engine:
        template = chat_template(get_model(args.base_model)).text
        engine = engine_runs(model, conversations(out / "logs"), metrics, template, args.gpu_memory_utilization)
        result["engine"] = engine
        result["ratio"] = round(ours["output_tok_s"] / engine[0]["output_tok_s"], 3)
        result["ratio_vs_unseeded_engine"] = round(ours["output_tok_s"] / engine[1]["output_tok_s"], 3)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
