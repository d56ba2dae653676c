"""TLS and mutual TLS on the gRPC port, with certificates made by openssl."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import grpc
import pytest

from integration.helpers import make_config
from multiagents import Client, RPCError, WorkerRuntime, WorkflowBuilder, worker
from multiagents_server.app import Server
from multiagents_server.embedded_redis import EmbeddedRedis

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_pki(d: Path) -> None:
    """A CA, a server certificate for 127.0.0.1 and a client certificate."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test-ca",
             "-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem"))  # fmt: skip
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                 "-keyout", str(d / f"{name}.key"), "-out", str(d / f"{name}.csr"))  # fmt: skip
        _openssl("x509", "-req", "-in", str(d / f"{name}.csr"), "-CA", str(d / "ca.pem"),
                 "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-days", "1",
                 "-extfile", str(d / "san.ext"), "-out", str(d / f"{name}.pem"))  # fmt: skip


async def test_mutual_tls_admits_clients_and_workers_with_a_certificate(
    redis_server: EmbeddedRedis, tmp_path: Path, uid: str
) -> None:
    make_pki(tmp_path)
    config = make_config(
        redis_server.url,
        tls_cert_file=str(tmp_path / "server.pem"),
        tls_key_file=str(tmp_path / "server.key"),
        tls_client_ca_file=str(tmp_path / "ca.pem"),
    )
    ca = (tmp_path / "ca.pem").read_bytes()
    with_cert = grpc.ssl_channel_credentials(
        root_certificates=ca,
        private_key=(tmp_path / "client.key").read_bytes(),
        certificate_chain=(tmp_path / "client.pem").read_bytes(),
    )

    @worker(f"{uid}.secure")
    async def secure(ctx: dict[str, Any]) -> dict[str, Any]:
        return {"over": "tls"}

    async with Server(config) as server:
        async with (
            WorkerRuntime([secure], servers=server.address, credentials=with_cert),
            Client(server.address, credentials=with_cert) as client,
        ):
            await client.register_workflow(
                WorkflowBuilder(f"{uid}.wf").add_step("s", secure).build()
            )
            tx = await client.execute_workflow(f"{uid}.wf", {})
            status = await client.wait(tx, timeout=20)
        assert status.step_results == {"s": {"over": "tls"}}

        without_cert = grpc.ssl_channel_credentials(root_certificates=ca)
        async with Client(server.address, credentials=without_cert) as client:
            with pytest.raises(RPCError):
                await client.list_workflow_definitions()
        async with Client(server.address) as plaintext:
            with pytest.raises(RPCError):
                await plaintext.list_workflow_definitions()
