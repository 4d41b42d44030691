"""Any program as the agent, run by `bash -c` in the task directory (/home/agent/task), where it must leave
final_model/. A command given as one string is a shell line (pipes, `&&`, variables work); one given as a list is
an argv, quoted for bash word for word. Its environment:

  PTB_PROMPT        the task prompt (on a resumed session: the resume message, and PTB_RESUMED=1)
  PTB_HOURS         the budget in hours; PTB_GPUS / NUM_GPUS the GPUs it has
  PTB_DATA_DIR      the benchmark data (read-only); HOME=/home/agent
  PTB_LLM_BASE_URL  the metering LLM proxy (with ANTHROPIC_/OPENAI_/GEMINI_ base URLs and a dummy key), when the
                    harness has a provider key
  PATH              the run's Python (torch, transformers, ...) first

Host folders it needs appear where `--mount SRC:DST[:ro]` (grid: `mounts:`) puts them."""

import shlex

from posttrainbench.agents.base import AgentContext, AgentLaunch
from posttrainbench.errors import PtbError


def prepare(ctx: AgentContext) -> AgentLaunch:
    if not ctx.agent.command:
        raise PtbError("the command agent needs a command")
    env = {"PTB_PROMPT": ctx.prompt, "PTB_HOURS": str(ctx.hours), "PTB_GPUS": str(ctx.gpus)}
    if ctx.llm_base_url:
        base = ctx.llm_base_url.rstrip("/")
        env |= {
            "PTB_LLM_BASE_URL": base,
            "ANTHROPIC_BASE_URL": base,
            "ANTHROPIC_API_KEY": ctx.llm_api_key,
            "OPENAI_BASE_URL": base + "/v1",
            "OPENAI_API_KEY": ctx.llm_api_key,
            "GOOGLE_GEMINI_BASE_URL": base,
            "GEMINI_API_KEY": ctx.llm_api_key,
        }
    return AgentLaunch(argv=shell_argv(ctx.agent.command), env=env)


def shell_argv(command: list[str]) -> list[str]:
    line = command[0] if len(command) == 1 else shlex.join(command)
    return ["bash", "-c", line]


def resume(ctx: AgentContext, message: str) -> AgentLaunch:
    launch = prepare(ctx)
    launch.env["PTB_PROMPT"] = message
    launch.env["PTB_RESUMED"] = "1"
    return launch
