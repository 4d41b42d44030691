"""The LLM metering proxy: runs outside the sandbox, holds the real API keys, meters every call.

The agent sees a local base URL and a dummy key. The proxy drops whatever credentials the agent sent, adds the
real key of the provider the request's path belongs to, forwards to the upstream and streams the answer back
unchanged while reading its token usage. Every call becomes one JSON line in the metering log.

Upstream failures before the first response byte (429, 5xx, 529, connection errors) are retried here with
bounded backoff, so the time an agent spends blocked on a flaky provider is visible and can be subtracted from
its working time. Only inference and token-counting endpoints are forwarded (endpoints.py); anything else gets a
403. When retries are exhausted, or a token or dollar limit is reached, the agent gets a 400 error:
every CLI treats 4xx (other than 408/409/429) as fatal and exits instead of retrying forever, and `stop_reason`
tells the harness why.

Subscription logins (a Claude OAuth token, a Codex ChatGPT auth.json) are opt-in via `subscription_upstreams`;
they are wired like API keys but untested against the real services, and Codex tokens are not refreshed.
"""

import asyncio
import json
import os
import random
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable
from urllib.parse import urlencode

import aiohttp
from aiohttp import web
from yarl import URL

from posttrainbench.egress.endpoints import Endpoint, endpoint_for, provider_guess, refusal
from posttrainbench.egress.prices import Price, cost_usd
from posttrainbench.egress.redact import redact_text
from posttrainbench.egress.usage import USAGE_KEYS, UsageMeter
from posttrainbench.errors import PtbError
from posttrainbench.specs.run import DEFAULT_LLM_TOKENS, DEFAULT_LLM_USD, LlmLimits

DEFAULT_AUTH = {"anthropic": "x-api-key", "openai": "bearer", "gemini": "x-goog-api-key"}
DEFAULT_BASE = {
    "anthropic": "https://api.anthropic.com",
    "openai": "https://api.openai.com",
    "gemini": "https://generativelanguage.googleapis.com",
}
KEY_ENV = {"anthropic": ("ANTHROPIC_API_KEY",), "openai": ("OPENAI_API_KEY",), "gemini": ("GEMINI_API_KEY", "GOOGLE_API_KEY")}
# Credentials the agent may send (dummy values) and hop-by-hop headers that must not be forwarded.
DROP_REQUEST = {"x-api-key", "authorization", "x-goog-api-key", "host", "content-length", "transfer-encoding",
                "connection", "keep-alive", "accept-encoding", "proxy-authorization", "upgrade"}
DROP_RESPONSE = {"content-length", "transfer-encoding", "connection", "keep-alive", "content-encoding"}


@dataclass
class Upstream:
    base_url: str
    key: str | None = None
    auth: str | None = None  # x-api-key | bearer | x-goog-api-key; None = the provider's usual header
    headers: dict[str, str] = field(default_factory=dict)
    anthropic_beta: str | None = None  # appended to the agent's anthropic-beta header (OAuth needs one)
    strip_prefix: str = ""  # removed from the request path before it is appended to base_url


@dataclass
class RetryPolicy:
    attempts: int = 8
    base_delay_s: float = 1.0
    max_delay_s: float = 60.0
    give_up_after_s: float = 900.0  # total time one call may spend retrying
    statuses: frozenset[int] = frozenset({408, 429, 500, 502, 503, 504, 520, 522, 524, 529})
    connect_timeout_s: float = 15.0
    read_timeout_s: float = 900.0  # between two chunks of a stream (long reasoning pauses)

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_delay_s)
        backoff = self.base_delay_s * 2 ** (attempt - 1)
        return min(backoff * (0.75 + random.random() / 2), self.max_delay_s)


@dataclass
class Limits:
    """On by default (specs.run.LlmLimits holds the documented defaults); None = no limit."""

    max_tokens: int | None = DEFAULT_LLM_TOKENS  # input + output tokens over all calls
    max_cost_usd: float | None = DEFAULT_LLM_USD
    # Calls forwarded at once; more wait. A limit is checked as calls end, so this bounds how far the calls in
    # flight when it is reached can take the run past it.
    max_concurrent: int = 16

    @classmethod
    def of(cls, spec: LlmLimits) -> "Limits":
        return cls(max_tokens=spec.max_tokens, max_cost_usd=spec.max_usd)


