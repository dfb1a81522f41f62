"""I6 for every worker kind: a request from an epoch older than one seen is refused
with NewerEpoch, by every epoch-carrying request."""

from __future__ import annotations

from pathlib import Path

from bedrock_cp.protocol import (
    CommitBatch,
    Committed,
    GetCommitVersion,
    GetReadVersion,
    LogLock,
    LogPush,
    LogRecover,
    NewerEpoch,
    ReportCommitted,
    Request,
    Resolve,
    StorageLock,
    UnlockProxy,
)

from .dataplane_pipeline import TOKEN, Pipeline, set_


async def test_an_older_epoch_is_refused_by_every_request_of_every_worker(tmp_path: Path) -> None:
    p = Pipeline(tmp_path, epoch=5)
    await p.start()
    assert isinstance(await p.commit([set_(b"a", b"1")]), Committed)  # logs have seen 5
    await p.call(StorageLock("ss0", 5, False))
    old = 4
    requests: list[Request] = [
        LogPush("log0", old, CommitBatch(10**9, 10**9 + 1, []), 0),
        LogLock("log0", old),
        LogRecover("log1", old, [], 1, 0),
        StorageLock("ss0", old, True),
        GetReadVersion("seq", old),
        GetCommitVersion("seq", old),
        ReportCommitted("seq", old, 0),
        Resolve("res0", old, 0, 1, []),
        UnlockProxy("proxy0", old, TOKEN),
    ]
    for body in requests:
        assert await p.call(body) == NewerEpoch(5), body
    # Nothing changed: the pipeline still commits.
    assert isinstance(await p.commit([set_(b"a", b"2")]), Committed)
    await p.close()


async def test_a_lock_by_a_newer_epoch_supersedes_the_proxy(tmp_path: Path) -> None:
    p = Pipeline(tmp_path, epoch=1)
    await p.start()
    assert isinstance(await p.commit([set_(b"a", b"1")]), Committed)
    rv = await p.read_version()
    for log in p.logs:
        await p.call(LogLock(log.ref.id, 2))
    # The sequencer no longer hands out read versions: its logs are locked.
    assert await p.call(GetReadVersion("seq", 1)) == NewerEpoch(2)
    # The proxy's next push meets logs locked by epoch 2: the old generation is
    # over, and since every log refused the batch, it definitely did not commit.
    answer = await p.commit([set_(b"a", b"2")], read_version=rv)
    assert answer == NewerEpoch(2)
    assert await p.commit([set_(b"a", b"3")], read_version=rv) == NewerEpoch(2)
    await p.close()
