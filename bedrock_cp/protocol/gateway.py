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
    """The layout this node's Gateway holds (``LayoutReply``; epoch 0: none yet).

    A long poll when ``wait_ms`` > 0: answered as soon as the Gateway holds a
    layout newer than ``after_epoch`` (the leader pushes each new one), or after
    ``wait_ms`` (at most :data:`MAX_LAYOUT_WAIT_MS`) with the one it holds.
    """

    sender: ClassVar[Sender] = Sender.CLIENT

    after_epoch: int = 0
    wait_ms: int = 0


#: The longest a ``GetLayout`` long poll is held.
MAX_LAYOUT_WAIT_MS = 5000


GatewayRequest = GetLayout
