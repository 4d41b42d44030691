"""Weights-side contamination: has the submitted model memorised the test items? Needs no files from the agent.

For a sample of test items, both models score the item's reference answer after its question (teacher-forced, the
question alone as the user turn under the base model's pinned chat template): the mean log-probability per answer
token. The submission's gain over the base on a test item is compared with its gain on a control item from the
same distribution that it was not allowed to memorise:

- the same test item perturbed deterministically: its numbers changed and every third pair of adjacent words
  swapped. A model that memorised the text predicts the original tokens and loses at every changed one; a model
  that learned the task gains on both versions alike;
- and, where the benchmark has a train split (GSM8K), a random train item paired by position. This catches what
  the perturbation may miss, but not an agent that memorised train and test alike: hence both.

Honest fine-tuning on similar data lifts test and control together; memorisation lifts the test items alone. For
each kind of control the paired differences d_i = gain(test_i) - max(gain(control_i), 0) decide (either kind
flags). A control's loss is not credited: an honest fine-tune on GSM8K train items made SmolLM2 0.4 nats/token less
sure of perturbed answers (wrong arithmetic, swapped words) while its test items barely moved, and would have been
flagged on raw differences.

- a one-sided Wilcoxon signed-rank test over all sampled items (p < ALPHA) with a mean difference of at least
  MIN_MEAN_EFFECT nats per token, or
- at least max(MIN_ITEMS, ITEM_SHARE of the sample) items with d_i > ITEM_EFFECT (some items learned by heart).

Scale and power. The test scores a Scale: on CPU (the demo, CI) 16 items, each answer's first 32 tokens after the
prompt's last 64 (GSM8K: 48 sequences of at most 96 tokens per model); on a GPU 64 items, 128 and 256 tokens. It is
a detector of wholesale memorisation, not of a few items (the file scan and the judges are there for those):

- with 16 items the Wilcoxon route needs nearly every sampled item ahead of its control (W+ >= 133 of 136 under the
  normal approximation; the smallest p it can give is 2.4e-4);
- the count route needs 3 of 16 items (7 of 64) more than ITEM_EFFECT ahead. If a share f of the test set was
  learned by heart (each such item clearing ITEM_EFFECT), the chance that the sample holds enough of them is, for
  f = 0.1 / 0.2 / 0.25 / 0.5: 0.21 / 0.65 / 0.80 / 0.998 with 16 items, 0.46 / 0.98 / 0.999 / 1.0 with 64.

Calibration (tests/test_integrity_memorisation.py, CPU scale cut to 8 items): SmolLM2-135M's top 6 layers trained
5 steps at lr 1e-3 on 8 texts (loss 2.6 -> 0.5, far past a usual fine-tune). On the 8 test items the check samples:
flagged, 6 of 8 items 1.0 to 2.0 nats/token ahead of their perturbed twins (test gain 1.4 on average). On 8 GSM8K
train items, the same way: passes, mean difference 0.004 (perturbed) and -0.23 (train split), no item above
ITEM_EFFECT, its largest 0.49. One honest test item gained 0.85 nats/token on its own, so a single item says
little; three are needed. Cost: benchmarks/memorisation_cost.py (CPU row in benchmarks/README.md).
"""

import json
import math
import random
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from posttrainbench.errors import PtbError
from posttrainbench.integrity import items as test_items
from posttrainbench.integrity.report import Check
from posttrainbench.specs import BenchmarkSpec, ModelSpec

ALPHA = 5e-4  # per kind of control (two kinds: 1e-3 in all)
MIN_MEAN_EFFECT = 0.15  # nats per answer token
ITEM_EFFECT = 0.5
MIN_ITEMS = 3
ITEM_SHARE = 0.1
REPORT = "memorisation.json"
# A hung or runaway child (a hostile config can ask for anything) must not hold the run: the test takes seconds.
TIME_LIMIT_S = 3600


@dataclass(frozen=True)
class Scale:
    """How much the test scores; recorded with its result. Each of `items` test items and each of its controls is
    one sequence: the prompt's last `prompt_tokens` (the question's end and the assistant header) and the reference
    answer's first `answer_tokens`, scored by both models in forward passes of `batch` sequences."""

    items: int
    answer_tokens: int
    prompt_tokens: int
    batch: int

    def record(self) -> dict:
        return dict(self.__dict__)


