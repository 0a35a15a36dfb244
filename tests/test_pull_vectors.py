"""The libarms 5.33 captures replayed through a whole Agent over real TLS: the requests our
agent writes are byte for byte those of the C client, and it accepts the captured answers."""

import json
import pathlib
import socket
import ssl
import threading

from conftest_pull import Recorder, pull_pki  # noqa: F401
from libarms import Agent, State
from _vectors import VECTORS_DIR  # noqa: E402
from libarms.protocol import (build_http_response, build_location_config,
                              build_rs_solicitation_response, parse_http_response,
                              parse_rs_solicitation_response)

V = pathlib.Path(VECTORS_DIR)
P = json.loads((V / "parameters.json").read_text())


class RawTlsServer:
    """Records each request's exact bytes and answers from a table keyed by path."""

    def __init__(self, pki_dir, answers):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(f"{pki_dir}/server.pem", f"{pki_dir}/server.key")
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.answers = answers
        self.seen = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        for _ in range(10):
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.settimeout(10)
            with self.ctx.wrap_socket(conn, server_side=True) as tls:
                raw = b""
                while b"\r\n\r\n" not in raw:
                    raw += tls.recv(4096)
                head, body = raw.split(b"\r\n\r\n", 1)
                n = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
                while len(body) < n:
                    body += tls.recv(4096)
                raw = head + b"\r\n\r\n" + body
                self.seen.append(raw)
                path = head.split(b" ")[1].decode()
                tls.sendall(self.answers[path](self))

    def close(self):
        self.sock.close()


def test_agent_requests_match_the_capture_and_it_accepts_the_captured_answers(pull_pki):
    ca = open(f"{pull_pki}/ca.pem").read()

    def ls_answer(srv):
        cap = parse_rs_solicitation_response(parse_http_response(
            (V / "tunnel/02-ls-pull-response.http").read_bytes()).body)
        info = cap.rs_info[0]
        text = build_location_config(info.location.lines, ca)   # our CA instead of theirs
        return build_http_response(build_rs_solicitation_response(
            100, rs_preshared_key=cap.rs_preshared_key,
            rs_info=[(f"https://127.0.0.1:{srv.port}/rs.cgi", text)], ll_timeout=30,
            rs_retry_max=1, rs_retry_interval=2))

    def rs_answer(srv):
        return (V / "tunnel/04-rs-pull-response.http").read_bytes()     # verbatim

    srv = RawTlsServer(pull_pki, {"/arms.cgi": ls_answer, "/rs.cgi": rs_answer})
    try:
        cb = Recorder()
        a = Agent(P["distribution_id"], cb, connect_timeout=5, response_timeout=5)
        a.load_config(f"https://127.0.0.1:{srv.port}/arms.cgi\n\n1\n1\n")
        a.register_cert(ca)
        a.register_authkey(P["ls_sa_key"])
        a.register_description(P["description_sent"], P["firmware_info_sent"])
        a.pull()
    finally:
        srv.close()
    assert srv.seen == [(V / "tunnel/01-ls-pull-request.http").read_bytes(),
                        (V / "tunnel/03-rs-pull-request.http").read_bytes()]
    assert a.state == State.PULLDONE
    assert cb.configs == [(1001, "1.0.0", "module-1001-location", "PULL_STORE_CONFIG",
                           b"hostname fake-sa\ninterface lan0 address 192.0.2.1/24\n", 3)]
    assert a.ctx.heartbeat[0].passphrase == P["heartbeat_passphrase"]
    assert a.ctx.sa_cert_pem.strip() == (V / "certs/sa.pem").read_text().strip()
