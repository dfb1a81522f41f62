"""Authentication on real sockets: the shared secret, tokens and mutual TLS.

Every refusal happens in the handshake, before the host hears of the
connection: no Raft batch is delivered and no request is served. The positive
cases show what principal each credential establishes.
"""

from __future__ import annotations

import asyncio
import os
import random
import stat
import struct
from pathlib import Path
from typing import Any

import msgspec
import pytest

from bedrock_cp.auth import (
    AcceptorAuth,
    AuthConfig,
    AuthError,
    ConnectorAuth,
    Principal,
    load_acceptor,
    load_connector,
)
from bedrock_cp.auth.certs import CredentialFiles, init
from bedrock_cp.auth.config import write_private
from bedrock_cp.auth.credentials import NO_AUTH
from bedrock_cp.auth.proof import derive_key, new_nonce
from bedrock_cp.transport import ConnInfo, HandshakeRefused, RpcClient, Transport
from bedrock_cp.wire import (
    PROTOCOL_VERSION,
    Challenge,
    Frame,
    Hello,
    Proof,
    RaftBatch,
    Refused,
    Request,
    Welcome,
    decode,
    decode_body,
    encode,
    encode_body,
)
from bedrock_cp.wire._framing import FrameDecoder

CLUSTER = "prod"


@pytest.fixture(scope="module")
def creds(tmp_path_factory: pytest.TempPathFactory) -> CredentialFiles:
    return init(tmp_path_factory.mktemp("certs"), CLUSTER, [1, 2, 3])


class Served:
    """A node's Transport that records what reached it."""

    def __init__(
        self,
        auth: AcceptorAuth,
        connector: ConnectorAuth,
        peers: dict[int, str],
        node_id: int = 1,
    ) -> None:
        self.raft: list[tuple[int, list[bytes]]] = []
        self.requests: list[ConnInfo] = []

        async def on_request(request: Request, info: ConnInfo) -> msgspec.Raw:
            self.requests.append(info)
            return encode_body([info.principal.role, info.principal.node_id, info.principal.name])

        self.t = Transport(
            node_id=node_id,
            cluster_id=CLUSTER,
            listen_host="127.0.0.1",
            listen_port=0,
            peers=peers,
            on_raft=lambda p, m: self.raft.append((p, m)),
            on_peer_lost=lambda p: None,
            on_request=on_request,
            auth=auth,
            connector_auth=connector,
            reconnect_base=0.005,
            reconnect_cap=0.05,
            rng=random.Random(1),
        )

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.t.port}"

    async def whoami(self, auth: ConnectorAuth, node_id: int = 0) -> list[Any]:
        client = await RpcClient.connect(self.address, CLUSTER, auth=auth, node_id=node_id)
        try:
            return list(decode_body(await client.call(encode_body(0), 2.0), object))
        finally:
            await client.close()


async def secret_node(creds: CredentialFiles) -> Served:
    cfg = creds.node_secret()
    n = Served(load_acceptor(cfg, CLUSTER), load_connector(cfg, node=True), {2: "127.0.0.1:1"})
    await n.t.start()
    return n


async def tls_node(creds: CredentialFiles) -> Served:
    cfg = creds.node_tls(1)
    n = Served(load_acceptor(cfg, CLUSTER), load_connector(cfg, node=True), {2: "127.0.0.1:1"})
    await n.t.start()
    return n


def other_secret(tmp_path: Path) -> ConnectorAuth:
    path = tmp_path / "wrong-secret"
    write_private(path, b"not the cluster secret\n")
    return load_connector(AuthConfig(mode="secret", secret=str(path)), node=True)


async def frames_until_closed(reader: asyncio.StreamReader) -> list[Frame]:
    data = await asyncio.wait_for(reader.read(), 5.0)
    return [decode(body) for body in FrameDecoder().feed(data)]


def heartbeat(to: int, sender: int, term: int) -> bytes:
    """A Raft heartbeat as the native core encodes it (version 1, type 7)."""
    return struct.pack("<BBQQQQQQBQI", 1, 7, to, sender, term, 0, 0, 0, 0, 0, 0) + struct.pack(
        "<IB", 0, 0
    )


# -- the shared secret ---------------------------------------------------------------


async def test_the_cluster_secret_makes_a_node_principal(creds: CredentialFiles) -> None:
    n = await secret_node(creds)
    try:
        mine = load_connector(creds.node_secret(), node=True)
        assert await n.whoami(mine, node_id=2) == ["node", 2, ""]
        admin = load_connector(creds.client_secret("admin"), node=False)
        assert await n.whoami(admin) == ["admin", 0, "admin"]
        app = load_connector(creds.client_secret("client"), node=False)
        assert await n.whoami(app) == ["client", 0, "client"]
    finally:
        await n.t.stop()


