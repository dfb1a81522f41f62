"""Hooks the test suite uses on real node processes; nothing else sets them.

A process test cannot reach into a node it started, so it names, in the
node's environment, the recovery phase that one epoch's Director waits before
(``BEDROCK_DIRECTOR_PAUSE_BEFORE=phase@epoch``): the test then kills or
stops that node in exactly that phase. Unset (always, in production), no
Director ever pauses.
"""

from __future__ import annotations

import os

#: ``phase@epoch``: the phase (a ``RecoveryPhase`` name, or ``retire``) the
#: Director of that epoch pauses before.
PAUSE_ENV = "BEDROCK_DIRECTOR_PAUSE_BEFORE"


def pause_before_from_environment(epoch: int) -> str | None:
    """The phase the Director of ``epoch`` pauses before, if the environment says so."""
    value = os.environ.get(PAUSE_ENV, "")
    phase, _, at = value.partition("@")
    return phase if phase and at.isdigit() and int(at) == epoch else None
