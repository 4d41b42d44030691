"""Pieces every CLI adapter shares."""

from posttrainbench.agents.base import AgentContext
from posttrainbench.errors import PtbError

# What each scaffold drives when the agent spec names no model (the original's usual configurations).
DEFAULT_MODELS = {
    "claude": "claude-opus-4-6",
    "codex": "gpt-5.1-codex-max",
    "gemini": "gemini-3-pro-preview",
    "opencode": "anthropic/claude-opus-4-5",
}


def model_of(ctx: AgentContext) -> str:
    return ctx.agent.model or DEFAULT_MODELS[ctx.agent.scaffold]


def base_url(ctx: AgentContext) -> str:
    """The metering proxy as the agent sees it, without a trailing slash."""
    if not ctx.llm_base_url:
        raise PtbError(f"agent {ctx.agent.name} needs the LLM metering proxy (llm_base_url is not set)")
    return ctx.llm_base_url.rstrip("/")
