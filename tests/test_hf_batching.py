"""Batches of the transformers provider form by count, whatever pauses the event loop (hf_batching.py)."""

import threading
import time
from dataclasses import dataclass
from queue import Queue

import pytest

from posttrainbench.evaluation import hf_batching


@dataclass
class _Input:
    batch_size: int


@dataclass
class _Item:
    input: _Input
    key: str = "model"


def _queue(n: int, batch_size: int = 16) -> Queue:
    queue: Queue = Queue()
    for _ in range(n):
        queue.put(_Item(_Input(batch_size)))
    return queue


def _collect(queue: Queue, expected: int | None, quiet: float) -> list[int]:
    return [len(b) for b in hf_batching.collect(queue, queue.get(), expected=expected, quiet=quiet)]


def test_a_late_request_joins_its_batch():
    queue = _queue(15)
    result: list = []
    drainer = threading.Thread(target=lambda: result.extend(_collect(queue, 16, hf_batching.PLANNED_QUIET_S)))
    drainer.start()
    # Longer than inspect's window: its own loop would have generated the 15 without the 16th by now.
    drainer.join(timeout=hf_batching.INSPECT_QUIET_S + 1.5)
    assert drainer.is_alive()
    queue.put(_Item(_Input(16)))
    drainer.join()
    assert result == [16]


def test_inspects_window_splits_it():
    from inspect_ai.model._providers import hf

    queue = _queue(15)
    assert [len(batch) for batch in hf._drain_batches(queue, timeout=hf_batching.INSPECT_QUIET_S)] == [15]


def test_fewer_requests_than_the_batch_size_do_not_wait():
    assert _collect(_queue(3), 3, hf_batching.PLANNED_QUIET_S) == [3]


def test_without_a_plan_batches_form_as_inspect_forms_them():
    queue = _queue(20)
    assert _collect(queue, None, 0.1) == [16]
    assert _collect(queue, None, 0.1) == [4]


def test_requests_with_different_settings_get_their_own_batches():
    queue: Queue = Queue()
    for key in ("a", "b", "a"):
        queue.put(_Item(_Input(16), key=key))
    assert [len(b) for b in hf_batching.collect(queue, queue.get(), expected=3, quiet=60)] == [2, 1]


def test_the_plan_counts_down_over_the_batches():
    from inspect_ai.model._providers import hf

    hf_batching.expect_requests(40)
    assert hf.process_batches is hf_batching._process_batches
    assert hf.batched_generate is hf_batching._batched_generate  # awaits its result instead of polling
    assert hf_batching._planned() == 40
    hf_batching._taken(32)
    assert hf_batching._planned() == 8
    hf_batching._taken(8)
    assert hf_batching._planned() is None  # planned requests all in: inspect's window again
    assert hf_batching.batch_sizes() == [32, 8]


@pytest.mark.slow
def test_a_paused_event_loop_does_not_split_a_batch(tiny_model, tmp_path, shared_data, monkeypatch):
    """A real transformers evaluation without --max-connections whose event loop stops for longer than inspect's
    window between two requests, as a full garbage collection of a fresh process does on a loaded machine: the
    four items are still generated as one batch (inspect's window made it [1, 3])."""
    from inspect_ai.model._providers import hf

    from posttrainbench.evaluation import runner

    chat = hf.HuggingFaceAPI.hf_chat
    calls = []

    def paused_chat(self, messages, tools):
        calls.append(1)
        if len(calls) == 2:
            time.sleep(hf_batching.INSPECT_QUIET_S + 1.0)  # blocks the event loop, as a collection does
        return chat(self, messages, tools)

    monkeypatch.setattr(hf.HuggingFaceAPI, "hf_chat", paused_chat)
    metrics = runner.evaluate(tiny_model, "gsm8k", base_model="smollm2-135m", out_dir=tmp_path / "out", limit=4,
                              max_tokens=1, backend="hf", device="cpu")
    assert len(calls) == 4
    assert metrics["attempts"][-1]["batches"] == [4]
    assert metrics["generation"]["max_connections"] == 4


def test_an_evaluation_never_asks_the_hub(tiny_model, tmp_path, shared_data, hub_listener):
    """Issue 19's first-evaluation stall: on its first model event inspect looks up the model's info by name, which
    built a second provider whose from_pretrained asked the hub for that name, retrying for ~46 s where the hub
    cannot be reached. With offline mode off (as on a user's machine) and the hub pointed at a local listener, a
    transformers evaluation opens no connection to it."""
    from posttrainbench.evaluation import runner

    metrics = runner.evaluate(tiny_model, "gsm8k", base_model="smollm2-135m", out_dir=tmp_path / "out", limit=1,
                              max_tokens=1, backend="hf", device="cpu")
    assert metrics["n_samples"] == 1
    assert hub_listener == []
