"""Codex CLI 0.171.0 `exec --json` against a custom provider that points at the metering proxy.

A custom provider is needed: 0.171 ignores OPENAI_BASE_URL, and the built-in provider first tries WebSockets.
"""

from posttrainbench.agents.base import AgentContext, AgentLaunch
from posttrainbench.agents.common import base_url, model_of
from posttrainbench.agents.install import binary, install_dir

CONFIG = """\
model_provider = "ptb"
check_for_update_on_startup = false

[analytics]
enabled = false

[features]
plugins = false

[model_providers.ptb]
name = "ptb"
base_url = "{base_url}/v1"
env_key = "CODEX_API_KEY"
wire_api = "responses"
supports_websockets = false
"""


def _launch(ctx: AgentContext, command: list[str], prompt: str) -> AgentLaunch:
    options = ["--json", "-c", "model_reasoning_summary=detailed"]
    if ctx.agent.effort:
        options += ["-c", f"model_reasoning_effort={ctx.agent.effort}"]
    options += ["--skip-git-repo-check", "--yolo", "--model", model_of(ctx)]
    argv = [str(binary("codex")), "--search", *command, *options, prompt]
    return AgentLaunch(
        argv=argv,
        env={"CODEX_API_KEY": ctx.llm_api_key},
        files={".codex/config.toml": CONFIG.format(base_url=base_url(ctx))},
        mounts=[install_dir("codex")],
    )


def prepare(ctx: AgentContext) -> AgentLaunch:
    return _launch(ctx, ["exec"], ctx.prompt)


def resume(ctx: AgentContext, message: str) -> AgentLaunch:
    return _launch(ctx, ["exec", "resume", "--last"], message)
