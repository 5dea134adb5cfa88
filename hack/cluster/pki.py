"""Certificates and keys for the local control plane (hack/cluster/controlplane.py):
a CA, certificates it issues (EC P-256), and the RSA service-account signing key pair.

    ca = write_ca(Path("ca.crt"), Path("ca.key"), "my CA", validity=timedelta(days=365))
    ca.issue(Path("server.crt"), Path("server.key"), common_name="kube-apiserver", server=True,
             dns_names=["localhost"], ip_addresses=["127.0.0.1"])
    ca.issue(Path("admin.crt"), Path("admin.key"), common_name="admin", organization="system:masters")
    write_rsa_key_pair(Path("sa.key"), Path("sa.pub"))

Private keys are PKCS#8 PEM files with mode 0600.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes, PrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class CA:
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    validity: datetime.timedelta

    def issue(
        self,
        cert_path: Path,
        key_path: Path,
        *,
        common_name: str,
        server: bool = False,
        organization: str | None = None,
        dns_names: Iterable[str] = (),
        ip_addresses: Iterable[str] = (),
    ) -> None:
        """A serverAuth (`server`) or clientAuth certificate; `organization` becomes O=
        (Kubernetes reads it as the user's group)."""
        key = ec.generate_private_key(ec.SECP256R1())
        attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization)] if organization else []
        subject = x509.Name([*attributes, x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            _builder(subject, self.certificate.subject, key.public_key(), self.validity)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
        )
        names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
        names += [x509.IPAddress(ipaddress.ip_address(address)) for address in ip_addresses]
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        _write_cert(cert_path, builder.sign(self.key, hashes.SHA256()))
        _write_key(key_path, key)


def write_ca(cert_path: Path, key_path: Path, common_name: str, *, validity: datetime.timedelta) -> CA:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    certificate = (
        _builder(name, name, key.public_key(), validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .sign(key, hashes.SHA256())
    )
    _write_cert(cert_path, certificate)
    _write_key(key_path, key)
    return CA(certificate, key, validity)


def load_ca(cert_path: Path, key_path: Path, *, validity: datetime.timedelta = datetime.timedelta(days=365)) -> CA:
    """The CA that write_ca() wrote, to issue more certificates (a node joining later)."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{key_path}: not the EC key write_ca() writes")
    return CA(certificate, key, validity)


def write_rsa_key_pair(private_path: Path, public_path: Path, key_size: int = 2048) -> None:
    """An RSA key (RS256: what service-account token verifiers expect) and its public half."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
    _write_key(private_path, key)
    public_path.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey, validity: datetime.timedelta
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + validity)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _key_usage(*, cert_sign: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _write_cert(path: Path, certificate: x509.Certificate) -> None:
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))


def _write_key(path: Path, key: PrivateKeyTypes | CertificateIssuerPrivateKeyTypes) -> None:
    path.unlink(missing_ok=True)
    path.touch(mode=0o600)
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
