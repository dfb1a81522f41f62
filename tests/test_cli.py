"""The bedrock-cp command line against real processes: happy paths and bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bedrock_cp.cluster import free_ports
from bedrock_cp.cluster.local import pid_is_node

pytestmark = pytest.mark.slow


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bedrock_cp", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_cluster_up_status_register_services_deregister_down(tmp_path: Path) -> None:
    d = tmp_path / "c"
    up = cli("cluster", "up", "--nodes", "3", "--dir", str(d))
    assert up.returncode == 0, up.stderr
    try:
        assert (d / "cluster.toml").exists()
        for i in (1, 2, 3):
            assert (d / f"{i}.toml").exists() and (d / f"{i}.log").exists()
        st = cli("status", "--cluster", str(d / "cluster.toml"), "--json")
        assert st.returncode == 0, st.stderr
        status = json.loads(st.stdout)
        for key in ("leader", "term", "epoch", "recovery", "nodes", "services"):
            assert key in status
        for key in ("state", "phase", "last_duration_ms"):
            assert key in status["recovery"]
        assert status["leader"] in (1, 2, 3)
        for node in status["nodes"]:
            for key in (
                "id",
                "address",
                "role",
                "term",
                "commit_index",
                "applied_index",
                "reachable",
                "pid",
            ):
                assert key in node, key
            assert node["reachable"] and pid_is_node(node["pid"])

        addresses = ",".join(n["address"] for n in status["nodes"])
        # A bare address list carries no credentials: refused, in one line.
        refused = cli("services", "--cluster", addresses)
        assert_one_line_error(refused, "the node may require authentication")
        reg = cli(
            "register",
            "--cluster",
            addresses,
            "--credentials",
            str(d / "cluster.toml"),
            "--id",
            "log-1",
            "--kind",
            "log",
            "--address",
            "127.0.0.1:4500",
            "--json",
        )
        assert reg.returncode == 0, reg.stderr
        assert json.loads(reg.stdout)["index"] > 0
        svc = cli("services", "--cluster", str(d), "--json")
        mine = [x for x in json.loads(svc.stdout)["services"] if x["id"] == "log-1"]
        assert mine and mine[0]["address"] == "127.0.0.1:4500"
        dereg = cli("deregister", "--cluster", str(d), "--id", "log-1")
        assert dereg.returncode == 0, dereg.stderr
        svc = cli("services", "--cluster", str(d), "--json")
        assert "log-1" not in {x["id"] for x in json.loads(svc.stdout)["services"]}
        text = cli("status", "--cluster", str(d))
        assert "leader: node" in text.stdout
    finally:
        down = cli("cluster", "down", "--dir", str(d))
    assert down.returncode == 0, down.stderr
    assert not any(pid_is_node(n["pid"]) for n in status["nodes"])


def test_node_from_flags_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    port = free_ports(1)[0]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bedrock_cp",
            "node",
            "--id",
            "1",
            "--data-dir",
            str(tmp_path / "n1"),
            "--listen",
            f"127.0.0.1:{port}",
            "--auth",
            "none",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            st = cli("status", "--cluster", f"127.0.0.1:{port}", "--json", "--timeout", "1")
            if st.returncode == 0 and json.loads(st.stdout)["leader"] == 1:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("single node never led")
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=15)
        assert proc.returncode == 0, out
        assert "node 1 stopped" in out
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_node_without_credentials_refuses_to_start(tmp_path: Path) -> None:
    port = free_ports(1)[0]
    flags = ["--id", "1", "--data-dir", str(tmp_path / "n1"), "--listen", f"127.0.0.1:{port}"]
    assert_one_line_error(cli("node", *flags), 'auth.mode = "tls" needs auth.ca', "certs init")
    cfg = tmp_path / "n.toml"
    cfg.write_text(
        f'id = 1\ndata_dir = "{tmp_path / "n2"}"\nlisten = "127.0.0.1:{port}"\n'
        f'[coordinators]\n"1" = "127.0.0.1:{port}"\n[auth]\nmode = "secret"\n'
    )
    assert_one_line_error(cli("node", "--config", str(cfg)), "needs auth.secret")
    assert not (tmp_path / "n1" / "raft").exists(), "nothing was created"


def test_unknown_config_key_is_named(tmp_path: Path) -> None:
    cfg = tmp_path / "n.toml"
    cfg.write_text(
        'id = 1\ndata_dir = "x"\nlisten = "127.0.0.1:1"\nelection = 5\n'
        '[coordinators]\n"1" = "127.0.0.1:1"\n'
    )
    assert_one_line_error(cli("node", "--config", str(cfg)), "unknown field `election`")


def test_bad_config_values_are_named(tmp_path: Path) -> None:
    cfg = tmp_path / "n.toml"
    cfg.write_text(
        'id = 1\ndata_dir = "x"\nlisten = "nowhere"\n[coordinators]\n"1" = "127.0.0.1:1"\n'
    )
    assert_one_line_error(cli("node", "--config", str(cfg)), "listen", "host:port")
    assert_one_line_error(cli("node", "--config", str(tmp_path / "missing.toml")), "no such file")
    # Idempotency records must outlive the clients' lookups of them by a margin.
    cfg.write_text(
        'id = 1\ndata_dir = "x"\nlisten = "127.0.0.1:1"\nidempotency_retention_ms = 5000\n'
        '[coordinators]\n"1" = "127.0.0.1:1"\n'
    )
    assert_one_line_error(cli("node", "--config", str(cfg)), "idempotency_retention_ms")


def test_unreachable_cluster_is_one_line() -> None:
    port = free_ports(1)[0]
    proc = cli("status", "--cluster", f"127.0.0.1:{port}", "--timeout", "1")
    assert_one_line_error(proc, "no coordinator answered")


def test_no_leader_in_time_is_one_line(tmp_path: Path) -> None:
    # One of three configured coordinators running: it can never win an election.
    ports = free_ports(3)
    peers = [f"--peer={i + 1}=127.0.0.1:{p}" for i, p in enumerate(ports) if i]
    node = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bedrock_cp",
            "node",
            "--id",
            "1",
            "--data-dir",
            str(tmp_path / "n1"),
            "--listen",
            f"127.0.0.1:{ports[0]}",
            "--auth",
            "none",
            *peers,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while cli("status", "--cluster", f"127.0.0.1:{ports[0]}", "--timeout", "1").returncode:
            assert time.monotonic() < deadline, "node never answered"
            time.sleep(0.05)
        proc = cli(
            "register",
            "--cluster",
            f"127.0.0.1:{ports[0]}",
            "--id",
            "x",
            "--kind",
            "log",
            "--address",
            "127.0.0.1:1",
            "--timeout",
            "1.5",
        )
        assert_one_line_error(proc, "within 1.5s")
    finally:
        node.send_signal(signal.SIGTERM)
        node.wait(timeout=15)


def test_cluster_up_refuses_a_directory_with_a_running_cluster(tmp_path: Path) -> None:
    d = tmp_path / "c"
    assert cli("cluster", "up", "--nodes", "1", "--dir", str(d)).returncode == 0
    try:
        again = cli("cluster", "up", "--nodes", "1", "--dir", str(d))
        assert_one_line_error(again, "already holds a running cluster")
    finally:
        assert cli("cluster", "down", "--dir", str(d)).returncode == 0
    assert os.path.exists(d / "cluster.toml")


def test_where_cluster_up_is_run_from_does_not_matter(tmp_path: Path) -> None:
    # A folder holding a bedrock_cp that cannot be imported (like an unbuilt
    # source checkout): the nodes must import the installed package anyway.
    shadow = tmp_path / "checkout" / "bedrock_cp"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text('raise ImportError("the unbuilt checkout")\n')
    (shadow / "__main__.py").write_text('raise ImportError("the unbuilt checkout")\n')
    script = Path(sys.executable).parent / "bedrock-cp"
    d = tmp_path / "c"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(script), *args],
            cwd=shadow.parent,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    up = run("cluster", "up", "--nodes", "3", "--dir", str(d))
    try:
        assert up.returncode == 0, up.stderr
        st = run("status", "--cluster", str(d), "--json")
        assert st.returncode == 0, st.stderr
        assert json.loads(st.stdout)["leader"] in (1, 2, 3)
    finally:
        down = run("cluster", "down", "--dir", str(d))
    assert down.returncode == 0, down.stderr
