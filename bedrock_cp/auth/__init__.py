"""Who is on a connection, and how they prove it.

- :mod:`.config` — :class:`AuthConfig`, the ``[auth]`` table of a node's config
  and of a ``cluster.toml`` (where the credentials are, never the secrets).
- :mod:`.principal` — :class:`Principal`: what a handshake establishes
  (``node(id)``, ``admin(name)``, ``client(name)``, or ``anonymous`` when
  authentication is off).
- :mod:`.credentials` — the loaded credentials: :class:`AcceptorAuth` (what a
  node accepts) and :class:`ConnectorAuth` (how a node or client proves itself).
- :mod:`.proof` — the shared-secret / token proof: HMAC over both sides' fresh nonces.
- :mod:`.tls` — mutual TLS contexts and the identity a certificate carries.
- :mod:`.certs` — ``bedrock-cp certs init``: a CA and node/client credentials.

Three modes, chosen per cluster:

- ``tls`` (the default): mutual TLS 1.3 with the cluster CA only; the identity is
  the certificate's ``bedrock:<cluster>/<role>/<name>`` URI.
- ``secret``: plain TCP; nodes prove the cluster secret, clients a named token,
  both by HMAC over a nonce from each side (a recorded handshake cannot be replayed).
- ``none``: no authentication at all; only when configured, with a loud warning.
"""

from .config import AuthConfig, AuthError
from .credentials import AcceptorAuth, ConnectorAuth, load_acceptor, load_connector
from .principal import ANONYMOUS, Principal

__all__ = [
    "ANONYMOUS",
    "AcceptorAuth",
    "AuthConfig",
    "AuthError",
    "ConnectorAuth",
    "Principal",
    "load_acceptor",
    "load_connector",
]
