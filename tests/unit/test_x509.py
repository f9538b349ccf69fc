"""labsupport.x509 on its own (no openssl command needed; tests/unit/test_x509_openssl.py compares with it).

Expected values come from
- OpenSSL 3.0.22 run on the same certificates at the time of writing: the `openssl x509 -text -noout`
  listing below, the name escapes, every verify code and depth of the matrix (test_x509_openssl.py
  repeats all of these live against the installed openssl);
- the course's reference (x509-tls.md): OpenSSL's verify error strings;
- definitions: RFC 5280 (extensions, key identifiers), RFC 8032 (Ed25519 is deterministic), RFC 6979
  (deterministic ECDSA), PKCS#1 v1.5 (deterministic RSA signatures), kubeadm's certificate layout and
  the API server's x509 authenticator (user = CN, groups = O).
"""

from __future__ import annotations

import functools
import inspect
import math
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509 as cx
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labsupport import tls
from labsupport import x509 as X
from labsupport.__main__ import main
from labsupport.errors import LabInputError

# `openssl x509 -in apiserver.pem -text -noout` (OpenSSL 3.0.22) for kubernetes_pki().apiserver: the seeded
# Ed25519 certificate is the same bytes on every run, so a lab can store this output.
APISERVER_TEXT = """\
Certificate:
    Data:
        Version: 3 (0x2)
        Serial Number:
            77:6d:96:20:7b:73:a4:d6:d8:05:70:be:1c:79:9a:14
        Signature Algorithm: ED25519
        Issuer: CN = kubernetes
        Validity
            Not Before: Jan  1 00:00:00 2025 GMT
            Not After : Dec 30 00:00:00 2034 GMT
        Subject: CN = kube-apiserver
        Subject Public Key Info:
            Public Key Algorithm: ED25519
                ED25519 Public-Key:
                pub:
                    ce:e3:da:12:c9:38:82:3b:33:78:02:25:e3:bd:fa:
                    95:4b:1a:67:e8:c5:d0:0a:8b:cd:c9:88:54:13:cd:
                    2a:1c
        X509v3 extensions:
            X509v3 Basic Constraints: critical
                CA:FALSE
            X509v3 Key Usage: critical
                Digital Signature
            X509v3 Extended Key Usage: 
                TLS Web Server Authentication
            X509v3 Subject Key Identifier: 
                0C:9F:CC:78:9E:D9:0F:7A:B9:CF:0E:5F:6B:D3:97:42:FC:0E:0B:DB
            X509v3 Authority Key Identifier: 
                11:FC:49:B6:FA:98:5B:75:2F:8B:44:3D:C0:88:3A:25:86:71:9E:87
            X509v3 Subject Alternative Name: 
                DNS:control-plane, DNS:kubernetes, DNS:kubernetes.default, DNS:kubernetes.default.svc, \
DNS:kubernetes.default.svc.cluster.local, IP Address:10.96.0.1, IP Address:192.168.56.10
    Signature Algorithm: ED25519
    Signature Value:
        c8:04:d1:00:bf:cb:59:7d:53:24:43:d9:3d:1a:81:d4:41:ed:
        cc:41:05:d1:fc:ff:fe:6a:6c:80:2c:d9:9a:c2:98:eb:0d:5f:
        81:00:df:19:b0:d7:3e:68:8f:ca:45:e3:bb:02:1d:a3:2b:c3:
        e9:ba:57:5e:f1:a0:94:af:86:02"""

# What `openssl verify` printed for each case of X.verify_cases() (OpenSSL 3.0.22): (code, depth) per
# error line, in order; [] means "cert.pem: OK".
VERIFY_EXPECTED = {
    "server via the intermediate": [],
    "server, hostname localhost": [],
    "server, IP 127.0.0.1": [],
    "server for TLS servers (sslserver)": [],
    "client for TLS clients (sslclient)": [],
    "wildcard *.example.com for a.example.com": [],
    "no SAN: the CN is checked instead": [],
    "valid from the first second of notBefore": [],
    "intermediate not given": [(20, 0)],
    "only the intermediate trusted": [(2, 1)],
    "issued by another CA": [(20, 1)],
    "root sent but not trusted": [(19, 2)],
    "self-signed": [(18, 0)],
    "self-signed and expired": [(18, 0), (10, 0)],
    "expired": [(10, 0)],
    "expired at the second of notAfter": [(10, 0)],
    "not yet valid": [(9, 0)],
    "checked before the root's notBefore": [(9, 2)],
    "intermediate expired": [(10, 1)],
    "hostname mismatch": [(62, 0)],
    "wildcard covers one label only": [(62, 0)],
    "expired and hostname mismatch": [(62, 0)],
    "IP address mismatch": [(64, 0)],
    "server certificate used by a client": [(26, 0)],
    "client certificate used by a server": [(26, 0)],
    "path length exceeded": [(25, 2)],
    "a server certificate used as a CA": [(79, 1), (25, 2), (25, 3), (32, 1)],
    "forged signature": [(7, 0)],
}


