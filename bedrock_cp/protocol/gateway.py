"""The Gateway's interface: the layout a node caches for its local clients.

Every node's Gateway follows the leader's layout (TSL); :class:`GetLayout` asks
any node for the one its Gateway holds, so clients read the layout without
loading the leader. The answer is the coordinators'
:class:`~bedrock_cp.protocol.coordinator.LayoutReply` (epoch 0: none yet).
"""

from __future__ import annotations

from typing import ClassVar

from .base import Body, Sender


class GetLayout(Body, tag="gw_layout"):
    """The layout this node's Gateway holds (``LayoutReply``; epoch 0: none yet)."""

    sender: ClassVar[Sender] = Sender.CLIENT


GatewayRequest = GetLayout
