"""Gemini CLI 0.61.0 headless with stream-json output."""

import json
import shutil
from pathlib import Path

from posttrainbench.agents.base import AgentContext, AgentLaunch
from posttrainbench.agents.common import base_url, model_of
from posttrainbench.agents.install import binary, install_dir
from posttrainbench.errors import PtbError

SETTINGS = {
    # Without an explicit auth type a custom base URL selects "gateway" auth, which headless mode rejects.
    "security": {"auth": {"selectedType": "gemini-api-key"}, "folderTrust": {"enabled": False}},
    "privacy": {"usageStatisticsEnabled": False},
    "telemetry": {"enabled": False},
    "general": {"enableAutoUpdate": False, "enableAutoUpdateNotification": False},
}


def _launch(ctx: AgentContext, prompt: str, extra: list[str]) -> AgentLaunch:
    if ctx.agent.effort:
        raise PtbError("Gemini CLI has no reasoning-effort switch (it picks the thinking level itself): unset effort")
    found = shutil.which("node")
    if found is None:
        raise PtbError("Gemini CLI needs node on PATH (apt-get install nodejs)")
    node = str(Path(found).resolve())
    argv = [node, str(binary("gemini")), "--yolo", "--model", model_of(ctx), "--output-format", "stream-json",
            *extra, "-p", prompt]
    env = {
        "GOOGLE_GEMINI_BASE_URL": base_url(ctx),  # the client appends /v1beta/models/...
        "GEMINI_API_KEY": ctx.llm_api_key,
        "GEMINI_SANDBOX": "false",
        # An untrusted folder silently turns --yolo back into asking for approval, which hangs headless runs.
        "GEMINI_CLI_TRUST_WORKSPACE": "true",
    }
    mounts = [install_dir("gemini")]
    if not node.startswith("/usr/"):
        mounts.append(Path(node))  # of the host's system dirs the sandbox sees only /usr
    return AgentLaunch(argv=argv, env=env, files={".gemini/settings.json": json.dumps(SETTINGS, indent=2)},
                       mounts=mounts)


def prepare(ctx: AgentContext) -> AgentLaunch:
    return _launch(ctx, ctx.prompt, [])


def resume(ctx: AgentContext, message: str) -> AgentLaunch:
    return _launch(ctx, message, ["--resume", "latest"])