@functools.cache
def _default_pki() -> X.Pki:
    return X.build_pki()


@pytest.fixture(scope="module")
def pki() -> X.Pki:
    return X.build_pki(intermediate=True)


# --- keys ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "cls"), [("ed25519", ed25519.Ed25519PrivateKey),
                                           ("ec", ec.EllipticCurvePrivateKey), ("rsa", rsa.RSAPrivateKey)])
def test_key_kinds_and_seeds(kind, cls) -> None:
    seeded = X.generate_key(kind, "lab")
    assert isinstance(seeded, cls) and X.key_kind(seeded) == X.key_kind(seeded.public_key()) == kind
    assert X._spki(X.generate_key(kind, "lab").public_key()) == X._spki(seeded.public_key())
    assert X._spki(X.generate_key(kind, "other").public_key()) != X._spki(seeded.public_key())
    assert X._spki(X.generate_key(kind).public_key()) != X._spki(X.generate_key(kind).public_key())
    if kind == "ec":
        assert seeded.curve.name == "secp256r1"


def test_seeded_rsa_key_is_a_proper_rsa_key() -> None:
    X._RSA_CACHE.clear()
    key = X.generate_key("rsa", "lab")
    numbers = key.private_numbers()
    p, q, n, e, d = numbers.p, numbers.q, numbers.public_numbers.n, numbers.public_numbers.e, numbers.d
    assert p * q == n and n.bit_length() == 2048 and e == 65537
    assert p.bit_length() == q.bit_length() == 1024 and abs(p - q) > 2 ** (1024 - 100)
    assert d * e % math.lcm(p - 1, q - 1) == 1 and d > 2**1024
    assert all(pow(a, p - 1, p) == 1 for a in (2, 3, 5, 7)) and all(pow(a, q - 1, q) == 1 for a in (2, 3, 5, 7))
    X._RSA_CACHE.clear()
    assert X.generate_key("rsa", "lab").private_numbers() == numbers  # from the seed, not from the cache


@pytest.mark.parametrize(("args", "field"), [
    (("dsa",), "key kind"), (("rsa", None, 1024), "bits"), (("ed25519", 42), "seed"),
])
def test_bad_key_requests(args, field) -> None:
    with pytest.raises(LabInputError) as info:
        X.generate_key(*args)
    assert info.value.field == field


# --- names and CSRs ---------------------------------------------------------------------------------------


def test_subject_syntax_of_the_notes() -> None:
    name = X.parse_name("/C=IN/ST=UK/L=Dehradun/O=VMware/CN=Hemant Root CA")
    assert X.name_text(name) == "C = IN, ST = UK, L = Dehradun, O = VMware, CN = Hemant Root CA"
    assert X.name_text(X.parse_name("/O=system:masters/O=extra/CN=a\\/b")) == "O = system:masters, O = extra, CN = a/b"


def test_name_escapes_as_openssl_prints_them() -> None:
    # Printed by `openssl x509 -noout -subject` (3.0.22) for the same attribute values.
    values = ["a,b", "x+y", 'q"uote', "back\\slash", " lead", "trail ", "#h", "ü;<>=", "tab\there", "a=b"]
    name = cx.Name([cx.RelativeDistinguishedName([cx.NameAttribute(cx.oid.NameOID.COMMON_NAME, v)]) for v in values])
    assert X.name_text(name) == ('CN = "a,b", CN = "x+y", CN = q\\"uote, CN = back\\\\slash, CN = " lead", '
                                 'CN = "trail ", CN = "#h", CN = "\\C3\\BC;<>=", CN = tab\\09here, CN = a=b')


@pytest.mark.parametrize("subject", ["CN=x", "/", "/XX=y", "/CN=", "/C=India", 42])
def test_bad_subjects(subject) -> None:
    with pytest.raises(LabInputError) as info:
        X.parse_name(subject)
    assert info.value.field == "subject"


