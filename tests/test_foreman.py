"""The Foreman with a small real worker kind: create, list, remove, boot, roles.

The ``echo`` worker keeps its state in a file of its directory (a counter of the
requests it served, and when it started), so a restart is observable.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from bedrock_cp import protocol
from bedrock_cp.dataplane.worker import Worker
from bedrock_cp.foreman import (
    MANIFEST_NAME,
    Foreman,
    ForemanError,
    NoSuchWorker,
    StartFailed,
    UnknownKind,
    WorkerExists,
)
from bedrock_cp.protocol import WorkerRef


class EchoWorker:
    """Counts the requests it served in ``<dir>/count``; answers ReadVersion(count)."""

    def __init__(self, ref: WorkerRef, directory: Path | None) -> None:
        self.ref = ref
        self.directory = directory
        self.stopped = False
        self.boots = 0
        if directory is not None:
            boots = directory / "boots"
            self.boots = int(boots.read_text()) + 1 if boots.exists() else 1
            boots.write_text(str(self.boots))

    async def handle(self, body: protocol.Request) -> protocol.Response:
        if self.directory is None:
            return protocol.ReadVersion(0)
        path = self.directory / "count"
        count = int(path.read_text()) + 1 if path.exists() else 1
        path.write_text(str(count))
        return protocol.ReadVersion(count)

    async def stop(self) -> None:
        self.stopped = True


async def echo(ref: WorkerRef, directory: Path) -> Worker:
    return EchoWorker(ref, directory)


async def broken(ref: WorkerRef, directory: Path) -> Worker:
    raise RuntimeError("disk on fire")


async def sequencer(ref: WorkerRef, body: protocol.StartRole) -> Worker:
    return EchoWorker(ref, None)


def make(tmp_path: Path, **kinds: object) -> Foreman:
    factories = kinds or {"echo": echo}
    return Foreman(
        "n1",
        "127.0.0.1:7001",
        tmp_path,
        factories,  # type: ignore[arg-type]
        roles={"sequencer": sequencer},
    )


async def test_create_list_route_remove(tmp_path: Path) -> None:
    changes: list[int] = []
    fm = make(tmp_path)
    fm.on_change = lambda: changes.append(1)
    assert fm.capabilities() == ["echo"]
    ref = await fm.create("echo", "e1")
    assert ref == WorkerRef("e1", "echo", "n1", "127.0.0.1:7001")
    await fm.create("echo", "e2")
    manifest = msgspec.json.decode((tmp_path / "workers" / "e1" / MANIFEST_NAME).read_bytes())
    assert manifest["id"] == "e1" and manifest["kind"] == "echo" and manifest["format"] == 1
    assert [(w.ref.id, w.state) for w in fm.list()] == [("e1", "running"), ("e2", "running")]

    worker = fm.route("e1")
    assert worker is not None
    assert await worker.handle(protocol.StorageStatus("e1")) == protocol.ReadVersion(1)
    assert fm.route("nope") is None

    await fm.remove("e1")
    assert isinstance(worker, EchoWorker) and worker.stopped
    assert not (tmp_path / "workers" / "e1").exists()
    assert [w.ref.id for w in fm.list()] == ["e2"]
    assert len(changes) == 3
    with pytest.raises(NoSuchWorker):
        await fm.remove("e1")
    await fm.stop()


async def test_errors_are_clear(tmp_path: Path) -> None:
    fm = make(tmp_path, echo=echo, broken=broken)
    with pytest.raises(UnknownKind, match="does not offer worker kind 'log'"):
        await fm.create("log", "l1")
    await fm.create("echo", "e1")
    with pytest.raises(WorkerExists, match="'e1' already exists"):
        await fm.create("echo", "e1")
    with pytest.raises(ForemanError, match="worker id"):
        await fm.create("echo", "../escape")
    with pytest.raises(StartFailed, match="disk on fire"):
        await fm.create("broken", "b1")
    assert not (tmp_path / "workers" / "b1").exists(), "a failed create leaves nothing"
    # The same refusals through the request API.
    assert await fm.handle(protocol.CreateWorker("log", "l1")) == protocol.Failed(
        "invalid", "node n1 does not offer worker kind 'log' (it offers: broken, echo)"
    )
    dup = await fm.handle(protocol.CreateWorker("echo", "e1"))
    assert isinstance(dup, protocol.Failed) and "already exists" in dup.message
    gone = await fm.handle(protocol.RemoveWorker("zz"))
    assert isinstance(gone, protocol.Failed) and gone.code == "no_such_worker"
    await fm.stop()


async def test_restart_restarts_workers_found_on_disk(tmp_path: Path) -> None:
    fm = make(tmp_path)
    for i in range(3):
        await fm.create("echo", f"e{i}")
    w = fm.get("e0")
    assert w is not None
    await w.handle(protocol.StorageStatus("e0"))
    await fm.stop()

    again = make(tmp_path)
    infos = await again.boot()
    assert [(i.ref, i.state) for i in infos] == [
        (WorkerRef(f"e{i}", "echo", "n1", "127.0.0.1:7001"), "running") for i in range(3)
    ]
    w = again.get("e0")
    assert isinstance(w, EchoWorker) and w.boots == 2
    assert await w.handle(protocol.StorageStatus("e0")) == protocol.ReadVersion(2), "state survived"
    await again.stop()


async def test_a_bad_manifest_fails_only_that_worker(tmp_path: Path) -> None:
    fm = make(tmp_path)
    for name in ("good1", "corrupt", "missing", "wrongid", "good2", "oldkind"):
        await fm.create("echo", name)
    await fm.stop()
    workers = tmp_path / "workers"
    (workers / "corrupt" / MANIFEST_NAME).write_bytes(b'{"format": 1, "id": "corr')
    (workers / "missing" / MANIFEST_NAME).unlink()
    (workers / "wrongid" / MANIFEST_NAME).write_bytes(
        b'{"format":1,"id":"other","kind":"echo","created_at_ms":1}'
    )
    (workers / "oldkind" / MANIFEST_NAME).write_bytes(
        b'{"format":1,"id":"oldkind","kind":"log","created_at_ms":1}'
    )
    (workers / ".removing-x").mkdir()  # a crash in the middle of a remove

    again = make(tmp_path)
    infos = {i.ref.id: i for i in await again.boot()}
    assert {k: i.state for k, i in infos.items()} == {
        "good1": "running",
        "good2": "running",
        "corrupt": "failed",
        "missing": "failed",
        "wrongid": "failed",
        "oldkind": "failed",
    }
    assert "invalid manifest" in infos["corrupt"].reason
    assert "no manifest" in infos["missing"].reason
    assert "names worker 'other'" in infos["wrongid"].reason
    assert "'log' is not offered" in infos["oldkind"].reason
    assert again.route("corrupt") is None
    assert not (workers / ".removing-x").exists()
    # A failed worker can be removed (its directory goes too).
    await again.remove("corrupt")
    assert not (workers / "corrupt").exists()
    await again.stop()


async def test_a_factory_that_raises_on_boot_fails_only_that_worker(tmp_path: Path) -> None:
    fm = make(tmp_path)
    await fm.create("echo", "a")
    await fm.create("echo", "b")
    await fm.stop()

    async def picky(ref: WorkerRef, directory: Path) -> Worker:
        if ref.id == "a":
            raise OSError("bad sector")
        return EchoWorker(ref, directory)

    again = make(tmp_path, echo=picky)
    infos = {i.ref.id: i for i in await again.boot()}
    assert infos["b"].state == "running"
    assert infos["a"].state == "failed" and "bad sector" in infos["a"].reason
    await again.stop()


async def test_roles_are_listed_and_not_persisted(tmp_path: Path) -> None:
    fm = make(tmp_path)
    await fm.create("echo", "e1")
    start = protocol.StartRole("sequencer", "seq-7", epoch=7, version=100, layout=b"")
    created = await fm.handle(start)
    assert created == protocol.WorkerCreated(
        WorkerRef("seq-7", "sequencer", "n1", "127.0.0.1:7001")
    )
    assert {(i.ref.id, i.ref.kind, i.state) for i in fm.list()} == {
        ("e1", "echo", "running"),
        ("seq-7", "sequencer", "running"),
    }
    assert not (tmp_path / "workers" / "seq-7").exists()
    bad = await fm.handle(protocol.StartRole("log", "x", 7, 100, b""))
    assert isinstance(bad, protocol.Failed) and "does not run role 'log'" in bad.message
    again_role = await fm.handle(start)
    assert isinstance(again_role, protocol.Failed) and "already exists" in again_role.message
    not_role = await fm.handle(protocol.StopRole("e1"))
    assert isinstance(not_role, protocol.Failed) and "not a role" in not_role.message
    await fm.stop()

    again = make(tmp_path)
    assert [i.ref.id for i in await again.boot()] == ["e1"]
    await again.stop()

    fm = make(tmp_path)
    await fm.start_role(start)
    assert await fm.handle(protocol.StopRole("seq-7")) == protocol.Done()
    assert fm.list() == []
    assert await fm.handle(protocol.ListWorkers()) == protocol.Workers([])
    await fm.stop()


async def test_a_node_refuses_a_capability_its_build_lacks(tmp_path: Path) -> None:
    from bedrock_cp.node import Node
    from bedrock_cp.node.config import ConfigError, config_from_dict

    config = config_from_dict(
        {
            "id": 1,
            "data_dir": str(tmp_path),
            "listen": "127.0.0.1:1",
            "coordinators": {"1": "127.0.0.1:1"},
            "capabilities": ["log", "tape"],
            "auth": {"mode": "none"},
        }
    )
    with pytest.raises(ConfigError, match="'tape' are not worker kinds of this build"):
        await Node.start(config)


async def test_an_older_epoch_can_never_remove_or_stop_a_newer_epochs_workers(
    tmp_path: Path,
) -> None:
    fm = make(tmp_path)
    assert await fm.handle(protocol.CreateWorker("echo", "w5", epoch=5)) == protocol.WorkerCreated(
        WorkerRef("w5", "echo", "n1", "127.0.0.1:7001")
    )
    await fm.handle(protocol.StartRole("sequencer", "s5", 5, 0, b""))
    refused = await fm.handle(protocol.RemoveWorker("w5", epoch=4))
    assert isinstance(refused, protocol.Failed) and refused.code == "newer_epoch"
    refused = await fm.handle(protocol.StopRole("s5", epoch=4))
    assert isinstance(refused, protocol.Failed) and refused.code == "newer_epoch"
    assert {(w.ref.id, w.epoch, w.state) for w in fm.list()} == {
        ("w5", 5, "running"),
        ("s5", 5, "running"),
    }
    # The epoch is in the manifest: a restarted node still knows it.
    again = make(tmp_path)
    await again.boot()
    assert [(w.ref.id, w.epoch) for w in again.list()] == [("w5", 5)]
    # Its own epoch and newer ones may.
    assert await again.handle(protocol.RemoveWorker("w5", epoch=5)) == protocol.Done()
    assert await fm.handle(protocol.StopRole("s5", epoch=6)) == protocol.Done()