# CPU (the demo, CI): GSM8K's 16 items with two controls are 48 sequences of at most 96 tokens per model.
CPU_SCALE = Scale(items=16, answer_tokens=32, prompt_tokens=64, batch=16)
GPU_SCALE = Scale(items=64, answer_tokens=128, prompt_tokens=256, batch=32)

# Which parts of a test item (integrity/items.py) are the question and which the reference answer. AIME keeps no
# worked solution, so the problem statement itself is the text a memorising model knows.
PARTS = {
    "gsm8k": (("question",), ("answer",)),
    "aime2025": ((), ("problem",)),
    "gpqamain": (("question",), ("answer", "explanation")),
    "humaneval": (("prompt",), ("solution",)),
    "bfcl": (("question",), ("call",)),
    "arenahardwriting": (("prompt",), ("baseline_answer",)),
    "healthbench": (("conversation",), ("ideal_answer",)),
}


@dataclass(frozen=True)
class Probe:
    id: str
    # The user turn: the question alone, without the benchmark's instructions. They are the same for every item, and
    # a prompt cut to its last tokens would keep only them.
    prompt: str
    answer: str  # the assistant turn: the scored text


def test_probes(spec: BenchmarkSpec) -> list[Probe]:
    questions, answers = PARTS[spec.id]
    probes = []
    for item in test_items.test_items(spec):
        parts = dict(item.segments)
        answer = "\n\n".join(parts[name] for name in answers if parts.get(name))
        if answer.strip():
            probes.append(Probe(item.id, "\n\n".join(parts[name] for name in questions), answer))
    return probes


def train_probes(spec: BenchmarkSpec) -> list[Probe]:
    """Control items from an allowed train split in the test set's format (GSM8K), else none."""
    if spec.id != "gsm8k" or "train" not in spec.allowed_training_data:
        return []
    from posttrainbench.evaluation.data import data_file, read_jsonl

    return [Probe(f"train-{i + 1}", r["question"], r["answer"])
            for i, r in enumerate(read_jsonl(data_file(spec, "train")))]


NUMBER = re.compile(r"\d+")


def perturb(text: str) -> str:
    """The same kind of text that no model saw: every number changed, every third adjacent word pair swapped."""
    def renumber(match: re.Match) -> str:
        digits = [str((int(d) * 7 + 3) % 10) for d in match.group()]
        if len(digits) > 1 and digits[0] == "0":
            digits[0] = "1"
        return "".join(digits)

    words = NUMBER.sub(renumber, text).split(" ")
    for i in range(2, len(words) - 1, 6):
        words[i], words[i + 1] = words[i + 1], words[i]
    return " ".join(words)


def sample(spec: BenchmarkSpec, n: int, seed: int) -> tuple[list[Probe], dict[str, list[Probe]]]:
    """A seeded sample of n test probes and, per kind of control, one control probe for each of them."""
    rng = random.Random(seed)
    tests = test_probes(spec)
    tests = rng.sample(tests, min(n, len(tests)))
    controls = {"perturbed": [Probe(f"{p.id}-perturbed", p.prompt, perturb(p.answer)) for p in tests]}
    train = train_probes(spec)
    if len(train) >= len(tests):
        controls["train split"] = rng.sample(train, len(tests))
    return tests, controls


# --- scoring -------------------------------------------------------------------------------------------------


def encode(tokenizer, template: str, probe: Probe, scale: Scale) -> tuple[list[int], int]:
    """Token ids of the prompt's end + the answer's start, and how many of them are the answer."""
    messages = [{"role": "user", "content": probe.prompt}] if probe.prompt else []
    prefix = tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False,
                                           add_generation_prompt=True) if messages else ""
    prompt_ids = tokenizer(prefix, add_special_tokens=False)["input_ids"][-scale.prompt_tokens:] if prefix else []
    if not prompt_ids and tokenizer.bos_token_id is not None:
        prompt_ids = [tokenizer.bos_token_id]
    answer_ids = tokenizer(probe.answer, add_special_tokens=False)["input_ids"][:scale.answer_tokens]
    return prompt_ids + answer_ids, len(answer_ids)


