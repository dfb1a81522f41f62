"""The whole-system deterministic simulation: every part of a cluster in one process.

Coordinators, Directors, Foremen, the data plane and clients of one cluster
run in one process on a virtual clock, over a simulated network and in-memory
disks, under a seeded schedule of faults; histories are checked, invariants
watched all along. A run is a pure function of its seed.

- :mod:`.cluster` — :class:`~.cluster.SimCluster`: the nodes and their seams.
- :mod:`.nemesis` — the schedule of faults, and the Director killed in a phase.
- :mod:`.invariants` — what is checked continuously (I1 I2 I4 I5 I6 I9).
- :mod:`.run` — one run: :func:`~.run.run_seed` -> :class:`~.run.SimReport`.
- ``python -m tests.sim`` — many seeds in parallel; ``make sim SEED=N`` replays one.
"""
