"""Reprompt policy: an agent that stops while much of its budget is left is resumed with a "time remains" message.

The original did this only for Codex (`*_reprompt` agents, while timer.sh showed at least 30 minutes). Here every
scaffold can: each adapter's `resume(ctx, message)` continues the previous session (claude --continue, codex exec
resume --last, gemini --resume latest, opencode --continue; the command agent is started again with PTB_RESUMED=1).
"""

import importlib
import time
from collections.abc import Callable
from typing import Protocol

from posttrainbench.agents import launch_for
from posttrainbench.agents.base import AgentContext, AgentLaunch

MAX_CRASHES_IN_A_ROW = 3


class Outcome(Protocol):
    status: str  # sandbox.ExitInfo: finished | timed_out | crashed | failed_to_start


def time_remains_message(seconds_left: float, hours: float) -> str:
    hours_left, minutes_left = divmod(int(seconds_left // 60), 60)
    return (
        f"You still have {hours_left}h {minutes_left:02d}m of your {hours:g} h budget. The task is not finished: keep "
        "working to improve the model and save your best one in final_model/. Check the remaining time with "
        "`bash timer.sh`."
    )


def resume_launch(ctx: AgentContext, message: str) -> AgentLaunch:
    module = importlib.import_module(f"posttrainbench.agents.{ctx.agent.scaffold}")
    return module.resume(ctx, message)


def run_with_reprompt(
    ctx: AgentContext,
    run_once: Callable[[AgentLaunch, float], Outcome],
    deadline: float,
    *,
    stop: Callable[[], str | None] = lambda: None,
    clock: Callable[[], float] = time.time,
) -> list[Outcome]:
    """Run the agent, then resume it while more than `ctx.agent.reprompt_minutes` remain before `deadline`
    (a `clock()` value). `run_once(launch, seconds_left)` runs one session in the sandbox (writing launch.files
    first). `stop()` returns a reason when the run must end anyway (the metering proxy's stop_reason)."""
    outcomes = [run_once(launch_for(ctx), deadline - clock())]
    threshold = ctx.agent.reprompt_minutes
    crashes = 0
    while threshold is not None:
        last = outcomes[-1]
        crashes = crashes + 1 if last.status == "crashed" else 0
        left = deadline - clock()
        if last.status not in ("finished", "crashed") or crashes >= MAX_CRASHES_IN_A_ROW:
            break
        if left <= threshold * 60 or stop():
            break
        outcomes.append(run_once(resume_launch(ctx, time_remains_message(left, ctx.hours)), left))
    return outcomes
