"""A storage replica's durable base: batches written in one SQLite transaction
leave exactly what applying their mutations in order would."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from bedrock_cp.dataplane.engine import Engine
from bedrock_cp.protocol import CommitBatch, KeyRange, Mutation, MutationKind

KEYS = [b"a", b"b", b"c", b"d", b"e"]

_mutation = st.one_of(
    st.builds(
        lambda k, v: Mutation(MutationKind.SET, k, v), st.sampled_from(KEYS), st.binary(max_size=3)
    ),
    st.builds(lambda k: Mutation(MutationKind.CLEAR, k), st.sampled_from(KEYS)),
    st.builds(
        lambda b, e: Mutation(MutationKind.CLEAR_RANGE, b, e),
        st.sampled_from(KEYS),
        st.sampled_from([*KEYS, b"z"]),
    ),
)


def _model(state: dict[bytes, bytes], m: Mutation) -> None:
    if m.kind == MutationKind.SET:
        state[m.key] = m.param
    elif m.kind == MutationKind.CLEAR:
        state.pop(m.key, None)
    else:
        for key in [k for k in state if m.key <= k < m.param]:
            del state[key]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(_mutation, max_size=8), max_size=4), st.lists(_mutation, max_size=8))
def test_written_batches_leave_what_their_mutations_in_order_leave(
    earlier: list[list[Mutation]], later: list[Mutation]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        engine = Engine(Path(tmp), fsync=False)
        try:
            model: dict[bytes, bytes] = {}
            batches = [
                CommitBatch(v, v + 1, mutations) for v, mutations in enumerate(earlier, start=1)
            ]
            engine.write(batches, len(batches))  # several batches in one write
            engine.write([CommitBatch(len(batches), len(batches) + 1, later)], len(batches) + 1)
            for m in [*(m for ms in earlier for m in ms), *later]:
                _model(model, m)
            pairs, durable = engine.scan([KeyRange(b"", b"\xff")], set(), 100)
            assert dict(pairs) == model
            assert durable == len(batches) + 1
        finally:
            engine.close()
