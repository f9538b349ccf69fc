"""Real TLS on 127.0.0.1 with Python's `ssl`: one-way and mutual TLS between the model's certificates.

Models the notes' "TLS 单向和双向认证" section, for real: a server (a thread on an ephemeral port of
127.0.0.1) and a client (this thread) load certificates made by :mod:`labsupport.x509`, shake hands
over a real socket and exchange one line. Each side reports the TLS version, the cipher and the peer's
subject, or the error it saw and at which step: connect, handshake, write or read.

- :func:`handshake` runs one client against one server and returns both sides' reports.
- :data:`TLS_CASES` and :func:`handshake_matrix`: one-way and mutual TLS, working and failing
  (no client certificate, a client certificate from another CA, expired certificates, a wrong hostname,
  a certificate used for the wrong purpose), for TLS 1.2 and TLS 1.3.
- :class:`TLSServer` and :func:`connect` are the two halves, usable alone against `openssl s_client`
  and `openssl s_server`.

Why TLS 1.3 looks different. In TLS 1.2 the server sends its Finished message only after it has
accepted the client's certificate, so a refusal reaches the client while its handshake call is still
waiting, and the call fails. In TLS 1.3 the server's Finished comes first; the client sends its
certificate with its own Finished and its handshake call returns at once. The server judges the
certificate afterwards, and its refusal (an alert) is what the client's first read gets.

Every socket is closed and the server thread joined on every path; the server drains its connection
after a failure, so the client reliably reads the alert rather than a reset (an abrupt close can turn
it into "EOF occurred in violation of protocol").
"""

from __future__ import annotations

import os
import re
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from labsupport import x509
from labsupport.errors import LabInputError

HOST = "127.0.0.1"
VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}
TIMEOUT = 5.0
_SSL_LINE = re.compile(r" \(_ssl\.c:\d+\)")


def normalise_error(text: str) -> str:
    """An ssl error text without its `(_ssl.c:NNNN)` source line, which differs from build to build.

    Mirrors nothing in openssl itself: `openssl s_client` prints the same reason (e.g. "tlsv13 alert
    certificate required") inside its own error line, with OpenSSL's source file and line instead.
    """
    return _SSL_LINE.sub("", text)


def _version(version: str | None) -> ssl.TLSVersion | None:
    if version is None:
        return None
    if version not in VERSIONS:
        raise LabInputError("version", version, f"one of {', '.join(VERSIONS)} (or None for either)")
    return VERSIONS[version]


def _pin(ctx: ssl.SSLContext, version: str | None) -> None:
    pinned = _version(version)
    if pinned is not None:
        ctx.minimum_version = ctx.maximum_version = pinned


def _load_identity(ctx: ssl.SSLContext, identity: x509.Identity) -> None:
    """ssl loads a key only from a file: write it to a private temporary directory, load, delete."""
    if not isinstance(identity, x509.Identity) or identity.key is None:
        raise LabInputError("identity", type(identity).__name__, "an x509.Identity with its private key")
    with tempfile.TemporaryDirectory(prefix="labsupport-tls-") as tmp:
        cert, key = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        cert.write_bytes(identity.chain_pem())
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(identity.key_pem())
        ctx.load_cert_chain(cert, key)


def _cadata(certs: Iterable) -> str:
    items = [x509._certificate(c, "trusted") for c in x509._flatten(certs)]
    if not items:
        raise LabInputError("trusted", [], "at least one CA certificate to trust")
    return "".join(x509.to_pem(c).decode() for c in items)


def server_context(identity: x509.Identity, *, client_ca: Iterable | None = None,
                   version: str | None = None) -> ssl.SSLContext:
    """A server's TLS settings: its certificate chain and key; with `client_ca`, mutual TLS (a client
    certificate from one of those CAs is required).

    Mirrors `openssl s_server -cert server.crt -key server.key [-CAfile ca.crt -Verify 1] [-tls1_3]`.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _pin(ctx, version)
    _load_identity(ctx, identity)
    if client_ca is not None:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cadata=_cadata(client_ca))
    return ctx


def client_context(trusted: Iterable, *, identity: x509.Identity | None = None,
                   version: str | None = None) -> ssl.SSLContext:
    """A client's TLS settings: the CAs it trusts (hostname checking on), and its own certificate if any.

    Mirrors `openssl s_client -CAfile ca.crt -verify_return_error -verify_hostname H [-cert client.crt
    -key client.key] [-tls1_3]`.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    _pin(ctx, version)
    ctx.load_verify_locations(cadata=_cadata(trusted))
    if identity is not None:
        _load_identity(ctx, identity)
    return ctx


