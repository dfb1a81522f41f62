"""The Foreman of a node: its workers, their directories and manifests.

- :mod:`.foreman` — :class:`Foreman`: create, list, remove, boot, roles, requests.
- :mod:`.manifest` — the per-worker manifest, written atomically and read strictly.
"""

from .foreman import (
    Foreman,
    ForemanError,
    NoSuchWorker,
    RoleFactory,
    StartFailed,
    UnknownKind,
    WorkerBusy,
    WorkerExists,
    WorkerFactory,
)
from .manifest import MANIFEST_FORMAT, MANIFEST_NAME, Manifest, ManifestError

__all__ = [
    "MANIFEST_FORMAT",
    "MANIFEST_NAME",
    "Foreman",
    "ForemanError",
    "Manifest",
    "ManifestError",
    "NoSuchWorker",
    "RoleFactory",
    "StartFailed",
    "UnknownKind",
    "WorkerBusy",
    "WorkerExists",
    "WorkerFactory",
]
