"""OpenCode 1.18.33 `run --format json`. The model is `provider/model`.

anthropic, openai and google are OpenCode's built-in providers (Messages, Responses, Gemini APIs): only their
base URL and key are replaced. Any other provider id is declared as an OpenAI-compatible (Chat Completions) one.
"""

import json

from posttrainbench.agents.base import AgentContext, AgentLaunch
from posttrainbench.agents.common import base_url, model_of
from posttrainbench.agents.install import binary, install_dir
from posttrainbench.errors import PtbError

BUILT_IN_PATH = {"anthropic": "/v1", "openai": "/v1", "google": "/v1beta"}
ENV = {
    "OPENCODE_DISABLE_AUTOUPDATE": "1",
    "OPENCODE_DISABLE_MODELS_FETCH": "1",
    "OPENCODE_DISABLE_DEFAULT_PLUGINS": "1",
    "OPENCODE_DISABLE_LSP_DOWNLOAD": "1",
    "OPENCODE_DISABLE_SHARE": "1",
}


def config(ctx: AgentContext) -> dict:
    model = model_of(ctx)
    provider, _, name = model.partition("/")
    if not name:
        raise PtbError(f"opencode models are written provider/model, got '{model}'")
    if provider in BUILT_IN_PATH:
        options = {"baseURL": base_url(ctx) + BUILT_IN_PATH[provider], "apiKey": ctx.llm_api_key}
        entry: dict = {"options": options}
    else:
        entry = {
            "npm": "@ai-sdk/openai-compatible",
            "name": provider,
            "options": {"baseURL": base_url(ctx) + "/v1", "apiKey": ctx.llm_api_key},
            "models": {name: {"name": name, "tool_call": True}},
        }
    return {"$schema": "https://opencode.ai/config.json", "permission": "allow", "share": "disabled",
            "autoupdate": False, "provider": {provider: entry}}


def _launch(ctx: AgentContext, prompt: str, extra: list[str]) -> AgentLaunch:
    # --pure: no external plugins, whose background npm install would try to reach the registry.
    argv = [str(binary("opencode")), "run", "--pure", "--model", model_of(ctx), "--format", "json", *extra]
    if ctx.agent.effort:
        argv += ["--variant", ctx.agent.effort]
    return AgentLaunch(
        argv=[*argv, prompt],
        env=dict(ENV),
        files={".config/opencode/opencode.json": json.dumps(config(ctx), indent=2)},
        mounts=[install_dir("opencode")],
    )


def prepare(ctx: AgentContext) -> AgentLaunch:
    return _launch(ctx, ctx.prompt, [])


def resume(ctx: AgentContext, message: str) -> AgentLaunch:
    return _launch(ctx, message, ["--continue"])