@dataclass(frozen=True)
class Side:
    """What one end of a TLS connection saw."""

    role: str
    handshake_ok: bool = False
    ok: bool = False
    stage: str | None = None
    error: str | None = None
    error_raw: str | None = None
    verify_code: int | None = None
    version: str | None = None
    cipher: str | None = None
    peer: str | None = None
    received: bytes = b""

    def summary(self) -> str:
        """One line, e.g. 'client: TLSv1.3 TLS_AES_256_GCM_SHA384, peer CN = localhost' or the error."""
        parts = []
        if self.handshake_ok:
            parts.append(f"handshake ok ({self.version}, {self.cipher}"
                         + (f", peer {self.peer})" if self.peer else ", no peer certificate)"))
        if self.error is not None:
            parts.append(f"{self.stage} failed: {self.error}")
        elif self.ok:
            parts.append(f"exchanged {self.received!r}")
        return f"{self.role}: " + "; then ".join(parts)


def _describe(error: BaseException) -> tuple[str, str, int | None]:
    raw = f"{type(error).__name__}: {error}"
    return normalise_error(raw), raw, getattr(error, "verify_code", None)


def _peer(tls: ssl.SSLSocket) -> str | None:
    der = tls.getpeercert(binary_form=True)
    return x509.name_text(x509._certificate(der, "peer").subject) if der else None


def _close_notify(tls: ssl.SSLSocket, timeout: float) -> socket.socket:
    """End the TLS session properly: send close_notify and wait (briefly) for the peer's. Returns the plain
    socket underneath. A peer that just closes is fine too: OpenSSL 3 calls a missing close_notify an
    "unexpected eof while reading", which is what `openssl s_client` prints when a server omits it."""
    try:
        tls.settimeout(min(timeout, 1.0))
        return tls.unwrap()
    except (OSError, ValueError):
        return tls


def _drain_and_close(sock: socket.socket | None, timeout: float) -> None:
    """End our direction and wait (briefly) for the peer to close, so it reads everything we sent
    (an alert, a reply) instead of a reset; then close."""
    if sock is None:
        return
    try:
        sock.shutdown(socket.SHUT_WR)  # on an SSLSocket this also drops the TLS layer
        sock.settimeout(min(timeout, 2.0))
        while sock.recv(4096):
            pass
    except OSError:
        pass
    finally:
        sock.close()


def _reply(peer: str | None) -> bytes:
    return f"hello {peer or 'anonymous'}\n".encode()


class TLSServer:
    """A TLS server on 127.0.0.1 and an ephemeral port, answering `connections` clients in a thread.

    Each client's handshake, one read and one reply are recorded in :attr:`results` (a :class:`Side`
    per connection). Use it as a context manager: leaving it stops the thread and closes the socket.
    Mirrors the notes' `openssl s_server -accept 443 -cert server.crt -key server.key -www` (on
    127.0.0.1, a free port, and a one-line answer instead of a web page).
    """

    def __init__(self, identity: x509.Identity, *, client_ca: Iterable | None = None, version: str | None = None,
                 connections: int = 1, timeout: float = TIMEOUT,
                 reply: Callable[[str | None], bytes] = _reply) -> None:
        if not isinstance(connections, int) or connections < 1:
            raise LabInputError("connections", connections, "a whole number of connections, 1 or more")
        self.context = server_context(identity, client_ca=client_ca, version=version)
        self.timeout, self.connections, self.reply = timeout, connections, reply
        self.results: list[Side] = []
        self._stop = threading.Event()
        self._listener = socket.create_server((HOST, 0))
        self._listener.settimeout(0.05)
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, name=f"labsupport-tls-server-{self.port}", daemon=True)
        self._thread.start()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def wait(self, timeout: float | None = None) -> list[Side]:
        """Wait until every expected connection has been served (or `timeout`), then return the results."""
        self._thread.join(self.timeout * 2 if timeout is None else timeout)
        return list(self.results)

    def close(self) -> None:
        """Stop accepting, join the thread, close the listening socket. Safe to call twice."""
        self._stop.set()
        self._thread.join(self.timeout * 3)
        self._listener.close()

    def _serve(self) -> None:
        served = 0
        while served < self.connections and not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            served += 1
            self.results.append(self._handle(conn))

    def _handle(self, conn: socket.socket) -> Side:
        conn.settimeout(self.timeout)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no Nagle + delayed-ACK stalls on small records
        state: dict = {"role": "server"}
        sock: socket.socket = conn
        stage = "handshake"
        try:
            tls = self.context.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
            sock = tls
            tls.do_handshake()
            state.update(handshake_ok=True, version=tls.version(), cipher=tls.cipher()[0], peer=_peer(tls))
            stage = "read"
            data = tls.recv(1024)
            state["received"] = data
            if not data:
                raise ConnectionError("the client closed the connection without sending anything")
            stage = "write"
            tls.sendall(self.reply(state.get("peer")))
            state["ok"] = True
            sock = _close_notify(tls, self.timeout)
        except (OSError, ValueError) as error:
            state["stage"] = stage
            state["error"], state["error_raw"], state["verify_code"] = _describe(error)
        finally:
            _drain_and_close(sock, self.timeout)
        return Side(**state)


