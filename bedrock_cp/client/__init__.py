"""Clients of a bedrock_cp cluster: the coordinator client and cluster files."""

from .client import Client, ClientError, ClusterUnavailable, RequestRejected, connect
from .cluster_file import ClusterFile, NodeEntry, read_cluster_file, resolve_cluster
from .transaction import Database, Transaction, TransactionError, open_database

__all__ = [
    "Client",
    "ClientError",
    "ClusterFile",
    "ClusterUnavailable",
    "Database",
    "NodeEntry",
    "RequestRejected",
    "Transaction",
    "TransactionError",
    "connect",
    "open_database",
    "read_cluster_file",
    "resolve_cluster",
]
