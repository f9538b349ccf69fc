"""X.509 certificates: keys, CSRs, a CA hierarchy, encodings, `openssl x509 -text`, `openssl verify`.

Models the notes' "X.509 Encodings and Conversions" and "TLS 单向和双向认证" sections (the TLS
handshakes themselves are in :mod:`labsupport.tls`):

- :func:`generate_key`, :func:`make_csr`, :func:`root_ca`, :func:`intermediate_ca`, :func:`sign_csr`,
  :func:`issue` and :func:`build_pki` make what the notes' `openssl genrsa` / `req` / `x509 -req`
  commands make, with the extensions a real PKI needs (basic constraints with a path length, key
  usage, extended key usage serverAuth/clientAuth, SKI/AKI, subject alternative names).
- :func:`text` prints a certificate as `openssl x509 -text -noout` does; :func:`csr_text` a CSR as
  `openssl req -text -noout` does.
- :func:`pem_to_der`, :func:`der_to_pem`, :func:`to_p7b`, :func:`to_p12`, :func:`read_p12`,
  :func:`detect`, :func:`load_certificates` and :func:`convert` are the notes' conversions;
  :data:`NOTES_COMMANDS` maps each of the notes' `openssl` command lines to its function.
- :func:`verify` checks a chain the way `openssl verify` does and reports code, depth and message
  in OpenSSL's words (OpenSSL 3.0's `X509_verify_cert`, including which errors it reports and carries on).
- :func:`kubernetes_pki` and :func:`apiserver_identity`: the API server's serving certificate and
  the client certificates whose CN and O the API server reads as user and groups.

Reproducibility. Keys come from a seed when one is given: Ed25519 and EC P-256 keys are a hash of the
seed; an RSA key is generated from a deterministic bit stream (SHA-256 in counter mode) with
FIPS 186-5-style checks (see _rsa_from_seed; OpenSSL re-checks the result). A seeded key is as public as
its seed: for labs only. Seeded RSA is slow in pure Python: about 0.5 s for 2048 bits, several seconds
for 4096 (cached per process); Ed25519 is the default. Dates are fixed (:data:`LAB_NOT_BEFORE`), serial numbers
are a hash of issuer, subject and key, and signatures are deterministic: Ed25519 by definition,
ECDSA with RFC 6979 nonces, RSA with PKCS#1 v1.5 padding. So with a seed every certificate is the
same bytes on every run. What cannot be made stable: PKCS#12 files (random salt and IV for the
password-based encryption) and any key made without a seed.

Bad input raises :class:`~labsupport.errors.LabInputError` naming the field, the value and what is
allowed, never a bare error from the cryptography package.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import ipaddress
import math
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from labsupport.errors import LabInputError

# The cryptography package is imported lazily, inside the functions that need it (see _crypto).

# --- constants ----------------------------------------------------------------------------------------

KEY_KINDS = ("ed25519", "ec", "rsa")
RSA_BITS = (2048, 3072, 4096)
PROFILES = ("server", "client", "peer", "ca")
PURPOSES = ("sslserver", "sslclient")
LAB_NOT_BEFORE = datetime(2025, 1, 1, tzinfo=UTC)
"""Every certificate's notBefore unless told otherwise: a fixed date, so stored lab outputs are stable."""
CA_DAYS = 3650
"""A CA's validity, as in the notes' `openssl req -x509 ... -days 3650`."""
LEAF_DAYS = 3650
"""A leaf's validity. The notes use `-days 365`; from the fixed :data:`LAB_NOT_BEFORE` that would already
have expired, and the course's live TLS handshakes need certificates valid today (until 2035)."""
LAB_NOW = datetime(2026, 6, 1, tzinfo=UTC)
"""The lab's clock for time-dependent checks (:func:`verify_cases`), so their outcome never depends on today."""
DEFAULT_SEED = "k8s-networking-101"

# OpenSSL's X509_verify_cert_error_string() texts (crypto/x509/x509_txt.c, OpenSSL 3.0).
VERIFY_ERRORS = {
    0: "ok",
    2: "unable to get issuer certificate",
    7: "certificate signature failure",
    9: "certificate is not yet valid",
    10: "certificate has expired",
    18: "self-signed certificate",
    19: "self-signed certificate in certificate chain",
    20: "unable to get local issuer certificate",
    21: "unable to verify the first certificate",
    25: "path length constraint exceeded",
    26: "unsuitable certificate purpose",
    32: "key usage does not include certificate signing",
    62: "hostname mismatch",
    64: "IP address mismatch",
    79: "invalid CA certificate",
}
# Errors after which `openssl verify` (apps/verify.c) tells OpenSSL to carry on, so one chain can
# print several error lines; any other error ends the verification.
VERIFY_CONTINUES = frozenset({10, 18, 25, 26, 79})

# Short names OpenSSL prints for name attributes (and accepts in `-subj`).
_NAME_ATTRS = {
    "2.5.4.6": "C", "2.5.4.8": "ST", "2.5.4.7": "L", "2.5.4.10": "O", "2.5.4.11": "OU", "2.5.4.3": "CN",
    "1.2.840.113549.1.9.1": "emailAddress", "2.5.4.5": "serialNumber", "0.9.2342.19200300.100.1.25": "DC",
    "2.5.4.9": "street", "2.5.4.12": "title", "2.5.4.42": "GN", "2.5.4.4": "SN", "2.5.4.17": "postalCode",
    "0.9.2342.19200300.100.1.1": "UID", "2.5.4.46": "dnQualifier", "2.5.4.65": "pseudonym",
    "2.5.4.15": "businessCategory", "2.5.4.43": "initials", "2.5.4.44": "generationQualifier",
}
_NAME_OIDS = {short.lower(): oid for oid, short in _NAME_ATTRS.items()}
_NAME_OIDS.update({"commonname": "2.5.4.3", "organizationname": "2.5.4.10", "countryname": "2.5.4.6",
                   "organizationalunitname": "2.5.4.11", "localityname": "2.5.4.7",
                   "stateorprovincename": "2.5.4.8", "email": "1.2.840.113549.1.9.1"})

_KU_NAMES = (
    ("digital_signature", "Digital Signature"), ("content_commitment", "Non Repudiation"),
    ("key_encipherment", "Key Encipherment"), ("data_encipherment", "Data Encipherment"),
    ("key_agreement", "Key Agreement"), ("key_cert_sign", "Certificate Sign"), ("crl_sign", "CRL Sign"),
    ("encipher_only", "Encipher Only"), ("decipher_only", "Decipher Only"),
)
_EKU_NAMES = {
    "1.3.6.1.5.5.7.3.1": "TLS Web Server Authentication", "1.3.6.1.5.5.7.3.2": "TLS Web Client Authentication",
    "1.3.6.1.5.5.7.3.3": "Code Signing", "1.3.6.1.5.5.7.3.4": "E-mail Protection",
    "1.3.6.1.5.5.7.3.8": "Time Stamping", "1.3.6.1.5.5.7.3.9": "OCSP Signing",
    "2.5.29.37.0": "Any Extended Key Usage",
}
_EXT_NAMES = {
    "2.5.29.19": "X509v3 Basic Constraints", "2.5.29.15": "X509v3 Key Usage",
    "2.5.29.37": "X509v3 Extended Key Usage", "2.5.29.14": "X509v3 Subject Key Identifier",
    "2.5.29.35": "X509v3 Authority Key Identifier", "2.5.29.17": "X509v3 Subject Alternative Name",
    "2.5.29.18": "X509v3 Issuer Alternative Name", "1.3.6.1.5.5.7.1.1": "Authority Information Access",
    "2.5.29.31": "X509v3 CRL Distribution Points", "2.5.29.32": "X509v3 Certificate Policies",
}
_SIG_NAMES = {
    "1.2.840.113549.1.1.5": "sha1WithRSAEncryption", "1.2.840.113549.1.1.11": "sha256WithRSAEncryption",
    "1.2.840.113549.1.1.12": "sha384WithRSAEncryption", "1.2.840.113549.1.1.13": "sha512WithRSAEncryption",
    "1.2.840.10045.4.3.2": "ecdsa-with-SHA256", "1.2.840.10045.4.3.3": "ecdsa-with-SHA384",
    "1.2.840.10045.4.3.4": "ecdsa-with-SHA512", "1.3.101.112": "ED25519", "1.3.101.113": "ED448",
}
_CURVES = {"secp256r1": ("prime256v1", "P-256"), "secp384r1": ("secp384r1", "P-384"),
           "secp521r1": ("secp521r1", "P-521")}
_DNS_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")

# The notes' file-name extensions and what they usually hold (the notes' "证书格式类型").
FILE_EXTENSIONS = {
    ".pem": "text (Base64 between -----BEGIN/END----- lines): certificates, keys, CSRs, several in one file",
    ".crt": "a certificate, PEM on Unix-like systems, DER on Windows: look at the bytes, not the name",
    ".cer": "a certificate, usually DER (Windows' default export), sometimes PEM: look at the bytes",
    ".der": "binary DER: exactly one certificate (or key), no text headers",
    ".key": "a private key, almost always PEM",
    ".csr": "a certificate signing request, usually PEM",
    ".p7b": "PKCS#7: certificates only (a chain), no private key; PEM or DER",
    ".p12": "PKCS#12: a private key with its certificate and chain, password-protected, binary",
    ".pfx": "PKCS#12 (the Windows name for .p12)",
    ".jks": "Java KeyStore: Java's own binary key and certificate store (see JKS_TEXT)",
}
OUTPUT_FORMATS = {".pem": "pem", ".crt": "pem", ".cer": "der", ".der": "der", ".p7b": "p7b",
                  ".p12": "p12", ".pfx": "p12"}
"""The format :func:`convert` (and `pki convert`) writes for an output file name: .crt is written as PEM
(the Unix convention), .cer as DER (the Windows convention); reading never trusts the name."""

JKS_TEXT = """\
JKS (Java KeyStore, .jks) is Java's own binary format for private keys and certificates, with a
password over the whole file. It begins with the magic bytes FE ED FE ED (JCEKS, a variant, with
CE CE CE CE). OpenSSL cannot read it, and this course does not either: convert it with Java's keytool,
  keytool -importkeystore -srckeystore keystore.jks -destkeystore keystore.p12 -deststoretype PKCS12
and read the .p12. Since Java 9 the default keystore type is PKCS#12 anyway, so new Java
applications can use the .p12 files this course writes."""


@dataclass(frozen=True)
class NotesCommand:
    """One `openssl` command line from the notes and the model function that does the same."""

    command: str
    function: str | None
    note: str = ""


