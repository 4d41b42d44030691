"""Few-shot prompting of base models: the "few-shot base" baseline.

A base model never learned a chat format, so zero-shot chat prompts undersell it. In few-shot mode the prompt is
plain text ("User: … Assistant: …", templates/base.jinja) and solved examples come first as earlier turns, in the
same format the task gives its own question. Sampling is the original few-shot run's (T 0.6, top-p 0.95, top-k 20).

The examples are written for this project (fewshot/<benchmark>.yaml), so no test item ever shows up in a prompt;
GSM8K takes its from the train split, as its standard task does. Each benchmark module's `demo_messages(ctx)`
renders them as messages.
"""

from pathlib import Path

import yaml
from inspect_ai import Task, task_with
from inspect_ai.model import ChatMessage, ChatMessageAssistant, ChatMessageUser
from inspect_ai.solver import Generate, Solver, TaskState, chain, solver

from posttrainbench.errors import PtbError
from posttrainbench.evaluation.chat_templates import TEMPLATES_DIR, ChatTemplate
from posttrainbench.specs.benchmarks import Generation

DEMOS_DIR = Path(__file__).parent / "fewshot"
TEMPLATE = "base.jinja"
STOP = "\nUser:"  # the model starting the next turn itself
SAMPLING = {"temperature": 0.6, "top_p": 0.95, "top_k": 20}


def template() -> ChatTemplate:
    return ChatTemplate(TEMPLATE, (TEMPLATES_DIR / TEMPLATE).read_text(), None)


def generation(pinned: Generation) -> Generation:
    return pinned.model_copy(update=SAMPLING)


def demos_file(benchmark: str) -> Path:
    return DEMOS_DIR / f"{benchmark}.yaml"


def load_demos(benchmark: str) -> list[dict]:
    path = demos_file(benchmark)
    if not path.is_file():
        raise PtbError(f"no few-shot examples for {benchmark} ({path} is missing)")
    demos = (yaml.safe_load(path.read_text()) or {}).get("demos")
    if not isinstance(demos, list) or not demos or not all(isinstance(d, dict) for d in demos):
        raise PtbError(f"{path}: 'demos' must be a non-empty list of mappings")
    return demos


def pick(demos: list, shots: int | None, benchmark: str) -> list:
    """The first `shots` examples (all when None): a fixed prefix, so a run is reproducible and comparable."""
    if shots is None:
        return demos
    if shots < 1:
        raise PtbError(f"--shots must be at least 1 (got {shots})")
    if shots > len(demos):
        raise PtbError(f"{benchmark} has {len(demos)} few-shot examples; --shots {shots} asks for more")
    return demos[:shots]


def check_shots(benchmark: str, shots: int | None) -> None:
    """Fail on a bad --shots before any model is loaded."""
    if shots is not None and shots < 1:
        raise PtbError(f"--shots must be at least 1 (got {shots})")
    if demos_file(benchmark).is_file():
        pick(load_demos(benchmark), shots, benchmark)


def demos_for(ctx) -> list[dict]:
    """The examples `ctx` asks for, from fewshot/<benchmark>.yaml."""
    return pick(load_demos(ctx.benchmark.id), ctx.shots, ctx.benchmark.id)


Example = list[ChatMessage]  # one solved example: its turns, the last one the assistant's answer


def turns(pairs: list[tuple[str, str]]) -> list[Example]:
    """(question, answer) pairs as examples of one user and one assistant message."""
    return [[ChatMessageUser(content=question), ChatMessageAssistant(content=answer)] for question, answer in pairs]


def with_demos(task: Task, demos: list[Example]) -> Task:
    """`task` with the examples before the item's own turns and each answer cut where the model starts a new
    turn (vLLM drops the stop string itself; transformers keeps it)."""
    return task_with(task, solver=chain(insert_demos(demos), task.solver, cut_at_stop()))


@solver
def insert_demos(demos: list[Example]) -> Solver:
    async def solve(state: TaskState, generate: Generate) -> TaskState:
        at = next((i for i, m in enumerate(state.messages) if m.role != "system"), len(state.messages))
        state.messages[at:at] = [m.model_copy() for example in demos for m in example]
        return state

    return solve


def cut(text: str) -> str:
    return text.split(STOP, 1)[0].rstrip()


@solver
def cut_at_stop() -> Solver:
    async def solve(state: TaskState, generate: Generate) -> TaskState:
        if not state.output.choices or STOP not in state.output.completion:
            return state
        message = state.output.choices[0].message
        text = cut(message.text)
        trimmed = ChatMessageAssistant(content=text, model=message.model, source=message.source)
        state.output.choices[0].message = trimmed
        state.output.completion = text
        if state.messages and state.messages[-1].role == "assistant":
            state.messages[-1] = trimmed
        return state

    return solve
