"""Type stub for the Cython module bedrock_cp.raft._timers."""

class TickClock:
    interval: float
    max_burst: int
    ticks: int
    dropped: int
    def __init__(self, interval: float, start: float, max_burst: int = ...) -> None: ...
    def due(self, now: float) -> int: ...
    def next_deadline(self) -> float: ...
