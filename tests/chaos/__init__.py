"""Chaos on real processes: workloads, a nemesis, and a run that checks histories.

- :mod:`.workloads` — list-append, bank and directory clients recording into a history;
- :mod:`.cluster` — :class:`ChaosCluster` (a LocalCluster behind fault-injecting
  links) and the status :class:`Monitor`;
- :mod:`.nemesis` — seeded fault schedules and the faults themselves;
- :mod:`.runner` — :func:`run_chaos`: one run, healed, recovered, checked.
"""

from .runner import ChaosConfig, ChaosReport, run_chaos, seed_from_env

__all__ = ["ChaosConfig", "ChaosReport", "run_chaos", "seed_from_env"]
