"""End to end through commit proxies, over the loopback dialer, with real workers."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bedrock_cp.protocol import (
    MAX_VALUE_SIZE,
    Commit,
    Committed,
    Failed,
    KeyRange,
    Locked,
    Mutation,
    MutationKind,
    NotCommitted,
    Response,
    StorageGet,
    StorageState,
    StorageStatus,
    UnlockProxy,
    Value,
)

from .dataplane_pipeline import Pipeline, set_, until


async def read(p: Pipeline, key: bytes, version: int) -> Response:
    return await p.call(StorageGet("ss0", key, version))


async def test_concurrent_transactions_commit_and_are_readable(tmp_path: Path) -> None:
    p = Pipeline(tmp_path, proxies=2, window_seconds=1.0)
    await p.start()
    done: list[tuple[bytes, bytes, int]] = []

    async def client(n: int) -> None:
        for j in range(25):
            key, value = b"k%d-%d" % (n, j), b"v%d" % j
            answer = await p.commit([set_(key, value)], reads=[KeyRange.single(key)], proxy=n % 2)
            assert isinstance(answer, Committed), answer
            done.append((key, value, answer.version))

    await asyncio.gather(*(client(n) for n in range(8)))
    assert len(done) == 200
    for key, value, version in done:
        assert await read(p, key, version) == Value(value, version)
        assert await read(p, key, version - 1) == Value(None, version - 1)
    # An idle proxy tells the logs the committed version; storage persists it.
    last = max(v for _, _, v in done)
    await until(lambda: p.storage.durable >= last)
    status = await p.call(StorageStatus("ss0"))
    assert isinstance(status, StorageState) and status.applied >= last
    await p.close()


async def test_of_a_conflicting_pair_one_commits(tmp_path: Path) -> None:
    p = Pipeline(tmp_path)
    await p.start()
    first = await p.commit([set_(b"x", b"0")])
    assert isinstance(first, Committed)
    rv = await p.read_version()
    # Both read x at rv and write it (a read-modify-write): at most one may commit.
    answers = await asyncio.gather(
        *(
            p.commit([set_(b"x", b"%d" % i)], reads=[KeyRange.single(b"x")], read_version=rv)
            for i in (1, 2)
        )
    )
    assert sorted(type(a).__name__ for a in answers) == ["Committed", "NotCommitted"]
    assert NotCommitted("conflict") in answers
    # Across resolvers too: y (< m) and z (>= m) live on different resolvers.
    rv = await p.read_version()
    winner = await p.commit([set_(b"z", b"1")])
    loser = await p.commit([set_(b"y", b"1")], reads=[KeyRange(b"y", b"zz")], read_version=rv)
    assert isinstance(winner, Committed) and loser == NotCommitted("conflict")
    await p.close()


async def test_bad_input_fails_clearly_and_others_commit(tmp_path: Path) -> None:
    p = Pipeline(tmp_path)
    await p.start()
    big = [set_(b"big%d" % i, b"x" * (MAX_VALUE_SIZE - 10)) for i in range(101)]
    answers = await asyncio.gather(
        p.commit(big),  # over the transaction size limit
        p.commit([set_(b"a", b"x" * (MAX_VALUE_SIZE + 1))]),  # value over its limit
        p.commit([set_(b"\xffsystem", b"x")]),  # outside the user key space
        p.commit([Mutation(MutationKind.CLEAR_RANGE, b"a", b"\xff\x01")]),
        p.commit([set_(b"ok", b"1")], read_version=10**15, reads=[KeyRange.single(b"ok")]),
        p.commit([set_(b"fine", b"1")]),
    )
    for answer in answers[:4]:
        assert isinstance(answer, Failed) and answer.code == "invalid", answer
    assert "limit" in answers[0].message and "0xff" in answers[2].message  # type: ignore[union-attr]
    future = answers[4]
    assert isinstance(future, Failed) and future.code == "future_version"
    ok = answers[5]
    assert isinstance(ok, Committed)
    assert await read(p, b"fine", ok.version) == Value(b"1", ok.version)
    far = await p.call(StorageGet("ss0", b"fine", ok.version + 10**12), timeout=5.0)
    assert isinstance(far, Failed) and far.code == "future_version"
    await p.close()


async def test_a_proxy_is_locked_until_unlocked_with_its_token(tmp_path: Path) -> None:
    p = Pipeline(tmp_path)
    body = Commit("proxy0", 0, [], [], [set_(b"a", b"1")])
    assert isinstance(await p.call(body), Locked)
    wrong = await p.call(UnlockProxy("proxy0", 1, b"guess"))
    assert isinstance(wrong, Failed) and wrong.code == "invalid"
    await p.start()
    assert isinstance(await p.commit([set_(b"a", b"1")]), Committed)
    await p.close()


async def test_a_dead_log_makes_commits_unavailable(tmp_path: Path) -> None:
    p = Pipeline(tmp_path)
    await p.start()
    assert isinstance(await p.commit([set_(b"a", b"1")]), Committed)
    await p.logs[1].stop()
    answer = await p.commit([set_(b"a", b"2")])
    assert isinstance(answer, Failed) and answer.code == "unavailable", answer
    later = await p.commit([set_(b"a", b"3")])
    assert isinstance(later, Failed) and later.code == "unavailable"
    assert p.proxies[0].broken
    await p.close()


async def test_an_idle_proxy_notices_a_dead_sequencer(tmp_path: Path) -> None:
    p = Pipeline(tmp_path)
    await p.start()
    await p.sequencer.stop()
    await until(lambda: p.proxies[0].broken is not None, timeout=2.0)
    await p.close()