def test_csr_carries_subject_and_sans() -> None:
    key = X.generate_key("ed25519", "csr")
    csr = X.make_csr(key, "/CN=localhost", dns=["localhost", "*.svc.cluster.local"], ips=["127.0.0.1", "::1"])
    assert csr.is_signature_valid
    assert X._sans_of(csr) == (["localhost", "*.svc.cluster.local"], ["127.0.0.1", "::1"])
    assert "DNS:localhost, DNS:*.svc.cluster.local, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1" \
        in X.csr_text(csr)


@pytest.mark.parametrize("dns", ["bad_name.example", "-lead.example", "a..b", "x" * 64 + ".example", "a.*.b",
                                 "*", "", "exa mple.com"])
def test_csr_for_an_invalid_dns_name(dns) -> None:
    with pytest.raises(LabInputError) as info:
        X.make_csr(X.generate_key(), "/CN=x", dns=[dns])
    assert info.value.field == "dns" and info.value.value == dns and "DNS name" in info.value.allowed


def test_csr_for_an_invalid_ip() -> None:
    with pytest.raises(LabInputError) as info:
        X.make_csr(X.generate_key(), "/CN=x", ips=["10.0.0.256"])
    assert info.value.field == "ips"


# --- certificates --------------------------------------------------------------------------------------------


def _ext(cert, cls):
    return cert.extensions.get_extension_for_class(cls)


def test_ca_hierarchy_extensions(pki) -> None:
    root, inter, server, client = pki.root.cert, pki.intermediate.cert, pki.server.cert, pki.client.cert
    assert _ext(root, cx.BasicConstraints).critical and _ext(root, cx.BasicConstraints).value.path_length == 1
    assert _ext(inter, cx.BasicConstraints).value == cx.BasicConstraints(ca=True, path_length=0)
    for ca in (root, inter):
        usage = _ext(ca, cx.KeyUsage).value
        assert usage.key_cert_sign and usage.crl_sign
    for leaf, eku in ((server, cx.oid.ExtendedKeyUsageOID.SERVER_AUTH), (client, cx.oid.ExtendedKeyUsageOID.CLIENT_AUTH)):
        assert _ext(leaf, cx.BasicConstraints).value.ca is False
        assert list(_ext(leaf, cx.ExtendedKeyUsage).value) == [eku]
        assert not _ext(leaf, cx.KeyUsage).value.key_cert_sign
    # SKI/AKI chain: each AKI is the issuer's SKI; the root's AKI is its own SKI.
    for child, parent in ((server, inter), (client, inter), (inter, root), (root, root)):
        assert _ext(child, cx.AuthorityKeyIdentifier).value.key_identifier == _ext(parent, cx.SubjectKeyIdentifier).value.digest
    assert X._sans_of(server) == (["localhost"], ["127.0.0.1"])
    assert pki.server.chain == (inter,) and pki.intermediate.chain == () and pki.issuer is pki.intermediate


def test_rsa_leaves_may_encipher_keys() -> None:
    key = X.generate_key("rsa")  # random: fast
    root = X.root_ca(key=key)
    server = X.server_identity(root, key=X.generate_key("rsa"))
    assert _ext(server.cert, cx.KeyUsage).value.key_encipherment


def test_fixed_dates_and_serials(pki) -> None:
    cert = pki.server.cert
    assert cert.not_valid_before_utc == X.LAB_NOT_BEFORE
    assert cert.not_valid_after_utc == X.LAB_NOT_BEFORE + timedelta(days=X.LEAF_DAYS)
    assert 0 < cert.serial_number < 2**127 and cert.serial_number.bit_length() > 120
    serials = {getattr(pki, n).cert.serial_number for n in ("root", "intermediate", "server", "client")}
    assert len(serials) == 4


@pytest.mark.parametrize("kind", ["ed25519", "ec"])
def test_seeded_certificates_are_the_same_bytes(kind) -> None:
    a, b = X.build_pki(kind, intermediate=True), X.build_pki(kind, intermediate=True)
    for name in ("root", "intermediate", "server", "client"):
        assert getattr(a, name).cert_pem() == getattr(b, name).cert_pem()
    assert X.build_pki(kind, seed=None).root.cert_pem() != X.build_pki(kind, seed=None).root.cert_pem()


def test_seeded_rsa_certificate_is_the_same_bytes() -> None:
    one = X.root_ca("/CN=RSA Root", kind="rsa", seed="stable")
    X._RSA_CACHE.clear()
    assert X.root_ca("/CN=RSA Root", kind="rsa", seed="stable").cert_pem() == one.cert_pem()


