"""Claude Code 2.1.197 in print mode with stream-json output (the original's `claude` agent)."""

from posttrainbench.agents.base import AgentContext, AgentLaunch
from posttrainbench.agents.common import base_url, model_of
from posttrainbench.agents.install import binary, install_dir


def _launch(ctx: AgentContext, prompt: str, extra: list[str]) -> AgentLaunch:
    argv = [str(binary("claude")), "--print", "--verbose", "--model", model_of(ctx), "--output-format", "stream-json",
            "--dangerously-skip-permissions", *extra]
    if ctx.agent.effort:
        argv += ["--effort", ctx.agent.effort]
    env = {
        "ANTHROPIC_BASE_URL": base_url(ctx),  # the client appends /v1/messages
        "ANTHROPIC_API_KEY": ctx.llm_api_key,
        # Telemetry, feature flags, error reports and the title side call all go to Anthropic directly.
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "DISABLE_AUTOUPDATER": "1",
        "BASH_MAX_TIMEOUT_MS": "36000000",
        # Without it, --dangerously-skip-permissions refuses to run as root; we are in a sandbox either way.
        "IS_SANDBOX": "1",
    }
    return AgentLaunch(argv=[*argv, prompt], env=env, mounts=[install_dir("claude")])


def prepare(ctx: AgentContext) -> AgentLaunch:
    return _launch(ctx, ctx.prompt, [])


def resume(ctx: AgentContext, message: str) -> AgentLaunch:
    return _launch(ctx, message, ["--continue"])
