"""Frames built by hand for the decoder's tests: ``u32 little-endian length | body``."""

from __future__ import annotations


def encode_frame(body: bytes) -> bytes:
    """``body`` with its 4-byte length header in front (what every sender writes)."""
    return len(body).to_bytes(4, "little") + bytes(body)
