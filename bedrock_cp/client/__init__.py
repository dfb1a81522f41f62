"""Clients of a bedrock_cp cluster: the coordinator client and cluster files."""

from .client import Client, ClientError, ClusterUnavailable, RequestRejected, connect
from .cluster_file import ClusterFile, NodeEntry, read_cluster_file, resolve_cluster

__all__ = [
    "Client",
    "ClientError",
    "ClusterFile",
    "ClusterUnavailable",
    "NodeEntry",
    "RequestRejected",
    "connect",
    "read_cluster_file",
    "resolve_cluster",
]
