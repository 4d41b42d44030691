"""The reference agent: no LLM, a fixed post-training recipe (LoRA SFT on benchmark-appropriate data within the
budget) run in the task directory. It is the demo's agent and a leaderboard baseline."""

import os
import sys

from posttrainbench.agents.base import AgentContext, AgentLaunch


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def prepare(ctx: AgentContext) -> AgentLaunch:
    argv = [
        sys.executable,
        "-m",
        "posttrainbench.agents.recipe",
        "--model",
        ctx.model.hf_id,
        "--benchmark",
        ctx.benchmark.id,
    ]
    if ctx.model.chat_template != "own":
        argv += ["--chat-template", ctx.model.chat_template]
    # evaluate.py of a graded benchmark needs the LLM grader: the evaluation service's, else one reached through
    # the LLM proxy
    if not ctx.benchmark.grader or ctx.llm_base_url or ctx.evaluation_service:
        argv += ["--eval-limit", str(ctx.benchmark.agent_defaults.limit or ctx.benchmark.count)]
    env = {
        "NUM_GPUS": str(ctx.gpus),
        "OMP_NUM_THREADS": str(cpu_count()),
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONUNBUFFERED": "1",
    }
    return AgentLaunch(argv=argv, env=env)
