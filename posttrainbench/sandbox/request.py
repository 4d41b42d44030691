"""What a sandboxed process is (a request) and how it ended (an ExitInfo)."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from posttrainbench.errors import PtbError


@dataclass
class Mount:
    source: Path  # host path
    target: str  # path inside the sandbox
    writable: bool = False


@dataclass
class SandboxRequest:
    argv: list[str]
    cwd: str  # inside the sandbox
    # Later mounts may cover parts of earlier ones (a read-only evaluate.py inside a writable task dir).
    mounts: list[Mount]
    # The complete environment: nothing of the host's is inherited. PATH is required.
    env: dict[str, str]
    gpus: list[int] = field(default_factory=list)  # host GPU indices to pass through
    network: Literal["host", "none"] = "none"
    # Sandboxes of one identity run as one uid when the harness is root (a run's agent and the judges reading its
    # files, which the agent may have made readable to itself only); None: the writable mounts decide.
    identity: str | None = None
    # One more level of unprivileged sandbox may be made inside (an evaluation's HumanEval scorer confining each
    # completion): no --disable-userns, and seccomp.py's `nested` filter. The nested sandbox gets the full one.
    allow_nested: bool = False

    def validate(self) -> None:
        if not self.argv:
            raise PtbError("sandbox request has an empty argv")
        if not self.cwd.startswith("/"):
            raise PtbError(f"sandbox cwd must be absolute, got {self.cwd!r}")
        if "PATH" not in self.env:
            raise PtbError("sandbox env must set PATH (nothing is inherited from the host)")
        for mount in self.mounts:
            if not mount.target.startswith("/"):
                raise PtbError(f"sandbox mount target must be absolute, got {mount.target!r}")
            if not Path(mount.source).exists():
                raise PtbError(f"sandbox mount source {mount.source} does not exist")


class ExitInfo(BaseModel):
    # stopped: by run(stop=...); limit: a resource limit was hit (which one: `limit`)
    status: Literal["finished", "timed_out", "crashed", "failed_to_start", "stopped", "limit"]
    returncode: int | None  # shell encoding: 128+n when killed by signal n
    wall_seconds: float
    started_at: str  # ISO 8601 UTC
    ended_at: str
    detail: str  # one line for humans
    limit: Literal["memory", "pids", "disk"] | None = None