def connect(port: int, trusted: Iterable, *, identity: x509.Identity | None = None, hostname: str = "localhost",
            version: str | None = None, message: bytes = b"ping\n", host: str = HOST,
            timeout: float = TIMEOUT) -> Side:
    """Connect to a TLS server, shake hands, send `message` and read the answer; report what happened.

    Mirrors the notes' `openssl s_client -connect HOST:PORT -CAfile ca.crt` (add `-cert client.crt -key
    client.key` for `identity`). `hostname` is what the certificate must name (an IP address checks the
    IP SANs).
    """
    ctx = client_context(trusted, identity=identity, version=version)
    state: dict = {"role": "client"}
    stage, sock = "connect", None
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        stage = "handshake"
        tls = ctx.wrap_socket(sock, server_hostname=hostname, do_handshake_on_connect=False)
        sock = tls
        tls.do_handshake()
        state.update(handshake_ok=True, version=tls.version(), cipher=tls.cipher()[0], peer=_peer(tls))
        stage = "write"
        tls.sendall(message)
        stage = "read"
        data = tls.recv(4096)
        state["received"] = data
        if not data:
            raise ConnectionError("the server closed the connection without answering")
        state["ok"] = True
        sock = _close_notify(tls, timeout)
    except (OSError, ValueError) as error:
        state["stage"] = stage
        state["error"], state["error_raw"], state["verify_code"] = _describe(error)
    finally:
        if sock is not None:
            sock.close()
    return Side(**state)


TLS13_NOTE = (
    "In TLS 1.3 the client's handshake call returned before the server had judged the client's certificate: "
    "the client sends its certificate with its Finished message and is done; the server's refusal (an alert) "
    "arrives afterwards, as the answer to the client's first read. In TLS 1.2 the server sends its Finished "
    "only after accepting the certificate, so the same refusal makes the client's handshake call fail."
)


@dataclass(frozen=True)
class Handshake:
    """Both sides of one TLS connection."""

    case: str
    version: str
    mutual: bool
    client: Side
    server: Side
    client_cert: str | None = None  # the subject of the certificate the client presented, if any

    @property
    def ok(self) -> bool:
        """Both sides completed the handshake and the exchange."""
        return self.client.ok and self.server.ok

    @property
    def refused_after_handshake(self) -> bool:
        """The TLS 1.3 pattern: the client's handshake returned, yet the server refused (see :data:`TLS13_NOTE`)."""
        return self.client.handshake_ok and not self.server.handshake_ok

    def lines(self) -> list[str]:
        """The case, then one line per side."""
        mode = "mutual TLS" if self.mutual else "one-way TLS"
        verdict = "ok" if self.ok else "refused"
        lines = [f"{self.case} [{mode}, {self.version}]: {verdict}", "  " + self.client.summary(),
                 "  " + self.server.summary()]
        return lines + (["  note: " + TLS13_NOTE] if self.refused_after_handshake else [])

    def __str__(self) -> str:
        return "\n".join(self.lines())