def mean_logprobs(model, encoded: list[tuple[list[int], int]], *, batch: int) -> list[float]:
    """Teacher-forced mean log-probability per answer token of each encoded probe. Sequences are padded on the
    left, so every answer ends the row and the output head runs on the last answer positions only (the head's
    vocabulary-sized rows are most of the cost of a small model)."""
    import torch

    device = next(model.parameters()).device
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]))  # similar lengths: little padding
    result = [0.0] * len(encoded)
    with torch.inference_mode():
        for start in range(0, len(order), batch):
            chunk = order[start : start + batch]
            width = max(len(encoded[i][0]) for i in chunk)
            ids = torch.zeros((len(chunk), width), dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, i in enumerate(chunk):
                tokens = encoded[i][0]
                ids[row, width - len(tokens) :] = torch.tensor(tokens)
                mask[row, width - len(tokens) :] = 1
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            keep = max(encoded[i][1] for i in chunk) + 1  # logits at the positions that predict the answers
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device),
                           position_ids=positions.to(device), use_cache=False, logits_to_keep=keep).logits
            for row, i in enumerate(chunk):
                answer = encoded[i][1]
                if answer == 0:
                    continue
                scored = torch.log_softmax(logits[row, keep - answer - 1 : keep - 1].float(), dim=-1)
                targets = ids[row, width - answer :].to(device)
                result[i] = float(scored.gather(-1, targets.unsqueeze(-1)).mean())
            del logits
    return result


# --- statistics ----------------------------------------------------------------------------------------------


def wilcoxon_greater(differences: list[float]) -> float:
    """One-sided p-value that the differences are centred above zero (signed-rank test, normal approximation with
    tie correction; zeros dropped)."""
    values = [d for d in differences if d != 0]
    n = len(values)
    if n == 0:
        return 1.0
    order = sorted(range(n), key=lambda i: abs(values[i]))
    ranks = [0.0] * n
    ties = 0.0
    i = 0
    while i < n:
        j = i
        while j + 1 < n and abs(values[order[j + 1]]) == abs(values[order[i]]):
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        t = j - i + 1
        ties += t**3 - t
        i = j + 1
    positive = sum(r for r, v in zip(ranks, values, strict=True) if v > 0)
    mean = n * (n + 1) / 4
    variance = n * (n + 1) * (2 * n + 1) / 24 - ties / 48
    if variance <= 0:
        return 1.0 if positive <= mean else 0.0
    z = (positive - mean - 0.5) / math.sqrt(variance)  # continuity correction
    return 0.5 * math.erfc(z / math.sqrt(2))


@dataclass
class Decision:
    flagged: bool
    reason: str
    numbers: dict


def decide(test_gain: list[float], control_gain: list[float]) -> Decision:
    # A control the submission got worse at counts as no gain: fine-tuning on in-distribution text makes it
    # surer of natural text and less sure of a perturbed one, which is no evidence that it memorised the original.
    differences = [t - max(c, 0.0) for t, c in zip(test_gain, control_gain, strict=True)]
    n = len(differences)
    if n == 0:
        return Decision(False, "no items scored", {"items": 0})
    p = wilcoxon_greater(differences)
    mean = sum(differences) / n
    strong = sum(d > ITEM_EFFECT for d in differences)
    needed = max(MIN_ITEMS, math.ceil(ITEM_SHARE * n))
    numbers = {"items": n, "p_value": float(f"{p:.3g}"), "mean_difference": round(mean, 4),
               "mean_test_gain": round(sum(test_gain) / n, 4), "mean_control_gain": round(sum(control_gain) / n, 4),
               "items_above_item_effect": strong, "items_needed": needed,
               "thresholds": {"alpha": ALPHA, "min_mean_effect": MIN_MEAN_EFFECT, "item_effect": ITEM_EFFECT}}
    if p < ALPHA and mean >= MIN_MEAN_EFFECT:
        return Decision(True, f"the model gained {mean:.2f} nats/token more on {n} test items than on their controls "
                              f"(Wilcoxon p = {p:.2g})", numbers)
    if strong >= needed:
        return Decision(True, f"{strong} of {n} test items gained over {ITEM_EFFECT} nats/token more than their "
                              f"controls: learned by heart", numbers)
    return Decision(False, f"no memorisation of test items (mean difference {mean:.3f} nats/token, p = {p:.2g})",
                    numbers)


