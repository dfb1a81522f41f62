"""Metrics of one node: counters, gauges and histograms, and their text exposition.

Written here rather than taken from ``prometheus_client``: a node embedded in a
host application (or many nodes in one test process, or the simulator) needs
a registry per node, not a process-global one, and the metrics are few. The
hot paths only add to a float (:meth:`Counter.inc`) or bisect a bucket list
(:meth:`Histogram.observe`); gauges that mirror state (term, commit index, ...)
are read by a collector at scrape time, so keeping them costs nothing.

The text follows the Prometheus exposition format, version 0.0.4.
"""

from __future__ import annotations

import abc
import bisect
import math
import re
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")

#: Latency buckets in seconds, from 50 µs to 10 s.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip

Labels = tuple[tuple[str, str], ...]
Sample = tuple[str, Labels, float]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _format_labels(labels: Labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels) + "}"


def _format_value(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return repr(float(value)) if value != int(value) else str(int(value))


class _Metric(abc.ABC):
    kind = "untyped"

    def __init__(self, name: str, help: str, labelnames: Sequence[str]) -> None:
        if not _NAME.fullmatch(name):
            raise ValueError(f"invalid metric name {name!r}")
        for label in labelnames:
            if not _LABEL.fullmatch(label) or label.startswith("__"):
                raise ValueError(f"invalid label name {label!r} for {name}")
        self.name = name
        self.help = help
        self.labelnames = tuple(labelnames)

    def _key(self, values: Sequence[str]) -> Labels:
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {tuple(values)}")
        return tuple(zip(self.labelnames, (str(v) for v in values), strict=True))

    @abc.abstractmethod
    def samples(self) -> Iterable[Sample]:
        """(sample name, labels, value) for every series of this metric."""

    def header(self) -> str:
        return f"# HELP {self.name} {self.help}\n# TYPE {self.name} {self.kind}\n"


#: Series a component keeps itself, read when scraped: (label values, value).
Reader = Callable[[], Iterable[tuple[Sequence[str], float]]]


class _Valued(_Metric):
    """A metric with one value per series: set here, or read from ``read``."""

    def __init__(
        self, name: str, help: str, labelnames: Sequence[str], read: Reader | None
    ) -> None:
        super().__init__(name, help, labelnames)
        self._values: dict[Labels, float] = {}
        self._read = read

    def _current(self) -> list[tuple[Labels, float]]:
        """Every series, those read now included (they win), sorted."""
        values = dict(self._values)
        if self._read is not None:
            for values_of_labels, value in self._read():
                values[self._key(values_of_labels)] = float(value)
        return sorted(values.items())


class Counter(_Valued):
    """A value that only goes up (events, bytes). ``inc(n, *labels)``, or totals
    kept elsewhere (a component's own count) given as ``read``."""

    kind = "counter"

    def __init__(
        self, name: str, help: str, labelnames: Sequence[str] = (), *, read: Reader | None = None
    ) -> None:
        super().__init__(name, help, labelnames, read)
        if not labelnames and read is None:
            self._values[()] = 0.0

    def inc(self, amount: float = 1.0, *labels: str) -> None:
        if amount < 0:
            raise ValueError(f"{self.name}: a counter cannot go down ({amount})")
        key = self._key(labels) if labels or self.labelnames else ()
        self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, *labels: str) -> float:
        return self._values.get(self._key(labels) if self.labelnames else (), 0.0)

    def samples(self) -> Iterable[Sample]:
        for labels, value in self._current():
            yield self.name + "_total", labels, value


class Gauge(_Valued):
    """A value that goes up and down, set directly or read from ``read`` at scrape time."""

    kind = "gauge"

    def __init__(
        self, name: str, help: str, labelnames: Sequence[str] = (), *, read: Reader | None = None
    ) -> None:
        super().__init__(name, help, labelnames, read)

    def set(self, value: float, *labels: str) -> None:
        self._values[self._key(labels)] = float(value)

    def samples(self) -> Iterable[Sample]:
        for labels, value in self._current():
            yield self.name, labels, value


class Histogram(_Metric):
    """Observations counted into cumulative buckets (seconds, bytes)."""

    kind = "histogram"

    def __init__(
        self,
        name: str,
        help: str,
        labelnames: Sequence[str] = (),
        buckets: Sequence[float] = LATENCY_BUCKETS,
    ) -> None:
        super().__init__(name, help, labelnames)
        if list(buckets) != sorted(buckets) or not buckets:
            raise ValueError(f"{name}: buckets must be sorted and non-empty")
        self.buckets = tuple(float(b) for b in buckets)
        # labels -> [count per bucket (+Inf last), sum]
        self._data: dict[Labels, tuple[list[int], list[float]]] = {}

    def observe(self, value: float, *labels: str) -> None:
        key = self._key(labels) if labels or self.labelnames else ()
        data = self._data.get(key)
        if data is None:
            data = self._data[key] = ([0] * (len(self.buckets) + 1), [0.0])
        data[0][bisect.bisect_left(self.buckets, value)] += 1
        data[1][0] += value

    def count(self, *labels: str) -> int:
        data = self._data.get(self._key(labels) if self.labelnames else ())
        return sum(data[0]) if data else 0

    def samples(self) -> Iterable[Sample]:
        for labels, (counts, total) in sorted(self._data.items()):
            running = 0
            for bound, n in zip((*self.buckets, math.inf), counts, strict=True):
                running += n
                yield self.name + "_bucket", (*labels, ("le", _format_value(bound))), running
            yield self.name + "_sum", labels, total[0]
            yield self.name + "_count", labels, running


M = TypeVar("M", bound=_Metric)


class Registry:
    """The metrics of one node, rendered together."""

    def __init__(self, prefix: str = "bedrock_") -> None:
        self.prefix = prefix
        self._metrics: dict[str, _Metric] = {}

    def _add(self, metric: M) -> M:
        if metric.name in self._metrics:
            raise ValueError(f"metric {metric.name} registered twice")
        self._metrics[metric.name] = metric
        return metric

    def counter(
        self, name: str, help: str, labelnames: Sequence[str] = (), *, read: Reader | None = None
    ) -> Counter:
        return self._add(Counter(self.prefix + name, help, labelnames, read=read))

    def gauge(
        self, name: str, help: str, labelnames: Sequence[str] = (), *, read: Reader | None = None
    ) -> Gauge:
        return self._add(Gauge(self.prefix + name, help, labelnames, read=read))

    def histogram(
        self,
        name: str,
        help: str,
        labelnames: Sequence[str] = (),
        buckets: Sequence[float] = LATENCY_BUCKETS,
    ) -> Histogram:
        return self._add(Histogram(self.prefix + name, help, labelnames, buckets))

    def register(self, metric: _Metric) -> None:
        """Add a metric a component made itself (its name taken as it is)."""
        self._add(metric)

    def render(self) -> str:
        """Every metric in the text exposition format."""
        out: list[str] = []
        for metric in self._metrics.values():
            try:
                samples = list(metric.samples())
            except Exception as exc:  # a collector must never break the scrape
                out.append(f"# {metric.name}: collector failed: {type(exc).__name__}\n")
                continue
            out.append(metric.header())
            out.extend(
                f"{name}{_format_labels(labels)} {_format_value(value)}\n"
                for name, labels, value in samples
            )
        return "".join(out)
