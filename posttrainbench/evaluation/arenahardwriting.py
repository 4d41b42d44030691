"""Arena-Hard v2.0 creative writing: 250 prompts, each answer judged against Qwen3-1.7B's answer by an LLM grader.

Every item is judged twice, once with each answer in first place, and each verdict counts from the model's side:
a win 1, a tie 0.5, a loss 0, and a strong verdict (>>) three times over. The score is the model's share of that
credit over all verdicts (the original's win rate); stderr is the bootstrap standard deviation of it over items.
An item whose verdict cannot be read from either judgement is left out, as in the original.
"""

import asyncio
import json
import random
import re
from pathlib import Path

import numpy as np
from inspect_ai import Task
from inspect_ai.dataset import MemoryDataset, Sample
from inspect_ai.log import EvalLog
from inspect_ai.scorer import Metric, SampleScore, Score, Scorer, Target, metric, scorer
from inspect_ai.solver import TaskState, generate

from posttrainbench.errors import PtbError
from posttrainbench.evaluation import fewshot
from posttrainbench.evaluation.base import EvalContext
from posttrainbench.evaluation.graded import bootstrap_std, clean_answer
from posttrainbench.evaluation.grader import Grader, GraderUsage, usage_from_log, usage_metadata

SHUFFLE_SEED = 42  # a limited run takes the first items of this shuffle, as the original's evaluate.py did
JUDGE_MAX_COMPLETION_TOKENS = 49152  # the original's budget for gpt-5-mini's reasoning plus verdict
STRONG_WEIGHT = 3

JUDGE_SYSTEM = """You judge creative writing. Two AI assistants, A and B, answered the same writing request. Decide \
which response serves the person who asked better.

Weigh, in this order: whether the response does what was asked (form, length, constraints, every explicit \
instruction, the language of the request); the quality of the writing itself (originality, vivid and precise \
language, voice, rhythm, structure, a satisfying arc); and coherence and polish. Length is no merit in itself: \
padding, repetition, clichés and content nobody asked for count against a response. A response that refuses a \
harmless request, or breaks off, is worse than one that delivers. The order in which the responses appear says \
nothing about their quality.

Explain your judgement in a few sentences, then give the verdict on the last line as exactly one of these labels:
[[A>>B]] A is much better
[[A>B]] A is better
[[A=B]] they are about equally good
[[B>A]] B is better
[[B>>A]] B is much better"""

JUDGE_USER = """<writing_request>
{prompt}
</writing_request>

<response_a>
{answer_a}
</response_a>

<response_b>
{answer_b}
</response_b>"""

_VERDICT_PATTERNS = [re.compile(r"\[\[([AB<>=]+)\]\]"), re.compile(r"\[([AB<>=]+)\]")]
# Each label as (winner, strong); the mirrored spellings (B<<A for A>>B) are read too.
_VERDICTS = {
    "A>>B": ("A", True), "B<<A": ("A", True),
    "A>B": ("A", False), "B<A": ("A", False),
    "A=B": (None, False), "B=A": (None, False),
    "B>A": ("B", False), "A<B": ("B", False),
    "B>>A": ("B", True), "A<<B": ("B", True),
}  # fmt: skip


def load_questions(path: Path) -> list[dict]:
    questions = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not questions or any(not {"uid", "prompt"} <= q.keys() for q in questions):
        raise PtbError(f"{path}: expected one JSON object with 'uid' and 'prompt' per line")
    return questions


def load_baselines(path: Path) -> dict[str, str]:
    """uid -> the baseline model's answer (the last message's content.answer, Arena-Hard's answer-file layout)."""
    answers = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            answers[row["uid"]] = row["messages"][-1]["content"]["answer"]
    return answers


def select(questions: list[dict], limit: int | None) -> list[dict]:
    chosen = list(questions)
    random.Random(SHUFFLE_SEED).shuffle(chosen)
    return chosen[:limit]


def judge_messages(prompt: str, answer_a: str, answer_b: str) -> list[dict]:
    user = JUDGE_USER.format(prompt=prompt, answer_a=answer_a, answer_b=answer_b)
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": user}]


def parse_verdict(judgement: str) -> str | None:
    """The judgement's last verdict label (double brackets preferred), canonically spelled; None if there is none."""
    for pattern in _VERDICT_PATTERNS:
        labels = [label for label in pattern.findall(judgement.upper()) if label in _VERDICTS]
        if labels:
            winner, strong = _VERDICTS[labels[-1]]
            if winner is None:
                return "A=B"
            loser = "B" if winner == "A" else "A"
            return f"{winner}{'>>' if strong else '>'}{loser}"
    return None


