"""A worker's manifest: what a worker directory holds, written atomically.

Every persistent worker lives in ``<data_dir>/workers/<worker_id>/`` with a
``manifest.json`` naming its id, kind, creation time, the epoch it was created
for and the manifest format.
The Foreman writes it before the worker first starts (tmp file, fsync, rename,
fsync of the directory), so after a crash a worker directory holds either a
complete manifest or none; on boot it is read strictly and a bad one is reported
with the reason, never guessed at.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import msgspec

#: The manifest format this build writes and reads.
MANIFEST_FORMAT = 1
MANIFEST_NAME = "manifest.json"
#: Worker ids double as directory names: short, and safe on every filesystem.
_WORKER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class ManifestError(ValueError):
    """The manifest is missing, unreadable or invalid; the message says which."""


class Manifest(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The durable identity of one worker (JSON: humans read it when debugging)."""

    format: int
    id: str
    kind: str
    created_at_ms: int
    #: The epoch whose Director created the worker (0: unknown).
    epoch: int = 0


def check_worker_id(worker_id: str) -> str | None:
    """Why ``worker_id`` cannot name a worker (and its directory), or None."""
    if not _WORKER_ID.fullmatch(worker_id):
        return (
            f"worker id {worker_id[:64]!r} must be 1-128 characters of letters, digits, "
            "'.', '_' or '-', starting with a letter or digit"
        )
    return None


def write_manifest(directory: Path, manifest: Manifest) -> None:
    """Write ``directory/manifest.json`` atomically and durably (blocking: run off-loop)."""
    data = msgspec.json.encode(manifest)
    tmp = directory / (MANIFEST_NAME + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, directory / MANIFEST_NAME)
    fsync_dir(directory)


def read_manifest(directory: Path) -> Manifest:
    """Read and check the manifest of the worker directory ``directory``.

    Raises ManifestError with the reason (missing, not JSON, wrong fields, another
    format version, or an id that is not the directory's name).
    """
    path = directory / MANIFEST_NAME
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ManifestError(f"{path}: no manifest") from None
    except OSError as exc:
        raise ManifestError(f"{path}: unreadable: {exc}") from None
    try:
        manifest = msgspec.json.decode(data, type=Manifest)
    except msgspec.DecodeError as exc:
        raise ManifestError(f"{path}: invalid manifest: {exc}") from None
    if manifest.format != MANIFEST_FORMAT:
        raise ManifestError(
            f"{path}: manifest format {manifest.format} (this build reads {MANIFEST_FORMAT})"
        )
    if manifest.id != directory.name:
        raise ManifestError(
            f"{path}: manifest names worker {manifest.id!r}, not its directory {directory.name!r}"
        )
    return manifest


def fsync_dir(directory: Path) -> None:
    """Make the entries of ``directory`` (creations, renames) durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
