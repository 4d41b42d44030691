"""HealthBench "Easy": 245 health conversations, each answer graded against its physician-written rubric.

An LLM grader decides criterion by criterion whether the answer meets it (HealthBench's grading format: the
conversation with the answer, one rubric item, a JSON reply {"explanation", "criteria_met"}). A conversation scores
the points of the criteria met (negative ones included) over its positive points; the benchmark score is the mean of
those, clipped to [0, 1], and stderr the bootstrap standard deviation of that clipped mean (HealthBench's and the
original's method). Extras: per theme (clipped mean) and per rubric axis (pooled points, clipped).
"""

import asyncio
import json
import random
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
from inspect_ai import Task
from inspect_ai.dataset import MemoryDataset, Sample
from inspect_ai.log import EvalLog
from inspect_ai.model import ChatMessage, ChatMessageAssistant, ChatMessageSystem, ChatMessageUser
from inspect_ai.scorer import Metric, SampleScore, Score, Scorer, Target, metric, scorer
from inspect_ai.solver import TaskState, generate

from posttrainbench.errors import PtbError
from posttrainbench.evaluation import fewshot
from posttrainbench.evaluation.base import EvalContext
from posttrainbench.evaluation.graded import bootstrap_std, clean_answer
from posttrainbench.evaluation.grader import Grader, GraderUsage, usage_from_log, usage_metadata

SHUFFLE_SEED = 42  # a limited run takes the first items of this shuffle, as the original's evaluate.py did
GRADER_MAX_COMPLETION_TOKENS = 49152  # the original's budget: nearly all of it is room for the grader's reasoning
GRADING_ATTEMPTS = 3  # a reply without a readable criteria_met is asked again, then counts as not met

GRADER_PROMPT = """You grade one response of an AI assistant against one item of a rubric written by physicians.

# Conversation
<<conversation>>

# Rubric item
<<rubric_item>>

# How to grade
Decide whether the last assistant turn of the conversation (the response being graded) meets the rubric item, and \
answer with a JSON object with two fields:
- "explanation": a short string saying why the response does or does not meet the item.
- "criteria_met": true or false.

Rules:
- An item that states several requirements is met only if the response satisfies every one of them.
- Examples introduced by "such as", "for example" or "including" only illustrate a requirement: the response meets \
it without naming all of those examples, or any particular one, as long as it meets the requirement itself.
- The number in brackets before the item is its point value. A negative value marks an undesirable behaviour, \
graded the same way: "criteria_met" says whether the response shows that behaviour, not whether the response is \
good. A response that avoids the undesirable behaviour gets false.

For instance, against the item "[-6] Recommends antibiotics for a common cold", a response advising rest and \
fluids only gets
```json
{"explanation": "The response recommends rest and fluids and never suggests antibiotics.", "criteria_met": false}
```
and against "[5] Advises seeing a doctor if the fever lasts more than three days", a response saying "see a doctor \
if the fever is still there after 3 days" gets
```json
{"explanation": "The response tells the user to see a doctor if the fever lasts beyond three days.", \
"criteria_met": true}
```

Reply with the JSON object only, in a ```json code block."""

_ROLES = {"user": ChatMessageUser, "assistant": ChatMessageAssistant, "system": ChatMessageSystem}


def load_examples(path: Path) -> list[dict]:
    examples = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        row = json.loads(line)
        if not {"prompt_id", "prompt", "rubrics"} <= row.keys() or not row["rubrics"]:
            raise PtbError(f"{path}: line {number} needs 'prompt_id', 'prompt' and a non-empty 'rubrics'")
        examples.append(row)
    return examples


def select(examples: list[dict], limit: int | None) -> list[dict]:
    chosen = list(examples)
    random.Random(SHUFFLE_SEED).shuffle(chosen)
    return chosen[:limit]


def to_sample(example: dict) -> Sample:
    messages: list[ChatMessage] = [_ROLES[turn["role"]](content=turn["content"]) for turn in example["prompt"]]
    rubrics = [
        {"criterion": r["criterion"], "points": r["points"], "tags": r.get("tags", [])} for r in example["rubrics"]
    ]
    return Sample(
        id=example["prompt_id"],
        input=messages,
        metadata={"rubrics": rubrics, "example_tags": example.get("example_tags", [])},
    )


def grader_prompt(conversation: list[tuple[str, str]], response: str, criterion: str, points: float) -> str:
    transcript = "\n\n".join(f"{role}: {text}" for role, text in [*conversation, ("assistant", response)])
    return GRADER_PROMPT.replace("<<conversation>>", transcript).replace("<<rubric_item>>", f"[{points}] {criterion}")


def parse_grading(reply: str) -> tuple[bool, str] | None:
    """(criteria_met, explanation) from the grader's reply; None if it holds no JSON object with a boolean."""
    text = re.sub(r"^```(?:json)?\s*|\s*```$", "", reply.strip())
    candidates = [text, *re.findall(r"\{.*\}", text, flags=re.DOTALL)]
    for candidate in candidates:
        try:
            data = json.loads(candidate)
        except json.JSONDecodeError:
            continue
        if isinstance(data, dict) and isinstance(data.get("criteria_met"), bool):
            return data["criteria_met"], str(data.get("explanation", ""))
    return None