def game_credit(verdict: str, model_is: str) -> tuple[float, int]:
    """(credit, weight) of one verdict for the model that answered in position `model_is` ("A" or "B")."""
    winner, strong = _VERDICTS[verdict]
    weight = STRONG_WEIGHT if strong else 1
    share = 0.5 if winner is None else float(winner == model_is)
    return share * weight, weight


def item_credit(baseline_first: str | None, model_first: str | None) -> tuple[float, int]:
    """(credit, weight) of one item from its two verdicts; (0, 0) leaves the item out."""
    if baseline_first is None or model_first is None:
        return 0.0, 0
    credit_b, weight_b = game_credit(baseline_first, "B")
    credit_a, weight_a = game_credit(model_first, "A")
    return credit_b + credit_a, weight_b + weight_a


def _credits(scores: list[SampleScore]) -> np.ndarray:
    return np.array([[s.score.value["credit"], s.score.value["weight"]] for s in scores], dtype=float).reshape(-1, 2)


def _win_rate(credits: np.ndarray) -> float:
    weight = credits[:, 1].sum()
    return float(credits[:, 0].sum() / weight) if weight else 0.0


@metric(name="accuracy")
def win_rate() -> Metric:
    def compute(scores: list[SampleScore]) -> float:
        return _win_rate(_credits(scores))

    return compute


@metric(name="stderr")
def win_rate_stderr() -> Metric:
    """Bootstrap over items (each keeps both its verdicts), 1000 resamples, seed 42."""

    def compute(scores: list[SampleScore]) -> float:
        credits = _credits(scores)
        return bootstrap_std(len(credits), lambda rows: _win_rate(credits[rows]))

    return compute


@scorer(metrics=[win_rate(), win_rate_stderr()])
def pairwise_judge(grader: Grader) -> Scorer:
    async def score(state: TaskState, target: Target) -> Score:
        answer = clean_answer(state.output.completion)
        prompt, baseline = state.input_text, state.metadata["baseline"]
        judgements = await asyncio.gather(
            grader.complete(judge_messages(prompt, baseline, answer)),
            grader.complete(judge_messages(prompt, answer, baseline)),
        )
        verdicts = [parse_verdict(j.text) for j in judgements]
        usage = GraderUsage()
        for judgement in judgements:
            usage.add(judgement.usage)
        credit, weight = item_credit(*verdicts)
        return Score(
            value={"credit": credit, "weight": weight},
            answer=answer,
            explanation=f"baseline first: {verdicts[0]}; model first: {verdicts[1]}",
            metadata={"verdicts": verdicts, "judgements": [j.text for j in judgements], **usage_metadata(usage)},
        )

    return score


def build_task(ctx: EvalContext) -> Task:
    if ctx.grader is None:
        raise PtbError(f"{ctx.benchmark.id} is judged by an LLM grader, but no grader endpoint is configured")
    questions = load_questions(ctx.data_file("question"))
    baselines = load_baselines(ctx.data_file("baseline"))
    missing = [q["uid"] for q in questions if q["uid"] not in baselines]
    if missing:
        raise PtbError(f"{ctx.benchmark.id}: no baseline answer for {len(missing)} questions, e.g. uid {missing[0]}")
    grader = Grader(ctx.grader, JUDGE_MAX_COMPLETION_TOKENS)
    grader.preflight()
    samples = [
        Sample(id=q["uid"], input=q["prompt"], metadata={"baseline": baselines[q["uid"]]})
        for q in select(questions, ctx.limit)
    ]
    return Task(dataset=MemoryDataset(samples, name=ctx.benchmark.id), solver=generate(), scorer=pairwise_judge(grader))


def demo_messages(ctx: EvalContext) -> list[fewshot.Example]:
    return fewshot.turns([(d["prompt"].strip(), d["answer"].strip()) for d in fewshot.demos_for(ctx)])


def summarize(log: EvalLog) -> dict:
    scores = [s.scores["pairwise_judge"] for s in log.samples or [] if s.scores and "pairwise_judge" in s.scores]
    unparsed = sum(v is None for score in scores for v in score.metadata["verdicts"])
    judged = sum(score.value["weight"] > 0 for score in scores)
    return {"n_examples": judged, "unparsed_verdicts": unparsed, **usage_from_log(log).metrics()}