def upstreams_from_env(env: dict[str, str] | None = None) -> dict[str, Upstream]:
    """Real keys from the harness's environment; PTB_<PROVIDER>_UPSTREAM overrides the base URL."""
    env = dict(os.environ if env is None else env)
    upstreams = {}
    for provider, names in KEY_ENV.items():
        key = next((env[name] for name in names if env.get(name)), None)
        if key:
            base = env.get(f"PTB_{provider.upper()}_UPSTREAM", DEFAULT_BASE[provider])
            upstreams[provider] = Upstream(base, key)
    return upstreams


def subscription_upstreams(claude_oauth_token: str | None = None, codex_auth_json: Path | None = None) -> dict[str, Upstream]:
    """Opt-in subscription logins. The token stays outside the sandbox like an API key."""
    upstreams = {}
    if claude_oauth_token:
        upstreams["anthropic"] = Upstream(DEFAULT_BASE["anthropic"], claude_oauth_token, auth="bearer",
                                          anthropic_beta="oauth-2025-04-20")
    if codex_auth_json:
        try:
            auth = json.loads(Path(codex_auth_json).read_text())
        except (OSError, ValueError) as error:
            raise PtbError(f"cannot read Codex login {codex_auth_json}: {error}") from None
        if auth.get("OPENAI_API_KEY"):
            upstreams["openai"] = Upstream(DEFAULT_BASE["openai"], auth["OPENAI_API_KEY"])
        else:
            tokens = auth.get("tokens") or {}
            if not tokens.get("access_token"):
                raise PtbError(f"{codex_auth_json} holds neither OPENAI_API_KEY nor tokens.access_token")
            headers = {"chatgpt-account-id": tokens["account_id"]} if tokens.get("account_id") else {}
            upstreams["openai"] = Upstream("https://chatgpt.com/backend-api/codex", tokens["access_token"],
                                           headers=headers, strip_prefix="/v1")
    return upstreams


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _fatal(api: str | None, message: str, status: int = 400) -> web.Response:
    """An error in the provider's own shape that no CLI retries, so the agent shows the message and stops."""
    refused = status == 403
    if api == "anthropic":
        kind = "permission_error" if refused else "invalid_request_error"
        body = {"type": "error", "error": {"type": kind, "message": message}}
    elif api == "gemini":
        body = {"error": {"code": status, "message": message,
                          "status": "PERMISSION_DENIED" if refused else "FAILED_PRECONDITION"}}
    else:
        body = {"error": {"message": message, "type": "invalid_request_error", "code": "ptb_proxy"}}
    return web.json_response(body, status=status)


def _describe(error: BaseException) -> str:
    if isinstance(error, aiohttp.ClientConnectorError):
        return f"cannot connect to {error.host}:{error.port} ({error.os_error.strerror or error.os_error})"
    if isinstance(error, asyncio.TimeoutError):
        return "timed out"
    return f"{type(error).__name__}: {error}"[:300]


def _retry_after(headers) -> float | None:
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value:
            try:
                return float(value) * scale
            except ValueError:
                return None
    return None


