"""The server's application instance certificate (OPC 10000-6 §6.2.2).

Loaded from ``[opcua] certificate`` / ``private_key``; at the first start,
when neither file exists, a self-signed one is made (RSA 2048, SHA-256,
10 years, the application URI ``urn:smemet-edge:gateway:<id>`` and the
endpoint's host names in subjectAltName, the key usages the security
policies need), the key written mode 0600.  Clients must trust it once (its
SHA-1 thumbprint is logged, as OPC UA tools show it).
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import stat
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ...errors import ConfigError

log = logging.getLogger("smemet.gateway.sinks.opcua")

VALID_DAYS = 3650


@dataclass(frozen=True, slots=True)
class ServerIdentity:
    certificate: x509.Certificate
    certificate_path: str
    private_key_path: str
    thumbprint: str  # SHA-1, hex: what OPC UA clients show for a certificate
    generated: bool


def load_or_create(certificate_path: str, key_path: str, application_uri: str, hostnames: list[str],
                   where: str) -> ServerIdentity:
    """The server certificate; made when neither file exists.  ``where``
    names the config section for errors."""
    cert_exists, key_exists = os.path.exists(certificate_path), os.path.exists(key_path)
    generated = False
    if not cert_exists and not key_exists:
        _create(certificate_path, key_path, application_uri, hostnames, where)
        generated = True
    elif not key_exists:
        raise ConfigError(f"{where}.private_key", f"{key_path} does not exist but the certificate "
                          f"{certificate_path} does; restore the key, or delete the certificate to make a new pair")
    elif not cert_exists:
        raise ConfigError(f"{where}.certificate", f"{certificate_path} does not exist but the key {key_path} does; "
                          "restore the certificate, or delete the key to make a new pair")
    _owner_only(key_path, f"{where}.private_key")
    certificate = _load_certificate(certificate_path, f"{where}.certificate")
    _load_key(key_path, f"{where}.private_key")
    uris = _uris(certificate)
    if application_uri not in uris:
        raise ConfigError(f"{where}.certificate",
                          f"{certificate_path} names {', '.join(uris) or 'no application URI'}, but this gateway is "
                          f"{application_uri} ([gateway] id); clients refuse such a server: move the certificate "
                          "and key away to make new ones (clients must then trust the new certificate)")
    thumbprint = certificate.fingerprint(hashes.SHA1()).hex()  # noqa: S303 - the OPC UA thumbprint, not a MAC
    if generated:
        log.warning("opcua: generated the server certificate %s (thumbprint %s); clients must trust it",
                    certificate_path, thumbprint)
    return ServerIdentity(certificate, certificate_path, key_path, thumbprint, generated)


def _create(certificate_path: str, key_path: str, application_uri: str, hostnames: list[str], where: str) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(application_uri)]
    for host in dict.fromkeys(hostnames):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    subject = x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, f"SME-MET Edge gateway {application_uri.rsplit(':', 1)[-1]}"[:64]),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "SME-MET Edge"),
    ])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))  # a client clock a little behind still accepts it
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=True, key_encipherment=True,
                                     data_encipherment=True, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    try:
        for path in (certificate_path, key_path):
            os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
        key_bytes = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key_bytes)
        with open(certificate_path, "wb") as f:
            f.write(certificate.public_bytes(serialization.Encoding.PEM))
    except OSError as exc:
        raise ConfigError(f"{where}.certificate", f"cannot write the new server certificate/key ({exc.strerror}: "
                          f"{exc.filename}); make the directory writable by the gateway user") from None


def _owner_only(path: str, where: str) -> None:
    mode = os.stat(path).st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(where, f"{path} is accessible by group or others (mode {stat.S_IMODE(mode):o}); "
                                 f"run chmod 600 {path}")


def _read(path: str, where: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise ConfigError(where, f"cannot read {path} ({exc.strerror}); it must be readable by the gateway user") from None


def _load_certificate(path: str, where: str) -> x509.Certificate:
    data = _read(path, where)
    try:
        return x509.load_pem_x509_certificate(data) if b"-----BEGIN" in data else x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise ConfigError(where, f"{path} is not a PEM or DER certificate ({exc})") from None


def _load_key(path: str, where: str) -> None:
    data = _read(path, where)
    try:
        if b"-----BEGIN" in data:
            serialization.load_pem_private_key(data, password=None)
        else:
            serialization.load_der_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(where, f"{path} is not an unencrypted PEM or DER private key ({exc})") from None


def _uris(certificate: x509.Certificate) -> list[str]:
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return san.get_values_for_type(x509.UniformResourceIdentifier)
