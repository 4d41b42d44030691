"""A first solver that holds each sample until the evaluation's `vllm serve` answers.

inspect sets up every sample (a few milliseconds each, seconds for a thousand) before its first request, and
finishes them after its last. With the gate the evaluation starts as soon as the server is launched, so that set-up
overlaps the minutes the server takes to load instead of following them (benchmarks/gpu_eval.py measured it as the
gap between the evaluator and vLLM's engine).
"""

from inspect_ai import Task, task_with
from inspect_ai.solver import Generate, Solver, TaskState, chain, solver

from posttrainbench.evaluation.vllm_server import Starting


def gated(task: Task, starting: Starting) -> Task:
    return task_with(task, solver=chain(wait_for_server(starting), task.solver))


@solver
def wait_for_server(starting: Starting) -> Solver:
    async def solve(state: TaskState, generate: Generate) -> TaskState:
        await starting.wait_async()
        if starting.error is not None:
            raise starting.error  # the runner reports it (and walks its retry ladder) from `starting`, not the log
        return state

    return solve