def test_text_of_the_apiserver_certificate_is_stable() -> None:
    assert X.text(X.kubernetes_pki().apiserver) == APISERVER_TEXT


def test_text_reads_pem_and_der_bytes(pki) -> None:
    assert X.text(pki.server.cert_pem()) == X.text(X.to_der(pki.server.cert)) == pki.server.text()


@pytest.mark.parametrize(("options", "field"), [
    ({"days": 0}, "days"), ({"not_before": "2025-01-01"}, "not_before"), ({"profile": "web"}, "profile"),
    ({"path_length": -1, "profile": "ca"}, "path_length"),
])
def test_bad_certificate_requests(pki, options, field) -> None:
    with pytest.raises(LabInputError) as info:
        X.issue(pki.root, "/CN=x", **options)
    assert info.value.field == field


def test_a_key_that_does_not_match_its_certificate(pki) -> None:
    with pytest.raises(LabInputError) as info:
        X.Identity(pki.server.cert, pki.client.key)
    assert info.value.field == "key" and "public key differs" in info.value.allowed
    assert not X.key_matches(pki.server.cert, pki.client.key) and X.key_matches(pki.server.cert, pki.server.key)


def test_sign_csr_needs_a_ca_with_its_key(pki) -> None:
    csr = X.make_csr(X.generate_key(), "/CN=x")
    with pytest.raises(LabInputError):
        X.sign_csr(X.Identity(pki.root.cert), csr)
    with pytest.raises(LabInputError):
        X.sign_csr(pki.root, b"not a csr")


# --- Kubernetes ----------------------------------------------------------------------------------------------


def test_apiserver_serving_certificate_names() -> None:
    k8s = X.kubernetes_pki(node_name="cp-1", node_ip="192.168.56.10")
    dns, ips = X._sans_of(k8s.apiserver.cert)
    assert dns == ["cp-1", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                   "kubernetes.default.svc.cluster.local"]
    assert ips == ["10.96.0.1", "192.168.56.10"]
    assert X.apiserver_sans("10.100.0.0/16", dns_domain="corp.local")[1][0] == "10.100.0.1"
    for host in dns:
        assert X.verify(k8s.apiserver, [k8s.ca], hostname=host, purpose="sslserver", at=X.LAB_NOW).ok
    assert X.verify(k8s.apiserver, [k8s.ca], ip="10.96.0.1", at=X.LAB_NOW).ok


def test_what_the_api_server_reads_from_client_certificates() -> None:
    k8s = X.kubernetes_pki(node_name="node-a")
    assert X.apiserver_identity(k8s.admin) == ("kubernetes-admin", ["system:masters"])
    assert X.apiserver_identity(k8s.kubelet.cert) == ("system:node:node-a", ["system:nodes"])
    assert k8s.admin.subject == "O = system:masters, CN = kubernetes-admin"
    two = X.client_identity(k8s.ca, "jane", orgs=("dev", "ops"))
    assert X.apiserver_identity(two) == ("jane", ["dev", "ops"])


def test_api_server_refuses_server_only_and_nameless_certificates() -> None:
    k8s = X.kubernetes_pki()
    with pytest.raises(LabInputError, match="Client Authentication"):
        X.apiserver_identity(k8s.apiserver)
    nameless = X.issue(k8s.ca, "/O=system:masters", profile="client")
    with pytest.raises(LabInputError, match="CN"):
        X.apiserver_identity(nameless)


@pytest.mark.parametrize(("options", "field"), [
    ({"service_cidr": "10.96.0.1/12"}, "service_cidr"), ({"node_ip": "node"}, "node_ip"),
    ({"node_name": "Node_1"}, "node_name"),
])
def test_bad_cluster_settings(options, field) -> None:
    with pytest.raises(LabInputError) as info:
        X.apiserver_sans(**options)
    assert info.value.field == field


# --- encodings -----------------------------------------------------------------------------------------------


def test_pem_der_round_trip(pki) -> None:
    der = X.pem_to_der(pki.server.cert_pem())
    assert der[0] == 0x30 and X.der_to_pem(der) == pki.server.cert_pem()
    assert X.detect(der) == X.Detected("DER", "certificate", ("certificate",))


@pytest.mark.parametrize("encoding", ["pem", "der"])
def test_p7b_holds_the_chain_and_no_key(pki, encoding) -> None:
    bundle = X.to_p7b([pki.server, pki.root], encoding)
    assert X.detect(bundle).kind == "pkcs7" and b"PRIVATE KEY" not in bundle
    assert X.load_certificates(bundle) == [pki.server.cert, pki.intermediate.cert, pki.root.cert]


