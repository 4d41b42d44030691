"""Batches of inspect-ai's transformers provider are formed by count, not by a quiet time.

inspect's provider queues each sample's request, and a background thread forms a batch from those that arrive until
none has arrived for 2 s (or the batch is full). That window is wall-clock: any pause of the event loop between
two requests of one batch splits it, and the requests taken first are generated alone while the rest wait for
them. Issue 19 measured a 16-item CPU evaluation at 168 s against 109 s for one `generate` call, in the first
evaluation of a process only. The pause that does it there: a fresh evaluation process grows its heap by
hundreds of thousands of objects (torch, transformers, inspect, the model), so Python runs full garbage
collections again and again while it starts (nine before the first request, the last ones 0.3 s of CPU each, 0.8 s
wall at load 7 on the 2-core machine; one in a second evaluation of the same process), and on a loaded machine one
landing between two requests outlasts the window. A collection, a page fault storm or the scheduler can pause the
loop at any time, so the batches must not depend on it.

The runner knows how many requests an evaluation makes (one per item; it sets max_connections, so inspect starts
a batch's worth of samples together) and arms `expect_requests`: each batch then waits until it holds
min(batch size, requests still to come), with a long quiet time only as a safety net for a sample that fails
before it generates. Once the planned requests are in (or with no plan) batches form as inspect forms them. The
patch replaces the provider's module-level batch loop before its thread starts (once per process, at the first
request); a batch's target is read when its first request arrives, so an idle thread picks up a new plan.

Each sample also awaits its result differently: inspect's provider polls the result every second (blocking the
event loop 10 ms per waiting sample each time), so every batch's samples learn of their results up to 1 s late
and the next batch's requests come that much later. Under asyncio (inspect's default) the batch thread wakes the
waiting sample instead.
"""

import asyncio
import threading
from collections.abc import Hashable
from concurrent.futures import Future
from queue import Empty, Queue

INSPECT_QUIET_S = 2.0  # inspect's own window between requests
PLANNED_QUIET_S = 60.0  # a planned request this late is taken to be one that will not come

_lock = threading.Lock()
_inspect_batched_generate = None  # the provider's own, for an event loop other than asyncio
_remaining = 0  # requests of the armed evaluation not yet taken into a batch
_sizes: list[int] = []  # requests per batch of the armed evaluation


def expect_requests(total: int) -> None:
    """Form the batches of the next `total` requests by count (see the module docstring)."""
    global _remaining, _inspect_batched_generate
    from inspect_ai.model._providers import hf

    with _lock:
        _remaining = max(total, 0)
        _sizes.clear()
    hf.process_batches = _process_batches
    if _inspect_batched_generate is None:
        _inspect_batched_generate = hf.batched_generate
        hf.batched_generate = _batched_generate


async def _batched_generate(input):
    """inspect's batched_generate, awaiting the batch thread's result instead of polling for it."""
    from inspect_ai.model._providers import hf

    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # trio (INSPECT_ASYNC_BACKEND)
        return await _inspect_batched_generate(input)
    if hf.batch_thread is None:
        hf.batch_thread = threading.Thread(target=hf.process_batches, daemon=True)
        hf.batch_thread.start()
    waiter = loop.create_future()
    result = Future()
    # The batch thread's future is never cancelled from here: a cancelled one would make the provider fail the
    # rest of its batch when it sets the results.
    result.add_done_callback(lambda done: _wake(loop, waiter, done))
    hf.batch_queue.put(hf._QueueItem(input=input, future=result, key=hf._batch_key(input)))
    return await waiter


def _wake(loop: asyncio.AbstractEventLoop, waiter: asyncio.Future, done: Future) -> None:
    try:
        loop.call_soon_threadsafe(_transfer, waiter, done)
    except RuntimeError:  # the loop has closed: nobody waits any more
        pass


def _transfer(waiter: asyncio.Future, done: Future) -> None:
    if waiter.cancelled():
        return
    error = done.exception()
    if error is not None:
        waiter.set_exception(error)
    else:
        waiter.set_result(done.result())


def batch_sizes() -> list[int]:
    """Requests per batch since the last `expect_requests`, in order."""
    with _lock:
        return list(_sizes)


def _planned() -> int | None:
    with _lock:
        return _remaining or None


def _taken(count: int) -> None:
    global _remaining
    with _lock:
        _remaining = max(_remaining - count, 0)
        _sizes.append(count)


def collect(queue: Queue, first, *, expected: int | None, quiet: float) -> list[list]:
    """The batch that starts with `first`: requests grouped by inspect's batch key, collected until `expected`
    (capped at the batch size) have arrived, or none has for `quiet` seconds."""
    batches: dict[Hashable, list] = {first.key: [first]}
    collected = 1
    limit = min(expected or first.input.batch_size, first.input.batch_size)
    while collected < limit:
        try:
            item = queue.get(timeout=quiet)
        except Empty:
            break
        batches.setdefault(item.key, []).append(item)
        collected += 1
    return list(batches.values())


def _process_batches() -> None:
    from inspect_ai.model._providers import hf

    while True:
        first = hf.batch_queue.get()
        expected = _planned()
        quiet = INSPECT_QUIET_S if expected is None else PLANNED_QUIET_S
        batches = collect(hf.batch_queue, first, expected=expected, quiet=quiet)
        _taken(sum(len(batch) for batch in batches))
        for batch in batches:
            hf._generate_batch(batch)
