"""Helpers for the tests of the LLM-graded benchmarks: an evaluation context on the data mirror, a canned model."""

from functools import partial

from inspect_ai import Task
from inspect_ai import eval as inspect_eval
from inspect_ai.log import EvalLog
from inspect_ai.model import Model, ModelOutput, ModelUsage, get_model

from posttrainbench.evaluation.base import EvalContext, GraderConfig
from posttrainbench.evaluation.data import data_file
from posttrainbench.specs import get_benchmark
from posttrainbench.specs import get_model as get_base_model


def eval_context(benchmark_id: str, grader_url: str | None, limit: int | None = 2) -> EvalContext:
    spec = get_benchmark(benchmark_id)
    grader = None if grader_url is None else GraderConfig(model="gpt-5-mini", base_url=grader_url, api_key="test-key")
    return EvalContext(
        benchmark=spec,
        base_model=get_base_model("smollm2-135m"),
        limit=limit,
        generation=spec.generation,
        data_file=partial(data_file, spec),
        grader=grader,
    )


def canned_model(text: str) -> Model:
    """A mock model that answers `text` to everything (with usage set, so inspect needs no tokenizer download)."""

    def answer(messages, tools, tool_choice, config) -> ModelOutput:
        output = ModelOutput.from_content(model="mockllm", content=text)
        output.usage = ModelUsage(input_tokens=10, output_tokens=5, total_tokens=15)
        return output

    return get_model("mockllm/model", custom_outputs=answer, memoize=False)


def run(task: Task, model: Model, log_dir) -> EvalLog:
    [log] = inspect_eval(task, model=model, display="none", log_dir=str(log_dir))
    return log
