"""The metrics registry's text exposition and its HTTP endpoint."""

from __future__ import annotations

import asyncio

import pytest

from bedrock_cp.metrics import MetricsServer, Registry


def test_exposition_of_counters_gauges_and_histograms() -> None:
    reg = Registry()
    proposals = reg.counter("proposals", "Proposals accepted by this leader.")
    rtt = reg.histogram(
        "peer_rtt_seconds", "Round trip to a peer.", ["peer"], buckets=[0.001, 0.01]
    )
    reg.gauge("term", "Current Raft term.", read=lambda: [((), 7)])
    role = reg.gauge("role", "1 for this node's role.", ["role"])
    proposals.inc()
    proposals.inc(2)
    rtt.observe(0.0005, "2")
    rtt.observe(0.005, "2")
    rtt.observe(3.0, "2")
    role.set(1, 'lea"der')
    assert reg.render() == (
        "# HELP bedrock_proposals Proposals accepted by this leader.\n"
        "# TYPE bedrock_proposals counter\n"
        "bedrock_proposals_total 3\n"
        "# HELP bedrock_peer_rtt_seconds Round trip to a peer.\n"
        "# TYPE bedrock_peer_rtt_seconds histogram\n"
        'bedrock_peer_rtt_seconds_bucket{peer="2",le="0.001"} 1\n'
        'bedrock_peer_rtt_seconds_bucket{peer="2",le="0.01"} 2\n'
        'bedrock_peer_rtt_seconds_bucket{peer="2",le="+Inf"} 3\n'
        'bedrock_peer_rtt_seconds_sum{peer="2"} 3.0055\n'
        'bedrock_peer_rtt_seconds_count{peer="2"} 3\n'
        "# HELP bedrock_term Current Raft term.\n"
        "# TYPE bedrock_term gauge\n"
        "bedrock_term 7\n"
        "# HELP bedrock_role 1 for this node's role.\n"
        "# TYPE bedrock_role gauge\n"
        'bedrock_role{role="lea\\"der"} 1\n'
    )


def test_bad_names_and_misuse_are_clear_errors() -> None:
    reg = Registry()
    with pytest.raises(ValueError, match="invalid metric name"):
        reg.counter("bad-name", "x")
    c = reg.counter("events", "x", ["kind"])
    with pytest.raises(ValueError, match="takes labels"):
        c.inc(1)
    with pytest.raises(ValueError, match="cannot go down"):
        c.inc(-1, "a")
    with pytest.raises(ValueError, match="registered twice"):
        reg.counter("events", "x")


def test_a_failing_collector_does_not_break_the_scrape() -> None:
    reg = Registry()
    reg.gauge("broken", "x", read=lambda: [((), 1 / 0)])
    reg.counter("ok", "x").inc()
    text = reg.render()
    assert "collector failed: ZeroDivisionError" in text and "bedrock_ok_total 1" in text


async def _get(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return data


async def test_the_endpoint_serves_get_metrics_and_refuses_the_rest() -> None:
    reg = Registry()
    reg.counter("hits", "x").inc()
    server = MetricsServer("127.0.0.1", 0, reg.render)
    await server.start()
    try:
        ok = await _get(server.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        assert ok.startswith(b"HTTP/1.0 200 OK\r\n") and ok.endswith(b"bedrock_hits_total 1\n")
        assert b"text/plain; version=0.0.4" in ok
        assert (await _get(server.port, b"GET / HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.0 404")
        assert (await _get(server.port, b"junk\r\n\r\n")).startswith(b"HTTP/1.0 400")
        # An oversized or never-finished request is dropped, the server keeps serving.
        assert await _get(server.port, b"GET /" + b"x" * 20000) == b""
        ok = await _get(server.port, b"GET /metrics HTTP/1.0\r\n\r\n")
        assert ok.startswith(b"HTTP/1.0 200 OK")
    finally:
        await server.stop()
