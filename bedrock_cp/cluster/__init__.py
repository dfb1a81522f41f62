"""Local clusters of real node processes, for `cluster up`, tests and demos."""

from .local import LocalCluster, free_ports

__all__ = ["LocalCluster", "free_ports"]
