"""Agents: a scaffold (how the agent is launched) plus its model and settings."""

import os
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, Field, ValidationError, field_validator, model_validator

from posttrainbench.errors import PtbError

Scaffold = Literal["reference", "command", "claude", "codex", "gemini", "opencode"]
SCAFFOLDS: tuple[str, ...] = Scaffold.__args__


# Sandbox paths a user's mount may not cover: the system, and the places the harness itself mounts.
RESERVED_TARGETS = ("/usr", "/etc", "/bin", "/sbin", "/lib", "/lib64", "/proc", "/dev", "/sys", "/tmp", "/ptb",
                    "/home/agent")


class MountSpec(BaseModel):
    """A host folder or file shown inside a `command` agent's sandbox: `SRC:DST[:ro]` (read-write unless :ro)."""

    source: str
    target: str
    read_only: bool = False

    @classmethod
    def parse(cls, text: str) -> "MountSpec":
        parts = text.split(":")
        read_only = len(parts) == 3 and parts[2] == "ro"
        if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
            raise ValueError(f"a mount is SRC:DST or SRC:DST:ro, not {text!r}")
        return cls(source=parts[0], target=parts[1], read_only=read_only)

    @field_validator("source", "target")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"mount paths are absolute, not {value!r}")
        return os.path.normpath(value)

    @field_validator("target")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value == "/" or any(value == r or value.startswith(r + "/") for r in RESERVED_TARGETS):
            raise ValueError(f"{value} is the sandbox's own (mount somewhere else, e.g. under /opt or /mnt)")
        return value

    def __str__(self) -> str:
        return f"{self.source}:{self.target}" + (":ro" if self.read_only else "")


def _mount_list(value):
    if isinstance(value, str):
        value = [value]
    return [MountSpec.parse(v) if isinstance(v, str) else v for v in value or []]


class AgentSpec(BaseModel):
    scaffold: Scaffold
    model: str | None = Field(None, description="the LLM the scaffold drives (e.g. claude-opus-4-6)")
    effort: str | None = Field(None, description="reasoning effort, where the scaffold has one")
    command: list[str] | None = Field(
        None, description="a `command` agent's command: one shell line (run by `bash -c` in the task dir), or an argv"
    )
    mounts: Annotated[list[MountSpec], BeforeValidator(_mount_list)] = Field(
        default_factory=list, description="host paths shown to a `command` agent: SRC:DST[:ro]"
    )
    reprompt_minutes: float | None = Field(
        None, description="resume an agent that stops with more than this many minutes left"
    )

    @model_validator(mode="after")
    def _mounts_for_commands(self) -> "AgentSpec":
        if self.mounts and self.scaffold != "command":
            raise ValueError("only a `command` agent takes mounts")
        return self

    @property
    def name(self) -> str:
        if self.scaffold == "command":
            return "command"
        return self.scaffold if not self.model else f"{self.scaffold}:{self.model}"


def parse_agent(text: str, command: list[str] | None = None, mounts: list[str] | None = None) -> AgentSpec:
    """`reference`, `command`, or `SCAFFOLD:MODEL` such as `claude:claude-opus-4-6`."""
    scaffold, _, model = text.partition(":")
    if scaffold not in SCAFFOLDS:
        raise PtbError(f"unknown agent '{scaffold}'; valid: {', '.join(SCAFFOLDS)}")
    if scaffold == "command" and not command:
        raise PtbError("the command agent needs a command (--command '...')")
    try:
        return AgentSpec(scaffold=scaffold, model=model or None, command=command, mounts=mounts or [])
    except ValidationError as exc:
        raise PtbError(exc.errors()[0]["msg"].removeprefix("Value error, ")) from None