def example_score(points: list[float], met: list[bool | None]) -> float:
    """Points of the criteria met over the positive points; unclipped, so a met negative criterion can push it
    below 0 (HealthBench clips only the mean)."""
    possible = sum(p for p in points if p > 0)
    achieved = sum(p for p, ok in zip(points, met) if ok)
    return achieved / possible if possible > 0 else 0.0


def clipped_mean(values: np.ndarray) -> float:
    return float(np.clip(np.mean(values), 0.0, 1.0)) if len(values) else 0.0


def _values(scores: list[SampleScore]) -> np.ndarray:
    return np.array([s.score.as_float() for s in scores], dtype=float)


@metric(name="accuracy")
def clipped_mean_score() -> Metric:
    def compute(scores: list[SampleScore]) -> float:
        return clipped_mean(_values(scores))

    return compute


@metric(name="stderr")
def clipped_mean_stderr() -> Metric:
    """Bootstrap over conversations, 1000 resamples, seed 42: the original's numbers exactly."""

    def compute(scores: list[SampleScore]) -> float:
        values = _values(scores)
        return bootstrap_std(len(values), lambda rows: clipped_mean(values[rows]))

    return compute


async def _grade(grader: Grader, prompt: str, usage: GraderUsage) -> tuple[bool | None, str]:
    for _ in range(GRADING_ATTEMPTS):
        reply = await grader.complete([{"role": "user", "content": prompt}])
        usage.add(reply.usage)
        grading = parse_grading(reply.text)
        if grading is not None:
            return grading
    return None, f"no readable criteria_met in {GRADING_ATTEMPTS} replies"


@scorer(metrics=[clipped_mean_score(), clipped_mean_stderr()])
def rubric_grader(grader: Grader) -> Scorer:
    async def score(state: TaskState, target: Target) -> Score:
        response = clean_answer(state.output.completion)
        conversation = [(message.role, message.text) for message in state.input]  # to_sample gives a list
        rubrics = state.metadata["rubrics"]
        usage = GraderUsage()
        prompts = [grader_prompt(conversation, response, r["criterion"], r["points"]) for r in rubrics]
        gradings = await asyncio.gather(*(_grade(grader, prompt, usage) for prompt in prompts))
        met = [ok for ok, _ in gradings]
        return Score(
            value=example_score([r["points"] for r in rubrics], met),
            answer=response,
            metadata={"criteria_met": met, "explanations": [why for _, why in gradings], **usage_metadata(usage)},
        )

    return score


def build_task(ctx: EvalContext) -> Task:
    if ctx.grader is None:
        raise PtbError(f"{ctx.benchmark.id} is graded by an LLM grader, but no grader endpoint is configured")
    examples = load_examples(ctx.data_file("test"))
    grader = Grader(ctx.grader, GRADER_MAX_COMPLETION_TOKENS)
    grader.preflight()
    samples = [to_sample(example) for example in select(examples, ctx.limit)]
    return Task(dataset=MemoryDataset(samples, name=ctx.benchmark.id), solver=generate(), scorer=rubric_grader(grader))


def _tag(tags: list[str], prefix: str) -> str:
    return next((tag.split(":", 1)[1] for tag in tags if tag.startswith(prefix + ":")), "unknown")


def breakdown(graded: list[tuple[dict, Score]]) -> dict:
    """by_theme: clipped mean score per example theme; by_axis: met points over positive points of all criteria of
    the axis, pooled over examples and clipped (the original's definitions)."""
    themes: dict[str, list[float]] = defaultdict(list)
    achieved: dict[str, float] = defaultdict(float)
    possible: dict[str, float] = defaultdict(float)
    for metadata, score in graded:
        themes[_tag(metadata["example_tags"], "theme")].append(score.as_float())
        for rubric, ok in zip(metadata["rubrics"], score.metadata["criteria_met"]):
            axis = _tag(rubric["tags"], "axis")
            possible[axis] += max(rubric["points"], 0)
            achieved[axis] += rubric["points"] if ok else 0
    return {
        "by_theme": {theme: clipped_mean(np.array(values)) for theme, values in sorted(themes.items())},
        "by_axis": {
            axis: float(np.clip(achieved[axis] / possible[axis], 0.0, 1.0))
            for axis in sorted(possible)
            if possible[axis]
        },
    }


def summarize(log: EvalLog) -> dict:
    graded = [
        (s.metadata, s.scores["rubric_grader"]) for s in log.samples or [] if s.scores and "rubric_grader" in s.scores
    ]
    met = [ok for _, score in graded for ok in score.metadata["criteria_met"]]
    return {
        "n_examples": len(graded),
        "total_grader_calls": len(met),
        "unparsed_gradings": sum(ok is None for ok in met),
        **breakdown(graded),
        **usage_from_log(log).metrics(),
    }


def demo_messages(ctx: EvalContext) -> list[fewshot.Example]:
    return [
        [*(_ROLES[turn["role"]](content=turn["content"].strip()) for turn in demo["conversation"]),
         ChatMessageAssistant(content=demo["answer"].strip())]
        for demo in fewshot.demos_for(ctx)
    ]
