"""The Raft roles a node can be in, as the native core names them."""

from __future__ import annotations

from enum import StrEnum


class RaftRole(StrEnum):
    """A node's role in its Raft group (``Consensus.status()["role"]``)."""

    FOLLOWER = "follower"
    #: Asking for pre-votes: it has not raised its term yet.
    PRE_CANDIDATE = "pre_candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"
