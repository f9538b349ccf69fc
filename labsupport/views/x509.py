"""Figures and widgets of the x509 chapter: thin views over :mod:`labsupport.x509` and :mod:`labsupport.tls`.

Figures are hand-written SVG (:mod:`labsupport.views.svg`), so the certificate workshop redraws in
milliseconds; widgets are explorables, so they work on the static site as well as in a live kernel.
"""

from __future__ import annotations

import html
from datetime import timedelta

from labsupport import tls, x509
from labsupport.views import svg
from labsupport.views.explorable import Choice, Free, Html, Tabs, Text, explore

CA_COLOUR, LEAF_COLOUR, BAD_COLOUR, OK_COLOUR = "#f6e7c1", "#e8f4e0", "#c0392b", "#2e7d32"
CLIENT_COLOUR, SERVER_COLOUR = "#dbe9f6", "#e8f4e0"

VALIDITY = {
    "valid (2025–2035)": (x509.LAB_NOT_BEFORE, x509.LEAF_DAYS),
    "expired (2024)": (x509.LAB_NOT_BEFORE - timedelta(days=366), 365),
    "not yet valid (from 2027)": (x509.LAB_NOT_BEFORE + timedelta(days=730), 365),
}
ISSUERS = ("the lab root CA", "the lab intermediate CA", "itself (self-signed)")


def draw_chain(identity: x509.Identity, result: x509.VerifyResult | None = None) -> svg.Svg:
    """The chain of trust, leaf at the bottom: each box a certificate (subject, issuer, CA or not),
    each arrow "signed by". With a verification result, the chain is the one it built (up to the
    trusted root when it got there) and a box it failed at is outlined in red."""
    certs = list(result.chain) if result is not None and result.chain else [identity.cert, *identity.chain]
    failed_depths = {e.depth for e in result.errors} if result is not None else set()
    box_h, gap, width = 74, 34, 560
    height = len(certs) * (box_h + gap) + 14
    body = [svg.ARROW_MARKER]
    for depth, cert in enumerate(certs):
        y = height - (depth + 1) * (box_h + gap) + gap - 6
        subject, issuer = x509.name_text(cert.subject), x509.name_text(cert.issuer)
        is_ca = _is_ca(cert)
        stroke = BAD_COLOUR if depth in failed_depths else "#7a7a7a"
        body += [
            svg.rect(20, y, width - 40, box_h, CA_COLOUR if is_ca else LEAF_COLOUR, stroke),
            svg.text(34, y + 22, f"depth {depth}: {subject}", 12, "start", bold=True),
            svg.text(34, y + 42, f"issuer: {issuer}", 11, "start", "#444"),
            svg.text(
                34, y + 60,
                ("CA:TRUE" if is_ca else "CA:FALSE") + f" · {x509.key_kind(cert.public_key())} key"
                f" · valid {cert.not_valid_before_utc:%Y-%m-%d}"
                f" → {cert.not_valid_after_utc:%Y-%m-%d}",
                10, "start", "#555",
            ),
        ]
        if depth + 1 < len(certs):
            body.append(svg.line(width / 2, y, width / 2, y - gap + 2, "#555", 1.5, arrow=True))
            body.append(svg.text(width / 2 + 8, y - gap / 2 + 4, "signed by", 10, "start", "#555"))
    if result is not None:
        verdict = "openssl verify: OK" if result.ok else f"openssl verify: error {result.errors[0].code}"
        body.append(svg.text(width - 24, 16, verdict, 11, "end", OK_COLOUR if result.ok else BAD_COLOUR, bold=True))
    return svg.document(width, height, body, "chain of trust")


def _is_ca(cert) -> bool:
    from cryptography import x509 as cx

    try:
        return cert.extensions.get_extension_for_class(cx.BasicConstraints).value.ca
    except cx.ExtensionNotFound:
        return False


def lab_cas(kind: str = "ed25519") -> tuple[x509.Identity, x509.Identity]:
    """The lab's root CA and an intermediate CA under it (fixed seed and dates: stable outputs)."""
    root = x509.root_ca(kind=kind)
    return root, x509.intermediate_ca(root)


def build_certificate(key: str, profile: str, validity: str, issuer: str, names: str) -> x509.Identity:
    """The certificate the workshop's controls describe. Mirrors `openssl req -new` then `openssl x509 -req`
    (or `openssl req -x509` when self-signed)."""
    dns, ips = x509.split_names([n for n in (p.strip() for p in names.split(",")) if n], "names")
    if not dns and not ips:
        raise x509.LabInputError("names", names, "at least one DNS name or IP address, separated by commas")
    common_name = (dns or ips)[0]
    not_before, days = VALIDITY[validity]
    if issuer == ISSUERS[2]:
        return x509.self_signed_identity(common_name, names=[*dns, *ips], kind=key, not_before=not_before, days=days)
    root, intermediate = lab_cas()
    signer = root if issuer == ISSUERS[0] else intermediate
    return x509.issue(signer, f"/CN={common_name}", profile=profile, dns=dns, ips=ips, kind=key,
                      not_before=not_before, days=days)


