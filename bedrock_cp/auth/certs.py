"""``bedrock-cp certs init DIR``: every credential a local cluster needs.

Writes, all private files mode 0600 in a 0700 directory:

- ``ca.pem``/``ca.key`` — the cluster's own CA (ECDSA P-256), trusted by nothing else;
- ``node-<id>.pem``/``.key`` — one certificate per node, its identity the URI
  ``bedrock:<cluster>/node/<id>`` (see :mod:`.tls`);
- ``admin.pem``/``.key`` and ``client.pem``/``.key`` — an operator and an application;
- ``secret`` — the cluster secret, for ``auth.mode = "secret"``;
- ``tokens.toml``, ``admin.token``, ``client.token`` — the client tokens of that mode.

Certificates are made with the ``cryptography`` package (in-process, the same on
every platform, no ``openssl`` binary and its version-dependent flags needed).
"""

from __future__ import annotations

import datetime
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from .config import AuthConfig, write_private
from .principal import Principal
from .tls import identity_uri

#: How long generated certificates are valid.
VALIDITY = datetime.timedelta(days=3650)


@dataclass(frozen=True)
class CredentialFiles:
    """Where ``init`` put everything, as ``[auth]`` tables for each user."""

    directory: Path
    cluster: str

    def node_tls(self, node_id: int) -> AuthConfig:
        d = self.directory
        return AuthConfig(
            mode="tls",
            ca=str(d / "ca.pem"),
            cert=str(d / f"node-{node_id}.pem"),
            key=str(d / f"node-{node_id}.key"),
        )

    def node_secret(self) -> AuthConfig:
        d = self.directory
        return AuthConfig(mode="secret", secret=str(d / "secret"), tokens=str(d / "tokens.toml"))

    def client_tls(self, name: str = "admin") -> AuthConfig:
        d = self.directory
        return AuthConfig(
            mode="tls",
            ca=str(d / "ca.pem"),
            cert=str(d / f"{name}.pem"),
            key=str(d / f"{name}.key"),
        )

    def client_secret(self, name: str = "admin") -> AuthConfig:
        return AuthConfig(mode="secret", token=str(self.directory / f"{name}.token"), name=name)


def init(directory: Path, cluster: str, node_ids: list[int]) -> CredentialFiles:
    """Create the CA and every credential in ``directory`` (see the module docstring).

    An existing CA in ``directory`` is reused, so nodes added later get
    certificates the running ones trust; existing node files are kept.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)
    now = datetime.datetime.now(datetime.UTC)

    def pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    ca_pem, ca_key_path = directory / "ca.pem", directory / "ca.key"
    if ca_pem.exists() and ca_key_path.exists():
        ca_cert = x509.load_pem_x509_certificate(ca_pem.read_bytes())
        loaded = serialization.load_pem_private_key(ca_key_path.read_bytes(), None)
        assert isinstance(loaded, ec.EllipticCurvePrivateKey)
        ca_key = loaded
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"bedrock-cp CA {cluster}")])
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(ca_key, hashes.SHA256())
        )
        write_private(ca_key_path, pem_key(ca_key))
        ca_pem.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))

    def issue(stem: str, principal: Principal) -> None:
        if (directory / f"{stem}.pem").exists() and (directory / f"{stem}.key").exists():
            return
        key = ec.generate_private_key(ec.SECP256R1())
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
        if principal.role == "node":
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        cert = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{cluster} {principal}")])
            )
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.UniformResourceIdentifier(identity_uri(cluster, principal))]
                ),
                critical=False,
            )
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        write_private(directory / f"{stem}.key", pem_key(key))
        (directory / f"{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    for node_id in node_ids:
        issue(f"node-{node_id}", Principal.node(node_id))
    issue("admin", Principal.admin("admin"))
    issue("client", Principal.client("client"))

    if not (directory / "secret").exists():
        write_private(directory / "secret", secrets.token_hex(32).encode() + b"\n")
    if not (directory / "tokens.toml").exists():
        tokens = {"admin": secrets.token_hex(24), "client": secrets.token_hex(24)}
        lines = []
        for who, token in tokens.items():
            role = "admin" if who == "admin" else "client"
            lines += [f"[{who}]", f'role = "{role}"', f"token = {json.dumps(token)}", ""]
            write_private(directory / f"{who}.token", token.encode() + b"\n")
        write_private(directory / "tokens.toml", "\n".join(lines).encode())
    return CredentialFiles(directory, cluster)
