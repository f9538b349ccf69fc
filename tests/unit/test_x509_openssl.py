"""labsupport.x509 and labsupport.tls against the real `openssl` command (OpenSSL 3.0).

Needs the `openssl` command: without it these tests are SKIPPED with the reason, and under CI
(CI=true) they FAIL instead (the same rule as tests/conftest.py's capabilities).

What is normalised, and only that:
- `openssl verify`'s output is compared line for line, except the lines of OpenSSL's error queue it
  appends after some failures (`40E7...:error:06880006:asn1 encoding routines:...:a_verify.c:220:`):
  they name a thread id and OpenSSL's source files, not the verification result;
- `openssl x509 -text` and `openssl req -text` are compared exactly (only the final newline is dropped);
- TLS errors are compared by their reason text (e.g. "tlsv13 alert certificate required"), which both
  Python's ssl and openssl print; the surrounding formats differ.
"""

from __future__ import annotations

import os
import re
import select
import subprocess
import time
from pathlib import Path

import pytest

from labsupport import tls
from labsupport import x509 as X
from labsupport.__main__ import main
from labsupport.errors import LabInputError

ERROR_QUEUE = re.compile(r"^[0-9A-F]+:error:[0-9A-F]+:")


@pytest.fixture(scope="module")
def openssl(requires_openssl: str) -> str:
    """The openssl command (tests/conftest.py skips without it, and fails under CI)."""
    return requires_openssl


