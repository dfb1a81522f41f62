"""Node configuration: what is refused, and what others are told to dial."""

from __future__ import annotations

import tomllib

import pytest

from bedrock_cp.node.config import ConfigError, config_from_dict, dump_config


def _raw(**extra: object) -> dict[str, object]:
    raw: dict[str, object] = {
        "id": 1,
        "data_dir": "/tmp/unused",
        "listen": "127.0.0.1:7001",
        "coordinators": {"1": "10.0.0.1:7001"},
        "auth": {"mode": "none"},
    }
    raw.update(extra)
    return raw


def test_a_node_advertises_its_listen_address_unless_told_otherwise() -> None:
    assert config_from_dict(_raw()).advertised == "127.0.0.1:7001"
    cfg = config_from_dict(_raw(listen="0.0.0.0:7001", advertise="10.0.0.1:7001"))
    assert cfg.advertised == "10.0.0.1:7001"
    # What `cluster up` writes reads back the same.
    assert config_from_dict(tomllib.loads(dump_config(cfg))) == cfg


@pytest.mark.parametrize("listen", ["0.0.0.0:7001", "[::]:7001", ":::7001"])
def test_a_wildcard_listen_address_needs_an_advertised_one(listen: str) -> None:
    with pytest.raises(ConfigError, match="set advertise"):
        config_from_dict(_raw(listen=listen))


def test_an_advertised_address_must_be_dialable() -> None:
    with pytest.raises(ConfigError, match="advertise"):
        config_from_dict(_raw(advertise="0.0.0.0:7001"))
    with pytest.raises(ConfigError, match="advertise"):
        config_from_dict(_raw(advertise="nowhere"))