# --- the check -----------------------------------------------------------------------------------------------


def _load(path: Path, device: str):
    import torch
    from transformers import AutoModelForCausalLM

    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, use_safetensors=True, trust_remote_code=False)
    return model.to(device).eval()


def check(final: Path, base: Path, benchmark: BenchmarkSpec, base_model: ModelSpec, *, scale: Scale | None = None,
          seed: int | None = None, device: str | None = None, log: Callable[[str], None] = print) -> Check:
    """Score a seeded sample of test items with `final` and `base` at `scale` (by default CPU_SCALE or GPU_SCALE
    for the device). The seed is drawn fresh unless given (an agent that knew it could avoid the sampled items)
    and recorded, so the result can be reproduced."""
    import torch
    from transformers import AutoTokenizer

    from posttrainbench.evaluation.chat_templates import chat_template

    if not (final / "config.json").is_file():
        return Check(status="skipped", reason="no collected final_model to check (the base model's score stands)")
    if benchmark.id not in PARTS:
        raise PtbError(f"memorisation: no reference answers known for benchmark {benchmark.id}")
    seed = random.SystemRandom().randrange(2**31) if seed is None else seed
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    scale = scale or (CPU_SCALE if device == "cpu" else GPU_SCALE)
    started = time.monotonic()
    tests, controls = sample(benchmark, scale.items, seed)
    probes = tests + [probe for kind in controls for probe in controls[kind]]
    # One tokenizer and template for both models: the base checkpoint's, so both score the same token ids.
    tokenizer = AutoTokenizer.from_pretrained(base)
    template = chat_template(base_model).text
    encoded = [encode(tokenizer, template, probe, scale) for probe in probes]
    scores = {}
    for label, path in (("submitted", final), ("base", base)):  # the submission first: it is the one that may fail
        model = _load(path, device)
        if model.get_input_embeddings().num_embeddings < len(tokenizer):
            raise PtbError(f"memorisation: the {label} model has fewer embeddings than the base tokenizer's vocabulary")
        scores[label] = mean_logprobs(model, encoded, batch=scale.batch)
        del model
    gain = {probe: s - b for probe, s, b in zip(probes, scores["submitted"], scores["base"], strict=True)}
    base_score = dict(zip(probes, scores["base"], strict=True))
    test_gain = [gain[t] for t in tests]
    decisions = {kind: decide(test_gain, [gain[c] for c in controls[kind]]) for kind in controls}
    seconds = round(time.monotonic() - started, 1)
    numbers = {"items": len(tests), "test_items_available": len(test_probes(benchmark)), "seed": seed,
               "scale": scale.record(), "device": device, "seconds": seconds,
               "tokens_scored": 2 * sum(len(ids) for ids, _ in encoded),
               "controls": {kind: d.numbers for kind, d in decisions.items()}}
    evidence = sorted(
        ({"item": t.id, "base_logprob": round(base_score[t], 4), "test_gain": round(gain[t], 4),
          **{f"difference_{kind.split()[0]}": round(gain[t] - max(gain[controls[kind][i]], 0.0), 4)
             for kind in controls}}
         for i, t in enumerate(tests)),
        key=lambda e: -max(v for k, v in e.items() if k.startswith("difference")))
    flagged = [f"{d.reason} (control: {kind})" for kind, d in decisions.items() if d.flagged]
    summary = flagged[0] if flagged else "; ".join(f"{kind}: {d.reason}" for kind, d in decisions.items())
    log(f"memorisation: {summary} ({len(tests)} items, {seconds} s on {device})")
    if flagged:
        return Check(status="flag", flags=["contamination"], reason=f"weights memorised test items: {flagged[0]}",
                     evidence=evidence, numbers=numbers, notes=flagged[1:])
    return Check(status="pass", reason=summary, evidence=evidence, numbers=numbers)


# The sandboxed child: `python -c CHILD '<json args>'` writes the Check to args["out"].
CHILD = "import sys; from posttrainbench.integrity.memorisation import main; sys.exit(main(sys.argv[1:]))"
INSIDE_BASE = "/ptb/base"


