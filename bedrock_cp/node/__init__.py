"""A bedrock_cp node process: configuration and the :class:`Node` that runs it."""

from .config import ConfigError, NodeConfig, Timers, dump_config, load_config, parse_address
from .node import Node, NodeNetwork, tcp_network

__all__ = [
    "ConfigError",
    "Node",
    "NodeConfig",
    "NodeNetwork",
    "Timers",
    "dump_config",
    "load_config",
    "parse_address",
    "tcp_network",
]
