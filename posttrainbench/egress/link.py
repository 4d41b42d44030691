"""Connect a sandboxed agent to the metering proxy.

Without network (`--unshare-net`) the sandbox has only its own loopback: the proxy listens on a unix socket that is
bind-mounted into the sandbox, and a socat relay started before the agent turns 127.0.0.1:RELAY_PORT inside into
that socket (machines.md §3). With host network the agent reaches the proxy's TCP port directly.
"""

import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from posttrainbench.egress.metering import Limits, MeteringProxy, RetryPolicy, Upstream, relay_wrapper
from posttrainbench.errors import PtbError
from posttrainbench.sandbox import Mount

SOCKET_INSIDE = "/run/ptb/llm.sock"
RELAY_PORT = 41987


@dataclass
class LlmLink:
    proxy: MeteringProxy
    base_url: str  # what the agent uses (AgentContext.llm_base_url)
    api_key: str  # the per-run key the agent must present (AgentContext.llm_api_key); worthless elsewhere
    mounts: list[Mount] = field(default_factory=list)  # add to the SandboxRequest
    relay: bool = False

    def wrap(self, argv: list[str]) -> list[str]:
        """The agent's argv, preceded by the relay when the sandbox has no network."""
        return relay_wrapper(argv, SOCKET_INSIDE, RELAY_PORT) if self.relay else list(argv)


@contextmanager
def llm_link(
    log_path: Path,
    network: str,
    upstreams: dict[str, Upstream],
    *,
    limits: Limits | None = None,
    policy: RetryPolicy | None = None,
    on_stop: Callable[[str], None] | None = None,
) -> Iterator[LlmLink]:
    """Run a metering proxy for one sandboxed agent; network is the SandboxRequest's ("none" or "host")."""
    if network == "none" and shutil.which("socat") is None:
        raise PtbError("socat is needed to reach the LLM proxy from a sandbox without network: apt-get install socat")
    # A unix socket path must stay under ~107 bytes, which run directories can exceed.
    folder = Path(tempfile.mkdtemp(prefix="ptb-llm-"))
    key = f"ptb-run-{secrets.token_hex(12)}"
    options = dict(limits=limits, policy=policy, on_stop=on_stop, client_key=key)
    try:
        if network == "none":
            socket = folder / "llm.sock"
            with MeteringProxy(upstreams, log_path, socket_path=socket, **options) as proxy:
                yield LlmLink(proxy, f"http://127.0.0.1:{RELAY_PORT}", key, [Mount(socket, SOCKET_INSIDE)], relay=True)
        else:
            with MeteringProxy(upstreams, log_path, port=0, **options) as proxy:
                yield LlmLink(proxy, proxy.url, key)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
