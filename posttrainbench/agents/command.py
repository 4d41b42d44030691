"""Any executable as the agent. It gets the prompt and the metering proxy's endpoints in its environment."""

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
    return AgentLaunch(argv=list(ctx.agent.command), env=env)


def resume(ctx: AgentContext, message: str) -> AgentLaunch:
    launch = prepare(ctx)
    launch.env["PTB_PROMPT"] = message
    launch.env["PTB_RESUMED"] = "1"
    return launch