def check_certificate(identity: x509.Identity, profile: str, hostname: str) -> x509.VerifyResult:
    """`openssl verify -CAfile root.pem -untrusted chain.pem -purpose … -verify_hostname|-verify_ip …`,
    at the lab's fixed date, trusting only the lab root."""
    root, _ = lab_cas()
    target = hostname.strip()
    ip = target if target and all(c.isdigit() or c in ".:" for c in target) else None
    return x509.verify(
        identity.cert, [root.cert], identity.chain,
        hostname=None if ip or not target else target, ip=ip,
        purpose="sslserver" if profile == "server" else "sslclient", at=x509.LAB_NOW,
    )


def render_workshop(key: str, profile: str, validity: str, issuer: str, names: str, hostname: str) -> list:
    """The certificate workshop's view: the chain, `openssl x509 -text`, the PEM, and `openssl verify`."""
    identity = build_certificate(key, profile, validity, issuer, names)
    result = check_certificate(identity, profile, hostname)
    purpose = "sslserver" if profile == "server" else "sslclient"
    target = f"-verify_hostname {hostname.strip()}" if hostname.strip() else ""
    command = f"$ openssl verify -attime {int(x509.LAB_NOW.timestamp())} -CAfile root.pem -untrusted chain.pem " \
              f"-purpose {purpose} {target} cert.pem".replace("  ", " ")
    return [
        Html(draw_chain(identity, result).markup),
        Html(download_links(identity)),
        Tabs({
            "openssl x509 -text -noout": Text(x509.text(identity.cert)),
            "openssl verify": Text("\n".join([command, *result.lines()])),
            "PEM": Text(identity.cert_pem().decode()),
        }),
    ]


def download_links(identity: x509.Identity) -> str:
    """Links that save the certificate as .pem, .der and (with its chain) .p7b, from the page itself
    (data: URLs: they work on the static site too). The private key is never offered."""
    import base64

    name = (x509.name_text(identity.cert.subject).rsplit("= ", 1)[-1] or "certificate").replace("*", "star")
    files = {
        f"{name}.pem": ("application/x-pem-file", identity.cert_pem()),
        f"{name}.der": ("application/pkix-cert", x509.to_der(identity.cert)),
        f"{name}.p7b": ("application/x-pkcs7-certificates", x509.to_p7b(identity.full_chain)),
    }
    links = " · ".join(
        f'<a download="{html.escape(filename)}" href="data:{mime};base64,{base64.b64encode(data).decode()}">'
        f"{html.escape(filename)}</a>"
        for filename, (mime, data) in files.items()
    )
    return f'<div class="lab-downloads">Download: {links}</div>'


def certificate_workshop():
    """The lab's certificate workshop: key type, usage, validity and issuer precomputed; names and the
    hostname to check typed (live)."""
    return explore(
        render_workshop,
        title="Certificate workshop",
        key=Choice(["ed25519", "ec"], label="key"),
        profile=Choice([("server (serverAuth)", "server"), ("client (clientAuth)", "client")], label="usage"),
        validity=Choice(list(VALIDITY), label="validity"),
        issuer=Choice(list(ISSUERS), label="issued by"),
        names=Free("localhost, 127.0.0.1", label="SAN names"),
        hostname=Free("localhost", label="check for host"),
    )


def draw_handshake(result: tls.Handshake) -> svg.Svg:
    """The handshake as a sequence diagram: the messages of the real version and mode, and where the
    real run stopped (the failing side's error) or the line it exchanged."""
    steps = tls.flow(result)
    row, width = 26, 640
    height = 70 + row * len(steps)
    body = [
        svg.ARROW_MARKER,
        svg.rect(20, 10, 120, 30, CLIENT_COLOUR, "#4a6fa5"),
        svg.text(80, 30, "client", 12, bold=True),
        svg.rect(width - 140, 10, 120, 30, SERVER_COLOUR, "#3d8b37"),
        svg.text(width - 80, 30, "server", 12, bold=True),
        svg.line(80, 40, 80, height - 10, "#95a5a6", 1),
        svg.line(width - 80, 40, width - 80, height - 10, "#95a5a6", 1),
    ]
    for i, (sender, label, kind) in enumerate(steps):
        y = 62 + row * i
        colour = BAD_COLOUR if kind == "error" else OK_COLOUR if kind == "ok" else "#34495e"
        if sender == "note":
            body.append(svg.text(width / 2, y + 4, label, 10.5, colour=colour, bold=kind == "error"))
            continue
        x1, x2 = (80, width - 80) if sender == "client" else (width - 80, 80)
        body.append(svg.line(x1, y, x2 + (6 if x2 > x1 else -6) * -1, y, colour, 1.4, arrow=True))
        body.append(svg.text(width / 2, y - 5, label, 10.5, colour=colour))
    return svg.document(width, height, body, f"TLS handshake: {result.case}, {result.version}")


def render_handshake(case: str, version: str) -> list:
    """One real handshake on 127.0.0.1: the sequence, then each side's report."""
    chosen = next(c for c in tls.TLS_CASES if c.name == case)
    result = tls.run_case(chosen, version)
    return [Html(draw_handshake(result).markup), Text(str(result)), Text(f"why: {chosen.why}")]


def handshake_matrix():
    """The lab's handshake matrix: one-way or mutual TLS, working or failing, TLS 1.2 or 1.3; every
    combination is a real handshake run when the lab runs."""
    return explore(
        render_handshake,
        title="Handshake matrix (real TLS on 127.0.0.1)",
        case=Choice([c.name for c in tls.TLS_CASES], label="case"),
        version=Choice(list(tls.VERSIONS), label="version", default="TLSv1.3"),
    )
