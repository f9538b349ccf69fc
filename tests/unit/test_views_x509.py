"""The x509 lab's widgets and figures: what they show is what the models say; bad input in place."""

from __future__ import annotations

import base64
import re
import xml.etree.ElementTree as ET

import pytest

from labsupport import tls, x509
from labsupport.views import x509 as views

SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def workshop():
    return views.certificate_workshop()


def test_workshop_precomputes_every_choice_and_shows_the_certificate(workshop) -> None:
    assert workshop.n_states == 2 * 2 * 3 * 3
    workshop.set(key="ec", profile="client", validity="expired (2024)", issuer="the lab intermediate CA")
    shown = "\n".join(workshop.visible())
    identity = views.build_certificate("ec", "client", "expired (2024)", "the lab intermediate CA",
                                       "localhost, 127.0.0.1")
    assert x509.text(identity.cert) in shown
    assert "error 10 at 0 depth lookup: certificate has expired" in shown
    assert "-purpose sslclient" in shown


def test_workshop_typed_names_and_host_recompute_and_errors_stay_in_place(workshop) -> None:
    workshop.set(key="ed25519", profile="server", validity="valid (2025–2035)", issuer="the lab root CA",
                 names="api.lab.example", hostname="api.lab.example")
    assert workshop.error is None and "cert.pem: OK" in "\n".join(workshop.visible())
    workshop.set(hostname="other.example")
    assert "error 62 at 0 depth lookup: hostname mismatch" in "\n".join(workshop.visible())
    before = workshop.visible()
    workshop.set(names="not a name!")
    assert workshop.error.startswith("names: 'not a name!' is not allowed")
    assert workshop.visible()[: len(before)] == before and workshop.values()["names"] == "not a name!"
    workshop.set(names="localhost, 127.0.0.1", hostname="localhost")
    assert workshop.error is None


def test_download_links_carry_the_certificate_and_never_the_key() -> None:
    identity = views.build_certificate("ed25519", "server", "valid (2025–2035)", "the lab intermediate CA",
                                       "localhost")
    links = dict(re.findall(r'download="([^"]+)" href="data:[^;]+;base64,([^"]+)"', views.download_links(identity)))
    assert set(links) == {"localhost.pem", "localhost.der", "localhost.p7b"}
    assert base64.b64decode(links["localhost.pem"]) == identity.cert_pem()
    assert base64.b64decode(links["localhost.der"]) == x509.to_der(identity.cert)
    assert [c.subject for c in x509.load_certificates(base64.b64decode(links["localhost.p7b"]))] == [
        c.subject for c in identity.full_chain
    ]
    assert b"PRIVATE KEY" not in b"".join(base64.b64decode(v) for v in links.values())


def test_chain_figure_draws_the_chain_openssl_builds() -> None:
    identity = views.build_certificate("ed25519", "server", "valid (2025–2035)", "the lab intermediate CA",
                                       "localhost")
    result = views.check_certificate(identity, "server", "localhost")
    root = ET.fromstring(views.draw_chain(identity, result).markup)
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert texts.count("signed by") == 2
    assert "depth 2: CN = Lab Root CA" in texts and "depth 0: CN = localhost" in texts
    assert "openssl verify: OK" in texts


@pytest.mark.parametrize("case", range(len(tls.TLS_CASES)))
@pytest.mark.parametrize("version", ["TLSv1.2", "TLSv1.3"])
def test_handshake_flow_ends_where_the_real_run_ended(case: int, version: str) -> None:
    result = tls.run_case(tls.TLS_CASES[case], version)
    steps = tls.flow(result)
    assert steps[0] == ("client", "ClientHello", "msg")
    kinds = [kind for _, _, kind in steps]
    if result.ok:
        assert "error" not in kinds and steps[-1][2] == "ok"
    else:
        assert "error" in kinds and "application data: ping" not in [label for _, label, _ in steps]
    if version == "TLSv1.3" and result.refused_after_handshake:
        assert steps[-1][1].startswith("the client's read fails")
    root = ET.fromstring(views.draw_handshake(result).markup)
    assert len(list(root.iter(f"{SVG}line"))) == 2 + sum(1 for s, _, _ in steps if s != "note")