class MeteringProxy:
    """Start with `with MeteringProxy(...) as proxy:` (serves from a background thread).

    Listens on `socket_path` (a unix socket, for sandboxes without network) and/or 127.0.0.1:`port`
    (0 = any free port; `url` tells which)."""

    def __init__(
        self,
        upstreams: dict[str, Upstream],
        log_path: Path,
        *,
        socket_path: Path | None = None,
        port: int | None = None,
        policy: RetryPolicy | None = None,
        limits: Limits | None = None,
        prices: dict[str, Price] | None = None,
        on_stop: Callable[[str], None] | None = None,
        client_key: str | None = None,
    ):
        if socket_path is None and port is None:
            raise PtbError("the metering proxy needs a unix socket path or a TCP port")
        self.upstreams = upstreams
        self._keys = [upstream.key for upstream in upstreams.values() if upstream.key]
        self.log_path = Path(log_path)
        self.socket_path = Path(socket_path) if socket_path else None
        self.port = port
        self.policy = policy or RetryPolicy()
        self.limits = limits or Limits()
        self.prices = prices
        self.on_stop = on_stop
        # When set, only clients presenting this (per-run, worthless elsewhere) key are served: with host network
        # any local process could otherwise spend the real keys.
        self.client_key = client_key
        self.url: str | None = None
        self.totals = {"calls": 0, "errors": 0, "failed_attempts": 0, "cost_usd": 0.0, **dict.fromkeys(USAGE_KEYS, 0)}
        self.unpriced_models: set[str] = set()
        self.stop_reason: str | None = None
        self.upstream_down = False
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._in_flight: asyncio.Semaphore | None = None

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def __enter__(self) -> "MeteringProxy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> "MeteringProxy":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._serve, name="ptb-metering", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._startup_error is not None:
            raise PtbError(f"metering proxy failed to start: {self._startup_error}")
        return self

    def stop(self) -> None:
        if self._loop and self._thread and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(15)

    @property
    def limit_reached(self) -> bool:
        return self.stop_reason is not None and not self.upstream_down

    def summary(self) -> dict:
        with self._lock:
            return {**self.totals, "stop_reason": self.stop_reason, "unpriced_models": sorted(self.unpriced_models)}

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._open())
        except BaseException as error:  # reported to start() in the caller's thread
            self._startup_error = error
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._close())
            loop.close()

    async def _open(self) -> None:
        self._in_flight = asyncio.Semaphore(self.limits.max_concurrent)
        timeout = aiohttp.ClientTimeout(total=None, connect=self.policy.connect_timeout_s,
                                        sock_read=self.policy.read_timeout_s)
        self._session = aiohttp.ClientSession(timeout=timeout, auto_decompress=False)
        app = web.Application(client_max_size=512 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=5)
        await self._runner.setup()
        if self.socket_path:
            self.socket_path.parent.mkdir(parents=True, exist_ok=True)
            self.socket_path.unlink(missing_ok=True)
            await web.UnixSite(self._runner, str(self.socket_path)).start()
            # The agent may run as another uid inside the sandbox.
            os.chmod(self.socket_path, 0o666)
        if self.port is not None:
            listener = socket.socket()
            listener.bind(("127.0.0.1", self.port))
            await web.SockSite(self._runner, listener).start()
            self.port = listener.getsockname()[1]
            self.url = f"http://127.0.0.1:{self.port}"

    async def _close(self) -> None:
        if self._runner:
            await self._runner.cleanup()
        if self._session:
            await self._session.close()
        if self.socket_path:
            self.socket_path.unlink(missing_ok=True)

    # -- one call ------------------------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.rel_url.raw_path
        if request.method == "HEAD" and path == "/":
            return web.Response(status=200)  # Claude Code's preconnect probe
        endpoint = endpoint_for(request.method, path)
        api = endpoint.api if endpoint else provider_guess(path)
        record = {"t": _now(), "provider": endpoint.provider if endpoint else None, "method": request.method,
                  "path": path[:500], "model": None, "status": None, "attempts": 0, "failures": [], "retry_s": 0.0}
        started = time.monotonic()
        if endpoint is None:
            return self._refuse(record, started, api, refusal(request.method, path), status=403)
        body = await request.read()
        record["model"] = self._request_model(api, path, body)
        upstream = self.upstreams.get(endpoint.provider)
        if upstream is None:
            return self._refuse(record, started, api, f"no upstream configured for {endpoint.provider}")
        if self.client_key and self.client_key not in self._presented_keys(request):
            return self._refuse(record, started, api, "the client did not present this run's key", status=401)
        async with self._in_flight:
            if self.stop_reason:
                return self._refuse(record, started, api, self.stop_reason)
            return await self._forward(request, endpoint, upstream, body, record, started)

    def _refuse(self, record: dict, started: float, api: str | None, reason: str, status: int = 400) -> web.Response:
        record["status"], record["error"] = status, reason
        return self._finish(record, started, _fatal(api, f"ptb proxy: {reason}", status))

    @staticmethod
    def _presented_keys(request: web.Request) -> set[str]:
        keys = {request.headers.get("x-api-key", ""), request.headers.get("x-goog-api-key", ""),
                request.rel_url.query.get("key", "")}
        authorization = request.headers.get("authorization", "")
        keys.add(authorization[7:] if authorization.lower().startswith("bearer ") else authorization)
        return keys - {""}

    @staticmethod
    def _request_model(api: str | None, path: str, body: bytes) -> str | None:
        if api == "gemini":
            return path.rsplit("/", 1)[-1].split(":")[0]
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            return None
        return data.get("model") if isinstance(data, dict) else None

    @staticmethod
    def _target(request: web.Request, provider: str, upstream: Upstream) -> tuple[str, dict[str, str]]:
        path = request.rel_url.raw_path
        if upstream.strip_prefix and path.startswith(upstream.strip_prefix):
            path = path[len(upstream.strip_prefix):]
        query = [(k, v) for k, v in request.rel_url.query.items() if k != "key"]
        url = upstream.base_url.rstrip("/") + path
        if query:
            url += "?" + urlencode(query)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in DROP_REQUEST}
        headers["accept-encoding"] = "identity"
        auth = upstream.auth or DEFAULT_AUTH[provider]
        if upstream.key:
            if auth == "bearer":
                headers["authorization"] = f"Bearer {upstream.key}"
            else:
                headers[auth] = upstream.key
        if upstream.anthropic_beta:
            current = request.headers.get("anthropic-beta")
            headers["anthropic-beta"] = f"{current},{upstream.anthropic_beta}" if current else upstream.anthropic_beta
        headers.update(upstream.headers)
        return url, headers

    async def _forward(self, request, endpoint: Endpoint, upstream, body, record, started) -> web.StreamResponse:
        api = endpoint.api
        url, headers = self._target(request, record["provider"], upstream)
        policy = self.policy
        while True:
            record["attempts"] += 1
            attempt_started = time.monotonic()
            failure: dict | None = None
            try:
                upstream_response = await self._session.request(request.method, URL(url, encoded=True), headers=headers,
                                                                data=body, allow_redirects=False)
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as error:
                failure = {"status": None, "error": _describe(error)}
                upstream_response = None
            if upstream_response is not None and upstream_response.status in policy.statuses:
                text = (await upstream_response.read())[:300].decode(errors="replace")
                # Providers quote (masked) keys in auth errors; never let a real one reach the log.
                failure = {"status": upstream_response.status, "error": redact_text(text, self._keys)}
                retry_after = _retry_after(upstream_response.headers)
                upstream_response.release()
            else:
                retry_after = None
            if failure is None:
                break
            failure["t"] = _now()
            failure["attempt_s"] = round(time.monotonic() - attempt_started, 3)
            elapsed = time.monotonic() - started
            delay = policy.delay(record["attempts"], retry_after)
            if record["attempts"] >= policy.attempts or elapsed + delay > policy.give_up_after_s:
                record["failures"].append(failure)
                record["retry_s"] = round(time.monotonic() - started, 3)
                what = f"HTTP {failure['status']}" if failure["status"] else failure["error"]
                reason = f"upstream failed after {record['attempts']} attempts ({what})"
                self._give_up(reason)
                return self._refuse(record, started, api, reason)
            failure["delay_s"] = round(delay, 3)
            record["failures"].append(failure)
            await asyncio.sleep(delay)
        record["retry_s"] = round(attempt_started - started, 3)
        return await self._relay(request, endpoint, body, upstream_response, record, started)

    async def _relay(self, request, endpoint: Endpoint, body: bytes, upstream_response, record,
                     started) -> web.StreamResponse:
        record["status"] = upstream_response.status
        response = web.StreamResponse(status=upstream_response.status, reason=upstream_response.reason)
        for name, value in upstream_response.headers.items():
            if name.lower() not in DROP_RESPONSE:
                response.headers.add(name, value)
        event_stream = upstream_response.headers.get("content-type", "").startswith("text/event-stream")
        record["stream"] = event_stream
        meter = UsageMeter(endpoint.api)
        await response.prepare(request)
        broken = client_gone = False
        received = 0
        try:
            async for chunk in upstream_response.content.iter_any():
                received += len(chunk)
                meter.feed(chunk, event_stream)
                if client_gone:
                    continue
                try:
                    await response.write(chunk)
                except ConnectionError:
                    # Read on to the end: the usage comes last, and the provider bills the whole answer anyway.
                    client_gone = True
        except (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError) as error:
            record["error"] = f"stream broken: {type(error).__name__}: {error}"[:300]
            broken = True
        finally:
            upstream_response.release()
        if client_gone:
            record["client_gone"] = True
        meter.finish()
        record["model"] = record["model"] or meter.model
        record.update(meter.usage)
        if upstream_response.status < 400 and not endpoint.counts_tokens:
            if not meter.reported:
                # No usage in the answer (e.g. a chat stream without include_usage): count ~4 bytes a token, so
                # that the limits still hold.
                record.update(input_tokens=len(body) // 4, output_tokens=received // 4, usage_estimated=True)
            record["cost_usd"] = cost_usd(record["model"], record["input_tokens"], record["output_tokens"],
                                          record["cached_tokens"], record["cache_write_tokens"], self.prices)
        # Logged before the agent sees the end of the answer, so the log is complete once the agent has exited.
        self._finish(record, started, response)
        if broken or client_gone:
            # Headers are gone already, so this cannot be retried here: break the agent's connection so its own
            # client sees a failed stream and retries.
            if request.transport is not None:
                request.transport.close()
        else:
            await response.write_eof()
        return response

    # -- bookkeeping -----------------------------------------------------------------------------------------

    def _give_up(self, reason: str) -> None:
        self.upstream_down = True
        self._stop(f"LLM API unreachable: {reason}")

    def _stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
            if self.on_stop:
                self.on_stop(reason)

    def _finish(self, record: dict, started: float, response: web.StreamResponse) -> web.StreamResponse:
        record["latency_s"] = round(time.monotonic() - started, 3)
        cost = record.get("cost_usd")
        with self._lock:
            totals = self.totals
            totals["calls"] += 1
            totals["failed_attempts"] += len(record["failures"])
            if record.get("error") or (record["status"] or 0) >= 400:
                totals["errors"] += 1
            for key in USAGE_KEYS:
                totals[key] += record.get(key, 0)
            if cost is not None:
                totals["cost_usd"] += cost
            elif record.get("input_tokens") and record["model"]:
                self.unpriced_models.add(record["model"])
            tokens = totals["input_tokens"] + totals["output_tokens"]
        with self.log_path.open("a") as log:
            log.write(json.dumps(record) + "\n")
        limits = self.limits
        if limits.max_tokens is not None and tokens >= limits.max_tokens:
            self._stop(f"token limit reached ({tokens} >= {limits.max_tokens})")
        if limits.max_cost_usd is not None and self.totals["cost_usd"] >= limits.max_cost_usd:
            self._stop(f"cost limit reached (${self.totals['cost_usd']:.4f} >= ${limits.max_cost_usd:.2f})")
        return response


def read_log(path: Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def relay_wrapper(argv: list[str], socket_path_inside: str, port: int) -> list[str]:
    """Wrap an agent command so that, inside a sandbox without network, 127.0.0.1:port leads to the proxy's
    unix socket (bind-mounted at socket_path_inside). socat must be installed in the sandbox's /usr."""
    script = (
        'sock="$1"; port="$2"; shift 2; '
        'socat TCP-LISTEN:"$port",bind=127.0.0.1,fork,reuseaddr UNIX-CONNECT:"$sock" & '
        "i=0; until socat -u OPEN:/dev/null TCP:127.0.0.1:\"$port\" 2>/dev/null; do "
        'i=$((i+1)); [ "$i" -ge 100 ] && { echo "ptb: LLM relay did not start" >&2; exit 97; }; sleep 0.05; done; '
        'exec "$@"'
    )
    return ["/bin/sh", "-c", script, "ptb-relay", socket_path_inside, str(port), *argv]
