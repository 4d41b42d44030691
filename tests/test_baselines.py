"""Baseline sweeps: every model × benchmark once, kept across re-runs, failures isolated, bad input refused."""


import pytest
from cli_support import ptb

from posttrainbench.errors import PtbError
from posttrainbench.executors.baseline import measure_all
from posttrainbench.store import Store


def quiet(_line: str) -> None:
    pass


@pytest.mark.slow
def test_sweep_measures_each_cell_once_and_isolates_failures(tmp_path, small_model, monkeypatch):
    from posttrainbench.executors import baseline

    measure = baseline.run_baseline

    def flaky(store, kind, model, benchmark, **kwargs):
        if benchmark == "gsm8k":
            raise PtbError("the GPU fell off the bus")
        return measure(store, kind, model, benchmark, **kwargs)

    monkeypatch.setattr(baseline, "run_baseline", flaky)
    store = Store(tmp_path / "store.sqlite")
    first = measure_all(store, "fewshot", ["smollm2-135m"], ["gsm8k", "humaneval"], limit=1, max_tokens=16,
                        shots=1, log=quiet)
    (_, _, error), (_, _, row) = first
    assert error == "the GPU fell off the bus"
    assert row.agent == "base-fewshot" and row.status == "done"
    lines: list[str] = []
    again = measure_all(store, "fewshot", ["smollm2-135m"], ["humaneval"], limit=1, max_tokens=16, shots=1,
                        log=lines.append)
    assert again[0][2].id == row.id and "already measured" in lines[0]
    other = measure_all(store, "fewshot", ["smollm2-135m"], ["humaneval"], limit=1, max_tokens=16, shots=2,
                        log=quiet)
    assert other[0][2].id != row.id  # other settings are another measurement
    assert len([r for r in store.runs(kind="baseline") if r.status == "done"]) == 2


def test_bad_sweeps_fail_before_the_first_cell(tmp_path, monkeypatch):
    store = Store(tmp_path / "store.sqlite")
    with pytest.raises(PtbError, match="unknown model"):
        measure_all(store, "zeroshot", ["smollm2-135m", "gpt-9"], ["gsm8k"], log=quiet)
    with pytest.raises(PtbError, match="has 5 few-shot examples"):
        measure_all(store, "fewshot", ["smollm2-135m"], ["gsm8k", "humaneval"], shots=6, log=quiet)
    with pytest.raises(PtbError, match="unknown baseline"):
        measure_all(store, "oneshot", ["smollm2-135m"], ["gsm8k"], log=quiet)
    for name in ("PTB_GRADER_BASE_URL", "PTB_GRADER_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(PtbError, match="^arenahardwriting, healthbench: this benchmark is graded by an LLM"):
        measure_all(store, "zeroshot", ["smollm2-135m"], ["gsm8k", "arenahardwriting", "healthbench"], log=quiet)
    assert store.runs() == []  # nothing measured, nothing half-stored


def test_cli_needs_cells_and_reads_grids(tmp_path):
    result = ptb("baseline", "fewshot")
    assert result.returncode != 0 and "--model and --benchmark" in result.stderr
    grid = tmp_path / "grid.yaml"
    grid.write_text("agents: [{scaffold: reference}]\nmodels: [smollm2-135m]\nbenchmarks: [gsm8k, humaneval]\n")
    # the grid supplies the cells: a shot count too large for humaneval's examples names it
    result = ptb("baseline", "fewshot", "--grid", str(grid), "--shots", "7")
    assert result.returncode != 0 and "humaneval has 5 few-shot examples" in result.stderr
    grid.write_text("agents: [{scaffold: reference}]\nmodels: [smollm2-135m]\nbenchmarks: [gsm8k, nope]\n")
    result = ptb("baseline", "fewshot", "--grid", str(grid))
    assert result.returncode != 0 and "grid.yaml:3" in result.stderr