NOTES_COMMANDS: tuple[NotesCommand, ...] = (
    NotesCommand("openssl x509 -in CERTIFICATE.pem -text -noout", "x509.text"),
    NotesCommand("openssl x509 -outform der -in CERTIFICATE.pem -out CERTIFICATE.der", "x509.pem_to_der"),
    NotesCommand("openssl crl2pkcs7 -nocrl -certfile CERTIFICATE.pem -certfile MORE.pem -out CERTIFICATE.p7b",
                 "x509.to_p7b"),
    NotesCommand("openssl pkcs12 -export -out CERTIFICATE.pfx -inkey PRIVATEKEY.key -in CERTIFICATE.crt "
                 "-certfile MORE.crt", "x509.to_p12", "openssl asks for the export password; here it is an argument"),
    NotesCommand("openssl x509 -inform der -in CERTIFICATE.der -text -noout", "x509.text",
                 "text() reads PEM or DER bytes itself"),
    NotesCommand("openssl x509 -inform der -in CERTIFICATE.der -out CERTIFICATE.pem", "x509.der_to_pem"),
    NotesCommand("openssl genrsa -out ../certs/ca.key 4096", "x509.generate_key", "generate_key('rsa', bits=4096)"),
    NotesCommand('openssl req -x509 -sha256 -new -nodes -key ../certs/ca.key -days 3650 '
                 '-subj "/C=IN/ST=UK/L=Dehradun/O=VMware/CN=Hemant Root CA" -extensions v3_ca -out ../certs/ca.crt',
                 "x509.root_ca"),
    NotesCommand("openssl genrsa -out ../certs/server.key 2048", "x509.generate_key"),
    NotesCommand('openssl req -new -subj "/C=IN/ST=UK/L=Dehradun/O=VMware/CN=localhost" '
                 '-key ../certs/server.key -out server_signing_req.csr', "x509.make_csr"),
    NotesCommand("openssl x509 -req -days 365 -in server_signing_req.csr -CA ../certs/ca.crt "
                 "-CAkey ../certs/ca.key -CAcreateserial -out ../certs/server.crt", "x509.sign_csr",
                 "without -extfile OpenSSL 3.0 makes a version 1 certificate: no extensions, no SAN; "
                 "sign_csr adds the extensions a TLS server needs"),
    NotesCommand("openssl genrsa -out ../certs/client.key 2048", "x509.generate_key"),
    NotesCommand('openssl req -new -subj "/C=IN/ST=UK/L=Dehradun/O=VMware/CN=localhost" '
                 '-key ../certs/client.key -out client_signing_req.csr', "x509.make_csr"),
    NotesCommand("openssl x509 -req -days 365 -in client_signing_req.csr -CA ../certs/ca.crt "
                 "-CAkey ../certs/ca.key -CAcreateserial -out ../certs/client.crt", "x509.sign_csr",
                 "profile='client' adds extendedKeyUsage clientAuth"),
    NotesCommand("openssl verify -CAfile ../certs/ca.crt ../certs/server.crt", "x509.verify"),
    NotesCommand("openssl verify -CAfile ../certs/ca.crt ../certs/client.crt", "x509.verify"),
    NotesCommand("openssl s_client -connect host.docker.internal:8000 -showcerts", "tls.connect",
                 "Python 3.11's ssl gives the peer's leaf certificate, not the whole chain -showcerts prints"),
    NotesCommand("openssl s_client -connect host.docker.internal:8000 -CAfile ca.crt", "tls.connect"),
    NotesCommand("openssl s_client -connect host.docker.internal:8000 -tlsextdebug", None,
                 "not modelled: Python's ssl does not expose the TLS extensions of a handshake; run the real command"),
    NotesCommand("openssl s_server -accept 443 -cert server.crt -key server.key -www", "tls.TLSServer",
                 "on 127.0.0.1 and an ephemeral port; it answers one line, not a web page"),
)


# --- small helpers -------------------------------------------------------------------------------------


def _crypto():
    """The cryptography modules, imported on first use (import labsupport stays fast)."""
    from cryptography import x509 as cx
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    return cx, hashes, serialization, ec, ed25519, rsa


def _as_utc(when: datetime, fieldname: str) -> datetime:
    if not isinstance(when, datetime):
        raise LabInputError(fieldname, when, "a datetime (timezone-aware, or naive meaning UTC)")
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _seed_bytes(seed: str | bytes, purpose: str) -> bytes:
    raw = seed.encode() if isinstance(seed, str) else bytes(seed)
    return hashlib.sha256(b"labsupport.x509/" + purpose.encode() + b"/" + raw).digest()


def _hex(data: bytes, upper: bool = False) -> str:
    text = ":".join(f"{b:02x}" for b in data)
    return text.upper() if upper else text


def _mask(password: object) -> str:
    """A password as an error message shows it: hidden, only its length."""
    if not isinstance(password, (str, bytes)):
        return repr(password)
    return f"<hidden, {len(password)} character{'' if len(password) == 1 else 's'}>"


# --- keys ----------------------------------------------------------------------------------------------


class _Stream:
    """A deterministic bit stream: SHA-256 of (seed, counter). Public by design: labs only."""

    def __init__(self, seed: bytes) -> None:
        self.seed, self.counter = seed, 0

    def bits(self, n: int) -> int:
        out = b""
        while len(out) * 8 < n:
            out += hashlib.sha256(self.seed + self.counter.to_bytes(8, "big")).digest()
            self.counter += 1
        return int.from_bytes(out, "big") >> (len(out) * 8 - n)

    def below(self, upper: int) -> int:
        """A number in [2, upper - 2] (for Miller-Rabin bases)."""
        return 2 + self.bits(upper.bit_length() + 64) % (upper - 3)


@functools.cache
def _small_primes(limit: int = 1 << 16) -> list[int]:
    """The odd primes below `limit` (computed on first use: only seeded RSA needs them)."""
    sieve = bytearray([1]) * limit
    sieve[:2] = b"\x00\x00"
    for i in range(2, int(limit**0.5) + 1):
        if sieve[i]:
            sieve[i * i::i] = bytearray(len(range(i * i, limit, i)))
    return [i for i in range(3, limit) if sieve[i]]



