"""What every scaffold adapter produces: how to launch the agent inside the sandbox."""

from dataclasses import dataclass, field
from pathlib import Path

from posttrainbench import untrusted
from posttrainbench.specs import AgentSpec, BenchmarkSpec, ModelSpec


@dataclass
class AgentContext:
    """Everything an adapter may use to build its launch. Paths are host paths unless named sandbox_*."""

    agent: AgentSpec
    model: ModelSpec
    benchmark: BenchmarkSpec
    prompt: str
    hours: float
    gpus: int
    run_dir: Path
    home: Path  # host path of the agent's $HOME
    task: Path  # host path of the agent's working directory
    llm_base_url: str | None = None  # the metering proxy, as seen from inside the sandbox
    llm_api_key: str = "ptb-dummy-key"  # never the real key: the proxy adds that
    evaluation_service: bool = False  # test access hidden: evaluate.py is graded by the harness, outside


@dataclass
class AgentLaunch:
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # path relative to $HOME -> content, written before launch
    # Host paths the argv needs (the CLI's install), to be mounted read-only at the same path inside the sandbox.
    mounts: list[Path] = field(default_factory=list)

    def write_files(self, home: Path) -> None:
        """Write `files` into `home`, which the agent may have written before (a reprompt session): a link it
        planted there is replaced, never followed."""
        for rel, content in self.files.items():
            untrusted.write_file(home, rel, content)
