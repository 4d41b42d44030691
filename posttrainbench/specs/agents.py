"""Agents: a scaffold (how the agent is launched) plus its model and settings."""

from typing import Literal

from pydantic import BaseModel, Field

from posttrainbench.errors import PtbError

Scaffold = Literal["reference", "command", "claude", "codex", "gemini", "opencode"]
SCAFFOLDS: tuple[str, ...] = Scaffold.__args__


class AgentSpec(BaseModel):
    scaffold: Scaffold
    model: str | None = Field(None, description="the LLM the scaffold drives (e.g. claude-opus-4-6)")
    effort: str | None = Field(None, description="reasoning effort, where the scaffold has one")
    command: list[str] | None = Field(None, description="argv of a `command` agent, run in the task dir")
    reprompt_minutes: float | None = Field(
        None, description="resume an agent that stops with more than this many minutes left"
    )

    @property
    def name(self) -> str:
        if self.scaffold == "command":
            return "command"
        return self.scaffold if not self.model else f"{self.scaffold}:{self.model}"


def parse_agent(text: str, command: list[str] | None = None) -> AgentSpec:
    """`reference`, `command`, or `SCAFFOLD:MODEL` such as `claude:claude-opus-4-6`."""
    scaffold, _, model = text.partition(":")
    if scaffold not in SCAFFOLDS:
        raise PtbError(f"unknown agent '{scaffold}'; valid: {', '.join(SCAFFOLDS)}")
    if scaffold == "command" and not command:
        raise PtbError("the command agent needs a command (--command '...')")
    return AgentSpec(scaffold=scaffold, model=model or None, command=command)