def flow(result: Handshake) -> list[tuple[str, str, str]]:
    """The messages of a handshake as RFC 8446 (TLS 1.3) or RFC 5246 (TLS 1.2) orders them for its mode,
    cut where the real run stopped: `(sender, label, kind)` with sender client, server or note and kind
    msg, error or ok. Which side refused, at which step and with which error comes from the real run;
    the message names are the protocol's (Python's ssl does not expose the messages themselves).

    Mirrors what `openssl s_client -msg` prints message by message for the same connection.
    """
    client, server = result.client, result.server
    client_refused = not client.handshake_ok and client.verify_code is not None
    server_refused = not server.handshake_ok and not client_refused
    mutual, tls13 = result.mutual, result.version == "TLSv1.3"
    steps = [("client", "ClientHello", "msg")]
    if tls13:
        steps += [("server", "ServerHello", "msg"), ("server", "{EncryptedExtensions}", "msg")]
        steps += [("server", "{CertificateRequest}", "msg")] if mutual else []
        steps += [("server", "{Certificate} {CertificateVerify} {Finished}", "msg")]
    else:
        request = " CertificateRequest" if mutual else ""
        steps += [("server", f"ServerHello Certificate ServerKeyExchange{request} ServerHelloDone", "msg")]
    if client_refused:
        return [*steps, ("note", f"client checks the server's certificate: {_reason(client.error)}", "error"),
                ("client", "alert: the client refuses the server", "error")]
    steps.append(("note", "client checks the server's certificate: ok", "ok"))
    sends_cert = mutual and result_has_client_certificate(result)
    if tls13:
        if mutual:
            steps.append(("client", "{Certificate} {CertificateVerify}" if sends_cert else "{Certificate} (empty)",
                          "msg"))
        steps.append(("client", "{Finished}: the client's handshake call returns", "msg"))
    else:
        words = ("Certificate " if sends_cert else "Certificate (empty) " if mutual else "") + "ClientKeyExchange"
        words += " CertificateVerify" if sends_cert else ""
        steps.append(("client", f"{words} ChangeCipherSpec Finished", "msg"))
    if server_refused:
        steps += [("note", f"server checks the client: {_reason(server.error)}", "error"),
                  ("server", "alert: the server refuses the client", "error")]
        if client.error:
            steps.append(("note", f"the client's {client.stage} fails: {_reason(client.error)}", "error"))
        return steps
    if mutual:
        steps.append(("note", "server checks the client's certificate: ok", "ok"))
    if not tls13:
        steps.append(("server", "ChangeCipherSpec Finished", "msg"))
    steps += [("client", "application data: ping", "msg"), ("server", f"application data: {client.received!r}", "ok")]
    return steps


def _reason(error: str | None) -> str:
    """The human words of an ssl error: what follows OpenSSL's `[SSL: CODE]` tag."""
    return (error or "").split("] ", 1)[-1]


def result_has_client_certificate(result: Handshake) -> bool:
    """Whether the client of a mutual-TLS case presented a certificate (its case names one).

    Mirrors whether `openssl s_client` was given `-cert client.crt -key client.key`.
    """
    if result.client_cert is not None:
        return True
    case = next((c for c in TLS_CASES if c.name == result.case), None)
    return case is not None and case.client is not None


def handshake(server: x509.Identity, client: x509.Identity | None = None, *, trusted: Iterable,
              client_ca: Iterable | None = None, hostname: str = "localhost", version: str = "TLSv1.3",
              case: str = "handshake", timeout: float = TIMEOUT) -> Handshake:
    """One real TLS connection on 127.0.0.1: `server` serves, the client trusts `trusted` and presents
    `client` (if given). With `client_ca` the server asks for a client certificate from those CAs
    (mutual TLS, 双向认证); without, only the server proves who it is (one-way, 单向认证).

    Mirrors running `openssl s_server -cert server.crt -key server.key [-CAfile ca.crt -Verify 1]` and
    `openssl s_client -connect 127.0.0.1:PORT -CAfile ca.crt [-cert client.crt -key client.key]`.
    """
    with TLSServer(server, client_ca=client_ca, version=version, timeout=timeout) as srv:
        client_side = connect(srv.port, trusted, identity=client, hostname=hostname, version=version,
                              timeout=timeout)
        results = srv.wait()
    server_side = results[0] if results else Side("server", stage="accept", error="no connection arrived")
    presented = client.subject if isinstance(client, x509.Identity) else None
    return Handshake(case, version, client_ca is not None, client_side, server_side, presented)


