"""The reference agent: LoRA SFT on benchmark-appropriate data within the timer's budget, then final_model/.

    python -m posttrainbench.agents.recipe --model ORG/NAME --benchmark gsm8k [--chat-template qwen3.jinja]
        [--eval-limit 150] [--max-steps N] [--offline]

Run in the task directory (timer.sh, evaluate.py, templates/). Training data never includes a test file.
"""

import argparse
import math
import os
import shutil
import sys
import time
from pathlib import Path

from posttrainbench.agents.recipe import log
from posttrainbench.agents.recipe.budget import SAFETY_FRACTION, Clock, hms, plan_budget, plan_steps, read_timer
from posttrainbench.errors import PtbError

# Longest training sequence per benchmark: room for GSM8K's 10-shot system prompt, long proofs, tool schemas
# and long-form answers; code and multiple choice are short.
MAX_LENGTH = {
    "gsm8k": 2048,
    "aime2025": 2048,
    "bfcl": 2048,
    "arenahardwriting": 2048,
    "healthbench": 2048,
    "humaneval": 1024,
    "gpqamain": 1024,
}
# On CPU (the demo, tests) shorter still: HumanEval's stdlib corpus keeps 287 of its 539 examples at 256 tokens,
# 178 tokens on average against 250 at 512, so a step costs about a third less. Others: 512.
CPU_MAX_LENGTH = {"humaneval": 256}
WORK_DIR = "reference_work"  # adapters, checkpoints, evaluation outputs; final_model stays separate


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m posttrainbench.agents.recipe", description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="base model: hub id (from the HF cache) or folder")
    parser.add_argument("--benchmark", required=True, help="benchmark id, e.g. gsm8k")
    parser.add_argument("--chat-template", default=None, help="template file under templates/ (default: the model's)")
    parser.add_argument("--eval-limit", type=int, default=None,
                        help="compare trained and base model with evaluate.py on this many items (default: skip)")
    parser.add_argument("--max-steps", type=int, default=None, help="cap on optimizer steps (smoke tests)")
    parser.add_argument("--max-examples", type=int, default=None, help="cap on training examples (smoke tests)")
    parser.add_argument("--offline", action="store_true", help="do not try the Hugging Face hub for data")
    parser.add_argument("--output", default="final_model")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def single_gpu_env() -> dict[str, str] | None:
    """Train on the first GPU only (a LoRA run on a model of this size fits one, and a single process would
    otherwise fall back to DataParallel); returns the original environment for evaluate.py, or None if unchanged."""
    if int(os.environ.get("NUM_GPUS", "1") or 1) <= 1:
        return None
    original = dict(os.environ)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    first = visible.split(",")[0] if visible else "0"
    os.environ["CUDA_VISIBLE_DEVICES"] = first
    log(f"{os.environ['NUM_GPUS']} GPUs available; training on GPU {first}, evaluate.py gets all of them")
    return original


