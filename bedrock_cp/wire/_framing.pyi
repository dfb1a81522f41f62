"""Type stub for the Cython module bedrock_cp.wire._framing."""

from typing_extensions import Buffer

HEADER_SIZE: int
DEFAULT_MAX_FRAME: int

class FrameError(ValueError): ...

class FrameDecoder:
    max_frame: int
    frames_decoded: int
    def __init__(self, max_frame: int = ...) -> None: ...
    def feed(self, data: Buffer) -> list[bytes]: ...
    def buffered(self) -> int: ...
