"""Agent scaffolds: one module per scaffold turns an AgentContext into an AgentLaunch."""

from posttrainbench.agents.base import AgentContext, AgentLaunch

__all__ = ["AgentContext", "AgentLaunch"]
