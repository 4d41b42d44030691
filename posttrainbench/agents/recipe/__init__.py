"""The reference agent's training program. It runs inside the sandbox as `python -m posttrainbench.agents.recipe`
and uses only what any agent has: the task directory, the timer, the base model by its hub id, the data mirror,
the network when the run allows it, and the GPUs."""


def log(message: str) -> None:
    """One progress line on stdout; the harness timestamps each line of the agent's output."""
    print(f"[reference] {message}", flush=True)