def _probable_prime(n: int, stream: _Stream, rounds: int = 8) -> bool:
    """Miller-Rabin with `rounds` bases from the stream (n has passed trial division already)."""
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for _ in range(rounds):
        x = pow(stream.below(n), d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def _rsa_prime(stream: _Stream, bits: int, e: int) -> int:
    """A probable prime of exactly `bits` bits with the top two set, found as OpenSSL does: a random odd
    start, then the next candidates not divisible by a small prime (a sieve over a window)."""
    window = 1 << 13
    while True:
        start = stream.bits(bits) | (0b11 << (bits - 2)) | 1  # top two bits: p*q has exactly 2*bits bits
        alive = bytearray([1]) * window  # alive[i]: start + 2*i has no prime factor below 2**16
        for p in _small_primes():
            i = (-(start % p) * ((p + 1) // 2)) % p
            alive[i::p] = bytes(len(range(i, window, p)))
        for i in range(window):
            candidate = start + 2 * i
            if candidate.bit_length() != bits:
                break
            if alive[i] and math.gcd(candidate - 1, e) == 1 and _probable_prime(candidate, stream):
                return candidate


_RSA_CACHE: dict[tuple[bytes, int], Any] = {}


def _rsa_from_seed(seed: bytes, bits: int):
    """An RSA key from a seed, generated as FIPS 186-5 B.3.3 asks of random primes (with a public stream):
    candidates with the top two bits set, gcd(p - 1, e) = 1, trial division by the primes below 2**16,
    8 Miller-Rabin rounds (more than FIPS 186-5 table B.1 asks), |p - q| > 2**(bits/2 - 100) and
    d > 2**(bits/2). OpenSSL then checks the key again (RSA_check_key, with its own primality tests)."""
    if (seed, bits) in _RSA_CACHE:
        return _RSA_CACHE[(seed, bits)]
    _, _, _, _, _, rsa = _crypto()
    e, half = 65537, bits // 2
    stream = _Stream(seed)
    while True:
        p, q = _rsa_prime(stream, half, e), _rsa_prime(stream, half, e)
        if abs(p - q) <= 1 << (half - 100):
            continue
        d = pow(e, -1, math.lcm(p - 1, q - 1))
        if d > 1 << half:
            break
    p, q = max(p, q), min(p, q)
    numbers = rsa.RSAPrivateNumbers(
        p, q, d, d % (p - 1), d % (q - 1), pow(q, -1, p), rsa.RSAPublicNumbers(e, p * q)
    )
    key = numbers.private_key()
    _RSA_CACHE[(seed, bits)] = key
    return key


def generate_key(kind: str = "ed25519", seed: str | bytes | None = None, bits: int = 2048):
    """A private key: Ed25519, EC P-256 or RSA; reproducible from `seed`, fresh and random without one.

    Mirrors `openssl genpkey -algorithm ed25519`, `openssl ecparam -genkey -name prime256v1 -noout`
    and the notes' `openssl genrsa -out ca.key 4096` (`bits` is RSA's modulus size).
    """
    if kind not in KEY_KINDS:
        raise LabInputError("key kind", kind, f"one of {', '.join(KEY_KINDS)}")
    if kind == "rsa" and bits not in RSA_BITS:
        raise LabInputError("bits", bits, f"an RSA modulus size of {', '.join(map(str, RSA_BITS))} bits")
    if seed is not None and not isinstance(seed, (str, bytes)):
        raise LabInputError("seed", seed, "a string or bytes (or None for a random key)")
    _, _, _, ec, ed25519, rsa = _crypto()
    if kind == "ed25519":
        if seed is None:
            return ed25519.Ed25519PrivateKey.generate()
        return ed25519.Ed25519PrivateKey.from_private_bytes(_seed_bytes(seed, "ed25519"))
    if kind == "ec":
        if seed is None:
            return ec.generate_private_key(ec.SECP256R1())
        order = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
        wide = hashlib.sha512(_seed_bytes(seed, "ec-p256")).digest()  # 512 bits mod a 256-bit order: no bias
        return ec.derive_private_key(int.from_bytes(wide, "big") % (order - 1) + 1, ec.SECP256R1())
    if seed is None:
        return rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return _rsa_from_seed(_seed_bytes(seed, f"rsa-{bits}"), bits)


def key_kind(key) -> str:
    """'ed25519', 'ec' or 'rsa' for a private or public key.

    Mirrors the first line of `openssl pkey -in KEY -noout -text` (ED25519 Private-Key, Private-Key: (256 bit)
    with ASN1 OID prime256v1, or Private-Key: (2048 bit, 2 primes)).
    """
    _, _, _, ec, ed25519, rsa = _crypto()
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)):
        return "ed25519"
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        return "ec"
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return "rsa"
    raise LabInputError("key", type(key).__name__, "an Ed25519, EC or RSA key")


def _spki(public_key) -> bytes:
    _, _, serialization, *_ = _crypto()
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_matches(cert, key) -> bool:
    """Whether a private key belongs to a certificate (their public keys are the same).

    Mirrors comparing `openssl x509 -noout -pubkey -in CERT` with `openssl pkey -pubout -in KEY`.
    """
    return _spki(_certificate(cert, "cert").public_key()) == _spki(key.public_key())


def _sign(builder, key):
    """Sign deterministically: Ed25519 needs no hash; ECDSA with RFC 6979 nonces; RSA PKCS#1 v1.5."""
    _, hashes, *_ = _crypto()
    kind = key_kind(key)
    if kind == "ed25519":
        return builder.sign(key, None)
    if kind == "ec":
        return builder.sign(key, hashes.SHA256(), ecdsa_deterministic=True)
    return builder.sign(key, hashes.SHA256())


# --- names ---------------------------------------------------------------------------------------------


def parse_name(subject):
    """An X.509 name from OpenSSL's `-subj` syntax: "/C=IN/ST=UK/O=VMware/CN=localhost".

    Mirrors how `openssl req -subj` reads its argument: attributes in order, `/O=a/O=b` for two values,
    `\\/` for a literal slash. An x509.Name passes through unchanged.
    """
    cx, *_ = _crypto()
    if isinstance(subject, cx.Name):
        return subject
    if not isinstance(subject, str) or not subject.startswith("/") or subject == "/":
        raise LabInputError("subject", subject, 'a name in -subj form, e.g. "/O=system:masters/CN=kubernetes-admin"')
    parts = re.split(r"(?<!\\)/", subject[1:])
    attrs = []
    for part in parts:
        key, sep, value = part.partition("=")
        value = value.replace("\\/", "/")
        oid = _NAME_OIDS.get(key.strip().lower())
        if not sep or oid is None:
            known = ", ".join(sorted(set(_NAME_ATTRS.values()), key=str.lower))
            raise LabInputError("subject", subject, f"/TYPE=value parts with TYPE one of {known} (not {part!r})")
        if not value:
            raise LabInputError("subject", subject, f"a value after {key}=")
        if oid == "2.5.4.6" and not re.fullmatch(r"[A-Za-z]{2}", value):
            raise LabInputError("subject", subject, f"a two-letter country code for C (not {value!r})")
        attrs.append(cx.NameAttribute(cx.ObjectIdentifier(oid), value))
    return cx.Name(attrs)


def _escape_value(value: str) -> str:
    """One attribute value as OpenSSL's 'oneline' name format prints it (ASN1_STRFLGS_RFC2253 with ESC_QUOTE)."""
    out, quote = [], False
    raw = value.encode("utf-8")
    for i, byte in enumerate(raw):
        ch = chr(byte)
        if ch in ',+;<>' or (ch == "#" and i == 0) or (ch == " " and (i == 0 or i == len(raw) - 1)):
            quote = True
            out.append(ch)
        elif ch in '"\\':
            out.append("\\" + ch)
        elif byte < 0x20 or byte >= 0x7F:
            out.append(f"\\{byte:02X}")
        else:
            out.append(ch)
    text = "".join(out)
    return f'"{text}"' if quote else text


def name_text(name) -> str:
    """A name as OpenSSL 3.0 prints it: "C = IN, O = VMware, CN = x" (RDNs in order, special values quoted).

    Mirrors the Issuer:/Subject: lines of `openssl x509 -text -noout` and the subject line `openssl verify`
    prints before an error (OpenSSL's "oneline" name format).
    """
    rdns = []
    for rdn in name.rdns:
        rdns.append(" + ".join(
            f"{_NAME_ATTRS.get(a.oid.dotted_string, a.oid.dotted_string)} = {_escape_value(_attr_str(a))}"
            for a in rdn
        ))
    return ", ".join(rdns)


def _name_slash(name) -> str:
    """A name as X509_NAME_oneline() prints it ("/C=IN/O=a+OU=b/CN=x"): used inside DirName: values.
    '/' and '+' in a value get a backslash; bytes outside ' '..'~' are written \\xHH."""
    out = []
    for rdn in name.rdns:
        for i, attr in enumerate(rdn):
            value = "".join(
                ("\\" + chr(b) if chr(b) in "/+" else chr(b)) if 0x20 <= b <= 0x7E else f"\\x{b:02X}"
                for b in _attr_str(attr).encode("utf-8")
            )
            out.append(("+" if i else "/") + f"{_NAME_ATTRS.get(attr.oid.dotted_string, attr.oid.dotted_string)}={value}")
    return "".join(out)


def _attr_str(attr) -> str:
    value = attr.value
    return value if isinstance(value, str) else value.hex()


def _name_key(name) -> tuple:
    """X509_NAME_cmp's canonical form: each value trimmed, inner whitespace collapsed, ASCII lower-cased."""
    return tuple(
        tuple(sorted((a.oid.dotted_string, " ".join(_attr_str(a).split()).lower()) for a in rdn)) for rdn in name.rdns
    )


def _cn(name) -> str | None:
    values = [_attr_str(a) for a in name if a.oid.dotted_string == "2.5.4.3"]
    return values[-1] if values else None


# --- subject alternative names --------------------------------------------------------------------------


def check_dns_name(name: str, fieldname: str = "dns") -> str:
    """A DNS name as certificates carry it (RFC 1034 labels; '*.' allowed as the first label).

    Mirrors the check kubeadm makes of `kubeadm init --apiserver-cert-extra-sans` (which also wants lower
    case); `openssl req -addext subjectAltName=DNS:...` itself accepts any text.
    """
    allowed = ("a DNS name: dot-separated labels of letters, digits and '-' (1-63 characters, not starting "
               "or ending with '-'), 253 characters at most; '*.' only as the whole first label")
    if not isinstance(name, str) or not name or len(name) > 253:
        raise LabInputError(fieldname, name, allowed)
    labels = name.split(".")
    if labels[0] == "*" and len(labels) > 1:
        labels = labels[1:]
    if not all(_DNS_LABEL.match(label) for label in labels):
        raise LabInputError(fieldname, name, allowed)
    return name


def split_names(names: Iterable[str], fieldname: str = "names") -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Split names into (DNS names, IP addresses).

    Mirrors writing `-addext "subjectAltName=DNS:localhost,IP:127.0.0.1"` by hand for `openssl req`.
    """
    dns, ips = [], []
    for name in names:
        try:
            ips.append(str(ipaddress.ip_address(name)))
        except ValueError:
            dns.append(check_dns_name(name, fieldname))
    return tuple(dns), tuple(ips)


def _san(dns: Sequence[str], ips: Sequence[str]):
    cx, *_ = _crypto()
    names = [cx.DNSName(check_dns_name(d, "dns")) for d in dns]
    for ip in ips:
        try:
            names.append(cx.IPAddress(ipaddress.ip_address(ip)))
        except ValueError:
            raise LabInputError("ips", ip, "an IPv4 or IPv6 address, e.g. 10.96.0.1") from None
    return cx.SubjectAlternativeName(names) if names else None


def _sans_of(obj) -> tuple[list[str], list[str]]:
    cx, *_ = _crypto()
    try:
        ext = obj.extensions.get_extension_for_class(cx.SubjectAlternativeName).value
    except cx.ExtensionNotFound:
        return [], []
    return ext.get_values_for_type(cx.DNSName), [str(i) for i in ext.get_values_for_type(cx.IPAddress)]


# --- CSRs and certificates ---------------------------------------------------------------------------------


def make_csr(key, subject, dns: Sequence[str] = (), ips: Sequence[str] = ()):
    """A certificate signing request for `key` with a subject and subject alternative names.

    Mirrors `openssl req -new -key server.key -subj "/CN=localhost" -addext
    "subjectAltName=DNS:localhost,IP:127.0.0.1" -out server.csr`.
    """
    cx, *_ = _crypto()
    builder = cx.CertificateSigningRequestBuilder().subject_name(parse_name(subject))
    san = _san(dns, ips)
    if san is not None:
        builder = builder.add_extension(san, critical=False)
    return _sign(builder, key)


@dataclass(frozen=True)
class Identity:
    """A certificate with its private key, and the CA certificates between it and its root.

    `chain` is what a TLS peer sends after its own certificate: intermediates, nearest first, without
    the root (the other side must already trust the root).
    """

    cert: Any
    key: Any = None
    chain: tuple = ()

    def __post_init__(self) -> None:
        if self.key is not None and not key_matches(self.cert, self.key):
            raise LabInputError(
                "key", f"{key_kind(self.key)} key", f"the private key of {name_text(self.cert.subject)!r} "
                "(its public key differs from the certificate's)"
            )

    @property
    def subject(self) -> str:
        """The subject as OpenSSL prints it."""
        return name_text(self.cert.subject)

    @property
    def full_chain(self) -> tuple:
        """The certificate followed by its chain (what a TLS server's certificate file holds)."""
        return (self.cert, *self.chain)

    def cert_pem(self) -> bytes:
        """The certificate as PEM (`server.crt`)."""
        return to_pem(self.cert)

    def chain_pem(self) -> bytes:
        """The certificate and its chain as one PEM file."""
        return b"".join(to_pem(c) for c in self.full_chain)

    def key_pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM (`openssl genpkey` output): keep it out of git."""
        if self.key is None:
            raise LabInputError("key", None, "an identity with a private key")
        return private_key_pem(self.key)

    def text(self) -> str:
        """The certificate as `openssl x509 -text -noout` prints it."""
        return text(self.cert)


def private_key_pem(key) -> bytes:
    """A private key as PKCS#8 PEM, unencrypted. Mirrors `openssl pkey -in KEY` (and `openssl genpkey` output)."""
    _, _, serialization, *_ = _crypto()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _serial(issuer_name, subject_name, public_key, *details: object) -> int:
    """A serial number derived from what the certificate says (issuer, subject, key, validity, profile,
    names): 16 bytes, positive, never zero, and different for any two different certificates of a CA."""
    text = "|".join(str(d) for d in details).encode()
    digest = hashlib.sha256(issuer_name.public_bytes() + subject_name.public_bytes() + _spki(public_key) + text)
    raw = digest.digest()[:16]
    return int.from_bytes(bytes([raw[0] & 0x7F | 0x01]) + raw[1:], "big")


def _validity(not_before: datetime, days: int) -> tuple[datetime, datetime]:
    start = _as_utc(not_before, "not_before").replace(microsecond=0)
    if not isinstance(days, int) or isinstance(days, bool) or days < 1:
        raise LabInputError("days", days, "a whole number of days, 1 or more")
    return start, start + timedelta(days=days)


def _build_cert(subject_name, public_key, issuer_name, issuer_key, issuer_cert, *, profile: str,
                not_before: datetime, days: int, path_length: int | None, san, serial: int | None):
    cx, *_ = _crypto()
    if profile not in PROFILES:
        raise LabInputError("profile", profile, f"one of {', '.join(PROFILES)}")
    start, end = _validity(not_before, days)
    if serial is None:
        names = list(san) if san is not None else []
        serial = _serial(issuer_name, subject_name, public_key, start.isoformat(), end.isoformat(), profile,
                         path_length, names)
    elif not isinstance(serial, int) or serial < 1 or serial.bit_length() > 159:
        raise LabInputError("serial", serial, "a positive whole number of at most 159 bits (20 bytes)")
    ski = cx.SubjectKeyIdentifier.from_public_key(public_key)
    if issuer_cert is None:
        aki = cx.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    else:
        try:
            issuer_ski = issuer_cert.extensions.get_extension_for_class(cx.SubjectKeyIdentifier).value
            aki = cx.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_ski)
        except cx.ExtensionNotFound:
            aki = cx.AuthorityKeyIdentifier.from_issuer_public_key(issuer_cert.public_key())
    rsa_key = key_kind(public_key) == "rsa"
    builder = (
        cx.CertificateBuilder().subject_name(subject_name).issuer_name(issuer_name).public_key(public_key)
        .serial_number(serial).not_valid_before(start).not_valid_after(end)
    )
    if profile == "ca":
        if path_length is not None and (not isinstance(path_length, int) or path_length < 0):
            raise LabInputError("path_length", path_length, "None (no limit) or a whole number, 0 or more")
        builder = builder.add_extension(cx.BasicConstraints(ca=True, path_length=path_length), critical=True)
        usage = cx.KeyUsage(True, False, False, False, False, True, True, False, False)
    else:
        builder = builder.add_extension(cx.BasicConstraints(ca=False, path_length=None), critical=True)
        usage = cx.KeyUsage(True, False, rsa_key, False, False, False, False, False, False)
    builder = builder.add_extension(usage, critical=True)
    eku = {"server": ["1.3.6.1.5.5.7.3.1"], "client": ["1.3.6.1.5.5.7.3.2"],
           "peer": ["1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"], "ca": []}[profile]
    if eku:
        builder = builder.add_extension(cx.ExtendedKeyUsage([cx.ObjectIdentifier(o) for o in eku]), critical=False)
    builder = builder.add_extension(ski, critical=False).add_extension(aki, critical=False)
    if san is not None:
        builder = builder.add_extension(san, critical=False)
    return _sign(builder, issuer_key)


def root_ca(subject="/CN=Lab Root CA", *, kind: str = "ed25519", key=None, seed: str | bytes | None = DEFAULT_SEED,
            not_before: datetime = LAB_NOT_BEFORE, days: int = CA_DAYS, path_length: int | None = None) -> Identity:
    """A self-signed root CA: basicConstraints critical CA:TRUE (with a path length if given), keyUsage
    Certificate Sign and CRL Sign, SKI = AKI.

    Mirrors the notes' `openssl req -x509 -sha256 -new -nodes -key ca.key -days 3650 -subj "..." -extensions
    v3_ca -out ca.crt`. The key is `key`, or one made from `seed` + the subject (`seed=None`: random).
    """
    name = parse_name(subject)
    if key is None:
        key = generate_key(kind, None if seed is None else f"{seed}|{name.rfc4514_string()}")
    cert = _build_cert(name, key.public_key(), name, key, None, profile="ca", not_before=not_before, days=days,
                       path_length=path_length, san=None, serial=None)
    return Identity(cert, key)


def sign_csr(issuer: Identity, csr, *, profile: str = "server", not_before: datetime = LAB_NOT_BEFORE,
             days: int = LEAF_DAYS, path_length: int | None = None, serial: int | None = None):
    """The CA `issuer` signs a CSR: the subject and SANs come from the CSR, the extensions from `profile`
    ('server': serverAuth, 'client': clientAuth, 'peer': both, 'ca': an intermediate CA).

    Mirrors the notes' `openssl x509 -req -days 365 -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial
    -out server.crt`, plus `-copy_extensions copy -extfile server.ext` for the extensions (without them
    OpenSSL 3.0 makes a version 1 certificate). The serial is derived from the contents, not random.
    """
    cx, *_ = _crypto()
    if not isinstance(issuer, Identity) or issuer.key is None:
        raise LabInputError("issuer", type(issuer).__name__, "an Identity with its private key (a CA)")
    if not isinstance(csr, cx.CertificateSigningRequest):
        raise LabInputError("csr", type(csr).__name__, "a CSR made by make_csr or read by load_csr")
    if not csr.is_signature_valid:
        raise LabInputError("csr", name_text(csr.subject), "a CSR signed by its own key (its signature is wrong)")
    dns, ips = _sans_of(csr)
    return _build_cert(csr.subject, csr.public_key(), issuer.cert.subject, issuer.key, issuer.cert, profile=profile,
                       not_before=not_before, days=days, path_length=path_length, san=_san(dns, ips), serial=serial)


def issue(issuer: Identity, subject, *, profile: str = "server", dns: Sequence[str] = (), ips: Sequence[str] = (),
          kind: str = "ed25519", key=None, seed: str | bytes | None = DEFAULT_SEED,
          not_before: datetime = LAB_NOT_BEFORE, days: int = LEAF_DAYS, path_length: int | None = None) -> Identity:
    """Key, CSR and certificate in one step: an Identity signed by `issuer`.

    Mirrors `openssl genpkey` + `openssl req -new` + `openssl x509 -req -CA ...` (see :func:`sign_csr`).
    """
    name = parse_name(subject)
    if key is None:
        key = generate_key(kind, None if seed is None else f"{seed}|{name.rfc4514_string()}|{profile}")
    cert = sign_csr(issuer, make_csr(key, name, dns, ips), profile=profile, not_before=not_before, days=days,
                    path_length=path_length)
    chain = (issuer.cert, *issuer.chain) if not _self_signed(issuer.cert) else issuer.chain
    return Identity(cert, key, chain)


def intermediate_ca(issuer: Identity, subject="/CN=Lab Intermediate CA", *, path_length: int | None = 0,
                    **options) -> Identity:
    """An intermediate CA signed by `issuer`, with basicConstraints CA:TRUE, pathlen:`path_length`.

    Mirrors `openssl x509 -req -in inter.csr -CA ca.crt -CAkey ca.key -extfile v3_intermediate_ca.ext`.
    """
    return issue(issuer, subject, profile="ca", path_length=path_length, **options)


def server_identity(issuer: Identity, name: str = "localhost", *, names: Sequence[str] = ("localhost", "127.0.0.1"),
                    **options) -> Identity:
    """A TLS server certificate: CN=`name`, SANs `names` (DNS names and IP addresses), serverAuth.

    Mirrors `openssl req -new -subj /CN=NAME -addext subjectAltName=...` then `openssl x509 -req -CA ca.crt
    -CAkey ca.key -copy_extensions copy -extfile server.ext` (extendedKeyUsage = serverAuth).
    """
    dns, ips = split_names(names)
    return issue(issuer, f"/CN={name}", profile="server", dns=dns, ips=ips, **options)


def client_identity(issuer: Identity, name: str = "client", *, orgs: Sequence[str] = (), **options) -> Identity:
    """A TLS client certificate: O=`orgs`..., CN=`name`, clientAuth.

    Mirrors `openssl req -new -subj "/O=ORG/CN=NAME"` then `openssl x509 -req -CA ca.crt -CAkey ca.key
    -extfile client.ext` (extendedKeyUsage = clientAuth), as kubeadm makes client certificates.
    """
    subject = "".join(f"/O={o}" for o in orgs) + f"/CN={name}"
    return issue(issuer, subject, profile="client", **options)


def self_signed_identity(name: str = "localhost", *, names: Sequence[str] = ("localhost",), kind: str = "ed25519",
                         key=None, seed: str | bytes | None = DEFAULT_SEED, not_before: datetime = LAB_NOT_BEFORE,
                         days: int = LEAF_DAYS) -> Identity:
    """A self-signed server certificate (no CA behind it): what a quick test server often uses.

    Mirrors `openssl req -x509 -newkey ed25519 -nodes -keyout server.key -out server.crt -days 3650
    -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost"` (with a leaf's extensions).
    """
    subject = parse_name(f"/CN={name}")
    if key is None:
        key = generate_key(kind, None if seed is None else f"{seed}|{subject.rfc4514_string()}|self-signed")
    dns, ips = split_names(names)
    cert = _build_cert(subject, key.public_key(), subject, key, None, profile="server", not_before=not_before,
                       days=days, path_length=None, san=_san(dns, ips), serial=None)
    return Identity(cert, key)


@dataclass(frozen=True)
class Pki:
    """A root CA, optionally an intermediate, and a server and a client certificate issued below them."""

    root: Identity
    server: Identity
    client: Identity
    intermediate: Identity | None = None

    @property
    def issuer(self) -> Identity:
        """The CA that signed the leaves."""
        return self.intermediate or self.root


def build_pki(kind: str = "ed25519", *, seed: str | bytes | None = DEFAULT_SEED,
              server_names: Sequence[str] = ("localhost", "127.0.0.1"), client_name: str = "client",
              client_orgs: Sequence[str] = (), intermediate: bool = False, root_subject="/CN=Lab Root CA",
              not_before: datetime = LAB_NOT_BEFORE, days: int = LEAF_DAYS) -> Pki:
    """The notes' mTLS setup: one root CA, then a server and a client certificate from it (optionally
    through an intermediate CA with pathlen:0).

    Mirrors the notes' "证书生成" script (genrsa, req -x509, req -new, x509 -req for server and client).
    """
    if not server_names:
        raise LabInputError("server_names", server_names, "at least one DNS name or IP address")
    common = {"kind": kind, "seed": seed, "not_before": not_before}
    root = root_ca(root_subject, path_length=1 if intermediate else None, **common)
    inter = intermediate_ca(root, days=days, **common) if intermediate else None
    issuer = inter or root
    server = server_identity(issuer, server_names[0], names=server_names, days=days, **common)
    client = client_identity(issuer, client_name, orgs=client_orgs, days=days, **common)
    return Pki(root, server, client, inter)


# --- Kubernetes ------------------------------------------------------------------------------------------


def apiserver_sans(service_cidr: str = "10.96.0.0/12", node_name: str = "control-plane",
                   node_ip: str = "192.168.56.10", dns_domain: str = "cluster.local") -> tuple[list[str], list[str]]:
    """The API server's serving certificate names, in kubeadm's order: (DNS names, IP addresses).

    DNS: the node's name, kubernetes, kubernetes.default, kubernetes.default.svc,
    kubernetes.default.svc.<domain>; IP: the first address of the service CIDR (the `kubernetes`
    Service's ClusterIP, 10.96.0.1 by default) and the node's address. Mirrors what
    `kubeadm init phase certs apiserver` puts in /etc/kubernetes/pki/apiserver.crt.
    """
    try:
        cidr = ipaddress.ip_network(service_cidr)
    except ValueError:
        raise LabInputError("service_cidr", service_cidr, "a network such as 10.96.0.0/12 (host bits zero)") from None
    if cidr.num_addresses < 4:
        raise LabInputError("service_cidr", service_cidr, "a network with room for Services (/30 or larger)")
    try:
        node = str(ipaddress.ip_address(node_ip))
    except ValueError:
        raise LabInputError("node_ip", node_ip, "the node's IPv4 or IPv6 address") from None
    check_dns_name(node_name, "node_name")
    check_dns_name(dns_domain, "dns_domain")
    dns = [node_name, "kubernetes", "kubernetes.default", "kubernetes.default.svc",
           f"kubernetes.default.svc.{dns_domain}"]
    return dns, [str(cidr.network_address + 1), node]


@dataclass(frozen=True)
class KubernetesPki:
    """kubeadm's cluster CA and three certificates issued by it."""

    ca: Identity
    apiserver: Identity
    admin: Identity
    kubelet: Identity


def kubernetes_pki(*, node_name: str = "control-plane", node_ip: str = "192.168.56.10",
                   service_cidr: str = "10.96.0.0/12", dns_domain: str = "cluster.local", kind: str = "ed25519",
                   seed: str | bytes | None = DEFAULT_SEED, not_before: datetime = LAB_NOT_BEFORE) -> KubernetesPki:
    """A cluster's certificates as kubeadm makes them: the CA (CN=kubernetes), the API server's serving
    certificate (CN=kube-apiserver, SANs from :func:`apiserver_sans`), the admin's client certificate in
    admin.conf (CN=kubernetes-admin, O=system:masters) and a kubelet's client certificate
    (CN=system:node:<node>, O=system:nodes).

    Mirrors `kubeadm init phase certs all` and `kubeadm init phase kubeconfig admin`. (kubeadm 1.29 and
    later put O=kubeadm:cluster-admins in admin.conf and keep system:masters for super-admin.conf.)
    """
    dns, ips = apiserver_sans(service_cidr, node_name, node_ip, dns_domain)
    common = {"kind": kind, "seed": seed, "not_before": not_before}
    ca = root_ca("/CN=kubernetes", **common)
    apiserver = issue(ca, "/CN=kube-apiserver", profile="server", dns=dns, ips=ips, **common)
    admin = client_identity(ca, "kubernetes-admin", orgs=("system:masters",), **common)
    kubelet = client_identity(ca, f"system:node:{node_name}", orgs=("system:nodes",), **common)
    return KubernetesPki(ca, apiserver, admin, kubelet)


def apiserver_identity(cert) -> tuple[str, list[str]]:
    """What the API server's x509 client authenticator reads from a verified client certificate:
    (user, groups) = (the subject's CN, its O values in order).

    Mirrors Kubernetes' `x509.CommonNameUserConversion` (k8s.io/apiserver/pkg/authentication/request/x509):
    no CN means no user, and the certificate must allow clientAuth (Go checks the extended key usage).
    What `kubectl auth whoami` then prints as Username and Groups.
    """
    cx, *_ = _crypto()
    cert = _certificate(cert, "cert")
    user = _cn(cert.subject)
    if not user:
        raise LabInputError("cert", name_text(cert.subject), "a client certificate with a CN (the user name)")
    try:
        eku = cert.extensions.get_extension_for_class(cx.ExtendedKeyUsage).value
        usages = {o.dotted_string for o in eku}
        if not usages & {"1.3.6.1.5.5.7.3.2", "2.5.29.37.0"}:
            raise LabInputError("cert", name_text(cert.subject),
                                "a certificate whose extended key usage includes TLS Web Client Authentication")
    except cx.ExtensionNotFound:
        pass
    groups = [_attr_str(a) for a in cert.subject if a.oid.dotted_string == "2.5.4.10"]
    return user, groups


# --- encodings -----------------------------------------------------------------------------------------------

_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 #]+)-----(.*?)-----END ([A-Z0-9 #]+)-----", re.DOTALL)
_PEM_BEGIN = re.compile(rb"-----BEGIN ([A-Z0-9 #]+)-----")


def to_pem(obj) -> bytes:
    """A certificate, CSR, public or private key as PEM.

    Mirrors `openssl x509 -outform pem`, `openssl req -outform pem` and `openssl pkey [-pubout]`.
    """
    _, _, serialization, *_ = _crypto()
    if hasattr(obj, "private_bytes"):
        return private_key_pem(obj)
    if hasattr(obj, "tbs_certificate_bytes") or hasattr(obj, "tbs_certrequest_bytes"):
        return obj.public_bytes(serialization.Encoding.PEM)
    return obj.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def to_der(cert) -> bytes:
    """A certificate as DER bytes. Mirrors `openssl x509 -outform der`."""
    _, _, serialization, *_ = _crypto()
    return _certificate(cert, "cert").public_bytes(serialization.Encoding.DER)


def pem_blocks(data: bytes, fieldname: str = "file") -> list[tuple[str, bytes]]:
    """The (label, DER bytes) of every PEM block in `data`; a truncated or damaged block is an error.

    Mirrors how OpenSSL's PEM reader (used by every `openssl ... -in FILE`) splits a file into blocks.
    """
    blocks = []
    for begin in _PEM_BEGIN.finditer(data):
        label = begin.group(1).decode()
        match = _PEM_BLOCK.match(data, begin.start())
        if match is None:
            raise LabInputError(fieldname, f"PEM {label} block", f"a complete PEM block: '-----END {label}-----' is missing "
                                "(the file is truncated)")
        if match.group(3) != begin.group(1):
            raise LabInputError(fieldname, f"PEM {label} block",
                                f"a block that ends with '-----END {label}-----', not '-----END {match.group(3).decode()}-----'")
        body = match.group(2)
        lines = [ln.strip() for ln in body.strip().splitlines()]
        if any(b":" in ln for ln in lines):  # RFC 1421 headers (Proc-Type, DEK-Info) of old encrypted keys
            lines = lines[lines.index(b"") + 1:] if b"" in lines else [ln for ln in lines if b":" not in ln]
        try:
            der = base64.b64decode(b"".join(lines), validate=True)
        except (binascii.Error, ValueError):
            raise LabInputError(fieldname, f"PEM {label} block", "Base64 text between the BEGIN and END lines") from None
        if not der:
            raise LabInputError(fieldname, f"PEM {label} block", "a block with Base64 content (it is empty)")
        blocks.append((label, der))
    return blocks


def pem_to_der(data: bytes) -> bytes:
    """The first certificate of a PEM file as DER.

    Mirrors the notes' `openssl x509 -outform der -in CERTIFICATE.pem -out CERTIFICATE.der`.
    """
    certs = load_certificates(data)
    return to_der(certs[0])


def der_to_pem(data: bytes) -> bytes:
    """A DER certificate as PEM.

    Mirrors the notes' `openssl x509 -inform der -in CERTIFICATE.der -out CERTIFICATE.pem`.
    """
    return to_pem(load_certificates(data)[0])


def _der(tag: int, content: bytes) -> bytes:
    """One DER element: tag, definite length, content."""
    n = len(content)
    length = bytes([n]) if n < 0x80 else bytes([0x80 | ((n.bit_length() + 7) // 8)]) + n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag]) + length + content


_DER_OID_SIGNED_DATA = bytes.fromhex("06092a864886f70d010702")
_DER_OID_DATA = bytes.fromhex("06092a864886f70d010701")


def to_p7b(certs: Iterable, encoding: str = "pem") -> bytes:
    """Certificates (a leaf and its chain) in a PKCS#7 bundle, which holds no private key.

    Mirrors the notes' `openssl crl2pkcs7 -nocrl -certfile CERTIFICATE.pem -certfile MORE.pem -out
    CERTIFICATE.p7b`, byte for byte: a SignedData with no content, no signers, and the certificates in the
    order given (PEM, as openssl writes by default; `encoding='der'` as Windows usually does).
    """
    items = [_certificate(c, "certs") for c in _flatten(certs, "certs")]
    if not items:
        raise LabInputError("certs", [], "at least one certificate")
    if encoding not in ("pem", "der"):
        raise LabInputError("encoding", encoding, "'pem' or 'der'")
    signed = _der(0x30, _der(0x02, b"\x01") + _der(0x31, b"") + _der(0x30, _DER_OID_DATA)
                  + _der(0xA0, b"".join(to_der(c) for c in items)) + _der(0x31, b""))
    der = _der(0x30, _DER_OID_SIGNED_DATA + _der(0xA0, signed))
    if encoding == "der":
        return der
    body = base64.b64encode(der)
    lines = b"\n".join(body[i:i + 64] for i in range(0, len(body), 64))
    return b"-----BEGIN PKCS7-----\n" + lines + b"\n-----END PKCS7-----\n"


def _touched(cert):
    """Parse every field now: the cryptography package parses lazily, so a damaged certificate can load
    and fail only when its issuer, extensions or key are first read (with ValueError or TypeError)."""
    for name in (cert.issuer, cert.subject):
        name.rfc4514_string()
    cert.not_valid_before_utc, cert.not_valid_after_utc, cert.signature_algorithm_oid, cert.signature  # noqa: B018
    for ext in cert.extensions:
        ext.value  # noqa: B018
    _spki(cert.public_key())
    return cert


def _serial_of(cert) -> int:
    """The serial number, negative or zero ones included: RFC 5280 forbids them, but OpenSSL reads and prints
    them (with "(Negative)"), so the model does too, without the cryptography package's deprecation warning."""
    from cryptography.utils import CryptographyDeprecationWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        return cert.serial_number


def _load_der_cert(der: bytes):
    cx, *_ = _crypto()
    from cryptography.utils import CryptographyDeprecationWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        return _touched(cx.load_der_x509_certificate(der))


def _p7b_certificates(der: bytes) -> list:
    """The certificates of a PKCS#7 bundle, in the order stored (as `openssl pkcs7 -print_certs` lists them).

    Read here rather than by the cryptography package, which wants DER's sorted SET OF and only warns
    about the unsorted (chain-ordered) files openssl writes.
    """
    _, start, end = _tlv(der, 0, len(der))
    kids = _children(der, start, end)
    if len(kids) < 2 or kids[1][0] != 0xA0:
        raise ValueError("no SignedData")
    _, sstart, send = _tlv(der, kids[1][1], kids[1][2])
    certs = []
    for tag, cstart, cend in _children(der, sstart, send):
        if tag != 0xA0:
            continue
        pos = cstart
        while pos < cend:
            _, _, elem_end = _tlv(der, pos, cend)
            certs.append(_load_der_cert(der[pos:elem_end]))
            pos = elem_end
    return certs


def to_p12(identity: Identity, password: str, *, name: str | None = None, chain: Iterable = ()) -> bytes:
    """A PKCS#12 file (.p12/.pfx): the private key, its certificate and the chain, under a password
    (AES-256-CBC with PBKDF2, which OpenSSL 3 reads without its legacy provider).

    Mirrors the notes' `openssl pkcs12 -export -out CERTIFICATE.pfx -inkey PRIVATEKEY.key -in CERTIFICATE.crt
    -certfile MORE.crt`. Not byte-stable: the salt and IV are random each time.
    """
    _, _, serialization, *_ = _crypto()
    from cryptography.hazmat.primitives.serialization import pkcs12

    if not isinstance(identity, Identity) or identity.key is None:
        raise LabInputError("identity", type(identity).__name__, "an Identity with its private key")
    if not isinstance(password, str) or not password:
        raise LabInputError("password", _mask(password), "a non-empty password (PKCS#12 files are encrypted)")
    extra = [_certificate(c, "chain") for c in _flatten(chain)] or list(identity.chain)
    label = (name or _cn(identity.cert.subject) or "certificate").encode()
    return pkcs12.serialize_key_and_certificates(
        label, identity.key, identity.cert, extra or None, serialization.BestAvailableEncryption(password.encode())
    )


def read_p12(data: bytes, password: str | None) -> Identity:
    """The key, certificate and chain in a PKCS#12 file; a wrong password is a LabInputError.

    Mirrors `openssl pkcs12 -in CERTIFICATE.pfx -passin pass:PASSWORD -nodes` (which prints them as PEM).
    """
    from cryptography.hazmat.primitives.serialization import pkcs12

    kind = detect(data)
    if kind.kind != "pkcs12":
        raise LabInputError("file", kind.describe(), "a PKCS#12 file (.p12/.pfx)")
    pw = None if password is None else password.encode()
    try:
        key, cert, extra = pkcs12.load_key_and_certificates(data, pw)
    except Exception:  # noqa: BLE001 - cryptography says "Invalid password or PKCS12 data" for both
        if password is None:
            raise LabInputError("password", None, "the password the .p12 was exported with (it is encrypted)") from None
        try:
            pkcs12.load_key_and_certificates(data, None)
        except Exception:  # noqa: BLE001
            raise LabInputError("password", _mask(password), "the password the .p12 was exported with") from None
        raise LabInputError("password", _mask(password), "no password: this .p12 is not encrypted") from None
    if cert is None:
        raise LabInputError("file", "PKCS#12 without a certificate", "a .p12 holding a certificate and its key")
    try:
        for item in (cert, *extra):
            _touched(item)
    except Exception as error:  # noqa: BLE001
        raise LabInputError("file", kind.describe(), f"well-formed certificates in the .p12 ({error})") from None
    return Identity(cert, key, tuple(extra))


def _flatten(items, fieldname: str = "file") -> list:
    if isinstance(items, (bytes, bytearray)) or hasattr(items, "tbs_certificate_bytes") or isinstance(items, Identity):
        items = [items]
    out = []
    for item in items:
        if isinstance(item, Identity):
            out.extend(item.full_chain)
        elif isinstance(item, (bytes, bytearray)):
            out.extend(load_certificates(bytes(item), fieldname=fieldname))
        else:
            out.append(item)
    unique = []  # an Identity brings its chain along: keep each certificate once, first place first
    for item in out:
        if not any(item is seen or item == seen for seen in unique):
            unique.append(item)
    return unique


def _certificate(obj, fieldname: str):
    """A cryptography Certificate from a Certificate, an Identity, or PEM/DER bytes (the first one)."""
    cx, *_ = _crypto()
    if isinstance(obj, cx.Certificate):
        return obj
    if isinstance(obj, Identity):
        return obj.cert
    if isinstance(obj, (bytes, bytearray)):
        return load_certificates(bytes(obj), fieldname=fieldname)[0]
    raise LabInputError(fieldname, type(obj).__name__, "a certificate (x509.Certificate, Identity, or PEM/DER bytes)")


# --- what is this file? ------------------------------------------------------------------------------------

_OID_SIGNED_DATA = "1.2.840.113549.1.7.2"
_OID_DATA = "1.2.840.113549.1.7.1"


def _tlv(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """One DER element at `pos`: (tag, start of content, end of content); ValueError if malformed."""
    if pos + 2 > end:
        raise ValueError("short")
    tag, length = data[pos], data[pos + 1]
    pos += 2
    if length == 0x80:  # BER indefinite length (some PKCS#12 writers use it): content runs to the end
        return tag, pos, end
    if length & 0x80:
        n = length & 0x7F
        if n == 0 or n > 4 or pos + n > end:
            raise ValueError("length")
        length = int.from_bytes(data[pos:pos + n], "big")
        pos += n
    if pos + length > end:
        raise ValueError("overrun")
    return tag, pos, pos + length


def _children(data: bytes, start: int, end: int, limit: int = 12) -> list[tuple[int, int, int]]:
    out, pos = [], start
    while pos < end and len(out) < limit:
        tag, cstart, cend = _tlv(data, pos, end)
        out.append((tag, cstart, cend))
        pos = cend
    return out


def _oid(data: bytes) -> str:
    if not data:
        raise ValueError("empty oid")
    first, parts, value = data[0], [], 0
    parts = [min(first // 40, 2), first - 40 * min(first // 40, 2)]
    for byte in data[1:]:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(value)
            value = 0
    return ".".join(map(str, parts))


def _der_kind(data: bytes) -> str:
    """What DER bytes hold, from their ASN.1 shape alone: certificate, pkcs7, pkcs12, private key, ..."""
    if data[:4] == b"\xfe\xed\xfe\xed":
        return "jks"
    if data[:4] == b"\xce\xce\xce\xce":
        return "jceks"
    tag, start, end = _tlv(data, 0, len(data))
    if tag != 0x30:
        raise ValueError("not a SEQUENCE")
    kids = _children(data, start, end)
    tags = [k[0] for k in kids]
    if tags[:1] == [0x06] and _oid(data[kids[0][1]:kids[0][2]]) == _OID_SIGNED_DATA:
        return "pkcs7"
    if tags[:3] == [0x02, 0x30, 0x30] and data[kids[0][1]:kids[0][2]] == b"\x03":
        inner = _children(data, kids[1][1], kids[1][2], 1)
        if inner and inner[0][0] == 0x06 and _oid(data[inner[0][1]:inner[0][2]]) in (_OID_DATA, _OID_SIGNED_DATA):
            return "pkcs12"
    if tags == [0x30, 0x30, 0x03]:
        tbs = _children(data, kids[0][1], kids[0][2])
        tbs_tags = [k[0] for k in tbs]
        if 0x17 in tbs_tags or 0x18 in tbs_tags:
            return "crl"
        return "certificate" if len(tbs) >= 6 else "certificate request"
    if tags[:3] == [0x02, 0x30, 0x04]:
        return "private key"
    if tags[:2] == [0x30, 0x04]:
        return "encrypted private key"
    if tags == [0x30, 0x03]:
        return "public key"
    if tags[:2] == [0x02, 0x02] and len(tags) == 9:
        return "private key"  # PKCS#1 RSAPrivateKey
    if tags[:2] == [0x02, 0x04] and data[kids[0][1]:kids[0][2]] == b"\x01":
        return "private key"  # SEC 1 ECPrivateKey
    raise ValueError("unknown shape")


_PEM_KINDS = {
    "CERTIFICATE": "certificate", "TRUSTED CERTIFICATE": "certificate", "X509 CERTIFICATE": "certificate",
    "CERTIFICATE REQUEST": "certificate request", "NEW CERTIFICATE REQUEST": "certificate request",
    "X509 CRL": "crl", "PKCS7": "pkcs7", "PRIVATE KEY": "private key", "RSA PRIVATE KEY": "private key",
    "EC PRIVATE KEY": "private key", "ENCRYPTED PRIVATE KEY": "encrypted private key", "PUBLIC KEY": "public key",
}


@dataclass(frozen=True)
class Detected:
    """What a file holds, found from its bytes: the encoding and the kinds of item in it, in order."""

    encoding: str  # "PEM", "DER" or "binary"
    kind: str  # the first item's kind: certificate, pkcs7, pkcs12, private key, jks, ...
    items: tuple[str, ...] = field(default=())

    def describe(self) -> str:
        """One line: e.g. 'PEM: certificate, certificate, private key'."""
        return f"{self.encoding}: {', '.join(self.items or (self.kind,))}"


def detect(data: bytes, fieldname: str = "file") -> Detected:
    """What a certificate file is, from its bytes (never from its name: a .crt or .cer may be PEM or DER).

    PEM is text with `-----BEGIN <LABEL>-----` lines; DER is binary ASN.1 whose shape tells a certificate
    from a PKCS#7 bundle, a PKCS#12 file or a key; a Java KeyStore starts with FE ED FE ED.
    Mirrors what `file` and `openssl asn1parse -inform der -i` show about it.
    """
    if not isinstance(data, (bytes, bytearray)):
        raise LabInputError(fieldname, type(data).__name__, "the file's bytes")
    data = bytes(data)
    if not data.strip():
        raise LabInputError(fieldname, "empty", "a certificate file: PEM, DER, PKCS#7 or PKCS#12")
    if _PEM_BEGIN.search(data):
        items = tuple(_PEM_KINDS.get(label, label.lower()) for label, _ in pem_blocks(data, fieldname))
        return Detected("PEM", items[0], items)
    stripped = data.strip()
    if re.fullmatch(rb"[A-Za-z0-9+/=\s]+", stripped) and len(stripped) >= 16:
        try:  # bare Base64 without PEM lines (some tools write that): decode and look again
            decoded = base64.b64decode(b"".join(stripped.split()), validate=True)
            inner = _der_kind(decoded)
        except (binascii.Error, ValueError):
            inner = None
        if inner:
            raise LabInputError(fieldname, f"Base64 text of a DER {inner}",
                                "PEM with its '-----BEGIN ...-----' and '-----END ...-----' lines, or the DER bytes")
    try:
        kind = _der_kind(data)
    except (ValueError, IndexError):
        shown = data[:16].hex(" ") + (" ..." if len(data) > 16 else "")
        raise LabInputError(fieldname, shown, "a certificate file: PEM text, or DER (a certificate, PKCS#7 or "
                            "PKCS#12) starting with 30 (an ASN.1 SEQUENCE)") from None
    return Detected("binary" if kind in ("jks", "jceks", "pkcs12") else "DER", kind, (kind,))


def describe_file(filename: str, data: bytes) -> str:
    """What a file is, from its bytes, next to what its name suggests: e.g. "server.cer: DER: certificate
    (.cer: a certificate, usually DER ...)". Mirrors `file server.cer` plus `openssl x509 -in` / `-inform der`.
    """
    found = detect(data)
    suffix = "." + filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    said = FILE_EXTENSIONS.get(suffix)
    return f"{filename}: {found.describe()}" + (f" ({suffix}: {said})" if said else "")


def load_certificates(data: bytes, password: str | None = None, fieldname: str = "file") -> list:
    """Every certificate in a file: PEM (one or many), DER, PKCS#7 (PEM or DER) or PKCS#12 (with password).

    Mirrors `openssl x509 -in` / `-inform der`, `openssl pkcs7 -print_certs` and `openssl pkcs12 -nokeys`.
    """
    found = detect(data, fieldname)
    try:
        if found.kind in ("jks", "jceks"):
            raise LabInputError(fieldname, f"Java KeyStore ({found.kind.upper()})",
                                "PEM, DER, PKCS#7 or PKCS#12: convert with keytool -importkeystore ... "
                                "-deststoretype PKCS12 (see JKS_TEXT)")
        if found.kind == "pkcs12":
            identity = read_p12(data, password)
            return [identity.cert, *identity.chain]
        if found.encoding == "DER":
            if found.kind == "certificate":
                return [_load_der_cert(data)]
            if found.kind == "pkcs7":
                certs = _p7b_certificates(data)
                if not certs:
                    raise LabInputError(fieldname, "PKCS#7 with no certificates", "a bundle with certificates")
                return certs
        else:
            certs = []
            for label, der in pem_blocks(data, fieldname):
                kind = _PEM_KINDS.get(label)
                if kind == "certificate":
                    certs.append(_load_der_cert(der))
                elif kind == "pkcs7":
                    certs.extend(_p7b_certificates(der))
            if certs:
                return certs
    except LabInputError:
        raise
    except Exception as error:  # noqa: BLE001 - any parse failure of the cryptography package
        raise LabInputError(fieldname, found.describe(), f"a well-formed certificate ({error})") from None
    raise LabInputError(fieldname, found.describe(), "a file with at least one certificate")


def load_private_key(data: bytes, password: str | None = None, fieldname: str = "key"):
    """The private key in a PEM or DER file (PKCS#8, PKCS#1 or SEC 1; encrypted ones need `password`),
    or in a PKCS#12 file. Mirrors `openssl pkey -in KEY`.
    """
    _, _, serialization, *_ = _crypto()
    found = detect(data)
    if found.kind == "pkcs12":
        identity = read_p12(data, password)
        if identity.key is None:
            raise LabInputError(fieldname, "PKCS#12 without a key", "a .p12 holding a private key")
        return identity.key
    if "private key" not in found.items and "encrypted private key" not in found.items:
        raise LabInputError(fieldname, found.describe(), "a private key (PEM 'PRIVATE KEY' block or DER PKCS#8)")
    pw = None if password is None else password.encode()
    der = data
    if found.encoding == "PEM":
        der = next(d for lb, d in pem_blocks(data, fieldname) if "PRIVATE KEY" in lb)
    try:
        return serialization.load_der_private_key(der, pw)
    except TypeError:
        if password is None:
            raise LabInputError("password", None, "the key's password (it is encrypted)") from None
        raise LabInputError("password", _mask(password), "no password: the key is not encrypted") from None
    except Exception as error:  # noqa: BLE001
        if password is not None and "encrypted private key" in found.items:
            raise LabInputError("password", _mask(password), "the password the key was encrypted with") from None
        raise LabInputError(fieldname, found.describe(), f"a well-formed private key ({error})") from None


def load_csr(data: bytes):
    """A CSR from PEM or DER bytes. Mirrors `openssl req -in server.csr -noout` (`-inform der` for DER)."""
    cx, *_ = _crypto()
    found = detect(data)
    if found.kind != "certificate request":
        raise LabInputError("csr", found.describe(), "a certificate signing request")
    der = data if found.encoding == "DER" else next(d for lb, d in pem_blocks(data, "csr") if "REQUEST" in lb)
    try:
        csr = cx.load_der_x509_csr(der)
        csr.subject.rfc4514_string()
        for ext in csr.extensions:
            ext.value  # noqa: B018
        _spki(csr.public_key())
        csr.is_signature_valid  # noqa: B018
        return csr
    except Exception as error:  # noqa: BLE001
        raise LabInputError("csr", found.describe(), f"a well-formed CSR ({error})") from None


def _key_maybe_encrypted(data: bytes, password: str | None):
    """A key file read without a password if it is not encrypted, with `password` if it is."""
    encrypted = "encrypted private key" in detect(data).items
    return load_private_key(data, password if encrypted else None)


def convert(data: bytes, to: str, *, password: str | None = None, key: bytes | None = None) -> bytes:
    """Convert a certificate file to 'pem', 'der', 'p7b' or 'p12' (:data:`OUTPUT_FORMATS` maps file names).

    Mirrors the notes' conversions: `openssl x509 -outform der`, `openssl x509 -inform der`,
    `openssl crl2pkcs7 -nocrl -certfile`, `openssl pkcs12 -export` and `openssl pkcs12 -nodes`.

    The input's format is found from its bytes. 'p12' needs the private key (in the input, or `key`)
    and `password`; 'der' holds one certificate (the first, as `openssl x509 -outform der` writes);
    'pem' from a .p12 writes the key after the certificates, as `openssl pkcs12 -nodes` does.
    """
    if to not in ("pem", "der", "p7b", "p12"):
        raise LabInputError("to", to, "one of pem, der, p7b, p12")
    found = detect(data)
    certs = load_certificates(data, password)
    private = None
    if key is not None:
        private = _key_maybe_encrypted(key, password)
    elif found.kind == "pkcs12":
        private = read_p12(data, password).key
    elif "private key" in found.items or "encrypted private key" in found.items:
        private = _key_maybe_encrypted(data, password)
    if to == "der":
        return to_der(certs[0])
    if to == "p7b":
        return to_p7b(certs)
    if to == "p12":
        if private is None:
            raise LabInputError("key", None, "the certificate's private key (in the input file or given as key=)")
        return to_p12(Identity(certs[0], private, tuple(certs[1:])), password)
    out = b"".join(to_pem(c) for c in certs)
    return out + (private_key_pem(private) if private is not None and found.kind == "pkcs12" else b"")


# --- openssl x509 -text ---------------------------------------------------------------------------------------


def _hexlines(data: bytes, per_line: int, indent: int) -> list[str]:
    """Bytes as OpenSSL dumps them: lower-case hex with colons, `per_line` to a line, ':' at each line's end."""
    lines = []
    for i in range(0, len(data), per_line):
        chunk = ":".join(f"{b:02x}" for b in data[i:i + per_line])
        lines.append(" " * indent + chunk + (":" if i + per_line < len(data) else ""))
    return lines


def _asn1_time(when: datetime) -> str:
    months = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
    return f"{months[when.month - 1]} {when.day:2d} {when:%H:%M:%S} {when.year} GMT"


def _public_key_lines(public_key) -> list[str]:
    _, _, serialization, ec, ed25519, rsa = _crypto()
    if isinstance(public_key, rsa.RSAPublicKey):
        numbers = public_key.public_numbers()
        modulus = numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")
        if modulus[0] & 0x80:
            modulus = b"\x00" + modulus
        return ["            Public Key Algorithm: rsaEncryption",
                f"                Public-Key: ({public_key.key_size} bit)", "                Modulus:",
                *_hexlines(modulus, 15, 20), f"                Exponent: {numbers.e} (0x{numbers.e:x})"]
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        point = public_key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        oid, nist = _CURVES.get(public_key.curve.name, (public_key.curve.name, None))
        lines = ["            Public Key Algorithm: id-ecPublicKey",
                 f"                Public-Key: ({public_key.key_size} bit)", "                pub:",
                 *_hexlines(point, 15, 20), f"                ASN1 OID: {oid}"]
        return lines + ([f"                NIST CURVE: {nist}"] if nist else [])
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return ["            Public Key Algorithm: ED25519", "                ED25519 Public-Key:", "                pub:",
                *_hexlines(raw, 15, 20)]
    return [f"            Public Key Algorithm: {type(public_key).__name__}"]


def _general_name(name) -> str:
    cx, *_ = _crypto()
    if isinstance(name, cx.DNSName):
        return f"DNS:{name.value}"
    if isinstance(name, cx.IPAddress):
        ip = name.value
        if ip.version == 6:
            return "IP Address:" + ":".join(f"{int.from_bytes(ip.packed[i:i + 2], 'big'):X}" for i in range(0, 16, 2))
        return f"IP Address:{ip}"
    if isinstance(name, cx.RFC822Name):
        return f"email:{name.value}"
    if isinstance(name, cx.UniformResourceIdentifier):
        return f"URI:{name.value}"
    if isinstance(name, cx.DirectoryName):
        return f"DirName:{_name_slash(name.value)}"
    if isinstance(name, cx.RegisteredID):
        return f"Registered ID:{name.value.dotted_string}"
    return "othername:<unsupported>"


def _ext_value_lines(ext) -> list[str]:
    """An extension's value as OpenSSL prints it below its name (at indent 16)."""
    cx, *_ = _crypto()
    value, pad = ext.value, " " * 16
    if isinstance(value, cx.BasicConstraints):
        text_ = "CA:TRUE" if value.ca else "CA:FALSE"
        if value.path_length is not None:
            text_ += f", pathlen:{value.path_length}"
        return [pad + text_]
    if isinstance(value, cx.KeyUsage):
        names = []
        for attr, label in _KU_NAMES:
            try:
                if getattr(value, attr):
                    names.append(label)
            except ValueError:  # encipher_only/decipher_only are undefined without key_agreement
                pass
        return [pad + ", ".join(names)]
    if isinstance(value, cx.ExtendedKeyUsage):
        return [pad + ", ".join(_EKU_NAMES.get(o.dotted_string, o.dotted_string) for o in value)]
    if isinstance(value, cx.SubjectKeyIdentifier):
        return [pad + _hex(value.digest, upper=True)]
    if isinstance(value, cx.AuthorityKeyIdentifier):
        extra = value.authority_cert_issuer is not None or value.authority_cert_serial_number is not None
        lines = []
        if value.key_identifier is not None:
            lines.append(pad + ("keyid:" if extra else "") + _hex(value.key_identifier, upper=True))
        for gn in value.authority_cert_issuer or []:
            lines.append(pad + _general_name(gn))
        if value.authority_cert_serial_number is not None:
            serial = value.authority_cert_serial_number
            lines.append(pad + "serial:" + _hex(serial.to_bytes(max(1, (serial.bit_length() + 7) // 8), "big"), True))
        return lines
    if isinstance(value, (cx.SubjectAlternativeName, cx.IssuerAlternativeName)):
        return [pad + ", ".join(_general_name(n) for n in value)]
    if isinstance(value, cx.AuthorityInformationAccess):
        labels = {"1.3.6.1.5.5.7.48.1": "OCSP", "1.3.6.1.5.5.7.48.2": "CA Issuers"}
        return [pad + f"{labels.get(d.access_method.dotted_string, d.access_method.dotted_string)} - "
                f"{_general_name(d.access_location)}" for d in value]
    if isinstance(value, cx.CRLDistributionPoints) and all(p.full_name for p in value):
        lines = []
        for point in value:
            lines.append(pad + "Full Name:")
            lines.extend(pad + "  " + _general_name(n) for n in point.full_name)
        return lines
    if isinstance(value, cx.CertificatePolicies) and all(
        all(isinstance(q, str) for q in p.policy_qualifiers or []) for p in value
    ):
        lines = []
        for policy in value:
            lines.append(pad + f"Policy: {policy.policy_identifier.dotted_string}")
            lines.extend(pad + f"  CPS: {q}" for q in policy.policy_qualifiers or [])
        return lines
    # Anything else: the extension's DER bytes as ASN1_STRING_print() shows them (OpenSSL decodes more kinds).
    raw = value.public_bytes() if hasattr(value, "public_bytes") else b""
    return [pad + "".join(chr(b) if 0x20 <= b <= 0x7E or b in (10, 13) else "." for b in raw)]


def _extensions_lines(extensions, indent: int) -> list[str]:
    lines = []
    for ext in extensions:
        oid = ext.oid.dotted_string
        label = _EXT_NAMES.get(oid, oid)
        lines.append(" " * indent + f"{label}: " + ("critical" if ext.critical else ""))
        lines.extend(" " * (indent - 12) + ln for ln in _ext_value_lines(ext))
    return lines


def _signature_lines(obj) -> list[str]:
    alg = _SIG_NAMES.get(obj.signature_algorithm_oid.dotted_string, obj.signature_algorithm_oid.dotted_string)
    return [f"    Signature Algorithm: {alg}", "    Signature Value:", *_hexlines(obj.signature, 18, 8)]


def _serial_line(serial: int) -> list[str]:
    magnitude = abs(serial).to_bytes(max(1, (abs(serial).bit_length() + 7) // 8), "big")
    if len(magnitude) <= 8 and abs(serial) <= 2**63 - 1:
        sign = "-" if serial < 0 else ""
        return [f"        Serial Number: {sign}{abs(serial)} ({sign}0x{abs(serial):x})"]
    return ["        Serial Number:", " " * 12 + (" (Negative)" if serial < 0 else "") + _hex(magnitude)]


def text(cert) -> str:
    """A certificate printed as OpenSSL 3.0 prints it: Mirrors `openssl x509 -in CERTIFICATE.pem -text -noout`.

    Version, Serial Number, Signature Algorithm, Issuer, Validity, Subject, Subject Public Key Info, the
    X509v3 extensions by their OpenSSL names, and the signature.

    Accepts a certificate, an Identity, or the PEM/DER bytes of a file (so it also mirrors the notes'
    `openssl x509 -inform der -in CERTIFICATE.der -text -noout`). Every field of the certificates this
    course makes, and of common real ones (AIA, CRL distribution points, policies), is printed exactly as
    OpenSSL 3.0 does; extensions it does not know are shown raw, and RSA-PSS parameters are not decoded.
    """
    cert = _certificate(cert, "cert")
    alg = _SIG_NAMES.get(cert.signature_algorithm_oid.dotted_string, cert.signature_algorithm_oid.dotted_string)
    version = cert.version.value
    lines = ["Certificate:", "    Data:", f"        Version: {version + 1} (0x{version:x})",
             *_serial_line(_serial_of(cert)), f"        Signature Algorithm: {alg}",
             f"        Issuer: {name_text(cert.issuer)}", "        Validity",
             f"            Not Before: {_asn1_time(cert.not_valid_before_utc)}",
             f"            Not After : {_asn1_time(cert.not_valid_after_utc)}",
             f"        Subject: {name_text(cert.subject)}", "        Subject Public Key Info:",
             *_public_key_lines(cert.public_key())]
    if len(cert.extensions):
        lines.append("        X509v3 extensions:")
        lines.extend(_extensions_lines(cert.extensions, 12))
    lines.extend(_signature_lines(cert))
    return "\n".join(lines)


def csr_text(csr) -> str:
    """A CSR printed as OpenSSL 3.0 prints it. Mirrors `openssl req -in server.csr -text -noout`."""
    if isinstance(csr, (bytes, bytearray)):
        csr = load_csr(bytes(csr))
    lines = ["Certificate Request:", "    Data:", "        Version: 1 (0x0)",
             f"        Subject: {name_text(csr.subject)}", "        Subject Public Key Info:",
             *_public_key_lines(csr.public_key()), "        Attributes:"]
    if len(csr.extensions):
        lines.append("            Requested Extensions:")
        lines.extend(_extensions_lines(csr.extensions, 16))
    else:
        lines += ["            (none)", "            Requested Extensions:"]
    lines.extend(_signature_lines(csr))
    return "\n".join(lines)


# --- openssl verify ------------------------------------------------------------------------------------------


def _ext(cert, cls):
    cx, *_ = _crypto()
    try:
        return cert.extensions.get_extension_for_class(getattr(cx, cls)).value
    except cx.ExtensionNotFound:
        return None


def _sig_alg_matches(issuer_key, cert) -> bool:
    oid = cert.signature_algorithm_oid.dotted_string
    kind = key_kind(issuer_key)
    if kind == "rsa":
        return oid.startswith("1.2.840.113549.1.1.")
    if kind == "ec":
        return oid.startswith("1.2.840.10045.4.")
    return oid == "1.3.101.112"


def _akid_ok(issuer, subject) -> bool:
    """X509_check_akid: the subject's authority key identifier agrees with the issuer."""
    aki = _ext(subject, "AuthorityKeyIdentifier")
    if aki is None:
        return True
    ski = _ext(issuer, "SubjectKeyIdentifier")
    if aki.key_identifier is not None and ski is not None and aki.key_identifier != ski.digest:
        return False
    serial = aki.authority_cert_serial_number
    return serial is None or serial == _serial_of(issuer)


def _issued(issuer, subject) -> bool:
    """OpenSSL 3.0's ossl_x509_likely_issued: names, key identifiers and key type agree."""
    return (_name_key(issuer.subject) == _name_key(subject.issuer) and _akid_ok(issuer, subject)
            and _sig_alg_matches(issuer.public_key(), subject))


def _self_signed(cert) -> bool:
    """OpenSSL's EXFLAG_SS: self-issued, with matching key identifiers and key type (signature not checked)."""
    return _issued(cert, cert)


def _time_ok(cert, at: datetime) -> bool:
    return cert.not_valid_before_utc <= at < cert.not_valid_after_utc


def _check_ca(cert) -> int:
    """OpenSSL's check_ca(): 1 a CA by basicConstraints, 3 a v1 self-signed root, 4 keyUsage only, 0 not a CA."""
    ku = _ext(cert, "KeyUsage")
    if ku is not None and not ku.key_cert_sign:
        return 0
    bc = _ext(cert, "BasicConstraints")
    if bc is not None:
        return 1 if bc.ca else 0
    if cert.version.value == 0 and _self_signed(cert):
        return 3
    return 4 if ku is not None else 0


def _purpose_ok(cert, purpose: str, require_ca: bool) -> bool:
    """OpenSSL's check_purpose_ssl_server / _ssl_client (v3_purp.c)."""
    eku = _ext(cert, "ExtendedKeyUsage")
    wanted = {"sslserver": {"1.3.6.1.5.5.7.3.1", "1.3.6.1.4.1.311.10.3.3", "2.16.840.1.113730.4.1"},
              "sslclient": {"1.3.6.1.5.5.7.3.2"}}[purpose]
    if eku is not None and not {o.dotted_string for o in eku} & wanted:
        return False
    if require_ca:
        return _check_ca(cert) != 0
    ku = _ext(cert, "KeyUsage")
    if ku is None:
        return True
    if purpose == "sslserver":
        return ku.digital_signature or ku.key_encipherment or ku.key_agreement
    return ku.digital_signature or ku.key_agreement


def _host_matches(cert, hostname: str) -> bool:
    """X509_check_host: DNS SANs if there are any, else the subject's CN; '*' as a whole leftmost label."""
    dns, _ = _sans_of(cert)
    if dns:
        candidates = dns
    else:
        candidates = [_attr_str(a) for a in cert.subject if a.oid.dotted_string == "2.5.4.3"]
    host = hostname.lower().rstrip(".")
    for pattern in candidates:
        pattern = pattern.lower()
        if pattern == host:
            return True
        labels = pattern.split(".")
        if labels[0] == "*" and len(labels) >= 3 and not host.startswith("."):
            head, _, rest = host.partition(".")
            if head and rest == ".".join(labels[1:]):
                return True
    return False


def _ip_matches(cert, ip: str) -> bool:
    _, ips = _sans_of(cert)
    wanted = ipaddress.ip_address(ip)
    return any(ipaddress.ip_address(i) == wanted for i in ips)


def _signature_ok(issuer, cert) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except Exception:  # noqa: BLE001 - InvalidSignature, ValueError, TypeError: all mean "does not verify"
        return False
    return True


@dataclass(frozen=True)
class VerifyError:
    """One line `openssl verify` prints: `error CODE at DEPTH depth lookup: MESSAGE`, after the cert's subject."""

    code: int
    depth: int
    subject: str

    @property
    def message(self) -> str:
        return VERIFY_ERRORS[self.code]

    def lines(self) -> list[str]:
        """The two lines `openssl verify` prints for this error: the subject, then the error."""
        return [self.subject, f"error {self.code} at {self.depth} depth lookup: {self.message}"]


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of :func:`verify`: the chain built (leaf first) and the errors found, in OpenSSL's order.

    `code`, `depth` and `message` are the first error's (0, 0, "ok" when it verifies): what a TLS peer
    reports, since in a handshake verification stops at the first error. `openssl verify` carries on after
    some errors (expired, self-signed, invalid CA, path length, purpose), so `errors` can hold several.
    """

    chain: tuple
    errors: tuple[VerifyError, ...]

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def code(self) -> int:
        return self.errors[0].code if self.errors else 0

    @property
    def depth(self) -> int:
        return self.errors[0].depth if self.errors else 0

    @property
    def message(self) -> str:
        return VERIFY_ERRORS[self.code]

    def lines(self, filename: str = "cert.pem") -> list[str]:
        """What `openssl verify -CAfile ... FILENAME` prints: `FILENAME: OK`, or the error lines and
        `error FILENAME: verification failed` (those go to stderr, and the exit status is 2)."""
        if self.ok:
            return [f"{filename}: OK"]
        return [ln for e in self.errors for ln in e.lines()] + [f"error {filename}: verification failed"]

    def __str__(self) -> str:
        return "\n".join(self.lines())


def _cert_list(items, fieldname: str) -> list:
    if items is None:
        return []
    try:
        return [_certificate(c, fieldname) for c in _flatten(items, fieldname)]
    except TypeError:
        raise LabInputError(fieldname, type(items).__name__, "a list of certificates") from None


def verify(cert, trusted: Iterable = (), untrusted: Iterable = (), *, hostname: str | None = None,
           ip: str | None = None, purpose: str | None = None, at: datetime | None = None) -> VerifyResult:
    """Build and check a chain from `cert` to a `trusted` root the way OpenSSL 3.0 does.

    Mirrors `openssl verify -CAfile TRUSTED.pem -untrusted CHAIN.pem [-verify_hostname H] [-verify_ip IP]
    [-purpose sslserver|sslclient] [-attime EPOCH] CERT.pem`: build the chain (trusted issuers first),
    then check CA flags, purpose and path lengths, then the hostname/IP, then signatures and validity
    from the root down. `at` defaults to now, as openssl's does.
    """
    leaf = _certificate(cert, "cert")
    anchors = _cert_list(trusted, "trusted")
    pool = _cert_list(untrusted, "untrusted")
    if purpose is not None and purpose not in PURPOSES:
        raise LabInputError("purpose", purpose, f"one of {', '.join(PURPOSES)} (as openssl verify -purpose), or None")
    if hostname is not None and (not isinstance(hostname, str) or not hostname):
        raise LabInputError("hostname", hostname, "a DNS name to check against the certificate")
    if ip is not None:
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise LabInputError("ip", ip, "an IPv4 or IPv6 address") from None
    when = datetime.now(UTC) if at is None else _as_utc(at, "at")

    errors: list[VerifyError] = []

    def fail(code: int, depth: int, subject_cert) -> bool:
        """Record an error; True if openssl verify carries on after it."""
        errors.append(VerifyError(code, depth, name_text(subject_cert.subject)))
        return code in VERIFY_CONTINUES

    def pick(candidates, subject):
        found = [c for c in candidates if _issued(c, subject)]
        return next((c for c in found if _time_ok(c, when)), found[-1] if found else None)

    # 1. build_chain: trusted issuers first, then untrusted ones.
    chain, num_untrusted, trusted_found = [leaf], 1, False
    while len(chain) <= 100:
        last = chain[-1]
        if _self_signed(last):
            if any(last == a for a in anchors):
                trusted_found = True
                num_untrusted = min(num_untrusted, len(chain) - 1)
            break
        issuer = pick(anchors, last)
        if issuer is not None:
            chain.append(issuer)
            if _self_signed(issuer):
                trusted_found = True
                break
            continue
        if num_untrusted < len(chain):  # once in the trust store, issuers come from it only
            break
        issuer = pick([c for c in pool if c not in chain], last)
        if issuer is None:
            break
        chain.append(issuer)
        num_untrusted += 1
    if not trusted_found:
        top = len(chain) - 1
        if _self_signed(chain[-1]):
            code = 18 if len(chain) == 1 else 19
        else:
            code = 2 if num_untrusted < len(chain) else 20
        if not fail(code, top, chain[-1]):
            return VerifyResult(tuple(chain), tuple(errors))

    # 2. check_extensions: CA flags, purpose, path length.
    plen = 0
    for depth, c in enumerate(chain):
        if depth > 0:
            ca = _check_ca(c)
            if (ca == 0 or (depth + 1 < len(chain) and ca != 1)) and not fail(79, depth, c):
                return VerifyResult(tuple(chain), tuple(errors))
        wrong_purpose = purpose is not None and not _purpose_ok(c, purpose, require_ca=depth > 0)
        if wrong_purpose and not fail(26, depth, c):
            return VerifyResult(tuple(chain), tuple(errors))
        bc = _ext(c, "BasicConstraints")
        too_long = depth > 1 and bc is not None and bc.path_length is not None and plen > bc.path_length
        if too_long and not fail(25, depth, c):
            return VerifyResult(tuple(chain), tuple(errors))
        if depth > 0 and _name_key(c.subject) != _name_key(c.issuer):
            plen += 1

    # 3. check_id: hostname, then IP address (depth 0; openssl verify stops there).
    if hostname is not None and not _host_matches(leaf, hostname):
        fail(62, 0, leaf)
        return VerifyResult(tuple(chain), tuple(errors))
    if ip is not None and not _ip_matches(leaf, ip):
        fail(64, 0, leaf)
        return VerifyResult(tuple(chain), tuple(errors))

    # 4. internal_verify: signatures and validity, from the top of the chain down to the leaf.
    n = len(chain) - 1
    issuer = chain[n]
    if _self_signed(issuer):
        subject = issuer
    elif n == 0:
        if not fail(21, 0, issuer):
            return VerifyResult(tuple(chain), tuple(errors))
        subject = issuer
    else:
        n -= 1
        subject = chain[n]
    while n >= 0:
        if subject is not issuer:
            usage = _ext(issuer, "KeyUsage")  # RFC 5280 6.1.4 (n): the issuer's key must be for signing certificates
            if usage is not None and not usage.key_cert_sign and not fail(32, n + 1, issuer):
                return VerifyResult(tuple(chain), tuple(errors))
            if not _signature_ok(issuer, subject) and not fail(7, n, subject):
                return VerifyResult(tuple(chain), tuple(errors))
        if subject.not_valid_before_utc > when:
            if not fail(9, n, subject):
                return VerifyResult(tuple(chain), tuple(errors))
        elif subject.not_valid_after_utc <= when and not fail(10, n, subject):
            return VerifyResult(tuple(chain), tuple(errors))
        n -= 1
        if n >= 0:
            issuer, subject = subject, chain[n]
    return VerifyResult(tuple(chain), tuple(errors))


# --- a matrix of good and bad chains -------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifyCase:
    """One certificate to check, with what to trust and which checks to ask for (a row of the lab's table)."""

    name: str
    cert: Any
    trusted: tuple = ()
    untrusted: tuple = ()
    hostname: str | None = None
    ip: str | None = None
    purpose: str | None = None
    at: datetime = LAB_NOW

    def run(self) -> VerifyResult:
        """The model's verdict (:func:`verify`)."""
        return verify(self.cert, self.trusted, self.untrusted, hostname=self.hostname, ip=self.ip,
                      purpose=self.purpose, at=self.at)

    def openssl_options(self) -> list[str]:
        """The `openssl verify` options for the checks (the -CAfile/-untrusted files are the caller's)."""
        options = ["-attime", str(int(self.at.timestamp()))]
        if self.hostname is not None:
            options += ["-verify_hostname", self.hostname]
        if self.ip is not None:
            options += ["-verify_ip", self.ip]
        if self.purpose is not None:
            options += ["-purpose", self.purpose]
        return options


def verify_cases(kind: str = "ed25519", seed: str | bytes | None = DEFAULT_SEED) -> tuple[VerifyCase, ...]:
    """Good and bad chains, each failing for one reason `openssl verify` names (checked at :data:`LAB_NOW`).

    The PKI: a root CA (pathlen:1), an intermediate (pathlen:0), a server (localhost, 127.0.0.1) and a
    client below it; another root; and certificates made wrong on purpose (expired, not yet valid,
    self-signed, no SAN, a wildcard, a forged signature, a leaf used as a CA, a CA chain too long).
    Mirrors running `openssl verify -CAfile ... -untrusted ... -attime ...` on each (VerifyCase.openssl_options;
    tests/unit/test_x509_openssl.py does, and compares every line).
    """
    common = {"kind": kind, "seed": seed}
    pki = build_pki(kind, seed=seed, intermediate=True)
    root, inter, server, client = pki.root, pki.intermediate, pki.server, pki.client
    other = root_ca("/CN=Other Root CA", **common)
    expired = server_identity(inter, "expired.example", names=("expired.example",), days=30, **common)
    future = server_identity(inter, "future.example", names=("future.example",),
                             not_before=datetime(2030, 1, 1, tzinfo=UTC), **common)
    old_inter = intermediate_ca(root, "/CN=Expired Intermediate CA", days=30, **common)
    under_old = server_identity(old_inter, "old.example", names=("old.example",), **common)
    self_signed = self_signed_identity("self.example", names=("self.example",), **common)
    self_expired = self_signed_identity("stale.example", names=("stale.example",), days=30, **common)
    wildcard = server_identity(inter, "wild", names=("*.example.com",), **common)
    no_san = issue(inter, "/CN=nosan.example", **common)
    strict_root = root_ca("/CN=Pathlen 0 Root CA", path_length=0, **common)
    strict_inter = intermediate_ca(strict_root, "/CN=Below a pathlen 0 root", path_length=None, **common)
    too_deep = server_identity(strict_inter, "deep.example", names=("deep.example",), **common)
    leaf_as_ca = server_identity(server, "sub.example", names=("sub.example",), **common)
    forger = generate_key(kind, None if seed is None else f"{seed}|forger")
    forged_cert = _build_cert(parse_name("/CN=forged.example"), forger.public_key(), inter.cert.subject, forger,
                              inter.cert, profile="server", not_before=LAB_NOT_BEFORE, days=LEAF_DAYS,
                              path_length=None, san=_san(["forged.example"], []), serial=None)
    chain = (inter.cert,)
    return (
        VerifyCase("server via the intermediate", server.cert, (root.cert,), chain),
        VerifyCase("server, hostname localhost", server.cert, (root.cert,), chain, hostname="localhost"),
        VerifyCase("server, IP 127.0.0.1", server.cert, (root.cert,), chain, ip="127.0.0.1"),
        VerifyCase("server for TLS servers (sslserver)", server.cert, (root.cert,), chain, purpose="sslserver"),
        VerifyCase("client for TLS clients (sslclient)", client.cert, (root.cert,), chain, purpose="sslclient"),
        VerifyCase("wildcard *.example.com for a.example.com", wildcard.cert, (root.cert,), chain,
                   hostname="a.example.com"),
        VerifyCase("no SAN: the CN is checked instead", no_san.cert, (root.cert,), chain, hostname="nosan.example"),
        VerifyCase("valid from the first second of notBefore", server.cert, (root.cert,), chain,
                   at=server.cert.not_valid_before_utc),
        VerifyCase("intermediate not given", server.cert, (root.cert,)),
        VerifyCase("only the intermediate trusted", server.cert, (inter.cert,)),
        VerifyCase("issued by another CA", server.cert, (other.cert,), chain),
        VerifyCase("root sent but not trusted", server.cert, (other.cert,), (inter.cert, root.cert)),
        VerifyCase("self-signed", self_signed.cert, (root.cert,)),
        VerifyCase("self-signed and expired", self_expired.cert, (root.cert,)),
        VerifyCase("expired", expired.cert, (root.cert,), chain),
        VerifyCase("expired at the second of notAfter", expired.cert, (root.cert,), chain,
                   at=expired.cert.not_valid_after_utc),
        VerifyCase("not yet valid", future.cert, (root.cert,), chain),
        VerifyCase("checked before the root's notBefore", server.cert, (root.cert,), chain,
                   at=datetime(2024, 6, 1, tzinfo=UTC)),
        VerifyCase("intermediate expired", under_old.cert, (root.cert,), (old_inter.cert,)),
        VerifyCase("hostname mismatch", server.cert, (root.cert,), chain, hostname="wrong.example"),
        VerifyCase("wildcard covers one label only", wildcard.cert, (root.cert,), chain, hostname="a.b.example.com"),
        VerifyCase("expired and hostname mismatch", expired.cert, (root.cert,), chain, hostname="wrong.example"),
        VerifyCase("IP address mismatch", server.cert, (root.cert,), chain, ip="10.0.0.1"),
        VerifyCase("server certificate used by a client", server.cert, (root.cert,), chain, purpose="sslclient"),
        VerifyCase("client certificate used by a server", client.cert, (root.cert,), chain, purpose="sslserver"),
        VerifyCase("path length exceeded", too_deep.cert, (strict_root.cert,), (strict_inter.cert,)),
        VerifyCase("a server certificate used as a CA", leaf_as_ca.cert, (root.cert,), (server.cert, inter.cert)),
        VerifyCase("forged signature", forged_cert, (root.cert,), chain),
    )