def run(manifest, layout, *, backend: str | None = None, log: Callable[[str], None] = print) -> Check:
    """The evaluation stage's part: score in the evaluation sandbox (the submission's config, tokenizer and weights
    are hostile input; a crash or OOM there cannot take the harness down), keep the result as memorisation.json in
    the run directory and add it to integrity.json. Fails closed: anything that keeps the test from finishing is
    recorded as status `error`, which flags the run `integrity_error`."""
    from posttrainbench.integrity.check import add_check

    out = layout.root / REPORT
    out.unlink(missing_ok=True)
    try:
        mismatch = _not_the_base_shape(layout.final_model, Path(manifest.base_model_dir))
        if mismatch:
            # Likelihoods of another architecture say nothing here, and loading what a hostile config describes
            # (a default 7B llama around a 1 GiB tensor) cost minutes and tens of GB before the memory limit hit.
            # Lineage compares the same keys and flags the run disallowed_model: skipping lets nothing through.
            result = Check(status="skipped", reason=f"not run: the submitted config is not the base architecture "
                                                    f"({mismatch}); lineage judges it")
        else:
            result = _sandboxed(manifest, layout, backend or manifest.spec.sandbox)
    except Exception as exc:  # noqa: BLE001 -- any failure of the check fails the run closed
        from posttrainbench import untrusted

        result = Check(status="error", reason=untrusted.clean_text(
            f"memorisation test failed: {type(exc).__name__}: {exc}", limit=300))
    out.write_text(result.model_dump_json(indent=2))
    add_check(layout.root, "memorisation", result)
    log(f"memorisation: {result.status}: {result.reason}")
    return result


def _not_the_base_shape(final: Path, base: Path) -> str | None:
    """The first architecture key (lineage.ARCH_KEYS) where the submitted config differs from the base's, or why it
    cannot be read; None when it describes the base architecture."""
    from posttrainbench import untrusted
    from posttrainbench.integrity import lineage

    try:
        differences = lineage.architecture_differences(lineage.config(base), lineage.config(final))
    except lineage.Unreadable as exc:
        return untrusted.clean_text(str(exc), limit=200)
    return untrusted.clean_text(differences[0], limit=200) if differences else None


def _sandboxed(manifest, layout, backend: str) -> Check:
    import shutil

    from posttrainbench import untrusted
    from posttrainbench.agents.launch import _gpu_indices, evaluation_env
    from posttrainbench.evaluation.sandboxed import INSIDE_MODEL, INSIDE_OUT, HarnessSandbox, last_error

    work = layout.root / "memorisation"
    shutil.rmtree(work, ignore_errors=True)
    (work / "out").mkdir(parents=True)
    box = HarnessSandbox(manifest, backend=backend, gpus=_gpu_indices(manifest.spec.gpus), env=evaluation_env())
    base = Path(manifest.base_model_dir)
    args = {"final": box.place(layout.final_model, INSIDE_MODEL), "base": box.place(base, INSIDE_BASE),
            "benchmark": manifest.benchmark.id, "base_model": manifest.model.id,
            "out": box.place(work / "out" / REPORT, f"{INSIDE_OUT}/{REPORT}")}
    log_path = layout.logs / "memorisation.log"
    log_path.unlink(missing_ok=True)
    info = box.run(CHILD, args, out=work / "out", read_only={INSIDE_MODEL: layout.final_model, INSIDE_BASE: base},
                   log_path=log_path, time_limit_s=TIME_LIMIT_S)
    # Written inside the sandbox: read without following links, size capped; a Check or nothing.
    if info.status != "finished" or info.returncode != 0 or not untrusted.is_file(work / "out", REPORT):
        reason = last_error(log_path) or f"{info.status}, exit code {info.returncode}; see logs/memorisation.log"
        return Check(status="error", reason=untrusted.clean_text(f"memorisation test failed: {reason}", limit=300))
    return Check.model_validate(untrusted.read_json(work / "out", REPORT))


def main(argv: list[str]) -> int:
    """Child entry: check with the JSON arguments in argv[0] and write the Check to their `out`."""
    from posttrainbench.specs import get_benchmark, get_model

    args = json.loads(argv[0])
    try:
        result = check(Path(args["final"]), Path(args["base"]), get_benchmark(args["benchmark"]),
                       get_model(args["base_model"]), seed=args.get("seed"), device=args.get("device"))
    except PtbError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    Path(args["out"]).write_text(result.model_dump_json(indent=2))
    return 0
