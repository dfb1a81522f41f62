"""What a handshake establishes: the authenticated principal of a connection."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Role = Literal["node", "admin", "client", "anonymous"]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who sent a request, as the handshake proved it.

    ``node``: a cluster node (``node_id``), by its certificate or the cluster
    secret. ``admin``/``client``: an operator or an application (``name``), by a
    client certificate or a token. ``anonymous``: authentication is off
    (``auth.mode = "none"``); such a node lets anyone do anything.
    """

    role: Role
    node_id: int = 0
    name: str = ""

    @staticmethod
    def node(node_id: int) -> Principal:
        return Principal("node", node_id=node_id)

    @staticmethod
    def admin(name: str) -> Principal:
        return Principal("admin", name=name)

    @staticmethod
    def client(name: str) -> Principal:
        return Principal("client", name=name)

    def __str__(self) -> str:
        if self.role == "node":
            return f"node {self.node_id}"
        if self.role == "anonymous":
            return "anonymous (authentication off)"
        return f"{self.role} {self.name!r}"


#: The principal of every connection when authentication is off.
ANONYMOUS = Principal("anonymous")