@pytest.mark.parametrize("how", ["wrong secret", "no secret", "wrong token", "no such token"])
async def test_a_wrong_or_missing_secret_is_refused_before_anything_is_served(
    creds: CredentialFiles, tmp_path: Path, how: str
) -> None:
    n = await secret_node(creds)
    try:
        if how == "wrong secret":
            auth = other_secret(tmp_path)
        elif how == "no secret":
            auth = NO_AUTH
        else:
            path = tmp_path / "t"
            write_private(path, b"0123456789abcdef0123456789abcdef")
            name = "admin" if how == "wrong token" else "nobody"
            auth = load_connector(AuthConfig(mode="secret", token=str(path), name=name), node=False)
        # Refused by the acceptor, or (a wrong key) by the connector, which sees
        # that the acceptor's proof does not match its key: no proof is ever sent.
        with pytest.raises(HandshakeRefused, match=r"authentication failed|did not prove"):
            await n.whoami(auth, node_id=2 if auth.method == "secret" else 0)
        assert n.requests == [] and n.raft == []
    finally:
        await n.t.stop()


async def test_a_replayed_handshake_is_refused(creds: CredentialFiles) -> None:
    """Record a good peer handshake, then send the same bytes again: the acceptor's
    nonce is new, so the recorded proof does not match."""
    n = await secret_node(creds)
    auth = load_connector(creds.node_secret(), node=True)
    key = auth.key
    try:
        from bedrock_cp.auth.proof import proof

        hello = Hello(PROTOCOL_VERSION, CLUSTER, 2, "peer", "secret", "", new_nonce())

        async def handshake(answer: bytes | None) -> tuple[list[Frame], bytes]:
            reader, writer = await asyncio.open_connection("127.0.0.1", n.t.port)
            writer.write(encode(hello))
            size = struct.unpack("<I", await reader.readexactly(4))[0]
            challenge = decode(await reader.readexactly(size))
            assert isinstance(challenge, Challenge)
            mine = answer or proof(
                key,
                "connector",
                cluster=CLUSTER,
                kind="peer",
                node_id=2,
                name="",
                acceptor_id=1,
                connector_nonce=hello.nonce,
                acceptor_nonce=challenge.nonce,
            )
            writer.write(encode(Proof(mine)))
            writer.write(encode(RaftBatch([heartbeat(1, 2, 2**64 - 1)])))
            writer.write_eof()
            frames = await frames_until_closed(reader)
            writer.close()
            return frames, mine

        frames, recorded = await handshake(None)
        assert any(isinstance(f, Welcome) for f in frames)
        assert [p for p, _ in n.raft] == [2]  # the real one got through
        n.raft.clear()
        frames, _ = await handshake(recorded)  # the replay
        assert frames == [Refused("authentication failed")]
        assert n.raft == []
        assert n.t.stats["closed.bad_proof"] == 1
    finally:
        await n.t.stop()


async def test_a_raw_peer_hello_without_credentials_delivers_no_raft(
    creds: CredentialFiles,
) -> None:
    n = await secret_node(creds)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", n.t.port)
        writer.write(encode(Hello(PROTOCOL_VERSION, CLUSTER, 2, "peer")))
        writer.write(encode(RaftBatch([heartbeat(1, 2, 2**64 - 1)])))
        frames = await frames_until_closed(reader)
        assert frames == [Refused("authentication failed")]
        assert n.raft == []
        writer.close()
    finally:
        await n.t.stop()


async def test_the_acceptor_must_prove_the_secret_too(
    creds: CredentialFiles, tmp_path: Path
) -> None:
    """A node that does not hold the secret cannot pose as one to our links."""
    impostor_cfg = AuthConfig(mode="secret", secret=str(tmp_path / "s"))
    write_private(tmp_path / "s", b"impostor\n")
    impostor = Served(
        load_acceptor(impostor_cfg, CLUSTER), load_connector(impostor_cfg, node=True), {}
    )
    await impostor.t.start()
    try:
        with pytest.raises(HandshakeRefused, match="did not prove"):
            await impostor.whoami(load_connector(creds.node_secret(), node=True), node_id=2)
    finally:
        await impostor.t.stop()


# -- mutual TLS ----------------------------------------------------------------------


async def test_certificates_make_principals_and_peer_links_work(creds: CredentialFiles) -> None:
    n = await tls_node(creds)
    try:
        assert await n.whoami(load_connector(creds.client_tls("admin"), node=False)) == [
            "admin",
            0,
            "admin",
        ]
        assert await n.whoami(load_connector(creds.client_tls("client"), node=False)) == [
            "client",
            0,
            "client",
        ]
        node3 = load_connector(creds.node_tls(3), node=True)
        assert await n.whoami(node3, node_id=3) == ["node", 3, ""]
        # A Raft link from node 2, with its certificate.
        cfg2 = creds.node_tls(2)
        two = Served(
            load_acceptor(cfg2, CLUSTER), load_connector(cfg2, node=True), {1: n.address}, 2
        )
        await two.t.start()
        try:
            async with asyncio.timeout(5):
                while not two.t.connected(1):  # noqa: ASYNC110 - no event for it
                    await asyncio.sleep(0.005)
            two.t.send_raft(1, b"hi")
            async with asyncio.timeout(5):
                while not n.raft:  # noqa: ASYNC110
                    await asyncio.sleep(0.005)
            assert n.raft == [(2, [b"hi"])]
        finally:
            await two.t.stop()
    finally:
        await n.t.stop()


