"""The TCP transport (asyncio Protocols, uvloop-ready): handshake, Raft links, RPC.

- :mod:`.transport` — :class:`Transport`: a node's listener and its peer links.
- :mod:`.rpc_client` — :class:`RpcClient`: request/response calls to a node.
- :mod:`.pool` — :class:`RpcChannel` (how calls leave a process) and
  :class:`RpcPool`, its TCP implementation: one connection per address.
- :mod:`.peer_link` — one outbound, batching, reconnecting link per peer.
- :mod:`.inbound` — one accepted connection: handshake, then Raft or requests.
- :mod:`.handshake` — the Hello/Welcome rules; :class:`ConnInfo`.
- :mod:`.connector`, :mod:`.protocol` — the shared Protocol machinery.
- :mod:`.backoff`, :mod:`.address`, :mod:`.errors` — small helpers and exceptions.

Every connection logs to ``bedrock_cp.transport``; a bad frame closes that
connection only, and ``stats`` counts each close by reason.
"""

from .address import split_address
from .backoff import Backoff
from .errors import ConnectionLost, HandshakeRefused, RemoteError
from .handshake import ConnInfo
from .pool import RpcChannel, RpcPool
from .rpc_client import RpcClient
from .transport import Transport

__all__ = [
    "Backoff",
    "ConnInfo",
    "ConnectionLost",
    "HandshakeRefused",
    "RemoteError",
    "RpcChannel",
    "RpcClient",
    "RpcPool",
    "Transport",
    "split_address",
]
