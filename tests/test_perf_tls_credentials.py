"""SA credentials (PEM text from the RS) load into an SSLContext without touching the disk on
Linux (memfd), through a private temporary directory elsewhere, and a real handshake on loopback
then presents them."""

import os
import socket
import ssl
import threading

import pytest

from libarms.testserver import pki
from libarms.transport import tls


@pytest.fixture(scope="module")
def creds():
    ca, ca_key = pki.make_ca()
    cert, key = pki.issue(ca, ca_key, "SA 0001-0000-0000-0000-0000-0000-0000-0001",
                          ips=["127.0.0.1"])
    return ca, cert, key


def handshake_sees_client_cert(client_ctx: ssl.SSLContext, ca: str, cert: str, key: str) -> dict:
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain_pem(server_ctx, cert, key)
    server_ctx.load_verify_locations(cadata=ca)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    lsock = socket.create_server(("127.0.0.1", 0))
    lsock.settimeout(30)
    seen = {}

    def serve():
        conn, _ = lsock.accept()
        with server_ctx.wrap_socket(conn, server_side=True) as s:
            seen["peer"] = s.getpeercert()
            s.sendall(b"ok")

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    try:
        with socket.create_connection(lsock.getsockname(), timeout=30) as raw:
            with client_ctx.wrap_socket(raw, server_hostname=None) as s:
                assert s.recv(2) == b"ok"
    finally:
        th.join(30)
        lsock.close()
    return seen["peer"]


def common_name(cert: dict) -> str:
    return [v for rdn in cert["subject"] for k, v in rdn if k == "commonName"][0]


def client_context(ca, cert, key) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(cadata=ca)
    tls.load_cert_chain_pem(ctx, cert, key)
    return ctx


@pytest.mark.skipif(not hasattr(os, "memfd_create"), reason="no memfd_create on this system")
def test_sa_credentials_load_from_memory_files_and_are_presented_in_the_handshake(
        creds, tmp_path, monkeypatch):
    ca, cert, key = creds
    monkeypatch.setenv("TMPDIR", str(tmp_path))   # a file written anyway would land here
    peer = handshake_sees_client_cert(client_context(ca, cert, key), ca, cert, key)
    assert common_name(peer).startswith("SA 0001-")
    assert list(tmp_path.iterdir()) == []


def test_sa_credentials_fall_back_to_a_private_directory_without_memfd(creds, tmp_path,
                                                                        monkeypatch):
    ca, cert, key = creds

    def no_memfd(*a, **kw):
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(os, "memfd_create", no_memfd, raising=False)
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    peer = handshake_sees_client_cert(client_context(ca, cert, key), ca, cert, key)
    assert common_name(peer).startswith("SA 0001-")
    assert list(tmp_path.iterdir()) == []          # removed at once


def test_a_key_that_does_not_match_the_certificate_is_an_ssl_error(creds):
    ca, cert, _ = creds
    _, other_key = pki.issue(*pki.make_ca(), "SA other")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    with pytest.raises(ssl.SSLError):
        tls.load_cert_chain_pem(ctx, cert, other_key)
