"""AIME 2025 I+II: 30 problems, 0-shot, the final integer answer must match exactly."""

import json
from pathlib import Path

from inspect_ai import Task
from inspect_ai.dataset import MemoryDataset, Sample
from inspect_ai.scorer import CORRECT, INCORRECT, Score, Scorer, Target, accuracy, scorer, stderr
from inspect_ai.solver import TaskState, generate, prompt_template

from posttrainbench.errors import PtbError
from posttrainbench.evaluation import fewshot
from posttrainbench.evaluation.base import EvalContext
from posttrainbench.evaluation.extract import extract_integer

# inspect_evals' AIME prompt, verbatim: the one the original evaluated with.
PROMPT = """
Solve the following math problem step by step.
The last line of your response should be of the form "ANSWER: $ANSWER" (without quotes) where $ANSWER is the answer to the problem.

{prompt}

Remember to put your answer on its own line at the end in the form "ANSWER: $ANSWER" (without quotes) where $ANSWER is the answer to the problem, and you do not need to use a \\boxed command.
""".strip()  # noqa: E501


def load_samples(path: Path) -> list[Sample]:
    """One sample per JSON line with `problem` and `answer` (the mirror's and math-ai/aime25's layout)."""
    samples = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        row = json.loads(line)
        try:
            samples.append(Sample(id=number, input=row["problem"], target=str(int(row["answer"]))))
        except (KeyError, ValueError) as exc:
            raise PtbError(f"{path}: line {number} needs 'problem' and an integer 'answer' ({exc})") from None
    return samples


@scorer(metrics=[accuracy(), stderr()])
def integer_answer() -> Scorer:
    async def score(state: TaskState, target: Target) -> Score:
        value = extract_integer(state.output.completion)
        return Score(
            value=CORRECT if value == int(target.text) else INCORRECT,
            answer="" if value is None else str(value),
            metadata={"extracted": value is not None},
        )

    return score


def build_task(ctx: EvalContext) -> Task:
    samples = load_samples(ctx.data_file("test"))[: ctx.limit]
    return Task(
        name="aime2025",
        dataset=MemoryDataset(samples, name="aime2025"),
        solver=[prompt_template(PROMPT), generate()],
        scorer=integer_answer(),
    )


def demo_messages(ctx: EvalContext) -> list[fewshot.Example]:
    return fewshot.turns(
        [(PROMPT.format(prompt=d["problem"].strip()), f"{d['solution'].strip()}\n\nANSWER: {int(d['answer'])}")
         for d in fewshot.demos_for(ctx)]
    )