async def test_a_valid_certificate_carrying_another_node_id_is_refused(
    creds: CredentialFiles,
) -> None:
    """Node 3's real certificate cannot open a Raft link (or call) as node 2."""
    n = await tls_node(creds)
    try:
        node3 = load_connector(creds.node_tls(3), node=True)
        with pytest.raises(HandshakeRefused, match="authentication failed"):
            await n.whoami(node3, node_id=2)
        # A Raft link claiming node 2 with node 3's certificate: refused, nothing delivered.
        from bedrock_cp.transport.peer_link import PeerLink

        class Host:
            node_id = 2
            cluster_id = CLUSTER
            stats: Any = __import__("collections").Counter()
            max_frame = 1 << 20
            handshake_timeout = 2.0
            write_buffer_limit = 1 << 20
            backoff = __import__("bedrock_cp.transport", fromlist=["Backoff"]).Backoff(
                0.01, 0.05, random.Random(1)
            )
            connector_auth = node3

            def peer_up(self, peer_id: int) -> None:
                raise AssertionError("the link must not come up")

            def link_broken(self, peer_id: int) -> None:
                pass

        link = PeerLink(Host(), 1, n.address)
        with pytest.raises(HandshakeRefused):
            await link._connect()
        assert n.raft == [] and n.requests == []
        assert n.t.stats["closed.wrong_identity"] == 2
    finally:
        await n.t.stop()


async def test_a_certificate_from_another_ca_is_refused(
    creds: CredentialFiles, tmp_path: Path
) -> None:
    foreign = init(tmp_path / "foreign", CLUSTER, [2])
    n = await tls_node(creds)
    try:
        with pytest.raises((OSError, HandshakeRefused, ConnectionError)):
            await n.whoami(load_connector(foreign.client_tls("admin"), node=False))
        assert n.requests == []
        assert n.raft == []
    finally:
        await n.t.stop()


async def test_a_silent_connection_to_a_tls_node_is_closed_at_the_deadline(
    creds: CredentialFiles,
) -> None:
    n = await tls_node(creds)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", n.t.port)
        writer.write(b"\x16\x03")  # the start of a ClientHello, then nothing
        assert await asyncio.wait_for(reader.read(), 10.0) == b""  # closed, nothing sent
        writer.close()
        assert n.t.stats["closed.handshake_timeout"] == 1
    finally:
        await n.t.stop()


async def test_a_plain_connection_to_a_tls_node_is_refused(creds: CredentialFiles) -> None:
    n = await tls_node(creds)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", n.t.port)
        writer.write(encode(Hello(PROTOCOL_VERSION, CLUSTER, 2, "peer")))
        writer.write(encode(RaftBatch([heartbeat(1, 2, 2**64 - 1)])))
        await asyncio.wait_for(reader.read(), 5.0)  # closed, no frame for us
        writer.close()
        assert n.raft == []
    finally:
        await n.t.stop()


# -- credentials on disk ----------------------------------------------------------------


def test_certs_init_writes_private_files(creds: CredentialFiles) -> None:
    d = creds.directory
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    for name in ("ca.key", "node-1.key", "admin.key", "secret", "tokens.toml", "admin.token"):
        assert stat.S_IMODE(os.stat(d / name).st_mode) == 0o600, name


def test_credentials_others_can_read_are_refused(creds: CredentialFiles, tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_bytes(b"x" * 32)
    os.chmod(path, 0o644)
    with pytest.raises(AuthError, match="readable by others"):
        load_acceptor(AuthConfig(mode="secret", secret=str(path)), CLUSTER)


def test_no_credentials_fail_closed_and_say_how_to_fix_it() -> None:
    for mode in ("tls", "secret"):
        with pytest.raises(AuthError, match="certs init"):
            load_acceptor(AuthConfig(mode=mode), CLUSTER)  # type: ignore[arg-type]


def test_no_key_material_in_reprs(creds: CredentialFiles) -> None:
    secret = (creds.directory / "secret").read_bytes().strip()
    for obj in (
        load_acceptor(creds.node_secret(), CLUSTER),
        load_connector(creds.node_secret(), node=True),
        load_connector(creds.client_secret("admin"), node=False),
    ):
        text = repr(obj)
        assert secret.decode() not in text
        assert derive_key(secret).hex() not in text and str(derive_key(secret)) not in text


def test_principals_read_well() -> None:
    assert str(Principal.node(2)) == "node 2"
    assert str(Principal.admin("ops")) == "admin 'ops'"
