"""The leaderboard's data: scores are fractions in [0, 1]; None means missing, never zero."""

from pydantic import BaseModel


class Stat(BaseModel):
    value: float | None = None
    std: float | None = None  # sample standard deviation (n−1) over seeds
    ci: tuple[float, float] | None = None  # 95% bootstrap interval
    complete: bool = False


class RunScore(BaseModel):
    id: str
    entry: str
    kind: str
    agent: str
    model: str
    benchmark: str
    seed: int
    hours: float
    status: str
    score: float | None = None
    source: str | None = None  # 'final', 'base' (flagged, base model's evaluation) or 'base-zeroshot baseline'
    flag: str | None = None
    counted: bool = False  # this run's score fills its cell for its seed
    note: str | None = None
    time_used_s: float | None = None
    time_used: float | None = None  # fraction of the budget
    working_time_s: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None
    items: int | None = None  # number of per-item scores found for the bootstrap
    run_dir: str | None = None  # None for published numbers
    scorer: str = "ours"  # "ours" (accuracy) or "original" (accuracy_original; always for published numbers)
    smoke: str | None = None  # why the run is a smoke test (fewer items, capped tokens); None for a full run
    label: str | None = None  # the grid's label of the agent


class Cell(BaseModel):
    model: str
    benchmark: str
    scores: dict[int, float] = {}  # seed -> score (the mean of its repeats when a seed ran more than once)
    runs: dict[int, list[str]] = {}  # seed -> run ids, oldest first
    mean: float | None = None
    std: float | None = None  # over every run of the cell, repeats of a seed included
    flagged: int = 0


class Entry(BaseModel):
    key: str
    slug: str
    kind: str
    agent: str
    label: str
    scaffold: str | None = None
    hours: float | None = None
    source: str = "measured"  # or 'published'
    smoke: str | None = None  # a smoke test entry (--limit, --max-tokens): shown apart, never ranked
    network: str | None = None
    test_access: str | None = None
    rank: int | None = None
    cells: list[Cell] = []
    benchmarks: dict[str, Stat] = {}
    models: dict[str, Stat] = {}
    average: Stat = Stat()  # published weights
    average_own: Stat = Stat()  # weights from our own baselines
    normalised: Stat = Stat()  # mean of (s − base)/(instruct − base)
    seeds: list[int] = []
    missing: list[str] = []  # "model / benchmark"
    flagged: list[str] = []  # run ids whose flag replaced their score
    ci_method: str = ""
    runs: int = 0
    time_used: float | None = None
    time_used_min: float | None = None
    time_used_max: float | None = None
    working_time_s: float | None = None
    tokens: int | None = None
    cost_usd: float | None = None
    cost_per_run: float | None = None
    usage_runs: int = 0  # runs with token or cost data

    def cell(self, model: str, benchmark: str) -> Cell | None:
        return next((c for c in self.cells if c.model == model and c.benchmark == benchmark), None)


class Leaderboard(BaseModel):
    generated_at: str
    store: str
    models: list[str]
    benchmarks: list[str]
    weights: dict[str, float]
    weights_own: dict[str, float]
    references: dict[str, dict[str, dict[str, float]]]  # role -> model -> benchmark -> score
    bootstrap: int
    entries: list[Entry]
    runs: list[RunScore]
    notes: list[str] = []
    scorer: str = "ours"  # which scorer measured runs' numbers use (see RunScore.scorer)

    def entry(self, key: str) -> Entry:
        for entry in self.entries:
            if entry.key == key:
                return entry
        raise KeyError(key)
