"""Clients of a bedrock_cp cluster: the coordinator client and cluster files."""

from .client import Client, ClientError, ClusterUnavailable, RequestRejected, connect
from .cluster_file import ClusterFile, NodeEntry, read_cluster_file, resolve_cluster
from .errors import ErrorCode, TransactionError
from .transaction import Database, Transaction, open_database

__all__ = [
    "Client",
    "ClientError",
    "ClusterFile",
    "ClusterUnavailable",
    "Database",
    "ErrorCode",
    "NodeEntry",
    "RequestRejected",
    "Transaction",
    "TransactionError",
    "connect",
    "open_database",
    "read_cluster_file",
    "resolve_cluster",
]
