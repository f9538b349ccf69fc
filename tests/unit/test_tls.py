"""labsupport.tls: real one-way and mutual TLS on 127.0.0.1 with the model's certificates.

The expected texts are what Python 3.11's ssl (on OpenSSL 3.0) raised on each side when these handshakes
were run (the reference x509-tls.md lists the same texts); `(_ssl.c:NNNN)` is left out, its line number
differs between builds. They are checked live here: every case below is a real handshake.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from labsupport import tls
from labsupport import x509 as X
from labsupport.errors import LabInputError

VERIFY_FAILED = "SSLCertVerificationError: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: "
ALERT = {
    "bad certificate": "SSLError: [SSL: SSLV3_ALERT_BAD_CERTIFICATE] sslv3 alert bad certificate",
    "expired": "SSLError: [SSL: SSLV3_ALERT_CERTIFICATE_EXPIRED] sslv3 alert certificate expired",
    "unknown ca": "SSLError: [SSL: TLSV1_ALERT_UNKNOWN_CA] tlsv1 alert unknown ca",
    "unsupported": "SSLError: [SSL: SSLV3_ALERT_UNSUPPORTED_CERTIFICATE] sslv3 alert unsupported certificate",
    "handshake failure": "SSLError: [SSL: SSLV3_ALERT_HANDSHAKE_FAILURE] sslv3 alert handshake failure",
    "certificate required": "SSLError: [SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] tlsv13 alert certificate required",
}
NO_CERT = "SSLError: [SSL: PEER_DID_NOT_RETURN_A_CERTIFICATE] peer did not return a certificate"

# (client's failing step, client's error, server's failing step, server's error); None: that side succeeded.
# The server always fails in the handshake. The client's step is where TLS 1.2 and 1.3 differ.
_SERVER_REFUSED = {  # the client refuses the server's certificate: the same in both versions
    "one-way: wrong hostname": (VERIFY_FAILED + "Hostname mismatch, certificate is not valid for 'wrong.example'.",
                                ALERT["bad certificate"]),
    "one-way: server certificate expired": (VERIFY_FAILED + "certificate has expired", ALERT["expired"]),
    "one-way: server from another CA": (VERIFY_FAILED + "unable to get local issuer certificate", ALERT["unknown ca"]),
    "one-way: clientAuth-only certificate as server": (VERIFY_FAILED + "unsuitable certificate purpose",
                                                       ALERT["unsupported"]),
}
_CLIENT_REFUSED = {  # the server refuses the client: (what the client reads, what the server raised)
    "mutual: no client certificate": {"TLSv1.2": ALERT["handshake failure"], "TLSv1.3": ALERT["certificate required"],
                                      "server": NO_CERT},
    "mutual: client certificate from another CA": {"TLSv1.2": ALERT["unknown ca"], "TLSv1.3": ALERT["unknown ca"],
                                                   "server": VERIFY_FAILED + "unable to get local issuer certificate"},
    "mutual: client certificate expired": {"TLSv1.2": ALERT["expired"], "TLSv1.3": ALERT["expired"],
                                           "server": VERIFY_FAILED + "certificate has expired"},
    "mutual: serverAuth-only certificate as client": {"TLSv1.2": ALERT["unsupported"], "TLSv1.3": ALERT["unsupported"],
                                                      "server": VERIFY_FAILED + "unsuitable certificate purpose"},
}


def expected(case: str, version: str):
    if case in ("one-way: ok", "mutual: ok"):
        return None
    if case in _SERVER_REFUSED:
        client, server = _SERVER_REFUSED[case]
        return "handshake", client, "handshake", server
    row = _CLIENT_REFUSED[case]
    # TLS 1.2: the client's handshake call fails. TLS 1.3: it returns, and the first read gets the alert.
    return ("handshake" if version == "TLSv1.2" else "read"), row[version], "handshake", row["server"]


@pytest.fixture(scope="module")
def identities() -> dict[str, X.Identity]:
    return tls.tls_identities()


@pytest.fixture(scope="module")
def matrix(identities) -> dict[tuple[str, str], tls.Handshake]:
    return {(h.case, h.version): h for h in tls.handshake_matrix(identities=identities)}


def test_the_matrix_covers_every_case_and_version(matrix) -> None:
    assert set(matrix) == {(c.name, v) for c in tls.TLS_CASES for v in ("TLSv1.2", "TLSv1.3")}
    assert set(_SERVER_REFUSED) | set(_CLIENT_REFUSED) | {"one-way: ok", "mutual: ok"} == {c.name for c in tls.TLS_CASES}


@pytest.mark.parametrize("version", ["TLSv1.2", "TLSv1.3"])
@pytest.mark.parametrize("case", [c.name for c in tls.TLS_CASES])
def test_handshake_outcome_and_error_texts(matrix, case, version) -> None:
    result = matrix[(case, version)]
    want = expected(case, version)
    if want is None:
        assert result.ok and result.client.error is None and result.server.error is None
        return
    client_stage, client_error, server_stage, server_error = want
    assert not result.ok
    assert (result.client.stage, result.client.error) == (client_stage, client_error)
    assert (result.server.stage, result.server.error) == (server_stage, server_error)
    assert "_ssl.c:" in result.server.error_raw or "_ssl.c:" in result.client.error_raw  # what normalising removed


def test_tls13_client_handshake_returns_before_the_refusal(matrix) -> None:
    # The reference's table 2.2: in TLS 1.3 the client's handshake "succeeds" and the refusal is on read.
    tls13, tls12 = matrix[("mutual: no client certificate", "TLSv1.3")], matrix[("mutual: no client certificate", "TLSv1.2")]
    assert tls13.client.handshake_ok and tls13.client.version == "TLSv1.3" and tls13.client.peer == "CN = localhost"
    assert not tls12.client.handshake_ok
    assert "then read failed" in tls13.client.summary()
    assert tls13.refused_after_handshake and not tls12.refused_after_handshake
    assert str(tls13).endswith("note: " + tls.TLS13_NOTE) and "note:" not in str(tls12)


def test_verification_codes_are_openssl_s(matrix) -> None:
    codes = {case: matrix[(case, "TLSv1.3")].client.verify_code for case in _SERVER_REFUSED}
    assert codes == {"one-way: wrong hostname": 62, "one-way: server certificate expired": 10,
                     "one-way: server from another CA": 20, "one-way: clientAuth-only certificate as server": 26}
    assert matrix[("mutual: client certificate expired", "TLSv1.2")].server.verify_code == 10


@pytest.mark.parametrize(("version", "cipher"), [("TLSv1.2", "ECDHE-ECDSA-AES256-GCM-SHA384"),
                                                 ("TLSv1.3", "TLS_AES_256_GCM_SHA384")])
def test_mutual_tls_reports_version_cipher_and_peers(matrix, version, cipher) -> None:
    result = matrix[("mutual: ok", version)]
    assert (result.client.version, result.client.cipher) == (result.server.version, result.server.cipher) == (version, cipher)
    assert result.client.peer == "CN = localhost" and result.server.peer == "CN = client"
    assert result.server.received == b"ping\n" and result.client.received == b"hello CN = client\n"
    one_way = matrix[("one-way: ok", version)]
    assert one_way.server.peer is None and one_way.client.received == b"hello anonymous\n"


def test_rsa_and_ec_certificates_too() -> None:
    for kind in ("ec", "rsa"):
        pki = X.build_pki(kind, seed=None)
        result = tls.handshake(pki.server, pki.client, trusted=[pki.root], client_ca=[pki.root], version="TLSv1.2")
        assert result.ok, str(result)
        assert ("RSA" if kind == "rsa" else "ECDSA") in result.client.cipher


def test_an_intermediate_is_sent_by_the_server() -> None:
    pki = X.build_pki(intermediate=True)
    result = tls.handshake(pki.server, pki.client, trusted=[pki.root], client_ca=[pki.root])
    assert result.ok, str(result)  # the client has only the root: the server's chain carries the intermediate


def test_kubectl_to_the_api_server() -> None:
    # kubectl inside a pod dials https://10.96.0.1 or https://kubernetes.default.svc: both are on the
    # serving certificate. The API server reads the admin's user and groups from the client certificate.
    k8s = X.kubernetes_pki()
    for name in ("10.96.0.1", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"):
        result = tls.handshake(k8s.apiserver, k8s.admin, trusted=[k8s.ca], client_ca=[k8s.ca], hostname=name)
        assert result.ok, str(result)
        assert result.server.peer == "O = system:masters, CN = kubernetes-admin"
    assert X.apiserver_identity(k8s.admin) == ("kubernetes-admin", ["system:masters"])
    wrong = tls.handshake(k8s.apiserver, k8s.admin, trusted=[k8s.ca], client_ca=[k8s.ca], hostname="10.96.0.10")
    assert wrong.client.error.endswith("IP address mismatch, certificate is not valid for '10.96.0.10'.")


@pytest.mark.parametrize(("call", "field"), [
    (lambda ids: tls.handshake(ids["server"], trusted=[ids["root"]], version="TLSv1.1"), "version"),
    (lambda ids: tls.handshake(X.Identity(ids["server"].cert), trusted=[ids["root"]]), "identity"),
    (lambda ids: tls.handshake(ids["server"], trusted=[]), "trusted"),
    (lambda ids: tls.TLSServer(ids["server"], connections=0), "connections"),
])
def test_bad_input(identities, call, field) -> None:
    before = _resources()
    with pytest.raises(LabInputError) as info:
        call(identities)
    assert info.value.field == field
    assert _resources() == before


# --- nothing left behind ------------------------------------------------------------------------------------


def _resources() -> tuple[frozenset, frozenset, frozenset]:
    """(thread ids, this process's socket inodes, those of them listening on TCP)."""
    threads = frozenset(t.ident for t in threading.enumerate())
    sockets = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            sockets.add(target[len("socket:["):-1])
    listening = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if Path(table).exists():
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in sockets:  # 0A: LISTEN
                    listening.add(fields[1])
    return threads, frozenset(sockets), frozenset(listening)


@pytest.fixture
def no_leaks():
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc (Linux) to list the process's sockets")
    before = _resources()
    yield
    threads, sockets, listening = _resources()
    assert threads == before[0], "a thread was left running"
    assert sockets == before[1], "a socket was left open"
    assert listening == before[2], "a listening port was left open"


def test_no_port_or_thread_left_behind(no_leaks, identities) -> None:
    with tls.TLSServer(identities["server"]) as server:
        assert _resources()[2], "the server listens while it runs"  # the check can see a listener
        port = server.port
    tls.handshake_matrix(versions=("TLSv1.3",), identities=identities)
    # a client that finds nobody listening
    refused = tls.connect(port, [identities["root"]])
    assert refused.stage == "connect" and "ConnectionRefusedError" in refused.error
    # a server nobody connects to, one left waiting for a second client, one closed twice
    with tls.TLSServer(identities["server"], timeout=0.5):
        pass
    with tls.TLSServer(identities["server"], connections=2, timeout=0.5) as server:
        assert tls.connect(server.port, [identities["root"]]).ok
    server.close()
    # an exception inside the with block still stops the server
    with pytest.raises(RuntimeError), tls.TLSServer(identities["server"]):
        raise RuntimeError("boom")


def test_server_results_and_connections(identities) -> None:
    with tls.TLSServer(identities["server"], client_ca=[identities["root"]], connections=2) as server:
        first = tls.connect(server.port, [identities["root"]], identity=identities["client"])
        second = tls.connect(server.port, [identities["root"]], hostname="127.0.0.1")
        results = server.wait()
    assert first.ok and not second.ok
    assert [r.ok for r in results] == [True, False] and results[0].peer == "CN = client"


def test_normalise_error() -> None:
    assert tls.normalise_error("[SSL: X] y (_ssl.c:2580)") == "[SSL: X] y"
    assert tls.timed_handshake() > 0
