"""A certificate authority made per test run, with `cryptography`.

    ca = TestCA(tmp_path / "pki")
    server = ca.issue_server_cert("idp", dns_names=["localhost"], ip_addresses=["127.0.0.1"])
    # server.cert, server.key, server.ca: PEM paths for node / nginx / Envoy
    httpx.get(url, verify=ca.ssl_context())

Keys are EC P-256: fast to make, accepted by node, nginx, Envoy and Python.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = datetime.timedelta(days=2)


@dataclass(frozen=True)
class IssuedCert:
    """PEM files of one issued certificate: leaf `cert`, its `key`, and the `ca` that signed it."""

    cert: Path
    key: Path
    ca: Path


class TestCA:
    """A throwaway CA writing PEM files into `directory`.

    Attributes: `directory`, `ca_path` (ca.pem), `certificate` (the CA's x509 object).
    """

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, directory: str | Path, *, name: str = "authgate test CA") -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.UTC)
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        self.ca_path = self.directory / "ca.pem"
        self.ca_path.write_bytes(self.certificate.public_bytes(serialization.Encoding.PEM))

    def issue_server_cert(
        self,
        name: str,
        *,
        dns_names: Iterable[str] = ("localhost",),
        ip_addresses: Iterable[str] = ("127.0.0.1",),
    ) -> IssuedCert:
        """A serverAuth certificate for the names, written as `<name>.pem` / `<name>-key.pem`."""
        dns_names, ip_addresses = list(dns_names), list(ip_addresses)
        common_name = dns_names[0] if dns_names else ip_addresses[0]
        return self._issue(
            name,
            common_name=common_name,
            dns_names=dns_names,
            ip_addresses=ip_addresses,
            usage=ExtendedKeyUsageOID.SERVER_AUTH,
        )

    def issue_client_cert(
        self,
        name: str,
        *,
        common_name: str,
        dns_names: Iterable[str] = (),
        uris: Iterable[str] = (),
    ) -> IssuedCert:
        """A clientAuth certificate (mTLS, RFC 8705) with subject CN `common_name`."""
        return self._issue(
            name,
            common_name=common_name,
            dns_names=list(dns_names),
            uris=list(uris),
            usage=ExtendedKeyUsageOID.CLIENT_AUTH,
        )

    def ssl_context(self, client_cert: IssuedCert | None = None) -> ssl.SSLContext:
        """A client-side context trusting only this CA, presenting `client_cert` if given."""
        context = ssl.create_default_context(cafile=str(self.ca_path))
        if client_cert is not None:
            context.load_cert_chain(str(client_cert.cert), str(client_cert.key))
        return context

    def _issue(
        self,
        name: str,
        *,
        common_name: str,
        usage: x509.ObjectIdentifier,
        dns_names: Sequence[str] = (),
        ip_addresses: Sequence[str] = (),
        uris: Sequence[str] = (),
    ) -> IssuedCert:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        alternative_names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
        alternative_names += [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
        alternative_names += [x509.UniformResourceIdentifier(u) for u in uris]
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
        )
        if alternative_names:
            builder = builder.add_extension(x509.SubjectAlternativeName(alternative_names), critical=False)
        certificate = builder.sign(self._key, hashes.SHA256())
        cert_path = self.directory / f"{name}.pem"
        key_path = self.directory / f"{name}-key.pem"
        cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        key_path.chmod(0o600)
        return IssuedCert(cert=cert_path, key=key_path, ca=self.ca_path)


def proxy_tls_directory(directory: str | Path, host: str, ca: TestCA | None = None) -> tuple[TestCA, Path]:
    """What a proxy example's TLS listener reads, in `directory`: `<host>.pem` and
    `<host>-key.pem` (a server certificate for `host`, localhost and 127.0.0.1) and
    `client-ca.pem` (the CA client certificates must chain to). Returns the CA (`ca`, or
    a new one in `directory/pki`) and the directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ca = ca or TestCA(directory / "pki")
    server = ca.issue_server_cert(f"proxy-{host}", dns_names=[host, "localhost"], ip_addresses=["127.0.0.1"])
    (directory / f"{host}.pem").write_bytes(server.cert.read_bytes())
    key = directory / f"{host}-key.pem"
    key.write_bytes(server.key.read_bytes())
    key.chmod(0o600)
    (directory / "client-ca.pem").write_bytes(ca.ca_path.read_bytes())
    return ca, directory
