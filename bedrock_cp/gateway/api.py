"""Bodies a node's Gateway answers for local clients.

:class:`GetLayout` asks any node for the layout (TSL) its Gateway caches, so
clients read it without going to the leader. The answer is the coordinator
API's :class:`~bedrock_cp.coordinator.api.LayoutReply` (decoded with
:func:`bedrock_cp.coordinator.api.decode_response`). The tag is unique across the
coordinator and data-plane APIs: the node decodes all three as one union.
"""

from __future__ import annotations

import msgspec


class GetLayout(msgspec.Struct, tag="gw_layout", array_like=True, frozen=True, gc=False):
    """The layout this node's Gateway holds (``LayoutReply``; epoch 0: none yet)."""


GatewayRequest = GetLayout

_encoder = msgspec.msgpack.Encoder()


def encode(body: GatewayRequest) -> bytes:
    return _encoder.encode(body)
