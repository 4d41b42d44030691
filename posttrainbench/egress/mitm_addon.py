"""mitmdump with the run's egress policy: run as `MITMPROXY_PYTHON mitm_addon.py [mitmdump options]`.

Runs in mitmproxy's own interpreter (never imported by posttrainbench). The addon is added to the master before
the options are parsed, so a broken policy or log path stops mitmdump at startup instead of leaving an open proxy;
a failure inside a hook denies the request (fail closed).

Every flow ends as one JSON line in the log: the request, the verdict (rule and reason), the status, body sizes,
and the sha256 of model and data files. Bodies are streamed through and hashed on the fly, never kept in memory.
"""

import asyncio
import hashlib
import importlib.util
import json
import logging
import os
import socket
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from mitmproxy import ctx, http
from mitmproxy.tools import cmdline
from mitmproxy.tools.dump import DumpMaster
from mitmproxy.tools.main import run


def _load_decide():
    spec = importlib.util.spec_from_file_location("ptb_egress_decide", Path(__file__).with_name("decide.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


decide = _load_decide()

BLOCKED = "blocked by PostTrainBench egress policy"
LFS_BATCH = "/info/lfs/objects/batch"


class _Body:
    """Counts, and hashes when asked, a body as mitmproxy streams it through."""

    def __init__(self, hashed: bool) -> None:
        self.size = 0
        self.digest = hashlib.sha256() if hashed else None

    def __call__(self, chunk: bytes) -> bytes:
        self.size += len(chunk)
        if self.digest is not None:
            self.digest.update(chunk)
        return chunk


class EgressAddon:
    def __init__(self) -> None:
        self.decider = None
        self.enforce = True
        self.log = None
        self.resolve: dict[str, tuple[str, int]] = {}
        # CONNECT target of each client connection: requests inside a tunnel carry the address connected to.
        self.tunnels: dict[str, tuple[str, int]] = {}
        # Connections refused after DNS (a private address), by client connection: answered and logged as denials.
        self.refused: dict[str, object] = {}

    def load(self, loader) -> None:
        loader.add_option("ptb_policy", str, "", "compiled egress policy (JSON file)")
        loader.add_option("ptb_log", str, "", "JSONL file that gets one line per request")
        loader.add_option("ptb_resolve", str, "{}", "JSON map host -> [address, port]: where to connect instead")

    def configure(self, updated) -> None:
        if "ptb_policy" in updated and ctx.options.ptb_policy:
            compiled = json.loads(Path(ctx.options.ptb_policy).read_text())
            self.decider = decide.Decider(compiled)
            self.enforce = compiled["mode"] == "proxied"
        if "ptb_log" in updated and ctx.options.ptb_log:
            self.log = open(ctx.options.ptb_log, "a", buffering=1)
        if "ptb_resolve" in updated:
            self.resolve = {k.lower(): (v[0], int(v[1])) for k, v in json.loads(ctx.options.ptb_resolve).items()}

    def running(self) -> None:
        if self.decider is None or self.log is None:
            # An error logged during startup makes mitmdump exit (its errorcheck addon).
            logging.error("ptb egress addon: ptb_policy and ptb_log are required")

    def done(self) -> None:
        configured = self.decider is not None and self.log is not None
        if self.log is not None:
            self.log.close()
        # Nothing after this needs saving, and the interpreter's own teardown would add most of a second to
        # every run's shutdown.
        os._exit(0 if configured else 1)

    # -- connections ----------------------------------------------------------------------------------------------

    async def server_connect(self, data) -> None:
        if not data.server.address:
            return
        host, port = data.server.address
        if host.lower() in self.resolve:
            data.server.address = self.resolve[host.lower()]
            return
        if not self.enforce:
            return
        verdict, addresses = await self._destination(host, port)
        if verdict.allowed:
            # Connect to the address just checked, not to what a second lookup might return.
            data.server.address = (addresses[0], port)
        else:
            self.refused[data.client.id] = verdict
            data.server.error = verdict.reason

    async def _destination(self, host: str, port: int):
        try:
            found = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as error:
            # Fail closed: mitmproxy would look the name up again itself, and connect wherever that leads.
            return self._guarded(lambda: self.decider.unresolved(host, error.strerror or str(error))), []
        addresses = sorted({info[4][0] for info in found}, key=lambda address: ":" in address)  # IPv4 first
        if not addresses:
            return self._guarded(lambda: self.decider.unresolved(host, "no address")), []
        return self._guarded(lambda: self.decider.destination(host, addresses)), addresses

    def client_disconnected(self, client) -> None:
        self.tunnels.pop(client.id, None)
        self.refused.pop(client.id, None)

    def http_connect(self, flow: http.HTTPFlow) -> None:
        self.tunnels[flow.client_conn.id] = (flow.request.host, flow.request.port)
        verdict = self._guarded(lambda: self.decider.connect(flow.request.host, flow.request.port))
        flow.metadata["ptb_verdict"] = verdict
        if self.enforce and not verdict.allowed:
            flow.response = _blocked(verdict)
            self._write(flow, verdict)

    def http_connect_error(self, flow: http.HTTPFlow) -> None:
        refused = self.refused.pop(flow.client_conn.id, None)
        if refused is not None:
            flow.response = _blocked(refused)  # sent after this hook, instead of mitmproxy's 502
            self._write(flow, refused)
            return
        if not flow.metadata.get("ptb_logged"):
            body = flow.response.get_text(strict=False) if flow.response else ""
            self._write(flow, flow.metadata.get("ptb_verdict"), error=body.strip()[:300] or "CONNECT failed")

    def tls_failed_client(self, data) -> None:
        host = self.tunnels.get(data.context.client.id, (data.context.client.sni or "?",))[0]
        self._line({"ts": _now(), "method": "TLS", "host": host, "status": None, "allowed": True,
                    "rule": "tls", "error": f"the client rejected the proxy's certificate: {data.conn.error}"})

    # -- requests -------------------------------------------------------------------------------------------------

    async def requestheaders(self, flow: http.HTTPFlow) -> None:
        request = flow.request
        flow.metadata["ptb_started"] = time.monotonic()
        verdict = self._guarded(lambda: self._decide(flow))
        outside_tunnel = flow.client_conn.id not in self.tunnels
        if self.enforce and verdict.allowed and outside_tunnel and request.host.lower() not in self.resolve:
            # Plain HTTP: refuse a private destination here, with a 403 like every other denial (server_connect
            # would refuse it too, as a bare connection error).
            checked, _ = await self._destination(request.host, request.port)
            if not checked.allowed:
                verdict = checked
        flow.metadata["ptb_verdict"] = verdict
        if self.enforce and not verdict.allowed:
            flow.response = _blocked(verdict)
            return
        body = _Body(False)
        request.stream = body
        flow.metadata["ptb_sent"] = body
        if verdict.hashed:
            # Hash the file as stored, not a compressed transfer of it.
            request.headers["accept-encoding"] = "identity"

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        verdict = flow.metadata.get("ptb_verdict")
        response = flow.response
        if verdict is None or response is None:
            return
        location = response.headers.get("location")
        if verdict.allowed and location and 300 <= response.status_code < 400:
            self._guarded(lambda: self.decider.approve_redirect(location, self._host(flow), verdict))
        if verdict.allowed and flow.request.path.split("?", 1)[0].endswith(LFS_BATCH):
            flow.metadata["ptb_lfs"] = True  # small JSON, read whole in `response`
            return
        body = _Body(verdict.hashed and response.status_code == 200)
        response.stream = body
        flow.metadata["ptb_received"] = body

    def response(self, flow: http.HTTPFlow) -> None:
        verdict = flow.metadata.get("ptb_verdict")
        if flow.metadata.get("ptb_lfs") and flow.response.content:
            self._guarded(lambda: self.decider.approve_lfs_batch(flow.response.content, verdict))
        self._write(flow, verdict)

    def error(self, flow: http.HTTPFlow) -> None:
        refused = self.refused.pop(flow.client_conn.id, None)
        if not flow.metadata.get("ptb_logged"):
            self._write(flow, refused or flow.metadata.get("ptb_verdict"), error=str(flow.error))

    # -- helpers --------------------------------------------------------------------------------------------------

    def _target(self, flow: http.HTTPFlow) -> tuple[str, int]:
        return self.tunnels.get(flow.client_conn.id, (flow.request.host, flow.request.port))

    def _host(self, flow: http.HTTPFlow) -> str:
        return self._target(flow)[0]

    def _decide(self, flow: http.HTTPFlow):
        request = flow.request
        host = self._host(flow)
        path, _, query = request.path.partition("?")
        # Inside a tunnel the port was checked at CONNECT; plain HTTP names its own.
        port = None if flow.client_conn.id in self.tunnels else request.port
        verdict = self.decider.request(request.method, host, path, query, port=port)
        # The Host header picks the site on shared front ends: both names must pass.
        named = _named(request)
        if verdict.allowed and named and named != host.lower():
            other = self.decider.request(request.method, named, path, query, port=port)
            if not other.allowed:
                return other
        return verdict

    def _guarded(self, decision):
        try:
            return decision()
        except Exception as error:  # fail closed: a bug here must not open the network
            logging.error(f"ptb egress addon: {type(error).__name__}: {error}")
            return decide.Verdict(False, "error", f"egress policy error ({type(error).__name__})")

    def _write(self, flow: http.HTTPFlow, verdict, error: str | None = None) -> None:
        request, response = flow.request, flow.response
        flow.metadata["ptb_logged"] = True
        sent, received = flow.metadata.get("ptb_sent"), flow.metadata.get("ptb_received")
        if received is None and response is not None and flow.metadata.get("ptb_lfs"):
            received = _Body(False)
            received(response.raw_content or b"")
        connect = request.method == "CONNECT"
        record = {
            "ts": _now(),
            "method": request.method,
            "scheme": None if connect else request.scheme,
            "host": self._target(flow)[0],
            "port": self._target(flow)[1],
            "path": None if connect else request.path.split("?", 1)[0],
            "status": response.status_code if response is not None else None,
        }
        if verdict is None:
            record.update(allowed=True, rule="none")
        elif verdict.allowed or self.enforce:
            record.update(allowed=verdict.allowed, rule=verdict.rule)
            if verdict.reason:
                record["reason"] = verdict.reason
        else:
            record.update(allowed=True, rule=verdict.rule, would_deny=verdict.reason)
        if not connect:
            record["bytes_out"] = sent.size if sent else 0
            record["bytes_in"] = record["bytes"] = received.size if received else 0
        if verdict is not None and verdict.repo:
            record["repo"] = verdict.repo
        if verdict is not None and verdict.file:
            record["file"] = verdict.file
        if received is not None and received.digest is not None and error is None:
            record["sha256"] = received.digest.hexdigest()
        if response is not None and response.status_code == 206:
            record["content_range"] = response.headers.get("content-range")
        named = _named(request)
        if named and named != record["host"].lower():
            record["host_header"] = named
        started = flow.metadata.get("ptb_started")
        if started is not None:
            record["duration_s"] = round(time.monotonic() - started, 3)
        if error:
            record["error"] = error
        self._line(record)

    def _line(self, record: dict) -> None:
        self.log.write(json.dumps(record) + "\n")


def _blocked(verdict) -> http.Response:
    message = f"{BLOCKED}: {verdict.reason or 'denied'}"
    line = " ".join(message.encode("ascii", "replace").decode().split())[:300]
    response = http.Response.make(
        403,
        f"{message}\n".encode(),
        # X-Error-Message is where huggingface_hub looks for the hub's own error text (a HEAD has no body).
        {"content-type": "text/plain; charset=utf-8", "x-error-message": line, "x-ptb-egress-rule": verdict.rule},
    )
    # Clients that only show the status line of a refused CONNECT (Python's "Tunnel connection failed: 403 ...")
    # still tell the agent why.
    response.reason = line
    return response


def _named(request: http.Request) -> str:
    """The host the Host header (or :authority) names, lower case, without port."""
    header = request.host_header or ""
    if header.startswith("["):
        return header[1:].split("]", 1)[0].lower()
    return header.rsplit(":", 1)[0].lower() if header.count(":") == 1 else header.lower()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Master(DumpMaster):
    def __init__(self, options, **kwargs) -> None:
        super().__init__(options, **kwargs)
        self.addons.add(EgressAddon())


if __name__ == "__main__":
    run(_Master, cmdline.mitmdump, sys.argv[1:])
