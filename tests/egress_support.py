"""TLS for fake upstreams behind the egress proxy: a CA of its own and one certificate for many host names."""

import datetime
import shutil
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from posttrainbench.egress.proxy import mitmproxy_python
from posttrainbench.errors import PtbError


def certificates(folder: Path, hosts: list[str]) -> tuple[Path, Path]:
    """(CA certificate, server certificate + key) in PEM files under `folder`, the server's valid for `hosts`."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake upstream CA")])

    def build(subject, public_key):
        return (x509.CertificateBuilder().subject_name(subject).issuer_name(ca_name).public_key(public_key)
                .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=1)))

    ca = build(ca_name, ca_key.public_key()).add_extension(
        x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(ca_key, hashes.SHA256())
    leaf = build(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]), key.public_key()).add_extension(
        x509.SubjectAlternativeName([x509.DNSName(h) for h in hosts]), critical=False).sign(ca_key, hashes.SHA256())
    (folder / "upstream-ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (folder / "upstream.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return folder / "upstream-ca.pem", folder / "upstream.pem"


def missing_tools() -> str | None:
    """Why the real proxy cannot be played against from a sandbox here (None when it can)."""
    for tool in ("bwrap", "socat", "curl"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    try:
        mitmproxy_python()
    except PtbError as error:
        return str(error)
    return None
