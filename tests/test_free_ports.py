"""``free_ports``: the ports a test hands to node processes it starts.

A node process binds the port it is given only after the test picked it, so the
pick must not collide with a port the kernel hands to anyone else meanwhile: an
ephemeral port (``bind(0)``, an outgoing connection) or one this process already
handed out (CI once failed because node 3's metrics port was node 1's listen
port, both picked by two ``bind(0)`` calls in a row).
"""

from __future__ import annotations

import socket

from bedrock_cp.cluster import free_ports
from bedrock_cp.cluster.local import ephemeral_port_range


def test_no_port_is_in_the_kernel_s_ephemeral_range() -> None:
    low, high = ephemeral_port_range()
    for port in free_ports(64):
        assert not low <= port <= high, port


def test_no_port_is_handed_out_twice_by_one_process() -> None:
    seen: set[int] = set()
    for _ in range(50):
        for port in free_ports(4):
            assert port not in seen, port
            seen.add(port)


def test_each_port_can_be_bound_when_handed_out() -> None:
    for port in free_ports(8):
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))