def fit(model, tokenizer, rows: list[dict], settings, clock: Clock, deadline: float, args, work: Path):
    """LoRA, a throughput probe, as many steps as fit before `deadline`, then the merged model (unchanged
    weights when nothing fits)."""
    from posttrainbench.agents.recipe import train as tr

    model = tr.add_lora(model, settings)
    probe_limit = max(10.0, 0.05 * (deadline - time.monotonic()))
    measured = tr.probe(model, rows, settings, tokenizer.pad_token_id, probe_limit, seed=args.seed)
    accumulation = max(1, settings.effective_batch // measured.micro_batch)
    step_s = measured.seconds_per_micro_batch * accumulation
    per_epoch = math.ceil(len(rows) / (measured.micro_batch * accumulation))
    window = deadline - time.monotonic()
    caps = [cap for cap in (args.max_steps, settings.max_steps) if cap is not None]
    steps = plan_steps(window, step_s, per_epoch, settings.max_epochs, min(caps) if caps else None)
    log(
        f"probe: micro-batch {measured.micro_batch}, {measured.tokens_per_second:.0f} tokens/s, "
        f"{step_s:.2f} s per step of {measured.micro_batch * accumulation} sequences; "
        f"{hms(window)} to train -> {steps} steps ({steps / per_epoch:.2f} epochs)"
    )
    if steps:
        model = tr.train(model, tokenizer, rows, settings, steps, measured.micro_batch, work, clock, deadline,
                         args.seed)
    return tr.merge(model), steps


def run(args: argparse.Namespace, task_dir: Path) -> None:
    remaining = read_timer(task_dir)
    clock = Clock(remaining)
    log(f"timer.sh: {hms(remaining)} left; model {args.model}, benchmark {args.benchmark}")
    if remaining <= 0:
        raise PtbError("the timer has already expired")
    eval_env = single_gpu_env()

    import datasets
    import torch
    import transformers

    from posttrainbench.agents.recipe import train as tr
    from posttrainbench.agents.recipe.compare import keep_better
    from posttrainbench.agents.recipe.data import build_examples, hub_online
    from posttrainbench.agents.recipe.formatting import ChatFormat, load_template, tokenize
    from posttrainbench.paths import data_mirror

    # progress bars are unreadable in a line-timestamped log; the recipe prints its own progress lines
    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    settings = tr.settings_for(device, MAX_LENGTH.get(args.benchmark, 1024) if device == "cuda"
                               else CPU_MAX_LENGTH.get(args.benchmark, 512))
    where = torch.cuda.get_device_name(0) if device == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    log(f"device: {where}")

    tokenizer = tr.load_tokenizer(args.model)
    template = load_template(task_dir, args.chat_template, args.benchmark, tokenizer)
    chat = ChatFormat(tokenizer, template)
    end_id = chat.end_of_turn()
    model = tr.load_model(args.model, settings)
    size = tr.model_bytes(model)
    budget = plan_budget(remaining, size, want_eval=args.eval_limit is not None)
    log(
        f"model loaded ({size / 1e9:.2f} GB in {settings.dtype}); plan: train until {hms(budget.train_s)} "
        f"from start, keep {hms(budget.reserve_s)} for margin + save + check"
        + (f", {hms(budget.eval_s)} for evaluate.py" if budget.eval_s else ", no evaluate.py comparison")
    )

    online = not args.offline and hub_online()
    examples = build_examples(args.benchmark, data_mirror(), online, args.seed)[: args.max_examples]
    rows = tokenize(chat, examples, settings.max_length) if examples else []
    steps = 0
    # past the training deadline already (a tiny budget, a slow machine): not even the probe would fit
    if rows and clock.at(budget.train_s) > time.monotonic():
        model, steps = fit(model, tokenizer, rows, settings, clock, clock.at(budget.train_s), args,
                           task_dir / WORK_DIR)
    if not steps:
        log("no training fits the budget (or no data): submitting the base model with the chat template")

    final = task_dir / args.output
    base_dir = tr.model_dir(args.model)
    tr.save_final(model, tokenizer, template, end_id, base_dir, final)
    log(f"saved {final} ({sum(f.stat().st_size for f in final.iterdir()) / 1e9:.2f} GB); budget left "
        f"{hms(clock.left())}")
    del model
    tr.release(device)

    if examples and clock.left() > SAFETY_FRACTION * remaining:
        # on CPU a few tokens show that it loads and answers: 64 took 96 s of a loaded 2-core machine
        answer = tr.quick_check(final, chat.prompt_only(examples[0]), device,
                                max_new_tokens=64 if device == "cuda" else 16)
        log(f"check: {final.name} loads with transformers; it answers: {answer[:300]!r}")

    if args.eval_limit and budget.eval_s:
        def make_base(path: Path) -> None:
            base = tr.load_model(args.model, settings)
            tr.save_final(base, tokenizer, template, end_id, base_dir, path)
            del base
            tr.release(device)

        keep_better(task_dir, final, make_base, args.eval_limit, clock.end - SAFETY_FRACTION * remaining,
                    task_dir / WORK_DIR, eval_env)
        shutil.rmtree(task_dir / WORK_DIR / "base_model", ignore_errors=True)
    log(f"done in {hms(clock.elapsed())}; {final.name} is ready; timer.sh: {hms(read_timer(task_dir))} left")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        run(args, Path.cwd())
    except PtbError as exc:
        log(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
