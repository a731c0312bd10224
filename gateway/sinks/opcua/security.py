"""What a client may do, and which client certificates the server accepts.

* ``ReadOnlyRules``: the services a session may call -- reading, browsing,
  subscriptions, history reads.  Node management (AddNodes, DeleteNodes,
  references) and server registration are refused (BadUserAccessDenied);
  Write is let through to ``ReadOnlyAttributes``, which answers every item
  with BadNotWritable, the code OPC 10000-4 gives for "the access level does
  not allow writing".
* ``TrustList``: a client certificate must be in ``<pki>/trusted/`` (or be
  issued by a CA there; CRLs go in ``<pki>/crl/``).  An unknown certificate is refused (BadCertificateUntrusted) and
  copied to ``<pki>/rejected/`` so the operator can trust it by moving the
  file into ``trusted/``; the directory is read again when it changes, no
  restart needed -- the usual OPC UA PKI layout.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from asyncua import ua
from asyncua.common.utils import ServiceError
from asyncua.crypto.permission_rules import USER_TYPES, PermissionRuleset, User, UserRole
from asyncua.crypto.truststore import TrustStore
from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions
from asyncua.server.address_space import AttributeService
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

log = logging.getLogger("smemet.gateway.sinks.opcua")

_READ_SERVICES = frozenset(ua.NodeId(type_id) for type_id in USER_TYPES)


class ReadOnlyRules(PermissionRuleset):
    """Every session (user or anonymous, where allowed) gets the same read
    access; nobody may change the address space."""

    def check_validity(self, user: User, action_type_id: ua.NodeId, body) -> bool:
        if user.role == UserRole.Admin:  # the server's own internal session
            return True
        return action_type_id in _READ_SERVICES


class ReadOnlyAttributes(AttributeService):
    """Writes from clients are refused item by item with BadNotWritable;
    the gateway itself updates values through the address space directly."""

    async def write(self, params: ua.WriteParameters, user: User = User(role=UserRole.Admin)) -> list[ua.StatusCode]:
        if user.role == UserRole.Admin:
            return await super().write(params, user)
        return [ua.StatusCode(ua.StatusCodes.BadNotWritable) for _ in params.NodesToWrite]


class TrustList:
    """The certificate validator asyncua calls at CreateSession."""

    OPTIONS = (CertificateValidatorOptions.TIME_RANGE | CertificateValidatorOptions.URI
               | CertificateValidatorOptions.TRUSTED | CertificateValidatorOptions.REVOKED
               | CertificateValidatorOptions.PEER_CLIENT)

    def __init__(self, pki: str) -> None:
        self.trusted = Path(pki) / "trusted"
        self.crl = Path(pki) / "crl"
        self.rejected = Path(pki) / "rejected"
        for directory in (self.trusted, self.crl, self.rejected):
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._stamp: tuple | None = None
        self._validator: CertificateValidator | None = None
        self.refused = 0

    def _changed(self) -> tuple[tuple, tuple]:
        """(trusted files, CRL files), each as (name, mtime) pairs."""
        def files(directory: Path) -> tuple:
            with os.scandir(directory) as scan:
                return tuple(sorted((entry.name, entry.stat().st_mtime_ns) for entry in scan
                                    if entry.is_file() and entry.name.lower().endswith((".der", ".pem"))))
        return files(self.trusted), files(self.crl)

    async def _current(self) -> CertificateValidator | None:
        """The validator over the trusted certificates now on disk; None
        while there are none (asyncua would then skip the trust check)."""
        stamp = self._changed()
        if stamp != self._stamp:
            self._validator = None
            if stamp[0]:
                store = TrustStore([self.trusted], [self.crl])
                await store.load()
                self._validator = CertificateValidator(self.OPTIONS, store)
            self._stamp = stamp
        return self._validator

    async def __call__(self, certificate: x509.Certificate, description: ua.ApplicationDescription) -> None:
        try:
            validator = await self._current()
            if validator is None:
                raise ServiceError(ua.StatusCodes.BadCertificateUntrusted)
            await validator.validate(certificate, description)
        except ServiceError as exc:
            self.refused += 1
            name = _file_name(certificate)
            if exc.code == ua.StatusCodes.BadCertificateUntrusted:
                path = self.rejected / name
                if not path.exists():
                    path.write_bytes(certificate.public_bytes(serialization.Encoding.DER))
                log.warning("opcua: client certificate of %s refused: not trusted; to trust it, move %s to %s/",
                            description.ApplicationUri, path, self.trusted)
            else:
                log.warning("opcua: client certificate of %s refused: %s", description.ApplicationUri,
                            ua.StatusCode(exc.code).name)
            raise


def _file_name(certificate: x509.Certificate) -> str:
    try:
        common = certificate.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
    except (IndexError, ValueError):
        common = "client"
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(common))[:40]
    thumbprint = certificate.fingerprint(hashes.SHA1()).hex()  # noqa: S303 - the OPC UA thumbprint
    return f"{safe} [{thumbprint}].der"
