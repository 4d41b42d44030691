"""The first batch of inspect-ai's transformers provider holds every request that starts with it.

inspect's provider queues each sample's request and a background thread forms a batch from those that arrive until
none has arrived for 2 s (or the batch is full). The first requests of a process can arrive behind first-use
work on the event loop (lazy imports, template compilation, a full garbage collection of a heap that just received
a model); on a loaded CPU machine a gap of more than 2 s splits the first batch: a few requests are generated alone
and the rest wait for them. Issue 19 measured a 16-item CPU evaluation at 168 s against 109 s for one `generate`
call, with one request about 46 s late, in the first evaluation of a process only.

The samples of the first batch all start together (inspect starts min(samples, max_connections) at once, and the
batch size is max_connections), so their number is known: the first batch waits for that many requests, with a
long quiet time as a safety net for a sample that fails before it generates. Later batches are formed as inspect
forms them. The patch replaces the provider's module-level batch loop before its thread starts (the thread is
started once per process, at the first request); `expect_first_batch` re-arms it for the next evaluation.
"""

import threading
from collections.abc import Hashable
from queue import Empty, Queue

INSPECT_QUIET_S = 2.0  # inspect's own window between requests
FIRST_BATCH_QUIET_S = 60.0

_lock = threading.Lock()
_expected: int | None = None


def expect_first_batch(samples: int) -> None:
    """Make the next batch the provider forms wait for `samples` requests (capped at its batch size)."""
    global _expected
    from inspect_ai.model._providers import hf

    with _lock:
        _expected = max(samples, 1)
    hf.process_batches = _process_batches


def _take_expected() -> int | None:
    global _expected
    with _lock:
        expected, _expected = _expected, None
    return expected


def drain(queue: Queue, *, expected: int | None, quiet: float) -> list[list]:
    """Requests grouped into batches (by inspect's batch key), collected until `expected` (capped at the batch
    size) have arrived, or none has for `quiet` seconds."""
    batches: dict[Hashable, list] = {}
    collected = 0
    while True:
        try:
            item = queue.get(timeout=quiet)
        except Empty:
            break
        batches.setdefault(item.key, []).append(item)
        collected += 1
        if collected >= min(expected or item.input.batch_size, item.input.batch_size):
            break
    return list(batches.values())


def _process_batches() -> None:
    from inspect_ai.model._providers import hf

    while True:
        expected = _take_expected()
        if expected is None:
            batches = drain(hf.batch_queue, expected=None, quiet=INSPECT_QUIET_S)
        else:
            batches = drain(hf.batch_queue, expected=expected, quiet=FIRST_BATCH_QUIET_S)
        for batch in batches:
            hf._generate_batch(batch)
