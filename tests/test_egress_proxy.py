"""Network modes end to end, in the real bwrap sandbox: a loopback HTTPS server with a CA of its own stands in for
huggingface.co, its LFS CDN and the OpenAI API; the proxy connects to it instead of resolving those names (no DNS
is used) and trusts its CA upstream."""

import hashlib
import json
import shlex
import signal
import ssl
import sys
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from posttrainbench.egress.session import start_egress
from posttrainbench.egress.summary import summarize_egress
from posttrainbench.errors import PtbError
from posttrainbench.sandbox import Mount, SandboxRequest, python_mounts, run
from posttrainbench.specs import get_benchmark, get_model

sys.path.insert(0, str(Path(__file__).parent))
from egress_support import certificates, missing_tools  # noqa: E402

pytestmark = pytest.mark.bwrap

HOSTS = ["huggingface.co", "cdn-lfs.hf.co", "api.openai.com"]
COMMIT = "ea980cb0a6c2ae4b936e82123acc929f1cec04c1"
WEIGHTS = bytes(range(256)) * 4096  # 1 MiB, streamed through the proxy
FILES = {
    "/Qwen/Qwen3-1.7B-Base/resolve/main/config.json": b'{"model_type": "qwen3"}',
    "/Qwen/Qwen3-1.7B-Base/resolve/main/model.safetensors": WEIGHTS,
    "/Qwen/Qwen3-1.7B/resolve/main/config.json": b'{"model_type": "qwen3", "instruct": true}',
    "/datasets/openai/gsm8k/resolve/main/main/train-00000-of-00001.parquet": b"PAR1 train rows",
    "/datasets/openai/gsm8k/resolve/main/main/test-00000-of-00001.parquet": b"PAR1 test rows",
    "/v1/models": b'{"data": []}',
}
LFS = {hashlib.sha256(body).hexdigest(): body for path, body in FILES.items() if path.endswith(".safetensors")}


if missing_tools():
    pytest.skip(missing_tools(), allow_module_level=True)


class FakeHub:
    """HTTPS on 127.0.0.1 for HOSTS: small files answered directly, LFS files redirected to the CDN as the hub does."""

    def __init__(self, folder: Path) -> None:
        self.ca, pem = certificates(folder, HOSTS)
        self.seen: list[str] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_HEAD(self) -> None:
                self._answer(head=True)

            def do_GET(self) -> None:
                self._answer(head=False)

            def _answer(self, head: bool) -> None:
                path = self.path.split("?", 1)[0]
                hub.seen.append(f"{self.headers['Host']}{path}")
                body = FILES.get(path) if self.headers["Host"] != "cdn-lfs.hf.co" else LFS.get(path.rsplit("/", 1)[-1])
                if body is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                digest = hashlib.sha256(body).hexdigest()
                if path.endswith(".safetensors"):
                    self.send_response(302)
                    self.send_header("Location", f"https://cdn-lfs.hf.co/repos/7f/3a/{digest}?X-Amz-Signature=abc")
                    self.send_header("X-Linked-Etag", f'"{digest}"')
                    self.send_header("X-Linked-Size", str(len(body)))
                    self.send_header("Content-Length", "0")
                    body = b""
                else:
                    self.send_response(200)
                    self.send_header("ETag", f'"{digest[:40]}"')
                    self.send_header("Content-Length", str(len(body)))
                self.send_header("X-Repo-Commit", COMMIT)
                self.end_headers()
                if not head:
                    self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(pem)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.resolve = {host: ("127.0.0.1", self.port) for host in HOSTS}
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def hub(tmp_path_factory) -> FakeHub:
    hub = FakeHub(tmp_path_factory.mktemp("hub"))
    yield hub
    hub.server.shutdown()


def _egress(mode: str, run_dir: Path, hub: FakeHub, **kwargs):
    return start_egress(mode, run_dir, base_model=get_model("qwen3-1.7b-base"), benchmark=get_benchmark("gsm8k"),
                        upstream_ca=hub.ca, resolve=hub.resolve, **kwargs)


