"""The Gateway of a node: leader discovery, registration, the cached layout.

- :mod:`.gateway` — :class:`Gateway`: discovery, registration, leader following,
  layout watch; it calls coordinators through a :class:`CoordinatorCaller` (the
  seam; the real one is :class:`bedrock_cp.protocol.Caller`).

What it answers for local clients, ``GetLayout``, is declared in
:mod:`bedrock_cp.protocol.gateway`.
"""

from .gateway import CoordinatorCaller, Gateway

__all__ = ["CoordinatorCaller", "Gateway"]
