"""A grid file: agents × base models × benchmarks × seeds, with the settings every run of the grid shares.

Validation errors point at the line of the grid file they concern (`grid.yaml:12: models[1]: unknown model ...`),
because a grid of a hundred cells is written by hand and a bare pydantic location is hard to find in it."""

import hashlib
import itertools
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from posttrainbench.errors import PtbError
from posttrainbench.specs.agents import AgentSpec
from posttrainbench.specs.benchmarks import get_benchmark
from posttrainbench.specs.models import get_model
from posttrainbench.specs.limits import SandboxLimits
from posttrainbench.specs.run import EvalSettings, LlmLimits, NetworkMode, RunSpec, SandboxKind, TestAccess

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


def _catalog_model(name: str) -> str:
    try:
        return get_model(name).id  # a Hugging Face id becomes the catalog id, so cell keys don't depend on spelling
    except PtbError as exc:
        raise ValueError(str(exc)) from None


def _catalog_benchmark(name: str) -> str:
    try:
        return get_benchmark(name).id
    except PtbError as exc:
        raise ValueError(str(exc)) from None


def _shell_line(value):
    # a string is one shell line, run by `bash -c` as written (a list stays an argv)
    return [value] if isinstance(value, str) else value


def _seed_list(value):
    # `seeds: 3` is short for seeds 0, 1 and 2.
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise ValueError("a seed count must be at least 1")
        return list(range(value))
    return value


class GridAgent(AgentSpec):
    model_config = ConfigDict(extra="forbid")

    command: Annotated[list[str] | None, BeforeValidator(_shell_line)] = Field(
        None, description="a `command` agent's command: one shell line (run by `bash -c`), or an argv list"
    )
    label: str | None = Field(None, pattern=NAME_PATTERN, description="the agent's name in cell keys and tables")
    hours: float | None = Field(None, gt=0, description="this agent's budget, instead of the grid's")
    gpus: int | None = Field(None, ge=0, description="this agent's GPUs per run, instead of the grid's")

    @model_validator(mode="after")
    def _command_has_argv(self) -> "GridAgent":
        if self.scaffold == "command" and not self.command:
            raise ValueError("a `command` agent needs a command")
        return self

    @property
    def key(self) -> str:
        if self.label:
            return self.label
        key = self.name + (f"@{self.effort}" if self.effort else "")
        key += f"-{self.hours:g}h" if self.hours is not None else ""
        return key + (f"-{self.gpus}gpu" if self.gpus is not None else "")

    def spec(self) -> AgentSpec:
        return AgentSpec(**self.model_dump(exclude={"label", "hours", "gpus"}))


class RetryPolicy(BaseModel):
    """Retries of infrastructure failures (no usable GPU, provider outages, evaluation OOM); an agent's own failure
    is a result and never retried."""

    model_config = ConfigDict(extra="forbid")

    attempts: int = Field(3, ge=1, description="attempts per cell, the first one included")
    backoff_s: float = Field(300.0, ge=0, description="wait before the first retry")
    factor: float = Field(2.0, ge=1, description="each further wait is this many times longer")
    max_backoff_s: float = Field(3600.0, ge=0)

    def delay(self, failed_attempts: int) -> float:
        return min(self.max_backoff_s, self.backoff_s * self.factor ** max(0, failed_attempts - 1))


class SlurmOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time_margin_hours: float = Field(
        2.0, ge=0, description="added to the agent's budget for the job's --time: preparation and evaluation"
    )
    cpus_per_task: int | None = Field(None, ge=1)
    mem: str | None = Field(None, description="sbatch --mem, e.g. 128G")
    extra_args: list[str] = Field(default_factory=list, description="further sbatch options, e.g. --constraint=h100")
    setup: list[str] = Field(default_factory=list, description="shell lines run in the job before the worker")
    python: str | None = Field(None, description="the interpreter on the compute nodes (default: the submitter's)")


