"""The harness's evaluations: progress on screen with its log path, and inspect logs that say whose they are."""

import json
import sys

import pytest

from posttrainbench import sandbox
from posttrainbench.evaluation.progress import PREFIX, Progress, ProgressReporter, parse, reporting


def test_progress_lines_become_items_rate_and_time_left():
    said = []
    reporter = ProgressReporter("the agent's model", said.append, every_s=0.0, settle_s=0.0)
    assert reporter.feed(PREFIX + json.dumps({"done": 0, "total": 4, "output_tokens": 0}))
    assert reporter.feed(PREFIX + json.dumps({"done": 1, "total": 4, "output_tokens": 50}))
    reporter.heartbeat()
    assert reporter.feed(PREFIX + json.dumps({"done": 4, "total": 4, "output_tokens": 200}))
    assert not reporter.feed("plain output\n") and not reporter.feed(PREFIX + "{broken")
    assert said[0].startswith("evaluating the agent's model: 1/4 items, ") and "tok/s, about " in said[0]
    assert said[1].startswith("evaluating the agent's model: 4/4 items") and "left" not in said[1]


def test_a_burst_of_items_is_reported_once_it_settles():
    """A batched backend ends a batch's items within a second after a long wait: no rate or time left is taken
    from the first item of the burst (it promised hours when the other 19 came the same second)."""
    said = []
    reporter = ProgressReporter("the base model", said.append, every_s=0.0, settle_s=3600.0)
    reporter.feed(PREFIX + json.dumps({"done": 0, "total": 20, "output_tokens": 0}))
    reporter.feed(PREFIX + json.dumps({"done": 1, "total": 20, "output_tokens": 256}))
    reporter.heartbeat()
    assert said == []  # the burst has not settled
    for done in range(2, 21):
        reporter.feed(PREFIX + json.dumps({"done": done, "total": 20, "output_tokens": 256 * done}))
    assert len(said) == 1 and said[0].startswith("evaluating the base model: 20/20 items, ") and "left" not in said[0]


def test_a_quiet_batch_still_shows_it_is_alive():
    said = []
    reporter = ProgressReporter("the base model", said.append, quiet_s=0.0)
    reporter.heartbeat()
    assert said == []  # not started yet
    reporter.feed(PREFIX + json.dumps({"done": 0, "total": 20, "output_tokens": 0}))
    reporter.heartbeat()
    assert said[0].startswith("evaluating the base model: 0/20 items after 0:00:0")


@pytest.mark.parametrize("body", [
    '{"done": 1, "total": 4}',  # a key missing
    '{"done": 1, "total": 4, "output_tokens": 5, "note": "[red]x"}',  # a key too many
    '{"done": "[bold]1", "total": 4, "output_tokens": 5}',  # markup where a number belongs
    '{"done": true, "total": 4, "output_tokens": 5}',
    '{"done": 1.5, "total": 4, "output_tokens": 5}',
    '{"done": -1, "total": 4, "output_tokens": 5}',
    '{"done": 5, "total": 4, "output_tokens": 5}',
    '{"done": 1, "total": 4, "output_tokens": 10000000000000}',
    '[1, 4, 5]',
    '{"done": 1, "total": 4, "output_tokens": 5}' + " " * 300,  # longer than any real line
])
def test_malformed_or_hostile_progress_lines_are_not_progress(body):
    said = []
    reporter = ProgressReporter("the agent's model", said.append, every_s=0.0)
    reporter.feed(PREFIX + json.dumps({"done": 0, "total": 4, "output_tokens": 0}))
    assert parse(PREFIX + body) is None
    assert not reporter.feed(PREFIX + body)
    assert said == [] and reporter.done == 0


def test_a_well_formed_line_parses_with_or_without_a_total():
    assert parse(PREFIX + '{"done": 2, "total": null, "output_tokens": 9}\n') == Progress(2, None, 9)
    assert parse(PREFIX + '{"output_tokens": 9, "total": 3, "done": 3}') == Progress(3, 3, 9)