def test_p12_with_password_and_chain(pki) -> None:
    p12 = X.to_p12(pki.server, "s3cret", chain=[pki.intermediate, pki.root])
    assert X.detect(p12) == X.Detected("binary", "pkcs12", ("pkcs12",))
    back = X.read_p12(p12, "s3cret")
    assert back.cert == pki.server.cert and X.key_matches(back.cert, back.key)
    assert back.chain == (pki.intermediate.cert, pki.root.cert)
    assert X.load_certificates(p12, "s3cret")[0] == pki.server.cert


def test_wrong_or_missing_p12_password(pki) -> None:
    p12 = X.to_p12(pki.client, "right")
    with pytest.raises(LabInputError) as info:
        X.read_p12(p12, "wrong")
    assert info.value.field == "password" and "right" not in str(info.value) and "wrong" not in str(info.value)
    with pytest.raises(LabInputError, match="exported with"):
        X.load_certificates(p12)
    with pytest.raises(LabInputError):
        X.to_p12(pki.client, "")


def test_detect_reads_bytes_not_names(pki) -> None:
    pem, der = pki.server.cert_pem(), X.to_der(pki.server.cert)
    # the same ".crt" may hold either; the bytes tell
    assert X.detect(pem).encoding == "PEM" and X.detect(der).encoding == "DER"
    both = pem + pki.server.key_pem()
    assert X.detect(both).items == ("certificate", "private key")
    assert X.detect(X.make_csr(pki.server.key, "/CN=x").public_bytes(X._crypto()[2].Encoding.DER)).kind \
        == "certificate request"
    assert X.detect(b"\xfe\xed\xfe\xed\x00\x00\x00\x02").kind == "jks"
    assert ".crt" in X.FILE_EXTENSIONS and "PKCS#12" in X.FILE_EXTENSIONS[".pfx"] and "keytool" in X.JKS_TEXT


def test_describe_file_puts_bytes_next_to_the_name(pki) -> None:
    assert X.describe_file("server.crt", X.to_der(pki.server.cert)) == (
        "server.crt: DER: certificate (.crt: " + X.FILE_EXTENSIONS[".crt"] + ")")
    assert X.describe_file("bundle", pki.server.chain_pem()) == "bundle: PEM: certificate, certificate"


def test_jks_is_explained_not_read() -> None:
    with pytest.raises(LabInputError, match="keytool"):
        X.load_certificates(b"\xfe\xed\xfe\xed" + bytes(40))


def test_truncated_pem(pki) -> None:
    pem = pki.server.cert_pem()
    for cut in (pem[: len(pem) // 2], pem.replace(b"-----END CERTIFICATE-----\n", b"")):
        with pytest.raises(LabInputError) as info:
            X.load_certificates(cut)
        assert info.value.field == "file" and "'-----END CERTIFICATE-----' is missing" in info.value.allowed


def test_damaged_pem_and_bare_base64(pki) -> None:
    pem = pki.server.cert_pem()
    lines = pem.splitlines()
    damaged = b"\n".join([lines[0], lines[1][:-4] + b"!!!!", *lines[2:]])
    with pytest.raises(LabInputError, match="Base64"):
        X.load_certificates(damaged)
    with pytest.raises(LabInputError, match="BEGIN"):
        X.load_certificates(b"\n".join(lines[1:-1]))
    with pytest.raises(LabInputError, match="well-formed"):
        X.load_certificates(b"-----BEGIN CERTIFICATE-----\nMAMCAQE=\n-----END CERTIFICATE-----\n")


def test_private_keys_encrypted_or_not(pki) -> None:
    serialization = X._crypto()[2]
    enc = pki.server.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.BestAvailableEncryption(b"pw"))
    assert X.key_kind(X.load_private_key(enc, "pw")) == "ed25519"
    for password, allowed in ((None, "it is encrypted"), ("nope", "encrypted with")):
        with pytest.raises(LabInputError, match=allowed):
            X.load_private_key(enc, password)
    assert X.key_matches(pki.server.cert, X.load_private_key(pki.server.key_pem()))
    with pytest.raises(LabInputError, match="private key"):
        X.load_private_key(pki.server.cert_pem())


def test_convert_between_formats(pki) -> None:
    bundle = pki.server.chain_pem() + pki.server.key_pem()
    assert X.convert(bundle, "der") == X.to_der(pki.server.cert)
    assert X.load_certificates(X.convert(bundle, "p7b")) == [pki.server.cert, pki.intermediate.cert]
    p12 = X.convert(bundle, "p12", password="pw")
    assert X.read_p12(p12, "pw").chain == (pki.intermediate.cert,)
    pem = X.convert(p12, "pem", password="pw")
    assert X.detect(pem).items == ("certificate", "certificate", "private key")
    with pytest.raises(LabInputError, match="private key"):
        X.convert(pki.server.cert_pem(), "p12", password="pw")
    with pytest.raises(LabInputError):
        X.convert(bundle, "jks")


_LOADERS = [
    ("detect", lambda b: X.detect(b)),
    ("load_certificates", lambda b: X.load_certificates(b)),
    ("load_certificates with a password", lambda b: X.load_certificates(b, "pw")),
    ("load_private_key", lambda b: X.load_private_key(b)),
    ("load_csr", lambda b: X.load_csr(b)),
    ("read_p12", lambda b: X.read_p12(b, "pw")),
    ("text", lambda b: X.text(b)),
    ("convert", lambda b: X.convert(b, "p7b")),
]


def _shaped(data: bytes) -> list[bytes]:
    """Garbage in the shapes a loader looks for: raw, as a DER SEQUENCE, inside PEM lines, magic numbers."""
    import base64

    body = base64.encodebytes(data)
    return [data, b"\x30" + bytes([min(len(data), 127)]) + data, b"\x30\x82" + len(data).to_bytes(2, "big") + data,
            b"-----BEGIN CERTIFICATE-----\n" + body + b"-----END CERTIFICATE-----\n",
            b"-----BEGIN PKCS7-----\n" + body + b"-----END PKCS7-----\n",
            b"-----BEGIN PRIVATE KEY-----\n" + body + b"-----END PRIVATE KEY-----\n",
            b"\xfe\xed\xfe\xed" + data, b"\x30\x80\x02\x01\x03\x30" + data]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=300))
