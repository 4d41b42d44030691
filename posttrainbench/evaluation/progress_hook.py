"""The inspect hook behind evaluation progress: prints a progress line (progress.PREFIX) after every finished item.
Importing this module registers the hook; only the harness's evaluation child imports it."""

import threading

from inspect_ai.hooks import Hooks, SampleEnd, TaskStart, hooks

from posttrainbench.evaluation.progress import emit


@hooks(name="ptb_progress", description="item counts and tokens of a posttrainbench evaluation, on stdout")
class ProgressLines(Hooks):
    def __init__(self) -> None:
        self.total: int | None = None
        self.done = 0
        self.tokens = 0
        self.lock = threading.Lock()

    async def on_task_start(self, data: TaskStart) -> None:
        samples = data.spec.dataset.samples
        limit = data.spec.config.limit
        if isinstance(limit, int) and samples is not None:
            samples = min(samples, limit)
        with self.lock:
            self.total, self.done, self.tokens = samples, 0, 0
        emit({"done": 0, "total": samples, "output_tokens": 0})

    async def on_sample_end(self, data: SampleEnd) -> None:
        usage = data.sample.model_usage or {}
        with self.lock:
            self.done += 1
            self.tokens += sum(u.output_tokens for u in usage.values())
            line = {"done": self.done, "total": self.total, "output_tokens": self.tokens}
        emit(line)

