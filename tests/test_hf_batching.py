"""The first batch of the transformers provider waits for every request that starts with it (hf_batching.py)."""

import threading
from dataclasses import dataclass
from queue import Queue

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


def test_a_late_request_joins_the_first_batch():
    queue = _queue(15)
    result: list = []
    drainer = threading.Thread(
        target=lambda: result.extend(hf_batching.drain(queue, expected=16, quiet=hf_batching.FIRST_BATCH_QUIET_S))
    )
    drainer.start()
    # Longer than inspect's window: its own loop would have generated the 15 without the 16th by now.
    drainer.join(timeout=hf_batching.INSPECT_QUIET_S + 1.5)
    assert drainer.is_alive()
    queue.put(_Item(_Input(16)))
    drainer.join()
    assert [len(batch) for batch in result] == [16]


def test_inspects_window_splits_it():
    from inspect_ai.model._providers import hf

    queue = _queue(15)
    assert [len(batch) for batch in hf._drain_batches(queue, timeout=hf_batching.INSPECT_QUIET_S)] == [15]


def test_fewer_samples_than_the_batch_size_do_not_wait():
    queue = _queue(3)
    assert [len(b) for b in hf_batching.drain(queue, expected=3, quiet=hf_batching.FIRST_BATCH_QUIET_S)] == [3]


def test_later_batches_are_formed_as_inspect_forms_them():
    queue = _queue(20)
    assert [len(b) for b in hf_batching.drain(queue, expected=None, quiet=0.1)] == [16]
    assert [len(b) for b in hf_batching.drain(queue, expected=None, quiet=0.1)] == [4]


def test_requests_with_different_settings_get_their_own_batches():
    queue: Queue = Queue()
    for key in ("a", "b", "a"):
        queue.put(_Item(_Input(16), key=key))
    assert [len(b) for b in hf_batching.drain(queue, expected=3, quiet=60)] == [2, 1]


def test_the_patch_arms_the_next_batch_once():
    from inspect_ai.model._providers import hf

    hf_batching.expect_first_batch(5)
    assert hf.process_batches is hf_batching._process_batches
    assert hf_batching._take_expected() == 5
    assert hf_batching._take_expected() is None
