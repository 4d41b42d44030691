"""The egress proxy of one run: mitmdump (in mitmproxy's own interpreter) with the policy addon and a run-local
CA, behind a socat front: a unix socket for sandboxes without network (the sandbox's relay connects to it), else a
loopback TCP port.

mitmdump takes seconds to import on a busy machine, so nothing waits for it: the front listens at once and retries
its connection to mitmdump until that listens, so the agent's first request waits instead of failing. A watchdog
reports the death of either process through `on_failure`.
"""

import datetime
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from posttrainbench.errors import PtbError

log = logging.getLogger(__name__)

MITMPROXY_VERSION = "11.0.2"
ADDON = Path(__file__).with_name("mitm_addon.py")
INSTALL_HINT = (
    f"mitmproxy {MITMPROXY_VERSION} is needed for proxied runs, in an environment of its own (its pins clash with "
    f"the project's): python3 -m venv /opt/ptb-mitmproxy && /opt/ptb-mitmproxy/bin/pip install "
    f"mitmproxy=={MITMPROXY_VERSION} && ln -sf /opt/ptb-mitmproxy/bin/mitmdump /usr/local/bin/mitmdump "
    "(or set PTB_MITMPROXY_PYTHON to its python)"
)
SYSTEM_BUNDLES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem")
CONNECT_RETRY_S = 60.0  # how long a connection waits for mitmdump to come up
STOP_WAIT_S = 2.0


def mitmproxy_python() -> str:
    """The interpreter mitmproxy is installed in: PTB_MITMPROXY_PYTHON, the one `mitmdump` on PATH runs with, or
    this one."""
    configured = os.environ.get("PTB_MITMPROXY_PYTHON")
    if configured:
        return configured
    mitmdump = shutil.which("mitmdump")
    if mitmdump:
        with open(mitmdump, "rb") as script:
            first = script.readline().decode(errors="replace").strip()
        if first.startswith("#!") and os.path.isabs(first[2:].split()[0]):
            return first[2:].split()[0]
    import importlib.util

    if importlib.util.find_spec("mitmproxy") is not None:
        return sys.executable
    raise PtbError(INSTALL_HINT)


def system_ca_bundle() -> Path:
    for candidate in SYSTEM_BUNDLES:
        if os.path.isfile(candidate):
            return Path(candidate)
    import certifi

    return Path(certifi.where())


