"""The Gateway of a node: leader discovery, registration, the cached layout.

- :mod:`.gateway` — :class:`Gateway`: discovery, registration, leader following,
  layout watch.
- :mod:`.caller` — how it calls coordinators (:class:`TcpCaller`, the seam
  :class:`CoordinatorCaller`).
- :mod:`.api` — :class:`GetLayout`, answered by any node from its Gateway's cache.
"""

from .api import GatewayRequest, GetLayout
from .caller import CoordinatorCaller, TcpCaller
from .gateway import Gateway

__all__ = ["CoordinatorCaller", "Gateway", "GatewayRequest", "GetLayout", "TcpCaller"]
