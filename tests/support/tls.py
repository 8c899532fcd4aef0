"""A throwaway certificate authority for TLS tests (nothing leaves tmp_path).

    ca = make_ca(tmp_path / "ca")                       # ca.cert: the PEM file a client trusts
    server = ca.issue(tmp_path / "server", "127.0.0.1")  # server.cert, server.key for the broker

The server certificate names its hosts as subject alternative names (IP addresses as IP entries), so a
client that checks host names (paho with ``ssl.PROTOCOL_TLS_CLIENT``) accepts it for ``127.0.0.1``.

Made with the ``cryptography`` package when it is installed, else with the ``openssl`` command;
``tls_tools_available()`` says whether either is there (tests skip otherwise). Keys are P-256 EC keys.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

try:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
except ImportError:  # the openssl command instead
    x509 = None  # type: ignore[assignment]

OPENSSL = shutil.which("openssl")


def tls_tools_available() -> bool:
    """Whether certificates can be made here (``cryptography`` or the ``openssl`` command)."""
    return x509 is not None or OPENSSL is not None


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key, as PEM files."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class CertificateAuthority:
    """A self-signed CA (``cert``: the PEM file clients trust) that issues server certificates."""

    name: str
    cert: Path
    key: Path

    def issue(self, directory: Path, *hosts: str, days: int = 2) -> Issued:
        """A server certificate for ``hosts`` (IP addresses or DNS names; default 127.0.0.1 and localhost),
        signed by this CA, written to ``directory`` as ``server.crt`` and ``server.key``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        hosts = hosts or ("127.0.0.1", "localhost")
        out = Issued(directory / "server.crt", directory / "server.key")
        if x509 is not None:
            _issue_cryptography(self, out, hosts, days)
        else:
            _issue_openssl(self, out, hosts, days)
        out.key.chmod(0o600)
        return out


def make_ca(directory: Path, name: str = "citytwin test CA", days: int = 2) -> CertificateAuthority:
    """A new CA whose certificate and key are written to ``directory`` (``ca.crt``, ``ca.key``)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ca = CertificateAuthority(name, directory / "ca.crt", directory / "ca.key")
    if x509 is not None:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        ca.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        ca.key.write_bytes(_key_pem(key))
    else:
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                 "-keyout", str(ca.key), "-out", str(ca.cert), "-days", str(days), "-subj", f"/CN={name}",
                 "-addext", "basicConstraints=critical,CA:TRUE,pathlen:0",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature")
    ca.key.chmod(0o600)
    return ca


def _issue_cryptography(ca: CertificateAuthority, out: Issued, hosts: tuple[str, ...], days: int) -> None:
    ca_cert = x509.load_pem_x509_certificate(ca.cert.read_bytes())
    ca_key = serialization.load_pem_private_key(ca.key.read_bytes(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    names: list = []
    for h in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            names.append(x509.DNSName(h))
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    out.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    out.key.write_bytes(_key_pem(key))


def _issue_openssl(ca: CertificateAuthority, out: Issued, hosts: tuple[str, ...], days: int) -> None:
    csr = out.cert.with_suffix(".csr")
    ext = out.cert.with_suffix(".ext")
    alt = ",".join(f"IP:{h}" if _is_ip(h) else f"DNS:{h}" for h in hosts)
    ext.write_text(f"subjectAltName={alt}\nbasicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n")
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(out.key),
             "-out", str(csr), "-subj", f"/CN={hosts[0]}")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca.cert), "-CAkey", str(ca.key), "-CAcreateserial",
             "-out", str(out.cert), "-days", str(days), "-extfile", str(ext))


def _is_ip(h: str) -> bool:
    try:
        ipaddress.ip_address(h)
        return True
    except ValueError:
        return False


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())


def _openssl(*args: str) -> None:
    if OPENSSL is None:
        raise RuntimeError("neither the cryptography package nor the openssl command is available")
    subprocess.run([OPENSSL, *args], check=True, capture_output=True)