def _sandboxed(session, run_dir: Path, script: str, **kwargs):
    # Not /work: checkouts and their interpreters may live there.
    request = SandboxRequest(
        argv=session.wrap(["/bin/sh", "-c", script]),
        cwd="/job",
        mounts=[*python_mounts(), Mount(run_dir / "work", "/job", writable=True), *session.mounts],
        env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": "/job", "HF_HOME": "/job/hf",
             **session.env},
        network=session.network,
    )
    (run_dir / "work").mkdir(exist_ok=True)
    log = run_dir / "logs" / "agent.log"
    info = run(request, backend="bwrap", time_limit_s=120, log_path=log, grace_s=1, **kwargs)
    return info, log.read_text()


def _python(code: str) -> str:
    return f"python -c {shlex.quote(textwrap.dedent(code))}"


def _records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "egress.jsonl").read_text().splitlines()]


def test_proxied_mode_allows_logs_hashes_and_denies(hub, tmp_path):
    direct = f"socket.create_connection(('127.0.0.1', {hub.port}), timeout=3)"
    script = "\n".join([
        # The proxy may still be starting: the relay's connection waits for it.
        "curl -sS -f https://huggingface.co/Qwen/Qwen3-1.7B-Base/resolve/main/config.json -o config.json",
        "echo CONFIG=$(sha256sum config.json | cut -c1-64)",
        # Clients that know only the system's CA store trust the proxy too.
        "env -u SSL_CERT_FILE -u CURL_CA_BUNDLE curl -sS -f -o /dev/null "
        "https://huggingface.co/Qwen/Qwen3-1.7B-Base/resolve/main/config.json; echo SYSTEM_STORE=$?",
        # One that brings its own CA list refuses the proxy's certificate, and the proxy says so in the log.
        "curl -sS -o /dev/null --cacert \"$(python -c 'import certifi; print(certifi.where())')\" "
        "https://huggingface.co/Qwen/Qwen3-1.7B-Base/resolve/main/config.json; echo OWN_CAS=$?",
        _python("""
            import hashlib
            from huggingface_hub import hf_hub_download
            path = hf_hub_download("Qwen/Qwen3-1.7B-Base", "model.safetensors")
            print("WEIGHTS=" + hashlib.sha256(open(path, "rb").read()).hexdigest())
            path = hf_hub_download("openai/gsm8k", "main/train-00000-of-00001.parquet", repo_type="dataset")
            print("TRAIN=" + open(path).read())
            try:
                hf_hub_download("Qwen/Qwen3-1.7B", "config.json")
            except Exception as error:
                # hf_hub_download reports a refused HEAD as "not in the local cache", caused by the 403.
                print("TWIN_ERROR=" + " ".join(str(error.__cause__).split()))
        """),
        "echo TEST_SPLIT=$(curl -sS -w ' %{http_code}' "
        "https://huggingface.co/datasets/openai/gsm8k/resolve/main/main/test-00000-of-00001.parquet)",
        "echo CDN=$(curl -sS -w ' %{http_code}' https://cdn-lfs.hf.co/repos/00/00/unapproved)",
        _python("""
            import urllib.request
            try:
                urllib.request.urlopen("https://api.openai.com/v1/models")
            except Exception as error:
                print("LLM=" + str(error))
        """),
        "curl -sS --noproxy '*' https://huggingface.co/ -o /dev/null; echo NOPROXY=$?",
        # Through the proxy, names of the host's own or private addresses lead nowhere either.
        # (--noproxy '': localhost is in no_proxy, where it means the sandbox's own loopback.)
        "echo LOCAL_TLS=$(curl -sS --noproxy '' -o /dev/null -w '%{http_connect}' https://localhost/)",
        "echo LOCAL_HTTP=$(curl -sS --noproxy '' -w ' %{http_code}' http://localhost/v1/models)",
        # Only web ports, and only names: the host's services on other ports stay out of reach.
        f"echo PORT=$(curl -sS -o /dev/null -w '%{{http_connect}}' https://huggingface.co:{hub.port}/)",
        _python(f"""
            import socket
            try:
                {direct}
                print("DIRECT=connected")
            except OSError as error:
                print("DIRECT=" + type(error).__name__)
        """),
    ])
    with _egress("proxied", tmp_path, hub) as session:
        assert session.network == "none" and session.env["https_proxy"] == "http://127.0.0.1:3128"
        info, out = _sandboxed(session, tmp_path, script)
        state = session._state
        assert (state / "mitmproxy" / "mitmproxy-ca.pem").exists()
    assert not state.exists()  # the CA's private key went with the session
    assert info.status == "finished", out
    values = dict(line.split("] ", 1)[1].split("=", 1) for line in out.splitlines() if "=" in line and "] " in line
                  and line.split("] ", 1)[1].split("=", 1)[0].isupper())

    # Allowed: the base model (directly and through the CDN redirect) and the train split, each logged with its hash.
    config = FILES["/Qwen/Qwen3-1.7B-Base/resolve/main/config.json"]
    assert values["CONFIG"] == hashlib.sha256(config).hexdigest()
    assert values["WEIGHTS"] == hashlib.sha256(WEIGHTS).hexdigest()
    assert values["TRAIN"] == "PAR1 train rows"
    assert values["SYSTEM_STORE"] == "0" and values["OWN_CAS"] != "0"
    records = _records(tmp_path)
    hashed = {(r["host"], r.get("file")): r for r in records if r.get("sha256")}
    weights = hashed[("cdn-lfs.hf.co", "model.safetensors")]
    assert weights["sha256"] == hashlib.sha256(WEIGHTS).hexdigest() and weights["bytes_in"] == len(WEIGHTS)
    assert weights["repo"] == "models/Qwen/Qwen3-1.7B-Base" and weights["rule"] == "hub-storage"
    assert hashed[("huggingface.co", "config.json")]["sha256"] == values["CONFIG"]
    assert hashed[("huggingface.co", "main/train-00000-of-00001.parquet")]["allowed"] is True

    # Denied, with a reason the agent reads, logged, and never forwarded upstream.
    assert "403" in values["TWIN_ERROR"] and "instruct twin" in values["TWIN_ERROR"]
    assert values["TEST_SPLIT"].endswith(" 403") and "test set of GSM8K" in values["TEST_SPLIT"]
    assert "no allowed hub request redirected to" in values["CDN"] and values["CDN"].endswith(" 403")
    assert "Tunnel connection failed: 403 blocked by PostTrainBench egress policy: api.openai.com is an LLM API" \
        in values["LLM"]
    [refused] = [r for r in records if r["method"] == "TLS"]
    assert refused["host"] == "huggingface.co" and "rejected the proxy's certificate" in refused["error"]
    denied = {(r["host"], r.get("path")): r for r in records if r["allowed"] is False}
    assert denied[("huggingface.co", "/Qwen/Qwen3-1.7B/resolve/main/config.json")]["rule"] == "hub-model"
    assert denied[("huggingface.co", "/datasets/openai/gsm8k/resolve/main/main/test-00000-of-00001.parquet")]
    assert denied[("api.openai.com", None)]["method"] == "CONNECT"
    assert all(r["status"] == 403 for r in denied.values())
    assert not [seen for seen in hub.seen if "Qwen3-1.7B/" in seen or "test-000" in seen or "/v1/" in seen]

    # No way around the proxy: no DNS, no route to the host's loopback.
    assert values["NOPROXY"] != "0"
    assert values["LOCAL_TLS"] == "403"
    assert "localhost resolves to 127.0.0.1, a local or private address" in values["LOCAL_HTTP"]
    assert [r["rule"] for r in records if r["host"] == "localhost"] == ["private-address"] * 2
    assert values["PORT"] == "403"
    assert [r for r in records if r.get("port") == hub.port][0]["rule"] == "port"
    assert values["DIRECT"] in ("ConnectionRefusedError", "OSError", "TimeoutError")

    assert json.loads((tmp_path / "egress_policy.json").read_text())["hub"]["instruct_twin"] == "Qwen/Qwen3-1.7B"
    summary = summarize_egress(tmp_path)
    assert summary["denied_count"] == len(denied) >= 4
    assert {d["sha256"] for d in summary["downloads"]} >= {values["WEIGHTS"], values["CONFIG"]}
    assert summary["hosts"][0]["host"] == "huggingface.co"


