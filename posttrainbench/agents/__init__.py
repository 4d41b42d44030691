"""Agent scaffolds: one module per scaffold turns an AgentContext into an AgentLaunch."""

import importlib

from posttrainbench.agents.base import AgentContext, AgentLaunch


def launch_for(ctx: AgentContext) -> AgentLaunch:
    module = importlib.import_module(f"posttrainbench.agents.{ctx.agent.scaffold}")
    return module.prepare(ctx)


__all__ = ["AgentContext", "AgentLaunch", "launch_for"]
