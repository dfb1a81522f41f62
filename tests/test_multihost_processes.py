"""Three nodes on three network hosts (namespaces), reached only at their
advertised addresses through a 1-5 ms link: the cluster forms, registers what
it advertises (never the wildcard it binds), survives a kill -9 of the
leader's node and loses no acknowledged transaction."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .netns import NetnsCluster

pytestmark = pytest.mark.slow


@pytest.fixture
def hosts() -> Iterator[NetnsCluster]:
    cluster = NetnsCluster(3)
    try:
        cluster.create_network()
        cluster.start()
        yield cluster
    except BaseException:
        cluster.dump_logs()
        raise
    finally:
        cluster.destroy()
        cluster.cleanup()


async def test_three_hosts_elect_recover_and_keep_every_acknowledged_write(
    hosts: NetnsCluster,
) -> None:
    st = hosts.probe("ready", "60", timeout=90)
    advertised = set(hosts.addresses.values())
    assert {n["address"] for n in st["nodes"]} == advertised
    services = hosts.probe("services")["services"]
    assert services, "the nodes registered their workers"
    assert {s["address"] for s in services} <= advertised, "what is registered is dialable"

    first = hosts.probe("write", "before", "40")["acked"]
    leader = int(st["leader"])
    pid = next(int(n["pid"]) for n in st["nodes"] if n["id"] == leader)
    took = hosts.probe("failover", str(pid))
    assert took["kill_to_commit_ms"] > 0
    hosts.procs[leader].wait(timeout=15)
    after = hosts.probe("write", "after", "40")["acked"]

    hosts.restart(leader)
    st = hosts.probe("ready", "60", timeout=90)
    assert int(st["epoch"]) >= 2
    read = hosts.probe("read", *first, *after)
    assert read["missing"] == [], f"acknowledged and lost: {read['missing']}"
