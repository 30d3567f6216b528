"""A development CA and the certificates of a Plasma deployment (`make certs`), with `cryptography` only.

    python scripts/make_certs.py [--out DIR] [--san NAME ...] [--days N]     (make certs [CERTS_DIR=DIR])

Idempotent: a certificate is kept while it is signed by the CA in DIR, names what it should, and has more than
30 days left; anything missing, stale or signed by another CA is made again (a new CA therefore re-issues all).
Layout (ECDSA P-256; private keys 0600, certificates 0644):

    DIR/ca/ca.pem                    the CA certificate: every server and client trusts it (public)
    DIR/ca-key/ca-key.pem            the CA private key: only this script reads it; never mount it anywhere else
    DIR/<service>/server.pem         simulator, trainer, compiler, edge, registry: server certificate +
                                     server-key.pem, SANs <service>, localhost, 127.0.0.1 and every --san; usable
                                     as a client certificate too (no role), so a container's own health check can
                                     connect
    DIR/trainer/client.pem           the trainer's calls to the simulator: role operator (StartSimulation)
    DIR/compiler/client.pem          the compiler's calls to the trainer and simulator: role reader
    DIR/registry/client.pem          the registry's calls to the compiler (GetPacket, DownloadPacket): role reader
    DIR/edge/client.pem              an edge's calls to the registry when it follows a channel (WatchChannel,
                                     FetchPacket, Report): role reader
    DIR/operator/client.pem          people and CI that change things (Train, Compile, LoadPacket, ...)
    DIR/reader/client.pem            dashboards and devices' controllers (Get*, List*, Act, Control, ...)

Each client.pem has its key in client-key.pem beside it. A client certificate carries its role as a URI SAN,
spiffe://plasma/role/<role>, which the servers' authorization interceptor (plasma.server.auth) reads.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SERVICES = ("simulator", "trainer", "compiler", "edge", "registry")
# Client identities and their roles: the services that call other services, and the two kinds of people.
CLIENTS = {"trainer": "operator", "compiler": "reader", "registry": "reader", "edge": "reader", "operator": "operator",
           "reader": "reader"}
ROLE_URI = "spiffe://plasma/role/{role}"
# A certificate with less than this left is re-issued on the next run.
RENEW_BEFORE = datetime.timedelta(days=30)
CA_DAYS = 3650


@dataclass(frozen=True)
class Leaf:
    """One certificate to issue: who it names, where it goes, what it may be used for."""

    name: str
    cert: Path
    key: Path
    dns: tuple[str, ...] = ()
    ips: tuple[str, ...] = ()
    role: str = ""
    server: bool = False

    def alternative_names(self) -> list[x509.GeneralName]:
        names: list[x509.GeneralName] = [x509.DNSName(d) for d in self.dns]
        names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in self.ips]
        if self.role:
            names.append(x509.UniformResourceIdentifier(ROLE_URI.format(role=self.role)))
        return names


def leaves(out: Path, extra_sans: Sequence[str]) -> list[Leaf]:
    """Every certificate of the layout in the module docstring."""
    dns = [s for s in extra_sans if not _is_ip(s)]
    ips = [s for s in extra_sans if _is_ip(s)]
    made = [Leaf(service, out / service / "server.pem", out / service / "server-key.pem",
                 dns=(service, "localhost", *dns), ips=("127.0.0.1", *ips), server=True) for service in SERVICES]
    made += [Leaf(name, out / name / "client.pem", out / name / "client-key.pem", role=role)
             for name, role in CLIENTS.items()]
    return made


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _write(path: Path, data: bytes, mode: int) -> None:
    """Atomic replace, with the mode set before any byte is written (a key is never readable by others)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _load(cert_path: Path, key_path: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    """The pair on disk, or None when either is missing, unreadable, or the key does not match the certificate."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
        return None
    return cert, key


def _fresh(cert: x509.Certificate) -> bool:
    return cert.not_valid_after_utc - _now() > RENEW_BEFORE


def ca(out: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey, bool]:
    """The CA in `out`, made when missing or near its end; returns (certificate, key, made)."""
    cert_path, key_path = out / "ca" / "ca.pem", out / "ca-key" / "ca-key.pem"
    existing = _load(cert_path, key_path)
    if existing is not None and _fresh(existing[0]):
        return existing[0], existing[1], False
    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Plasma"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "Plasma development CA")])
    start = _now() - datetime.timedelta(minutes=5)  # a little slack for clocks a few minutes behind
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(start)
            .not_valid_after(start + datetime.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    key_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    _write(key_path, _key_pem(key), 0o600)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return cert, key, True


def _current(leaf: Leaf, ca_cert: x509.Certificate) -> bool:
    """Whether the certificate on disk is signed by this CA, names what `leaf` asks for and is not near its end."""
    existing = _load(leaf.cert, leaf.key)
    if existing is None:
        return False
    cert = existing[0]
    try:
        cert.verify_directly_issued_by(ca_cert)
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return False
    return _fresh(cert) and set(names) == set(leaf.alternative_names())


def issue(leaf: Leaf, ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, days: int) -> None:
    key = _new_key()
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH] + ([ExtendedKeyUsageOID.SERVER_AUTH] if leaf.server else [])
    start = _now() - datetime.timedelta(minutes=5)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Plasma"),
                                     x509.NameAttribute(NameOID.COMMON_NAME, leaf.name)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(start)
            .not_valid_after(min(start + datetime.timedelta(days=days), ca_cert.not_valid_after_utc))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.SubjectAlternativeName(leaf.alternative_names()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    _write(leaf.key, _key_pem(key), 0o600)
    _write(leaf.cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def make(out: Path, extra_sans: Sequence[str] = (), days: int = 365) -> list[str]:
    """Brings `out` up to date; returns what was (re)made, by path relative to `out`."""
    ca_cert, ca_key, made_ca = ca(out)
    made = ["ca/ca.pem"] if made_ca else []
    for leaf in leaves(out, extra_sans):
        if not _current(leaf, ca_cert):
            issue(leaf, ca_cert, ca_key, days)
            made.append(str(leaf.cert.relative_to(out)))
    return made


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("PLASMA_CERTS_DIR", "var/certs")),
                        help="output directory (default $PLASMA_CERTS_DIR or var/certs)")
    from_env = [name.strip() for name in os.environ.get("PLASMA_CERTS_SANS", "").split(",") if name.strip()]
    parser.add_argument("--san", action="append", default=from_env, metavar="NAME",
                        help="another DNS name or IP address for every server certificate (repeatable; also "
                             "$PLASMA_CERTS_SANS, comma-separated)")
    parser.add_argument("--days", type=int, default=365, help="validity of the leaf certificates (default 365)")
    args = parser.parse_args(argv)
    if args.days <= RENEW_BEFORE.days:
        parser.error(f"--days must be more than {RENEW_BEFORE.days}, or every run would re-issue everything")
    made = make(args.out, args.san, args.days)
    print(f"{args.out}: {'made ' + ', '.join(made) if made else 'every certificate kept (all current)'}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
