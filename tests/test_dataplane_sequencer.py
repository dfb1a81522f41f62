"""The sequencer: versions follow time, strictly increase, and are fenced by epoch;
a read version is handed out only after a confirmation round with every log."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bedrock_cp.dataplane.log import LogWorker
from bedrock_cp.dataplane.sequencer import Sequencer
from bedrock_cp.protocol import (
    CommitVersion,
    ConfirmEpoch,
    Done,
    Failed,
    GetCommitVersion,
    GetReadVersion,
    Locked,
    LogLock,
    NewerEpoch,
    ReadVersion,
    ReportCommitted,
    Request,
    Response,
    WorkerRef,
)

from .dataplane_pipeline import CLUSTER, ref, until
from .loopback import LoopbackDialer


class Logs:
    """Log stand-ins that answer ConfirmEpoch as told, counting the requests.

    The answer is decided when the request arrives; ``hold`` delays sending it,
    so a test controls when a round ends.
    """

    def __init__(self, n: int = 3) -> None:
        self.refs = [ref(f"log{i}", "log") for i in range(n)]
        self.answers: dict[str, Response] = {r.id: Done() for r in self.refs}
        self.asked: list[str] = []
        self.hold = asyncio.Event()
        self.hold.set()
        #: Logs whose node is stopped: they never answer (nor reset).
        self.silent: set[str] = set()

    async def call(self, to: WorkerRef, body: Request, timeout: float) -> Response:  # noqa: ASYNC109
        assert isinstance(body, ConfirmEpoch)
        self.asked.append(to.id)
        answer = self.answers[to.id]
        if to.id in self.silent:
            await asyncio.Event().wait()
        await self.hold.wait()
        if isinstance(answer, Failed) and answer.code == "unreachable":
            raise ConnectionRefusedError(f"{to.id} is down")
        return answer


def sequencer(
    logs: Logs, epoch: int = 1, start: int = 0, now: list[float] | None = None
) -> Sequencer:
    clock = now if now is not None else [0.0]
    return Sequencer(
        ref("seq", "sequencer"),
        epoch,
        start,
        clock=lambda: clock[0],
        logs=logs.refs,
        dialer=logs,
        confirm_timeout=0.5,
    )


async def test_versions_strictly_increase_and_follow_time() -> None:
    now = [100.0]
    seq = sequencer(Logs(), 2, 5_000, now)
    versions = []
    for _ in range(5):  # the clock stands still
        cv = await seq.handle(GetCommitVersion("seq", 2))
        assert isinstance(cv, CommitVersion)
        versions.append(cv)
    assert [c.version for c in versions] == [5_001, 5_002, 5_003, 5_004, 5_005]
    assert [c.prev_version for c in versions] == [5_000, 5_001, 5_002, 5_003, 5_004]
    now[0] += 1.5
    cv = await seq.handle(GetCommitVersion("seq", 2))
    assert cv == CommitVersion(5_005, 5_000 + 1_500_000)
    now[0] -= 10  # a clock going backwards never makes versions go back
    cv2 = await seq.handle(GetCommitVersion("seq", 2))
    assert cv2 == CommitVersion(1_505_000, 1_505_001)


async def test_read_version_is_the_reported_committed_version() -> None:
    seq = sequencer(Logs(), 1, 700)
    assert await seq.handle(GetReadVersion("seq", 1)) == ReadVersion(700)
    await seq.handle(GetCommitVersion("seq", 1))
    await seq.handle(GetCommitVersion("seq", 1))
    assert await seq.handle(ReportCommitted("seq", 1, 702)) == ReadVersion(702)
    assert await seq.handle(ReportCommitted("seq", 1, 701)) == ReadVersion(702)  # max
    assert await seq.handle(GetReadVersion("seq", 1)) == ReadVersion(702)
    bad = await seq.handle(ReportCommitted("seq", 1, 9_999))
    assert isinstance(bad, Failed) and bad.code == "invalid"


async def test_epochs_are_checked_on_every_call() -> None:
    seq = sequencer(Logs(), 3)
    for body in (
        GetReadVersion("seq", 2),
        GetCommitVersion("seq", 2),
        ReportCommitted("seq", 2, 0),
    ):
        assert await seq.handle(body) == NewerEpoch(3)
    # A newer epoch supersedes this sequencer: its own epoch is refused from then on.
    assert isinstance(await seq.handle(GetCommitVersion("seq", 4)), Failed)
    assert await seq.handle(GetCommitVersion("seq", 3)) == NewerEpoch(4)


async def test_a_read_version_waits_for_every_log_to_confirm_the_epoch() -> None:
    logs = Logs()
    seq = sequencer(logs)
    assert await seq.handle(GetReadVersion("seq", 1)) == ReadVersion(0)
    assert sorted(logs.asked) == ["log0", "log1", "log2"]
    # One log has seen a newer epoch: no read version, and the sequencer is superseded.
    logs.answers["log1"] = NewerEpoch(2)
    assert await seq.handle(GetReadVersion("seq", 1)) == NewerEpoch(2)
    assert await seq.handle(GetCommitVersion("seq", 1)) == NewerEpoch(2)


async def test_a_locked_or_unreachable_log_refuses_every_read_version() -> None:
    logs = Logs()
    seq = sequencer(logs)
    logs.answers["log2"] = Locked("locked by a recovery")
    assert isinstance(await seq.handle(GetReadVersion("seq", 1)), Locked)
    logs.answers["log2"] = Done()
    logs.answers["log0"] = Failed("unreachable", "")
    refused = await seq.handle(GetReadVersion("seq", 1))
    assert isinstance(refused, Failed) and refused.code == "unavailable", refused
    logs.answers["log0"] = Done()
    assert await seq.handle(GetReadVersion("seq", 1)) == ReadVersion(0)


async def test_a_refusal_decides_the_round_without_waiting_for_a_silent_log() -> None:
    # The next epoch locked log2 while log0's node is stopped: the reader hears
    # now that this epoch is over, not after log0 wakes up or times out.
    logs = Logs()
    seq = sequencer(logs)
    logs.silent.add("log0")
    logs.answers["log2"] = NewerEpoch(2)
    assert await asyncio.wait_for(seq.handle(GetReadVersion("seq", 1)), 10) == NewerEpoch(2)
    logs.answers["log2"] = Locked("locked by a recovery")
    seq = sequencer(logs)
    assert isinstance(await asyncio.wait_for(seq.handle(GetReadVersion("seq", 1)), 10), Locked)


async def test_concurrent_read_versions_share_confirmation_rounds() -> None:
    logs = Logs()
    seq = sequencer(logs)
    logs.hold.clear()
    first = asyncio.ensure_future(seq.handle(GetReadVersion("seq", 1)))
    await until(lambda: len(logs.asked) == 3)  # round 1 in flight
    # Arriving during round 1, these must wait for a round that starts after them.
    later = [asyncio.ensure_future(seq.handle(GetReadVersion("seq", 1))) for _ in range(50)]
    await asyncio.sleep(0)
    await seq.handle(GetCommitVersion("seq", 1))
    await seq.handle(ReportCommitted("seq", 1, 1))  # acknowledged during round 1
    logs.hold.set()
    assert await first == ReadVersion(1)
    assert set(await asyncio.gather(*later)) == {ReadVersion(1)}
    assert seq.rounds == 2  # 51 reads, 2 rounds, 3 log requests each
    assert len(logs.asked) == 6


async def test_a_request_arriving_mid_round_is_not_answered_by_that_round() -> None:
    logs = Logs()
    seq = sequencer(logs)
    logs.hold.clear()
    first = asyncio.ensure_future(seq.handle(GetReadVersion("seq", 1)))
    await until(lambda: len(logs.asked) == 3)
    second = asyncio.ensure_future(seq.handle(GetReadVersion("seq", 1)))
    await asyncio.sleep(0)
    # Round 1 was confirmed before the lock; the second request arrived after the
    # lock was taken, so only a round after it may answer it, and that one fails.
    logs.answers["log0"] = Locked("a newer epoch locked it")
    logs.hold.set()
    assert await first == ReadVersion(0)
    assert isinstance(await second, Locked)


async def test_a_real_log_confirms_its_epoch_until_a_newer_one_locks_it(tmp_path: Path) -> None:
    dialer = LoopbackDialer()
    log = LogWorker(ref("log0", "log"), tmp_path / "log0", cluster_id=CLUSTER, fsync=False)
    dialer.register(log)
    seq = Sequencer(ref("seq", "sequencer"), 1, 0, clock=lambda: 0.0, logs=[log.ref], dialer=dialer)
    assert await log.handle(ConfirmEpoch("log0", 1)) == Done()
    assert await seq.handle(GetReadVersion("seq", 1)) == ReadVersion(0)
    await log.handle(LogLock("log0", 2))
    assert await log.handle(ConfirmEpoch("log0", 1)) == NewerEpoch(2)
    assert isinstance(await log.handle(ConfirmEpoch("log0", 2)), Locked)
    assert await seq.handle(GetReadVersion("seq", 1)) == NewerEpoch(2)
    await seq.stop()
    await dialer.stop_all()
