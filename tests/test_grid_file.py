import textwrap

import pytest

from posttrainbench.errors import PtbError
from posttrainbench.specs.grid import expand, load_grid


def _write(tmp_path, text: str, name: str = "grid.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


GOOD = """
agents:
  - scaffold: claude
    model: claude-opus-4-6
    effort: high
  - label: script
    scaffold: command
    command: python -c 'print("hi there")'
    mounts: ["/opt/data:/opt/data:ro"]
  - scaffold: reference
    hours: 1
    gpus: 0
models: [qwen3-1.7b-base, Qwen/Qwen3-4B-Base]
benchmarks: [gsm8k, humaneval]
seeds: 3
hours: 5
gpus: 2
retry: {attempts: 4, backoff_s: 10}
"""


def test_expand_is_the_cartesian_product_with_stable_keys(tmp_path):
    grid = load_grid(_write(tmp_path, GOOD, "paper.yaml"))
    assert grid.name == "paper"
    cells = expand(grid)
    assert len(cells) == 3 * 2 * 2 * 3
    assert len({c.key for c in cells}) == len(cells)
    first = cells[0]
    assert first.key == "claude:claude-opus-4-6@high/qwen3-1.7b-base/gsm8k/0"
    assert (first.spec.hours, first.spec.gpus, first.spec.agent.effort) == (5, 2, "high")
    # A Hugging Face id is stored as the catalog id; a command string is one shell line, run by `bash -c`.
    assert {c.spec.model for c in cells} == {"qwen3-1.7b-base", "qwen3-4b-base"}
    script = next(c for c in cells if c.agent == "script")
    assert script.spec.agent.command == ['python -c \'print("hi there")\'']
    assert script.key.startswith("script/")
    assert [str(m) for m in script.spec.agent.mounts] == ["/opt/data:/opt/data:ro"]
    quick = next(c for c in cells if c.agent == "reference-1h-0gpu")
    assert (quick.spec.hours, quick.spec.gpus) == (1, 0)
    # Keys depend only on agent, model, benchmark and seed: a longer budget keeps them, but not the spec hash.
    longer = load_grid(_write(tmp_path, GOOD.replace("hours: 5", "hours: 10"), "paper.yaml"))
    assert [c.key for c in expand(longer)] == [c.key for c in cells]
    assert expand(longer)[0].spec_hash != first.spec_hash
    assert grid.retry.delay(1) == 10 and grid.retry.delay(3) == 40


@pytest.mark.parametrize("text, expected", [
    ("""
     agents:
       - scaffold: claude
         modle: claude-opus-4-6
     models: [qwen3-1.7b-base]
     benchmarks: [gsm8k]
     """, "grid.yaml:3: agents[0].modle: unknown field"),
    ("""
     agents: [{scaffold: reference}]
     models:
       - qwen3-1.7b-base
       - qwen9
     benchmarks: [gsm8k]
     """, "grid.yaml:4: models[1]: unknown model 'qwen9'"),
    ("""
     agents: [{scaffold: reference}]
     models: [qwen3-1.7b-base]
     benchmarks: [gsm8k]
     hours: 0
     """, "grid.yaml:4: hours: Input should be greater than 0"),
    ("""
     agents:
       - scaffold: reference
       - scaffold: command
     models: [qwen3-1.7b-base]
     benchmarks: [gsm8k]
     """, "grid.yaml:3: agents[1]: a `command` agent needs a command"),
    ("""
     agents:
       - {scaffold: command, command: /bin/a}
       - {scaffold: command, command: /bin/b}
     models: [qwen3-1.7b-base]
     benchmarks: [gsm8k]
     """, "grid.yaml:3: agents[1]: agent key 'command' repeats agents[0] (give the agents distinct `label`s)"),
    ("""
     agents: [{scaffold: reference}]
     models: [qwen3-1.7b-base]
     benchmarks: [gsm8k, gsm8k]
     """, "grid.yaml:3: benchmarks[1]: 'gsm8k' repeats benchmarks[0]"),
    ("""
     agents: [{scaffold: reference}]
     benchmarks: [gsm8k]
     retry:
       attempts: 0
     """, "grid.yaml:1: models: Field required"),
    ("""
     agents: [{scaffold: reference}
     models: [x]
     """, "grid.yaml:2: invalid YAML"),
])
def test_errors_name_the_line(tmp_path, text, expected):
    with pytest.raises(PtbError) as error:
        load_grid(_write(tmp_path, text))
    assert str(error.value).startswith(str(tmp_path / expected.split(":")[0]) + ":")
    assert expected.split(":", 1)[1] in str(error.value)


def test_all_errors_are_reported(tmp_path):
    text = """
    agents:
      - scaffold: nobody
    models: [qwen3-1.7b-base]
    benchmarks: [gsm8k, nope]
    gpus: -1
    """
    with pytest.raises(PtbError) as error:
        load_grid(_write(tmp_path, text))
    lines = str(error.value).splitlines()
    assert [line.split(":")[1] for line in lines] == ["2", "4", "5"]


def test_name_must_be_usable_as_a_folder(tmp_path):
    with pytest.raises(PtbError, match=r"grid.yaml:1: name: String should match pattern"):
        load_grid(_write(tmp_path, "name: ../x\nagents: [{scaffold: reference}]\nmodels: [qwen3-1.7b-base]\n"
                                   "benchmarks: [gsm8k]\n"))


def test_a_run_stored_before_a_new_default_setting_keeps_its_cell(tmp_path):
    """A field added to the specs later (with its default) does not make an existing cell's run 'other settings'."""
    from posttrainbench.executors.cells import Cells
    from posttrainbench.store import Store

    grid = load_grid(_write(tmp_path, GOOD))
    cells = expand(grid)[:1]
    store = Store(tmp_path / "ptb.sqlite")
    Cells(store).register(grid, cells, runs_dir=tmp_path, source=None)
    old = cells[0].spec.model_dump()
    del old["agent"]["mounts"]  # as stored before mounts existed
    store.add_run("old", kind="agent", agent=cells[0].agent, model="m", benchmark="b", seed=0, hours=5,
                  run_dir=tmp_path, spec=old)
    Cells(store).update(grid.name, cells[0].key, run_id="old")
    store.db.execute("UPDATE grid_cells SET spec_hash='0000000000000000'")  # the hash of the older spec
    Cells(store).register(grid, cells, runs_dir=tmp_path, source=None)
    changed = cells[0].spec.model_copy(update={"hours": 1.0})
    store.db.execute("UPDATE runs SET spec=? WHERE id='old'", (changed.model_dump_json(),))
    store.db.execute("UPDATE grid_cells SET spec_hash='0000000000000000'")
    with pytest.raises(PtbError, match="other settings"):
        Cells(store).register(grid, cells, runs_dir=tmp_path, source=None)


def test_grid_takes_the_evaluation_token_cap(tmp_path):
    grid = load_grid(_write(tmp_path, GOOD.replace("seeds: 3", "seeds: 1\nmax_tokens: 64\nlimit: 5")))
    assert {(c.spec.max_tokens, c.spec.limit) for c in expand(grid)} == {(64, 5)}


def test_grid_takes_the_evaluators_settings_and_refuses_unknown_ones(tmp_path):
    text = GOOD.replace("seeds: 3", "seeds: 1\nevaluation: {backend: hf, max_connections: 8, gpu_memory_utilization: 0.5}")
    settings = {c.spec.evaluation.runner_args().__repr__() for c in expand(load_grid(_write(tmp_path, text)))}
    assert settings == {repr({"backend": "hf", "max_connections": 8, "gpu_memory_utilization": 0.5})}
    for bad, message in (("{backend: tgi}", "evaluation.backend"), ("{max_connections: 0}", "evaluation.max_connections"),
                         ("{gpu_memory_utilization: 1.5}", "evaluation.gpu_memory_utilization"),
                         ("{batch: 4}", "evaluation.batch")):
        with pytest.raises(PtbError, match=message):
            load_grid(_write(tmp_path, GOOD.replace("seeds: 3", f"seeds: 1\nevaluation: {bad}")))
