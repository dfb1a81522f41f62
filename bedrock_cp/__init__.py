"""bedrock_cp: the control plane of a FoundationDB-style distributed database.

Coordinators agree on cluster state through Raft (a native, sans-I/O core in
Rust); a Director per epoch rebuilds the transaction system after failures;
Foremen create workers; Gateways find the leader. Importing this package
checks that the native wheel ``bedrock-cp-native`` is exactly this version.
"""

from ._native import NativeVersionError, native
from ._version import __version__

__all__ = ["NativeVersionError", "__version__", "native"]