def test_offline_mode_connects_nowhere(hub, tmp_path):
    script = "\n".join([
        "echo OFFLINE=$HF_HUB_OFFLINE PROXY=${https_proxy:-none}",
        "curl -sS -m 5 https://huggingface.co/ -o /dev/null; echo CURL=$?",
        _python(f"""
            import socket
            for target in [("127.0.0.1", {hub.port}), ("huggingface.co", 443)]:
                try:
                    socket.create_connection(target, timeout=3)
                    print("CONNECTED", target)
                except OSError as error:
                    print("FAILED", target[0], type(error).__name__)
        """),
    ])
    with start_egress("offline", tmp_path, base_model=get_model("qwen3-1.7b-base"),
                      benchmark=get_benchmark("gsm8k")) as session:
        assert session.network == "none" and session.mounts == []
        info, out = _sandboxed(session, tmp_path, script)
    assert info.status == "finished", out
    assert "OFFLINE=1 PROXY=none" in out
    assert "CURL=0" not in out and "CONNECTED" not in out
    assert out.count("FAILED") == 2
    assert summarize_egress(tmp_path) is None


def test_open_mode_logs_what_proxied_would_deny(hub, tmp_path):
    script = "\n".join([
        "curl -sS -f https://huggingface.co/Qwen/Qwen3-1.7B/resolve/main/config.json; echo",
        # The host network is there: a client that ignores the proxy variables goes straight out, unlogged.
        f"curl -sS -k --noproxy '*' -H 'Host: huggingface.co' https://127.0.0.1:{hub.port}/v1/models; echo",
    ])
    with _egress("open", tmp_path, hub) as session:
        assert session.network == "host" and session.env["https_proxy"].startswith("http://127.0.0.1:")
        info, out = _sandboxed(session, tmp_path, script)
    assert info.status == "finished", out
    assert '"instruct": true' in out and '{"data": []}' in out
    [record] = _records(tmp_path)
    assert record["allowed"] is True and record["status"] == 200
    assert "instruct twin" in record["would_deny"]
    assert summarize_egress(tmp_path)["would_deny"][0]["path"] == "/Qwen/Qwen3-1.7B/resolve/main/config.json"


def test_proxy_crash_stops_the_run(hub, tmp_path):
    failures = []
    with _egress("proxied", tmp_path, hub, on_failure=failures.append) as session:
        session.proxy.wait_ready()

        def crash() -> None:
            time.sleep(1)
            session.proxy._procs["mitmdump"].send_signal(signal.SIGKILL)

        threading.Thread(target=crash, daemon=True).start()
        started = time.monotonic()
        info, out = _sandboxed(session, tmp_path, "sleep 60", stop=session.stop_reason)
        assert not session.alive()
    assert time.monotonic() - started < 20
    assert info.status == "stopped", info
    assert "egress proxy died: mitmdump exited with code -9" in info.detail
    assert failures == [session.failure]


def test_proxy_failing_at_startup_is_reported(hub, tmp_path):
    # The log path is a directory: mitmdump cannot open it and must exit rather than run without its policy.
    (tmp_path / "egress.jsonl").mkdir()
    with _egress("proxied", tmp_path, hub) as session:
        with pytest.raises(PtbError, match=r"egress proxy died: mitmdump exited with code 1 \(IsADirectoryError: "):
            session.proxy.wait_ready()
        assert not session.alive()
