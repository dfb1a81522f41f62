"""The sequencer: versions follow time, strictly increase, and are fenced by epoch."""

from __future__ import annotations

from bedrock_cp.dataplane.sequencer import Sequencer
from bedrock_cp.protocol import (
    CommitVersion,
    Failed,
    GetCommitVersion,
    GetReadVersion,
    NewerEpoch,
    ReadVersion,
    ReportCommitted,
)

from .dataplane_pipeline import ref


async def test_versions_strictly_increase_and_follow_time() -> None:
    now = [100.0]
    seq = Sequencer(ref("seq", "sequencer"), 2, 5_000, clock=lambda: now[0])
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
    seq = Sequencer(ref("seq", "sequencer"), 1, 700, clock=lambda: 0.0)
    assert await seq.handle(GetReadVersion("seq", 1)) == ReadVersion(700)
    await seq.handle(GetCommitVersion("seq", 1))
    await seq.handle(GetCommitVersion("seq", 1))
    assert await seq.handle(ReportCommitted("seq", 1, 702)) == ReadVersion(702)
    assert await seq.handle(ReportCommitted("seq", 1, 701)) == ReadVersion(702)  # max
    assert await seq.handle(GetReadVersion("seq", 1)) == ReadVersion(702)
    bad = await seq.handle(ReportCommitted("seq", 1, 9_999))
    assert isinstance(bad, Failed) and bad.code == "invalid"


async def test_epochs_are_checked_on_every_call() -> None:
    seq = Sequencer(ref("seq", "sequencer"), 3, 0, clock=lambda: 0.0)
    for body in (
        GetReadVersion("seq", 2),
        GetCommitVersion("seq", 2),
        ReportCommitted("seq", 2, 0),
    ):
        assert await seq.handle(body) == NewerEpoch(3)
    # A newer epoch supersedes this sequencer: its own epoch is refused from then on.
    assert isinstance(await seq.handle(GetCommitVersion("seq", 4)), Failed)
    assert await seq.handle(GetCommitVersion("seq", 3)) == NewerEpoch(4)
