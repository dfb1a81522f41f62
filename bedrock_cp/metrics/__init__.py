"""Prometheus metrics of a node: a per-node :class:`Registry` and its HTTP endpoint."""

from .registry import LATENCY_BUCKETS, Counter, Gauge, Histogram, Registry
from .server import MetricsServer

__all__ = ["LATENCY_BUCKETS", "Counter", "Gauge", "Histogram", "MetricsServer", "Registry"]