def test_garbage_never_escapes_as_anything_but_lab_input_error(data) -> None:
    for shaped in _shaped(data):
        for _, load in _LOADERS:
            try:
                load(shaped)
            except LabInputError:
                pass


@settings(max_examples=60, deadline=None)
@given(cut=st.integers(min_value=0, max_value=10_000), flip=st.integers(min_value=0, max_value=255))
def test_damaged_real_files_raise_lab_input_error(cut, flip) -> None:
    pki = _default_pki()
    for good in (pki.server.cert_pem(), X.to_der(pki.server.cert), X.to_p7b([pki.server.cert], "der")):
        position = cut % len(good)
        for damaged in (good[:position], good[:position] + bytes([good[position] ^ (flip or 1)]) + good[position + 1:]):
            for _, load in _LOADERS:
                try:
                    load(damaged)
                except LabInputError:
                    pass


# --- verify --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cases() -> dict[str, X.VerifyCase]:
    return {case.name: case for case in X.verify_cases()}


def test_every_case_has_an_expectation(cases) -> None:
    assert set(cases) == set(VERIFY_EXPECTED)


@pytest.mark.parametrize("name", list(VERIFY_EXPECTED))
def test_verify_matrix(cases, name) -> None:
    result = cases[name].run()
    assert [(e.code, e.depth) for e in result.errors] == VERIFY_EXPECTED[name]
    assert result.ok == (not VERIFY_EXPECTED[name])
    if result.ok:
        assert result.lines("server.pem") == ["server.pem: OK"] and (result.code, result.message) == (0, "ok")
    else:
        assert result.lines("x.pem")[-1] == "error x.pem: verification failed"
        assert (result.code, result.depth) == VERIFY_EXPECTED[name][0]


def test_verify_output_is_openssl_s(cases) -> None:
    result = cases["expired"].run()
    assert result.lines("expired.pem") == [
        "CN = expired.example", "error 10 at 0 depth lookup: certificate has expired",
        "error expired.pem: verification failed",
    ]
    assert str(cases["hostname mismatch"].run()).splitlines()[1] == "error 62 at 0 depth lookup: hostname mismatch"
    assert (X.VERIFY_ERRORS[18], X.VERIFY_ERRORS[25], X.VERIFY_ERRORS[26]) == (
        "self-signed certificate", "path length constraint exceeded", "unsuitable certificate purpose")


def test_verify_builds_the_chain(pki) -> None:
    result = X.verify(pki.server, [pki.root], [pki.intermediate, X.root_ca("/CN=Unrelated")], at=X.LAB_NOW)
    assert result.ok and result.chain == (pki.server.cert, pki.intermediate.cert, pki.root.cert)