class Grid(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN, description="names the grid in the store and its runs folder")
    agents: list[GridAgent] = Field(min_length=1)
    models: list[Annotated[str, AfterValidator(_catalog_model)]] = Field(min_length=1)
    benchmarks: list[Annotated[str, AfterValidator(_catalog_benchmark)]] = Field(min_length=1)
    seeds: Annotated[list[int], BeforeValidator(_seed_list)] = Field(default_factory=lambda: [0], min_length=1)
    hours: float = Field(10.0, gt=0, description="the agent's wall-clock budget (an agent may set its own)")
    gpus: int = Field(1, ge=0, description="GPUs per run (an agent may set its own)")
    sandbox: SandboxKind = "bwrap"
    network: NetworkMode = "proxied"
    test_access: TestAccess = Field("hidden", description="hidden: evaluate.py scores through the harness's service")
    limit: int | None = Field(None, gt=0, description="evaluate only the first N items (tests, demos)")
    llm: LlmLimits = Field(default_factory=LlmLimits, description="LLM spending limits of every run")
    sandbox_limits: SandboxLimits = Field(default_factory=SandboxLimits, description="each agent sandbox's resources")
    max_tokens: int | None = Field(None, gt=0, description="cap on generated tokens per item (CPU demos)")
    evaluation: EvalSettings = Field(default_factory=EvalSettings, description="the harness's evaluations' settings")
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    slurm: SlurmOptions = Field(default_factory=SlurmOptions)


class Cell(BaseModel):
    """One run of the grid. `key` stays the same when the grid file is edited elsewhere, so a re-run finds it."""

    key: str
    agent: str
    spec: RunSpec

    @property
    def spec_hash(self) -> str:
        return spec_hash(self.spec)


def spec_hash(spec: RunSpec) -> str:
    return hashlib.sha256(spec.model_dump_json().encode()).hexdigest()[:16]


def expand(grid: Grid) -> list[Cell]:
    """The cartesian product agents × models × benchmarks × seeds, in that order."""
    problems = _duplicates(grid)
    if problems:
        loc, message = problems[0]
        raise PtbError(f"grid {grid.name}: {_dotted(loc)}: {message}")
    cells = []
    for agent, model, benchmark, seed in itertools.product(grid.agents, grid.models, grid.benchmarks, grid.seeds):
        spec = RunSpec(agent=agent.spec(), model=model, benchmark=benchmark, seed=seed,
                       hours=grid.hours if agent.hours is None else agent.hours,
                       gpus=grid.gpus if agent.gpus is None else agent.gpus,
                       sandbox=grid.sandbox, network=grid.network, test_access=grid.test_access,
                       limit=grid.limit, max_tokens=grid.max_tokens, llm=grid.llm,
                       sandbox_limits=grid.sandbox_limits, evaluation=grid.evaluation)
        cells.append(Cell(key=f"{agent.key}/{model}/{benchmark}/{seed}", agent=agent.key, spec=spec))
    return cells


def load_grid(path: Path) -> Grid:
    """Read and validate a grid file; every error names its line. The name defaults to the file's stem."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise PtbError(f"cannot read the grid file {path}: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"{mark.line + 1}:" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise PtbError(f"{path}:{line} invalid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise PtbError(f"{path}:1: a grid file is a mapping (agents:, models:, benchmarks:, ...)")
    data.setdefault("name", path.stem)
    try:
        grid = Grid.model_validate(data)
    except ValidationError as exc:
        raise PtbError(_report(path, root, [(e["loc"], _message(e)) for e in exc.errors()])) from None
    problems = _duplicates(grid)
    if problems:
        raise PtbError(_report(path, root, problems))
    return grid


def _message(error: dict) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown field"
    message = error["msg"]
    return message.removeprefix("Value error, ")


def _duplicates(grid: Grid) -> list[tuple[tuple, str]]:
    """Entries that would give two cells the same key."""
    problems = []
    keys = [a.key for a in grid.agents]
    for field, values in (("agents", keys), ("models", grid.models), ("benchmarks", grid.benchmarks),
                          ("seeds", grid.seeds)):
        for index, value in enumerate(values):
            first = values.index(value)
            if first < index:
                what = f"agent key '{value}'" if field == "agents" else f"'{value}'"
                hint = " (give the agents distinct `label`s)" if field == "agents" else ""
                problems.append(((field, index), f"{what} repeats {field}[{first}]{hint}"))
    return problems


def _report(path: Path, root: yaml.Node | None, problems: list[tuple[tuple, str]]) -> str:
    lines = []
    for loc, message in problems:
        line = _line(root, loc) if root is not None else 1
        where = _dotted(loc)
        lines.append(f"{path}:{line}: {where + ': ' if where else ''}{message}")
    return "\n".join(lines)


def _dotted(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _line(root: yaml.Node, loc: tuple) -> int:
    """The 1-based line of the YAML node at `loc`, or of the nearest enclosing node that exists (for a missing
    field: the mapping that lacks it; for an unknown field: its key)."""
    node = root
    for depth, part in enumerate(loc):
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            match = next(((k, v) for k, v in node.value if getattr(k, "value", None) == part), None)
            if match is None:
                break
            key, value = match
            node = key if depth == len(loc) - 1 else value
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            break
    return node.start_mark.line + 1
