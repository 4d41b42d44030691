"""The contract between the evaluation runner and the per-benchmark modules.

Each benchmark module (named by BenchmarkSpec.module) defines

    def build_task(ctx: EvalContext) -> inspect_ai.Task

and

    def demo_messages(ctx: EvalContext) -> list[fewshot.Example]   # few-shot mode: solved examples

and may define

    def summarize(log: inspect_ai.log.EvalLog) -> dict   # extra metrics beside accuracy/stderr
    FEWSHOT_SOURCE: str                                  # where its examples come from, if not fewshot/<id>.yaml
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from posttrainbench.specs import BenchmarkSpec, ModelSpec
from posttrainbench.specs.benchmarks import Generation


# Begins the message of a scorer that could not set up its own isolation (HumanEval's sandbox): nothing was scored,
# and fewer tokens would not help, so the runner stops at once instead of retrying.
SCORER_SETUP_FAILED = "the scorer's sandbox could not start"

@dataclass
class GraderConfig:
    """An OpenAI-compatible endpoint that grades answers (Arena-Hard, HealthBench)."""

    model: str
    base_url: str
    api_key: str
    max_concurrency: int = 64
    reasoning_effort: str | None = "medium"


@dataclass
class EvalContext:
    benchmark: BenchmarkSpec
    base_model: ModelSpec  # decides the chat template and tool-call format, never the checkpoint path
    limit: int | None
    generation: Generation  # pinned sampling parameters (max_tokens possibly lowered by a fallback)
    data_file: Callable[[str], Path]  # data file name in the spec -> verified local path
    grader: GraderConfig | None = None
    work_dir: Path | None = None  # scratch space (e.g. HumanEval's per-sample dirs)
    fewshot: bool = False  # base-model prompting: plain-text turns after solved examples (see fewshot.py)
    shots: int | None = None  # examples shown in few-shot mode; None = all the benchmark has

# Set by the harness in an evaluation sandbox whose grader it has already checked outside (sandboxed.py).
PREFLIGHT_DONE_ENV = "PTB_GRADER_CHECKED"
