"""Make a self-signed TLS certificate for nginx's HTTPS + HTTP/2 listener, unless one exists.

    python deploy/nginx/make_cert.py DIR [--name localhost --name 127.0.0.1 ...] [--days 365]

writes ``DIR/gateway.crt`` and ``DIR/gateway.key`` (the names deploy/nginx/nginx.conf
reads). A certificate already in ``DIR`` is kept: put your own there (from your CA, or
Let's Encrypt) and this does nothing. docker-compose.yml runs it once before nginx
starts; the tests make their certificate with it too. Browsers warn about a
self-signed certificate: it is for trying the stack out, not for production.

Needs only ``cryptography`` (a dependency of the gateway, so the project's image has it).
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CERT_FILE = "gateway.crt"
KEY_FILE = "gateway.key"
DEFAULT_NAMES = ("localhost", "127.0.0.1", "::1")


def subject_names(names: Sequence[str]) -> list[x509.GeneralName]:
    """DNS names and IP addresses, as the certificate's subjectAltName lists them."""
    general: list[x509.GeneralName] = []
    for name in names:
        try:
            general.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            general.append(x509.DNSName(name))
    return general


def make_certificate(names: Sequence[str], days: int) -> tuple[bytes, bytes]:
    """A self-signed certificate for ``names`` and its key (P-256), both PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(subject_names(names)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return certificate.public_bytes(serialization.Encoding.PEM), key_pem


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="make_cert.py", description="A self-signed certificate for nginx, unless one exists."
    )
    parser.add_argument("directory", type=Path, help="where gateway.crt and gateway.key go")
    parser.add_argument(
        "--name",
        action="append",
        help="a host name or IP address the certificate is for (repeat; default: "
        f"{', '.join(DEFAULT_NAMES)})",
    )
    parser.add_argument("--days", type=int, default=365, help="validity (default: 365)")
    args = parser.parse_args(argv)
    cert_path, key_path = args.directory / CERT_FILE, args.directory / KEY_FILE
    if cert_path.exists() and key_path.exists():
        print(f"keeping the certificate in {args.directory}")
        return 0
    if args.days < 1:
        parser.error("--days must be at least 1")
    certificate, key = make_certificate(args.name or DEFAULT_NAMES, args.days)
    args.directory.mkdir(parents=True, exist_ok=True)
    # The key is readable by its owner only (nginx's master process reads it as root).
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as key_file:
        key_file.write(key)
    cert_path.write_bytes(certificate)
    print(
        f"wrote a self-signed certificate for {', '.join(args.name or DEFAULT_NAMES)} "
        f"to {args.directory}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