def test_progress_from_a_sandboxed_child_reaches_the_screen_and_its_hostile_lines_do_not(tmp_path):
    """The final evaluation's child runs in a sandbox: the harness follows its output line by line (sandbox.run's
    on_line), shows what parses as progress, keeps the latest state for a grid, and never prints its text."""
    hostile = "\x1b]0;pwned\x07[bold red]flagged: none[/]"
    lines = [
        PREFIX + json.dumps({"done": 0, "total": 2, "output_tokens": 0}),
        PREFIX + json.dumps({"done": 1, "total": 2, "output_tokens": 7, "label": hostile}),
        PREFIX + hostile,
        PREFIX + json.dumps({"done": 1, "total": 2, "output_tokens": 40}),
        PREFIX + json.dumps({"done": 2, "total": 2, "output_tokens": 80}),
    ]
    script = "import sys\nfor line in sys.argv[1:]:\n    print(line, flush=True)\n"
    request = sandbox.SandboxRequest(argv=[sys.executable, "-c", script, *lines], cwd=str(tmp_path),
                                     mounts=[sandbox.Mount(tmp_path, str(tmp_path))], env={"PATH": "/usr/bin:/bin"})
    said, seen = [], []
    state = tmp_path / "progress.json"
    with reporting("the agent's model", said.append, state) as reporter:
        reporter.every_s = reporter.settle_s = 0.0

        def on_line(line: str) -> bool:
            if reporter.feed(line) and reporter.done == 1:
                reporter.heartbeat()  # what the reporting thread does every few seconds
                seen.append(json.loads(state.read_text()))
            return True

        info = sandbox.run(request, backend="none", time_limit_s=60, log_path=tmp_path / "evaluate.log",
                           on_line=on_line)
    assert info.status == "finished", info.detail
    assert [m.split(",")[0] for m in said] == ["evaluating the agent's model: 1/2 items",
                                               "evaluating the agent's model: 2/2 items"]
    assert all("pwned" not in m and "[" not in m and "\x1b" not in m for m in said)
    assert seen[0]["done"] == 1 and seen[0]["total"] == 2 and seen[0]["eta_s"] is not None
    assert not state.exists()  # gone once the evaluation ends
    assert "pwned" in (tmp_path / "evaluate.log").read_text()  # the log keeps everything, for the record


def test_a_failing_line_reader_never_stops_the_log(tmp_path):
    def broken(line: str) -> None:
        raise ValueError("reader bug")

    request = sandbox.SandboxRequest(argv=[sys.executable, "-c", "print('one'); print('two')"], cwd=str(tmp_path),
                                     mounts=[sandbox.Mount(tmp_path, str(tmp_path))], env={"PATH": "/usr/bin:/bin"})
    info = sandbox.run(request, backend="none", time_limit_s=60, log_path=tmp_path / "log", on_line=broken)
    assert info.status == "finished"
    text = (tmp_path / "log").read_text()
    assert "one" in text and "two" in text


@pytest.mark.slow
def test_harness_evaluation_shows_progress_and_labels_its_inspect_log(small_model, tmp_path, shared_data):
    from posttrainbench.executors.evaluate import run_evaluation

    said = []
    metrics = run_evaluation(small_model, "gsm8k", base_model="smollm2-135m", out_dir=tmp_path / "out", limit=2,
                             max_tokens=8, label="the agent's model", log=said.append,
                             metadata={"label": "final", "run_id": "20260101-000000-abcdef", "agent": "reference"})
    assert metrics["n_samples"] == 2
    assert said[0] == f"evaluating the agent's model on gsm8k; its log: {tmp_path / 'out' / 'evaluate.log'}"
    assert any(line.startswith("evaluating the agent's model: 2/2 items") for line in said), said
    assert "PTB-PROGRESS" not in (tmp_path / "out" / "evaluate.log").read_text()
    [log] = (tmp_path / "out" / "logs").glob("*.json")
    header = json.loads(log.read_text())["eval"]
    assert header["metadata"]["run_id"] == "20260101-000000-abcdef" and header["metadata"]["label"] == "final"
    assert header["metadata"]["model_path"] == str(small_model.resolve()) and header["metadata"]["agent"] == "reference"
    assert header["model"] == "hf/final-20260101-000000-abcdef" and "final" in header["tags"]
