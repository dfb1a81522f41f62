"""bedrock_cp: the control plane of a FoundationDB-style distributed database.

Coordinators agree on cluster state through Raft (a native, sans-I/O core in
Rust); a Director per epoch rebuilds the transaction system after failures;
Foremen create workers; Gateways find the leader. Importing this package
checks that the native wheel ``bedrock-cp-native`` is exactly this version.

Embedding::

    node = await bedrock_cp.Node.start(bedrock_cp.load_config("node.toml"))
    client = await bedrock_cp.connect("127.0.0.1:7001,127.0.0.1:7002")
    async with bedrock_cp.LocalCluster(n=3) as cluster: ...
"""

from ._native import NativeVersionError, native
from ._version import __version__
from .client import Client, ClusterUnavailable, Database, RequestRejected, connect, open_database
from .cluster import LocalCluster
from .node import Node, NodeConfig, load_config

__all__ = [
    "Client",
    "ClusterUnavailable",
    "Database",
    "LocalCluster",
    "NativeVersionError",
    "Node",
    "NodeConfig",
    "RequestRejected",
    "__version__",
    "connect",
    "load_config",
    "native",
    "open_database",
]