def run(openssl: str, *args: str, cwd: Path | None = None, data: bytes | None = None,
        check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([openssl, *args], cwd=cwd, input=data, capture_output=True, timeout=60, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"openssl {' '.join(args)} failed: {done.stderr.decode()}")
    return done


def write(path: Path, data: bytes, private: bool = False) -> Path:
    if private:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
    else:
        path.write_bytes(data)
    return path


def openssl_text(openssl: str, pem: bytes, command: str = "x509") -> str:
    return run(openssl, command, "-text", "-noout", data=pem).stdout.decode().rstrip("\n")


# --- openssl x509 -text ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["ed25519", "ec", "rsa"])
def test_text_is_openssl_x509_text(openssl, kind) -> None:
    pki = X.build_pki(kind, intermediate=True)
    for identity in (pki.root, pki.intermediate, pki.server, pki.client):
        assert X.text(identity.cert) == openssl_text(openssl, identity.cert_pem())


def test_text_of_kubernetes_and_odd_certificates(openssl) -> None:
    k8s = X.kubernetes_pki()
    certs = [k8s.ca.cert, k8s.apiserver.cert, k8s.admin.cert, k8s.kubelet.cert,
             X.self_signed_identity(names=("localhost", "::1", "fd00::10")).cert]
    certs += [case.cert for case in X.verify_cases()]
    for cert in certs:
        assert X.text(cert) == openssl_text(openssl, X.to_pem(cert)), X.name_text(cert.subject)


def test_text_of_unusual_extensions_and_names(openssl) -> None:
    cx = X._crypto()[0]
    oid = cx.oid
    key = X.generate_key("ed25519", "odd")
    values = ["a,b", "x+y", 'q"uote', "back\\slash", " lead", "trail ", "#h", "ü;<>=", "tab\there", "a=b", "中文"]
    name = cx.Name([cx.RelativeDistinguishedName([cx.NameAttribute(oid.NameOID.COMMON_NAME, v)]) for v in values]
                   + [cx.RelativeDistinguishedName([cx.NameAttribute(oid.NameOID.ORGANIZATION_NAME, "m1"),
                                                    cx.NameAttribute(oid.NameOID.ORGANIZATIONAL_UNIT_NAME, "m2")]),
                      cx.RelativeDistinguishedName([cx.NameAttribute(oid.NameOID.DOMAIN_COMPONENT, "com")])])
    ski = cx.SubjectKeyIdentifier.from_public_key(key.public_key())
    builder = (
        cx.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .not_valid_before(X.LAB_NOT_BEFORE).not_valid_after(X.LAB_NOW)
        .add_extension(cx.AuthorityKeyIdentifier(ski.digest, [cx.DirectoryName(name)], 12345), critical=False)
        .add_extension(cx.AuthorityInformationAccess([
            cx.AccessDescription(oid.AuthorityInformationAccessOID.OCSP, cx.UniformResourceIdentifier("http://o.example")),
            cx.AccessDescription(oid.AuthorityInformationAccessOID.CA_ISSUERS,
                                 cx.UniformResourceIdentifier("http://ca.example/ca.crt"))]), critical=False)
        .add_extension(cx.CRLDistributionPoints([cx.DistributionPoint(
            [cx.UniformResourceIdentifier("http://crl.example/a.crl")], None, None, None)]), critical=False)
        .add_extension(cx.CertificatePolicies([cx.PolicyInformation(cx.ObjectIdentifier("2.23.140.1.2.1"), None),
                                               cx.PolicyInformation(cx.ObjectIdentifier("1.3.6.1.4.1.1"),
                                                                    ["http://cps.example"])]), critical=False)
        .add_extension(cx.ExtendedKeyUsage([oid.ExtendedKeyUsageOID.CODE_SIGNING, oid.ExtendedKeyUsageOID.OCSP_SIGNING,
                                            cx.ObjectIdentifier("1.2.3.4")]), critical=False)
        .add_extension(cx.SubjectAlternativeName([cx.RFC822Name("a@b.c"), cx.UniformResourceIdentifier(
            "spiffe://cluster.local/ns/default/sa/web"), cx.RegisteredID(cx.ObjectIdentifier("1.2.3"))]), critical=True)
        .add_extension(cx.UnrecognizedExtension(cx.ObjectIdentifier("1.2.3.4.5"), b"\x04\x05hello\xff"), critical=False)
        .add_extension(cx.KeyUsage(False, True, False, True, True, False, False, True, False), critical=False)
    )
    for serial in (2**63 + 5, 2**63 - 1, 1, 2**159 - 1):  # decimal up to 2**63 - 1, then hex bytes
        cert = X._sign(builder.serial_number(serial), key)
        assert X.text(cert) == openssl_text(openssl, X.to_pem(cert))


def test_text_of_a_negative_serial(openssl) -> None:
    # RFC 5280 forbids it, OpenSSL reads and prints it: so does the model (without a warning).
    der = bytearray(X.to_der(X.build_pki().server.cert))
    der[der.index(bytes([0x02, 0x10])) + 2] |= 0x80  # the serial's first byte: now a negative INTEGER
    assert X.text(bytes(der)) == openssl_text(openssl, X.der_to_pem(bytes(der)))
    assert "(Negative)" in X.text(bytes(der))


def test_text_of_the_notes_certificates(openssl, tmp_path) -> None:
    # The notes' script, run by openssl itself (a 2048-bit CA key to keep it quick): the CA is version 3
    # with SKI, AKI and basicConstraints; `x509 -req` without -extfile makes version 1 leaves.
    subj = "/C=IN/ST=UK/L=Dehradun/O=VMware/CN="
    run(openssl, "genrsa", "-out", "ca.key", "2048", cwd=tmp_path)
    run(openssl, "req", "-x509", "-sha256", "-new", "-nodes", "-key", "ca.key", "-days", "3650", "-subj",
        subj + "Hemant Root CA", "-extensions", "v3_ca", "-out", "ca.crt", cwd=tmp_path)
    run(openssl, "genrsa", "-out", "server.key", "2048", cwd=tmp_path)
    run(openssl, "req", "-new", "-subj", subj + "localhost", "-key", "server.key", "-out", "server.csr", cwd=tmp_path)
    run(openssl, "x509", "-req", "-days", "365", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.crt", cwd=tmp_path)
    for name in ("ca.crt", "server.crt"):
        pem = (tmp_path / name).read_bytes()
        assert X.text(pem) == openssl_text(openssl, pem)
    server = X.load_certificates((tmp_path / "server.crt").read_bytes())[0]
    assert server.version.name == "v1" and len(server.extensions) == 0
    assert X.csr_text((tmp_path / "server.csr").read_bytes()) == openssl_text(
        openssl, (tmp_path / "server.csr").read_bytes(), "req")
    # and the notes' `openssl verify -CAfile ca.crt server.crt` agrees with the model
    assert run(openssl, "verify", "-CAfile", "ca.crt", "server.crt", cwd=tmp_path).stdout == b"server.crt: OK\n"
    ca = X.load_certificates((tmp_path / "ca.crt").read_bytes())
    assert X.verify(server, ca, hostname="localhost").lines("server.crt") == ["server.crt: OK"]  # the CN fallback
    key = X.load_private_key((tmp_path / "server.key").read_bytes())
    assert X.key_matches(server, key)


def test_csr_text_is_openssl_req_text(openssl) -> None:
    key = X.generate_key("ec", "csr")
    for csr in (X.make_csr(key, "/O=system:nodes/CN=system:node:n1", dns=["n1"], ips=["10.0.0.1", "fd00::1"]),
                X.make_csr(key, "/CN=no-sans")):
        assert X.csr_text(csr) == openssl_text(openssl, X.to_pem(csr), "req")


# --- openssl verify --------------------------------------------------------------------------------------


def openssl_verify(openssl: str, case: X.VerifyCase, workdir: Path) -> tuple[int, list[str]]:
    write(workdir / "cert.pem", X.to_pem(case.cert))
    args = ["verify", "-no-CApath", "-no-CAstore"]
    if case.trusted:
        write(workdir / "trusted.pem", b"".join(X.to_pem(c) for c in case.trusted))
        args += ["-CAfile", "trusted.pem"]
    else:
        args.append("-no-CAfile")
    if case.untrusted:
        write(workdir / "untrusted.pem", b"".join(X.to_pem(c) for c in case.untrusted))
        args += ["-untrusted", "untrusted.pem"]
    done = run(openssl, *args, *case.openssl_options(), "cert.pem", cwd=workdir, check=False)
    lines = (done.stdout + done.stderr).decode().splitlines()
    return done.returncode, [ln for ln in lines if not ERROR_QUEUE.match(ln)]


@pytest.mark.parametrize(("kind", "seed"), [("ed25519", X.DEFAULT_SEED), ("ec", X.DEFAULT_SEED), ("rsa", None)])
def test_openssl_verify_agrees_on_every_case(openssl, tmp_path, kind, seed) -> None:
    disagreements = []
    for case in X.verify_cases(kind, seed=seed):
        result = case.run()
        status, lines = openssl_verify(openssl, case, tmp_path)
        if (status, lines) != (0 if result.ok else 2, result.lines("cert.pem")):
            disagreements.append(f"{case.name}: openssl {status} {lines} / model {result.lines('cert.pem')}")
    assert not disagreements, "\n".join(disagreements)


def test_cli_verify_prints_what_openssl_verify_prints(openssl, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    names = ("server via the intermediate", "expired", "hostname mismatch", "IP address mismatch",
             "client certificate used by a server", "path length exceeded")
    for case in (c for c in X.verify_cases() if c.name in names):
        status, lines = openssl_verify(openssl, case, tmp_path)
        args = ["pki", "verify", "cert.pem", "--ca", "trusted.pem"]
        if case.untrusted:
            args += ["--untrusted", "untrusted.pem"]
        for flag, value in (("--hostname", case.hostname), ("--ip", case.ip), ("--purpose", case.purpose)):
            if value is not None:
                args += [flag, value]
        args += ["--attime", str(int(case.at.timestamp()))]
        assert main(args) == status
        captured = capsys.readouterr()
        assert (captured.out + captured.err).splitlines() == lines, case.name


# --- files both ways ---------------------------------------------------------------------------------------


def test_openssl_reads_the_model_s_files(openssl, tmp_path) -> None:
    pki = X.build_pki(intermediate=True)
    write(tmp_path / "server.p12", X.to_p12(pki.server, "pw", chain=[pki.intermediate, pki.root]), private=True)
    info = run(openssl, "pkcs12", "-info", "-in", "server.p12", "-passin", "pass:pw", "-nokeys", cwd=tmp_path)
    subjects = re.findall(r"^subject=(.*)$", info.stdout.decode(), re.MULTILINE)
    assert subjects == ["CN = localhost", "CN = Lab Intermediate CA", "CN = Lab Root CA"]
    key_pem = run(openssl, "pkcs12", "-in", "server.p12", "-passin", "pass:pw", "-nocerts", "-nodes", cwd=tmp_path).stdout
    assert X.key_matches(pki.server.cert, X.load_private_key(key_pem))
    assert run(openssl, "pkcs12", "-info", "-in", "server.p12", "-passin", "pass:nope", "-nokeys",
               cwd=tmp_path, check=False).returncode != 0
    write(tmp_path / "server.der", X.to_der(pki.server.cert))
    der_text = run(openssl, "x509", "-inform", "der", "-in", "server.der", "-text", "-noout", cwd=tmp_path)
    assert der_text.stdout.decode().rstrip("\n") == X.text(pki.server.cert)
    write(tmp_path / "chain.p7b", X.to_p7b([pki.server, pki.root]))
    printed = run(openssl, "pkcs7", "-in", "chain.p7b", "-print_certs", "-noout", cwd=tmp_path).stdout.decode()
    assert re.findall(r"^subject=(.*)$", printed, re.MULTILINE) == [
        "CN = localhost", "CN = Lab Intermediate CA", "CN = Lab Root CA"]
    seeded_rsa = X.generate_key("rsa", "lab")
    write(tmp_path / "rsa.key", X.private_key_pem(seeded_rsa), private=True)
    assert run(openssl, "rsa", "-in", "rsa.key", "-check", "-noout", cwd=tmp_path).stdout == b"RSA key ok\n"


def test_the_notes_conversions_give_openssl_s_bytes(openssl, tmp_path) -> None:
    pki = X.build_pki(intermediate=True)
    write(tmp_path / "CERTIFICATE.pem", pki.server.cert_pem())
    write(tmp_path / "MORE.pem", pki.intermediate.cert_pem() + pki.root.cert_pem())
    run(openssl, "x509", "-outform", "der", "-in", "CERTIFICATE.pem", "-out", "CERTIFICATE.der", cwd=tmp_path)
    assert X.pem_to_der(pki.server.cert_pem()) == (tmp_path / "CERTIFICATE.der").read_bytes()
    run(openssl, "x509", "-inform", "der", "-in", "CERTIFICATE.der", "-out", "BACK.pem", cwd=tmp_path)
    assert X.der_to_pem((tmp_path / "CERTIFICATE.der").read_bytes()) == (tmp_path / "BACK.pem").read_bytes()
    run(openssl, "crl2pkcs7", "-nocrl", "-certfile", "CERTIFICATE.pem", "-certfile", "MORE.pem",
        "-out", "CERTIFICATE.p7b", cwd=tmp_path)
    written = (tmp_path / "CERTIFICATE.p7b").read_bytes()
    assert X.to_p7b([pki.server, pki.intermediate, pki.root]) == written
    assert X.load_certificates(written) == [pki.server.cert, pki.intermediate.cert, pki.root.cert]
    run(openssl, "crl2pkcs7", "-nocrl", "-certfile", "CERTIFICATE.pem", "-outform", "der", "-out", "one.p7b",
        cwd=tmp_path)
    assert X.to_p7b([pki.server.cert], "der") == (tmp_path / "one.p7b").read_bytes()


@pytest.mark.parametrize("options", [[], ["-certpbe", "PBE-SHA1-3DES", "-keypbe", "PBE-SHA1-3DES", "-macalg", "sha1"]],
                         ids=["openssl 3 default (AES)", "older 3DES"])
def test_the_model_reads_openssl_s_pkcs12(openssl, tmp_path, options) -> None:
    pki = X.build_pki(intermediate=True)
    write(tmp_path / "PRIVATEKEY.key", pki.server.key_pem(), private=True)
    write(tmp_path / "CERTIFICATE.crt", pki.server.cert_pem())
    write(tmp_path / "MORE.crt", pki.intermediate.cert_pem() + pki.root.cert_pem())
    run(openssl, "pkcs12", "-export", "-out", "CERTIFICATE.pfx", "-inkey", "PRIVATEKEY.key", "-in", "CERTIFICATE.crt",
        "-certfile", "MORE.crt", "-passout", "pass:pw", *options, cwd=tmp_path)
    data = (tmp_path / "CERTIFICATE.pfx").read_bytes()
    assert X.detect(data).kind == "pkcs12"
    back = X.read_p12(data, "pw")
    assert back.cert == pki.server.cert and X.key_matches(back.cert, back.key)
    assert set(back.chain) == {pki.intermediate.cert, pki.root.cert}
    with pytest.raises(LabInputError) as info:
        X.read_p12(data, "wrong")
    assert info.value.field == "password"


def test_the_model_reads_openssl_s_pem_and_der(openssl, tmp_path) -> None:
    run(openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "k.pem",
        "-out", "c.pem", "-days", "30", "-subj", "/CN=made by openssl", "-addext", "subjectAltName=DNS:a.example",
        cwd=tmp_path)
    run(openssl, "x509", "-in", "c.pem", "-outform", "der", "-out", "c.cer", cwd=tmp_path)
    pem, der = (tmp_path / "c.pem").read_bytes(), (tmp_path / "c.cer").read_bytes()
    assert X.detect(pem).encoding == "PEM" and X.detect(der).encoding == "DER"  # a .cer can be either
    assert X.load_certificates(pem) == X.load_certificates(der)
    assert X.key_matches(X.load_certificates(der)[0], X.load_private_key((tmp_path / "k.pem").read_bytes()))
    assert X.text(der) == openssl_text(openssl, pem)


# --- TLS with openssl s_server and s_client -------------------------------------------------------------------


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> tuple[X.Pki, Path]:
    pki = X.build_pki()
    files = tmp_path_factory.mktemp("tls")
    write(files / "ca.pem", pki.root.cert_pem())
    for name in ("server", "client"):
        write(files / f"{name}.pem", getattr(pki, name).cert_pem())
        write(files / f"{name}.key", getattr(pki, name).key_pem(), private=True)
    return pki, files


class SServer:
    """`openssl s_server` on 127.0.0.1 and a free port, for one connection; always stopped and reaped."""

    def __init__(self, openssl: str, files: Path, *options: str) -> None:
        self.proc = subprocess.Popen(
            [openssl, "s_server", "-accept", "127.0.0.1:0", "-naccept", "1", "-www", "-cert", "server.pem",
             "-key", "server.key", *options], cwd=files, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.port = self._port()

    def _port(self) -> int:
        # Read the raw pipe (not the buffered file object, whose buffer select() cannot see) until the
        # ACCEPT line names the port.
        deadline, seen, fd = time.monotonic() + 10, b"", self.proc.stdout.fileno()
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                chunk = os.read(fd, 4096)
                seen += chunk
                match = re.search(rb"^ACCEPT 127\.0\.0\.1:(\d+)$", seen, re.MULTILINE)
                if match:
                    return int(match.group(1))
                if not chunk:
                    break
            elif self.proc.poll() is not None:
                break
        self.stop()
        raise AssertionError(f"openssl s_server did not start: {seen!r}")

    def stop(self) -> str:
        """End the server (it exits by itself after its one connection) and return its stderr."""
        try:
            _, err = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return err.decode()


HTTP_GET = b"GET / HTTP/1.0\r\n\r\n"


@pytest.mark.parametrize(("version", "flag"), [("TLSv1.2", "-tls1_2"), ("TLSv1.3", "-tls1_3")])
def test_openssl_s_server_wants_the_model_s_client_certificate(openssl, lab, version, flag) -> None:
    pki, files = lab
    server = SServer(openssl, files, "-CAfile", "ca.pem", "-Verify", "1", flag)
    try:
        with_cert = tls.connect(server.port, [pki.root], identity=pki.client, version=version, message=HTTP_GET)
    finally:
        server.stop()
    assert with_cert.ok and with_cert.received.startswith(b"HTTP/1.0 200 ok")
    assert with_cert.version == version and with_cert.peer == "CN = localhost"

    server = SServer(openssl, files, "-CAfile", "ca.pem", "-Verify", "1", flag)
    try:
        without = tls.connect(server.port, [pki.root], version=version, message=HTTP_GET)
    finally:
        stderr = server.stop()
    assert not without.ok and "peer did not return a certificate" in stderr
    if version == "TLSv1.3":  # the handshake call returned; the first read got the alert
        assert (without.handshake_ok, without.stage) == (True, "read")
        assert without.error.endswith("tlsv13 alert certificate required")
    else:
        assert (without.handshake_ok, without.stage) == (False, "handshake")
        assert without.error.endswith("sslv3 alert handshake failure")


@pytest.mark.parametrize(("version", "flag"), [("TLSv1.2", "-tls1_2"), ("TLSv1.3", "-tls1_3")])
def test_the_model_s_server_wants_openssl_s_client_s_certificate(openssl, lab, version, flag) -> None:
    pki, files = lab
    common = ["s_client", "-connect", "", "-CAfile", "ca.pem", "-verify_return_error", "-verify_hostname",
              "localhost", flag, "-ign_eof"]
    with tls.TLSServer(pki.server, client_ca=[pki.root], version=version) as server:
        common[2] = f"127.0.0.1:{server.port}"
        accepted = run(openssl, *common, "-cert", "client.pem", "-key", "client.key", cwd=files, data=b"ping\n",
                       check=False)
        served = server.wait()
    assert accepted.returncode == 0, accepted.stderr.decode()
    out = accepted.stdout.decode()
    assert "hello CN = client" in out and f"New, {version}" in out and "Verification: OK" in out
    assert served[0].ok and served[0].peer == "CN = client" and served[0].received == b"ping\n"

    with tls.TLSServer(pki.server, client_ca=[pki.root], version=version) as server:
        common[2] = f"127.0.0.1:{server.port}"
        refused = run(openssl, *common, cwd=files, data=b"ping\n", check=False)
        served = server.wait()
    assert refused.returncode != 0 and "hello" not in refused.stdout.decode()
    reason = "tlsv13 alert certificate required" if version == "TLSv1.3" else "sslv3 alert handshake failure"
    assert reason in refused.stderr.decode()
    assert served[0].error == "SSLError: [SSL: PEER_DID_NOT_RETURN_A_CERTIFICATE] peer did not return a certificate"