def test_verify_defaults_to_now(pki) -> None:
    assert X.verify(pki.server, [pki.root], [pki.intermediate]).ok  # valid until 2034
    stale = X.server_identity(pki.root, days=1)
    assert X.verify(stale, [pki.root]).code == 10


def test_verify_boundaries(pki) -> None:
    cert = pki.server.cert
    at = cert.not_valid_after_utc
    assert X.verify(cert, [pki.root], [pki.intermediate], at=at - timedelta(seconds=1)).ok
    assert X.verify(cert, [pki.root], [pki.intermediate], at=at.replace(tzinfo=None)).code == 10  # naive = UTC


@pytest.mark.parametrize(("options", "field"), [
    ({"purpose": "serverAuth"}, "purpose"), ({"ip": "localhost"}, "ip"), ({"hostname": ""}, "hostname"),
    ({"at": "now"}, "at"), ({"trusted": [b"\x30junk"]}, "trusted"), ({"untrusted": 5}, "untrusted"),
])
def test_bad_verify_options(pki, options, field) -> None:
    options.setdefault("trusted", [pki.root])
    with pytest.raises(LabInputError) as info:
        X.verify(pki.server, **options)
    assert info.value.field == field


# --- the notes' commands, the API ----------------------------------------------------------------------------


def test_every_notes_command_maps_to_a_function() -> None:
    import labsupport

    for row in X.NOTES_COMMANDS:
        assert row.command.startswith("openssl ")
        if row.function is None:
            assert row.note.startswith("not modelled")
            continue
        module, name = row.function.split(".")
        __import__(f"labsupport.{module}")
        assert callable(getattr(getattr(labsupport, module), name)), row.function
    commands = [row.command for row in X.NOTES_COMMANDS]
    assert len(commands) == 20 and commands.count("openssl genrsa -out ../certs/server.key 2048") == 1
    assert "openssl crl2pkcs7 -nocrl -certfile CERTIFICATE.pem -certfile MORE.pem -out CERTIFICATE.p7b" in commands


@pytest.mark.parametrize("module", [X, tls])
def test_public_functions_say_what_they_mirror(module) -> None:
    for name, obj in vars(module).items():
        if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue
        if inspect.isfunction(obj):
            assert "Mirrors" in (obj.__doc__ or ""), f"{module.__name__}.{name}: say which real command it mirrors"
        if inspect.isclass(obj):
            assert obj.__doc__ and not obj.__doc__.startswith(name + "("), f"{module.__name__}.{name} has no docstring"
            for method, member in vars(obj).items():
                if inspect.isfunction(member) and not method.startswith("_"):
                    assert member.__doc__, f"{module.__name__}.{name}.{method} has no docstring"