@dataclass(frozen=True)
class TlsCase:
    """One row of the handshake matrix: who presents what, and what the client asks for."""

    name: str
    mutual: bool
    server: str  # which certificate the server presents (a key of tls_identities())
    client: str | None  # which certificate the client presents, if any
    hostname: str = "localhost"
    why: str = ""


TLS_CASES = (
    TlsCase("one-way: ok", False, "server", None, why="the server proves its name; the client stays anonymous"),
    TlsCase("one-way: wrong hostname", False, "server", None, hostname="wrong.example",
            why="the certificate names localhost and 127.0.0.1, not wrong.example"),
    TlsCase("one-way: server certificate expired", False, "expired server", None,
            why="its notAfter has passed"),
    TlsCase("one-way: server from another CA", False, "other server", None,
            why="the client trusts only the lab root"),
    TlsCase("one-way: clientAuth-only certificate as server", False, "client", None, hostname="client",
            why="its extended key usage allows TLS clients only"),
    TlsCase("mutual: ok", True, "server", "client", why="both sides prove who they are"),
    TlsCase("mutual: no client certificate", True, "server", None,
            why="the server requires one and the client has none"),
    TlsCase("mutual: client certificate from another CA", True, "server", "other client",
            why="the server trusts only the lab root for clients"),
    TlsCase("mutual: client certificate expired", True, "server", "expired client", why="its notAfter has passed"),
    TlsCase("mutual: serverAuth-only certificate as client", True, "server", "server",
            why="its extended key usage allows TLS servers only"),
)


def tls_identities(kind: str = "ed25519", seed: str | bytes | None = x509.DEFAULT_SEED) -> dict[str, x509.Identity]:
    """The certificates the matrix uses: the lab PKI's server and client, an expired pair, and a server and
    client from another root. 'root' and 'other root' are the two CAs.

    Mirrors the files the notes' "证书生成" script makes (`openssl req -x509`, `openssl x509 -req`), plus the
    bad ones (`-days 30` from 2025, another `req -x509` root).
    """
    common = {"kind": kind, "seed": seed}
    pki = x509.build_pki(kind, seed=seed)
    other = x509.root_ca("/CN=Other Root CA", **common)
    return {
        "root": pki.root,
        "server": pki.server,
        "client": pki.client,
        "expired server": x509.server_identity(pki.root, "localhost", days=30, **common),
        "expired client": x509.client_identity(pki.root, "expired-client", days=30, **common),
        "other root": other,
        "other server": x509.server_identity(other, "localhost", **common),
        "other client": x509.client_identity(other, "other-client", **common),
    }


def run_case(case: TlsCase, version: str, identities: dict[str, x509.Identity] | None = None) -> Handshake:
    """Run one :data:`TLS_CASES` row for one TLS version.

    Mirrors `openssl s_server -cert ... -key ... [-CAfile ca.crt -Verify 1] -tls1_3` against
    `openssl s_client -CAfile ca.crt [-cert ... -key ...] -verify_return_error -tls1_3`.
    """
    ids = identities or tls_identities()
    root = ids["root"].cert
    return handshake(ids[case.server], ids[case.client] if case.client else None, trusted=[root],
                     client_ca=[root] if case.mutual else None, hostname=case.hostname, version=version,
                     case=case.name)


def handshake_matrix(versions: Iterable[str] = ("TLSv1.2", "TLSv1.3"),
                     identities: dict[str, x509.Identity] | None = None) -> list[Handshake]:
    """Every :data:`TLS_CASES` row for every version: one real handshake each, about 10 ms apiece.

    Mirrors running the :func:`run_case` pair of `openssl s_server` / `openssl s_client` per row and version.
    """
    ids = identities or tls_identities()
    return [run_case(case, version, ids) for case in TLS_CASES for version in versions]


def timed_handshake(pki: x509.Pki | None = None) -> float:
    """Seconds for one full mutual-TLS handshake and exchange (server thread start to join); for benchmarks.

    Mirrors `openssl s_time -connect 127.0.0.1:PORT -new` (which counts new handshakes per second).
    """
    pki = pki or x509.build_pki()
    start = time.perf_counter()
    result = handshake(pki.server, pki.client, trusted=[pki.root], client_ca=[pki.root])
    elapsed = time.perf_counter() - start
    if not result.ok:
        raise RuntimeError(str(result))
    return elapsed
