"""The network of one agent run, by mode:

- `proxied`: no network in the sandbox (`--unshare-net`); a relay inside turns 127.0.0.1:PROXY_PORT into the
  egress proxy's unix socket, bind-mounted in. The proxy (mitmproxy) logs every request to egress.jsonl and applies
  the deny policy; its run-local CA is trusted inside (system bundle replaced, and the usual variables set).
- `offline`: no network at all, and the hub libraries told so.
- `open`: the host's network, as the original. Clients that honour the proxy variables still go through the same
  proxy, which logs and hashes but denies nothing (`would_deny` marks what `proxied` would have refused).

The LLM metering proxy (egress/link.py) is separate and stays direct: its relay address is in `no_proxy`.
"""

import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from posttrainbench.egress.metering import relay_wrapper
from posttrainbench.egress.policy import EgressPolicy, compile_policy, load_policy
from posttrainbench.egress.proxy import EgressProxy, system_ca_bundle
from posttrainbench.errors import PtbError
from posttrainbench.sandbox import Mount
from posttrainbench.specs import BenchmarkSpec, ModelSpec

EGRESS_LOG = "egress.jsonl"
POLICY_RECORD = "egress_policy.json"
CONSOLE_LOG = "logs/egress_proxy.log"
SOCKET_INSIDE = "/run/ptb/egress.sock"
CA_INSIDE = "/run/ptb/egress-ca.pem"
PROXY_PORT = 3128
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
# Variables through which common clients find a CA bundle: OpenSSL/Python, requests, curl, pip, git, uv, npm,
# node (which adds to its own list), AWS SDKs.
CA_VARIABLES = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "PIP_CERT", "GIT_SSL_CAINFO",
                "NPM_CONFIG_CAFILE", "AWS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS")


@dataclass
class EgressSession:
    mode: Literal["open", "proxied", "offline"]
    network: Literal["host", "none"]  # for SandboxRequest.network
    mounts: list[Mount] = field(default_factory=list)  # add to the SandboxRequest's
    env: dict[str, str] = field(default_factory=dict)  # add to the SandboxRequest's
    log_path: Path | None = None  # egress.jsonl, None when offline
    proxy: EgressProxy | None = None
    _state: Path | None = None

    def wrap(self, argv: list[str]) -> list[str]:
        """The agent's argv, preceded by the relay to the proxy when the sandbox has no network."""
        if self.proxy is not None and self.proxy.socket_path is not None:
            return relay_wrapper(argv, SOCKET_INSIDE, PROXY_PORT)
        return list(argv)

    def alive(self) -> bool:
        return self.proxy is None or self.proxy.alive()

    @property
    def failure(self) -> str | None:
        """Why the run must stop (the proxy died), else None: pass as `sandbox.run(..., stop=session.stop_reason)`."""
        return self.proxy.failure if self.proxy is not None else None

    def stop_reason(self) -> str | None:
        return self.failure

    def close(self) -> None:
        if self.proxy is not None:
            self.proxy.close()
        if self._state is not None:
            shutil.rmtree(self._state, ignore_errors=True)  # holds the CA's private key
            self._state = None

    def __enter__(self) -> "EgressSession":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def start_egress(
    mode: str,
    run_dir: Path,
    policy: EgressPolicy | None = None,
    *,
    base_model: ModelSpec,
    benchmark: BenchmarkSpec,
    backend: str = "bwrap",
    on_failure: Callable[[str], None] | None = None,
    upstream_ca: Path | None = None,
    resolve: dict[str, tuple[str, int]] | None = None,
) -> EgressSession:
    """Set up the network of one run. `policy` defaults to default_policy.yaml.

    With the sandbox backend `none` (no network namespace, debugging only) a proxied run keeps the host's network
    and reaches the proxy on a loopback port: the policy then holds only for clients that honour the proxy variables.

    `on_failure(reason)` is called from a watchdog thread if the proxy dies; `session.failure` says the same.
    `upstream_ca` (a PEM bundle the proxy trusts upstream) and `resolve` ({host: (address, port)}: where the proxy
    connects instead of resolving the host) serve tests and private mirrors.
    """
    if mode == "offline":
        return EgressSession("offline", "none", env=dict(OFFLINE_ENV))
    if mode not in ("open", "proxied"):
        raise PtbError(f"unknown network mode {mode!r} (open, proxied or offline)")
    compiled = compile_policy(policy or load_policy(), mode=mode, base_model=base_model, benchmark=benchmark)
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    (Path(run_dir) / POLICY_RECORD).write_text(json.dumps(compiled, indent=1))  # what this run was held to
    relayed = mode == "proxied" and backend != "none"
    # A unix socket path must stay under ~107 bytes, which run directories can exceed.
    state = Path(tempfile.mkdtemp(prefix="ptb-egress-"))
    session = EgressSession(mode, "none" if relayed else "host", _state=state)
    try:
        session.proxy = EgressProxy(
            compiled, state, Path(run_dir) / EGRESS_LOG, Path(run_dir) / CONSOLE_LOG,
            socket_path=state / "egress.sock" if relayed else None,
            upstream_ca=upstream_ca, resolve=resolve, on_failure=on_failure,
        )
        ca = session.proxy.start()
        system = system_ca_bundle()
        bundle = state / "ca-bundle.pem"
        bundle.write_bytes(system.read_bytes().rstrip(b"\n") + b"\n" + ca)
    except BaseException:
        session.close()
        raise
    session.log_path = session.proxy.log_path
    session.mounts = _trust_mounts(bundle, system)
    if relayed:
        session.mounts.append(Mount(session.proxy.socket_path, SOCKET_INSIDE))
    session.env = _proxy_env(f"http://127.0.0.1:{PROXY_PORT}" if relayed else session.proxy.url)
    return session


def _trust_mounts(bundle: Path, system: Path) -> list[Mount]:
    """The combined bundle at a fixed path, and over the system bundle for clients that read only that."""
    mounts = [Mount(bundle, CA_INSIDE)]
    real = Path(system).resolve()
    if str(real).startswith(("/etc/", "/usr/")):  # the parts of the host the sandbox sees
        mounts.append(Mount(bundle, str(real)))
    return mounts


def _proxy_env(url: str) -> dict[str, str]:
    env = {}
    for name in ("http_proxy", "https_proxy"):
        env[name] = env[name.upper()] = url
    env["no_proxy"] = env["NO_PROXY"] = "localhost,127.0.0.1,::1"
    env |= {name: CA_INSIDE for name in CA_VARIABLES}
    # hf_xet fetches through its own client, which may not trust the proxy's CA; plain HTTP downloads are logged
    # and hashed file by file.
    env["HF_HUB_DISABLE_XET"] = "1"
    return env