def test_import_pulls_in_no_display_libraries() -> None:
    code = ("import sys, labsupport.x509, labsupport.tls; "
            "print(sorted(m for m in ('IPython', 'ipywidgets', 'matplotlib', 'cryptography') if m in sys.modules))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "[]"  # cryptography too: it is imported on first use


# --- the command line ----------------------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_pki_init_writes_a_ca_server_and_client(tmp_path, capsys) -> None:
    target = tmp_path / "pki"
    assert main(["pki", "init", str(target), "--key", "ec", "--server-name", "api.example", "--server-name",
                 "10.0.0.5", "--client-name", "alice", "--p12-password", "pw"]) == 0
    out = capsys.readouterr().out
    assert "CN = api.example (DNS:api.example, IP:10.0.0.5)" in out
    files = {p.name for p in target.iterdir()}
    assert files == {"ca.pem", "ca.key", "server.pem", "server.key", "client.pem", "client.key", "client.p12"}
    for name in ("ca.key", "server.key", "client.key", "client.p12"):
        assert _mode(target / name) == 0o600
    ca = X.load_certificates((target / "ca.pem").read_bytes())
    server = X.load_certificates((target / "server.pem").read_bytes())[0]
    assert X.key_kind(server.public_key()) == "ec"
    assert X.key_matches(server, X.load_private_key((target / "server.key").read_bytes()))
    assert X.verify(server, ca, hostname="api.example", ip="10.0.0.5", purpose="sslserver").ok
    client = X.read_p12((target / "client.p12").read_bytes(), "pw")
    assert X.apiserver_identity(client.cert) == ("alice", [])
    # never over existing keys
    assert main(["pki", "init", str(target)]) == 2
    assert "would be overwritten" in capsys.readouterr().err


def test_pki_init_default_keys_are_random(tmp_path) -> None:
    for name in ("a", "b"):
        assert main(["pki", "init", str(tmp_path / name)]) == 0
    assert (tmp_path / "a" / "ca.key").read_bytes() != (tmp_path / "b" / "ca.key").read_bytes()
    for name in ("c", "d"):
        assert main(["pki", "init", str(tmp_path / name), "--seed", "lab"]) == 0
    assert (tmp_path / "c" / "server.pem").read_bytes() == (tmp_path / "d" / "server.pem").read_bytes()


def test_pki_show_prints_like_openssl(tmp_path, capsys, pki) -> None:
    for name, data in (("s.pem", pki.server.cert_pem()), ("s.der", X.to_der(pki.server.cert)),
                       ("s.p7b", X.to_p7b([pki.server.cert]))):
        (tmp_path / name).write_bytes(data)
        assert main(["pki", "show", str(tmp_path / name)]) == 0
        assert capsys.readouterr().out.rstrip("\n") == pki.server.text()
    (tmp_path / "c.p12").write_bytes(X.to_p12(pki.client, "pw"))
    assert main(["pki", "show", str(tmp_path / "c.p12"), "--password", "pw"]) == 0
    assert capsys.readouterr().out.startswith(pki.client.text())
    assert main(["pki", "show", str(tmp_path / "c.p12"), "--password", "no"]) == 2
    assert capsys.readouterr().err.startswith("error: password:")


def test_pki_convert_uses_the_output_extension(tmp_path, capsys, pki) -> None:
    src = tmp_path / "server.crt"
    src.write_bytes(pki.server.chain_pem())
    (tmp_path / "server.key").write_bytes(pki.server.key_pem())
    for out, kind in (("a.der", "DER"), ("a.cer", "DER"), ("a.pem", "PEM"), ("b.crt", "PEM"), ("a.p7b", "PEM")):
        assert main(["pki", "convert", str(src), str(tmp_path / out)]) == 0
        assert X.detect((tmp_path / out).read_bytes()).encoding == kind
    assert "DER holds one" in capsys.readouterr().out
    assert main(["pki", "convert", str(src), str(tmp_path / "a.pfx"), "--password", "pw",
                 "--key", str(tmp_path / "server.key")]) == 0
    assert _mode(tmp_path / "a.pfx") == 0o600
    assert X.read_p12((tmp_path / "a.pfx").read_bytes(), "pw").cert == pki.server.cert
    assert main(["pki", "convert", str(src), str(tmp_path / "a.jks")]) == 2
    assert "a file name ending in" in capsys.readouterr().err


def test_pki_verify_exit_status_and_lines(tmp_path, capsys, monkeypatch, pki) -> None:
    for name, data in (("server.pem", pki.server.cert_pem()), ("ca.pem", pki.root.cert_pem()),
                       ("chain.pem", pki.intermediate.cert_pem())):
        (tmp_path / name).write_bytes(data)
    monkeypatch.chdir(tmp_path)
    if True:
        assert main(["pki", "verify", "server.pem", "--ca", "ca.pem", "--untrusted", "chain.pem"]) == 0
        assert capsys.readouterr().out == "server.pem: OK\n"
        assert main(["pki", "verify", "server.pem", "--ca", "ca.pem", "--untrusted", "chain.pem",
                     "--hostname", "wrong.example"]) == 2
        captured = capsys.readouterr()
        assert captured.out == "" and captured.err.splitlines() == [
            "CN = localhost", "error 62 at 0 depth lookup: hostname mismatch", "error server.pem: verification failed"]
        attime = str(int(datetime(2040, 1, 1, tzinfo=UTC).timestamp()))
        assert main(["pki", "verify", "server.pem", "--ca", "ca.pem", "--untrusted", "chain.pem",
                     "--attime", attime]) == 2
        assert "error 10 at 2 depth lookup: certificate has expired" in capsys.readouterr().err


def test_pki_bad_input_is_one_line_and_status_2(tmp_path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_bytes(b"-----BEGIN CERTIFICATE-----\nMIIB\n")
    run = subprocess.run([sys.executable, "-m", "labsupport", "pki", "show", str(bad)],
                         capture_output=True, text=True, check=False)
    assert run.returncode == 2 and run.stdout == "" and "Traceback" not in run.stderr
    assert run.stderr.strip() == ("error: file: 'PEM CERTIFICATE block' is not allowed; a complete PEM block: "
                                  "'-----END CERTIFICATE-----' is missing (the file is truncated)")