def write_ca(confdir: Path) -> bytes:
    """A fresh CA for this run only, in mitmproxy's file layout; returns its certificate (PEM).

    An EC key takes a millisecond to make, against tens for RSA. mitmproxy signs its per-host certificates with it
    and uses its key for them too."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, "PostTrainBench egress proxy (one run)"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "posttrainbench"),
    ])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    confdir.mkdir(mode=0o700, parents=True, exist_ok=True)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    ca_file = confdir / "mitmproxy-ca.pem"
    fd = os.open(ca_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(private + pem)
    (confdir / "mitmproxy-ca-cert.pem").write_bytes(pem)
    return pem


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class EgressProxy:
    """mitmdump and its socat front (on `socket_path` if set, else on a loopback port) for one run."""

    def __init__(
        self,
        compiled_policy: dict,
        state_dir: Path,
        log_path: Path,
        console_log: Path,
        *,
        socket_path: Path | None = None,
        upstream_ca: Path | None = None,
        resolve: dict[str, tuple[str, int]] | None = None,
        on_failure: Callable[[str], None] | None = None,
    ) -> None:
        if shutil.which("socat") is None:
            raise PtbError("socat is needed in front of the egress proxy: apt-get install socat")
        self.python = mitmproxy_python()
        self.policy = compiled_policy
        self.state_dir = state_dir
        self.log_path = log_path
        self.console_log = console_log
        self.socket_path = socket_path
        self.upstream_ca = upstream_ca
        self.resolve = resolve or {}
        self.on_failure = on_failure
        self.port = 0  # the front's, when it listens on TCP
        self.mitm_port = 0
        self.failure: str | None = None
        self._procs: dict[str, subprocess.Popen] = {}
        self._closing = threading.Event()
        self._watchers: list[threading.Thread] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> bytes:
        """Start mitmdump (not waiting for it) and the socket front (waiting for the socket); returns the CA cert."""
        ca = write_ca(self.state_dir / "mitmproxy")
        policy_file = self.state_dir / "policy.json"
        policy_file.write_text(json.dumps(self.policy))
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.touch()
        self.console_log.parent.mkdir(parents=True, exist_ok=True)
        self.mitm_port = free_port()
        options = {
            "confdir": self.state_dir / "mitmproxy",
            "termlog_verbosity": "warn",
            "flow_detail": 0,
            "ptb_policy": policy_file,
            "ptb_log": self.log_path,
            "ptb_resolve": json.dumps(self.resolve),
        }
        if self.upstream_ca is not None:
            options["ssl_verify_upstream_trusted_ca"] = self.upstream_ca
        argv = [self.python, str(ADDON), "--listen-host", "127.0.0.1", "--listen-port", str(self.mitm_port)]
        for key, value in options.items():
            argv += ["--set", f"{key}={value}"]
        with open(self.console_log, "ab") as console:
            self._spawn("mitmdump", argv, stdout=console)
        if self.socket_path is not None:
            listen = f"UNIX-LISTEN:{self.socket_path},fork,mode=600,unlink-early"
        else:
            self.port = free_port()
            listen = f"TCP-LISTEN:{self.port},bind=127.0.0.1,fork,reuseaddr"
        retries = int(CONNECT_RETRY_S / 0.05)
        self._spawn("socat", ["socat", listen, f"TCP:127.0.0.1:{self.mitm_port},retry={retries},interval=0.05"],
                    stdout=subprocess.DEVNULL)
        self._wait_for_front()
        return ca

    def wait_ready(self, timeout_s: float = 30.0) -> float:
        """Seconds until mitmdump accepted a connection (for benchmarks and tests; runs never need to wait)."""
        started = time.monotonic()
        while True:
            if self.failure:
                raise PtbError(self.failure)
            try:
                with socket.create_connection(("127.0.0.1", self.mitm_port), timeout=1):
                    return time.monotonic() - started
            except OSError:
                if time.monotonic() - started > timeout_s:
                    raise PtbError(f"the egress proxy did not come up within {timeout_s:g} s") from None
                time.sleep(0.02)

    def alive(self) -> bool:
        return self.failure is None and all(p.poll() is None for p in self._procs.values())

    def close(self) -> None:
        self._closing.set()
        for name in ("socat", "mitmdump"):
            proc = self._procs.get(name)
            if proc is None or proc.poll() is not None:
                continue
            proc.terminate()
            try:
                proc.wait(timeout=STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for watcher in self._watchers:
            watcher.join(timeout=1)

    def _spawn(self, name: str, argv: list[str], stdout) -> None:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self._procs[name] = proc
        watcher = threading.Thread(target=self._watch, args=(name, proc), name=f"egress-{name}", daemon=True)
        watcher.start()
        self._watchers.append(watcher)

    def _watch(self, name: str, proc: subprocess.Popen) -> None:
        code = proc.wait()
        if self._closing.is_set() or self.failure is not None:
            return
        detail = _last_line(self.console_log) if name == "mitmdump" else ""
        self.failure = f"egress proxy died: {name} exited with code {code}" + (f" ({detail})" if detail else "")
        log.error(self.failure)
        if self.on_failure is not None:
            self.on_failure(self.failure)

    def _wait_for_front(self) -> None:
        deadline = time.monotonic() + 5
        while not self._front_listens():
            if self._procs["socat"].poll() is not None or time.monotonic() > deadline:
                self.close()
                where = self.socket_path or f"127.0.0.1:{self.port}"
                raise PtbError(f"socat did not start listening on {where} for the egress proxy")
            time.sleep(0.002)

    def _front_listens(self) -> bool:
        if self.socket_path is not None:
            return self.socket_path.exists()
        # Probing the TCP port would make socat connect a child to mitmdump; its listening socket shows in /proc.
        with open("/proc/net/tcp") as table:
            return any(line.split()[1].endswith(f":{self.port:04X}") and line.split()[3] == "0A"
                       for line in list(table)[1:])


def _last_line(path: Path) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(max(0, os.path.getsize(path) - 4096))
            lines = [line.strip() for line in handle.read().decode(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    # A traceback's last line says more than mitmdump's closing "Error logged during startup, exiting...".
    errors = [line for line in lines if re.match(r"[\w.]*(Error|Exception): ", line)]
    return (errors or lines or [""])[-1][:300]
