"""GSM8K test (1319 items), 10-shot, numeric match of the final answer.

The prompt is inspect_evals' gsm8k: ten worked examples from the train split (the first ten of a seed-42 shuffle,
the permutation `datasets.Dataset.shuffle(seed=42)` applies) as a system message, then the question in its
"ANSWER: $ANSWER" template.
"""

import re
from decimal import Decimal, InvalidOperation

import numpy as np
from inspect_ai import Task
from inspect_ai.dataset import MemoryDataset, Sample
from inspect_ai.scorer import CORRECT, INCORRECT, Score, Scorer, Target, accuracy, scorer, stderr
from inspect_ai.solver import TaskState, generate, prompt_template, system_message

from posttrainbench.evaluation import fewshot
from posttrainbench.evaluation.base import EvalContext
from posttrainbench.evaluation.data import read_jsonl

FEWSHOT = 10
FEWSHOT_SEED = 42
FEWSHOT_SOURCE = "gsm8k train split (inspect_evals' seed-42 order)"

# inspect_evals' MATH_PROMPT_TEMPLATE, verbatim.
PROMPT = """
Solve the following math problem step by step. The last line of your response should be of the form "ANSWER: $ANSWER" (without quotes) where $ANSWER is the answer to the problem.

{prompt}

Remember to put your answer on its own line at the end in the form "ANSWER: $ANSWER" (without quotes) where $ANSWER is the answer to the problem, and you do not need to use a \\boxed command.

Reasoning:
""".strip()  # noqa: E501


def record_to_sample(record: dict, index: int) -> Sample:
    reasoning, _, target = record["answer"].rpartition("####")
    return Sample(
        id=index + 1, input=record["question"], target=target.strip(), metadata={"reasoning": reasoning.strip()}
    )


def load_samples(path) -> list[Sample]:
    return [record_to_sample(r, i) for i, r in enumerate(read_jsonl(path))]


def fewshot_samples(train: list[Sample], n: int = FEWSHOT, seed: int = FEWSHOT_SEED) -> list[Sample]:
    order = np.random.default_rng(seed).permutation(len(train))
    return [train[i] for i in order[:n]]


def fewshot_text(sample: Sample) -> str:
    return f"{sample.input}\n\nReasoning:\n{sample.metadata['reasoning']}\n\nANSWER: {sample.target}"


def build_task(ctx: EvalContext) -> Task:
    # In few-shot mode the examples come as earlier turns (demo_messages) instead of one system message.
    shots = [] if ctx.fewshot else [system_message("\n\n".join(map(fewshot_text, fewshot_samples(train_of(ctx)))))]
    return Task(
        name="gsm8k",
        dataset=MemoryDataset(load_samples(ctx.data_file("test")), name="gsm8k"),
        solver=[*shots, prompt_template(PROMPT), generate()],
        scorer=numeric_answer(),
    )


def train_of(ctx: EvalContext) -> list[Sample]:
    return load_samples(ctx.data_file("train"))


def demo_messages(ctx: EvalContext) -> list[fewshot.Example]:
    train = train_of(ctx)
    picked = fewshot.pick(fewshot_samples(train, n=len(train)), ctx.shots or FEWSHOT, "gsm8k")
    return fewshot.turns(
        [(PROMPT.format(prompt=s.input), f"{s.metadata['reasoning']}\n\nANSWER: {s.target}") for s in picked]
    )


# --- answer extraction ---------------------------------------------------------------------------------------

_NUMBER = r"[-−]?(?:\$\s?)?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)"
# Explicit answer markers, most specific first. The first marker found wins, and within a marker its first
# occurrence: a model that rambles on into a made-up next question ("ANSWER: 18\n\nQ: ... ANSWER: 7") keeps its
# first answer, and one that lists several answers cannot win by covering them all.
_MARKERS = [
    re.compile(r"ANSWER\s*[:：]\s*\**\s*(" + _NUMBER + ")", re.IGNORECASE),
    re.compile(r"\\boxed\{\s*(" + _NUMBER + r")\s*\}"),
    re.compile(r"####\s*(" + _NUMBER + ")"),
    re.compile(r"(?:final answer|the answer)\s*(?:is|=|:)?\s*\**\s*(" + _NUMBER + ")", re.IGNORECASE),
]
_ANY_NUMBER = re.compile(_NUMBER)


def _normalize(text: str) -> Decimal | None:
    cleaned = text.replace("−", "-").replace("$", "").replace(",", "").replace(" ", "")
    try:
        return Decimal(cleaned)
    except InvalidOperation:
        return None


def extract_answer(completion: str) -> str | None:
    """The model's final number: after an explicit marker if there is one, else the last number in the text.
    Reasoning inside a closed <think> block is ignored."""
    text = completion.rsplit("</think>", 1)[-1]
    for marker in _MARKERS:
        found = marker.search(text)
        if found:
            return found.group(1)
    numbers = _ANY_NUMBER.findall(text)
    return numbers[-1] if numbers else None


def answers_match(answer: str | None, target: str) -> bool:
    if answer is None:
        return False
    got, want = _normalize(answer), _normalize(target)
    return got is not None and want is not None and got == want


@scorer(metrics=[accuracy(), stderr()])
def numeric_answer() -> Scorer:
    async def score(state: TaskState, target: Target) -> Score:
        answer = extract_answer(state.output.completion)
        correct = answers_match(answer, target.text)
        return Score(value=CORRECT if correct else INCORRECT, answer=answer, explanation=state.output.completion)

    return score
