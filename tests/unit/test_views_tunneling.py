"""The tunneling lab's views: the shared builder for every tunnel, and the overhead comparison drawn
from the packets the model builds."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from labsupport import tunneling
from labsupport.views import overlay as overlay_views
from labsupport.views import tunneling as views

SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def ui():
    return views.tunnel_builder()


def test_every_tunnel_and_payload_is_precomputed(ui) -> None:
    assert ui.n_states == len(views.TUNNELS) * len(overlay_views.PAYLOADS) <= 48
    assert ui.stale() == []
    for label, (kind, options) in views.TUNNELS.items():
        ui.set(tunnel=label, payload="tcp:443")
        assert ui.error is None, label
        pods = overlay_views.PODS[6 if kind == "sit" else 4]
        built = tunneling.build(kind, *overlay_views.UNDERLAYS["ipv4"], *pods, payload="tcp:443", **options)
        assert built.overhead_line() in "\n".join(ui.visible())


def test_errors_in_place_ipv6_endpoints_for_ipip(ui) -> None:
    ui.set(tunnel="ipip", payload="icmp")
    before = ui.visible()
    ui.set(endpoints="fd00::1 > fd00::2")
    assert ui.error.startswith("outer_src: 'fd00::1' is not allowed; an IPv4 address: IPIP runs over IPv4 only")
    assert ui.visible() == before
    ui.set(endpoints="")
    ui.set(tunnel="geneve", vni="70000")
    assert ui.error is None and "Geneve · vni = 0x011170" in "\n".join(ui.visible())
    ui.set(vni="1")


def test_overhead_comparison_is_measured_on_built_packets() -> None:
    rows = views.compared_breakdowns()
    totals = {label: sum(size for _, size in parts) for label, parts, _ in rows}
    for label, kind, options, underlay in views.COMPARED:
        if kind is not None:
            assert totals[label] == tunneling.overhead(kind, underlay, **{k: bool(v) for k, v in options.items()})
    assert totals["VXLAN"] == 50 and totals["VXLAN over IPv6"] == 70 and totals["host-gw / BGP routes (no tunnel)"] == 0
    assert {label: mtu for label, _, mtu in rows}["IPIP"] == 1480
    texts = [t.text for t in ET.fromstring(views.draw_overheads().markup).iter(f"{SVG}text")]
    assert "50 bytes → pod MTU 1450" in texts and "20 bytes → pod MTU 1480" in texts
    assert "38 bytes → pod MTU 1462" in texts  # gretap: GRE 4 + inner Ethernet 14 + outer IPv4 20
    assert "36 bytes → pod MTU 8965" in [t.text for t in ET.fromstring(views.draw_overheads(9001).markup).iter(f"{SVG}text")]


def test_gre_format_shows_the_optional_fields_in_rfc_order() -> None:
    texts = [t.text for t in ET.fromstring(views.gre_format().markup).iter(f"{SVG}text")]
    order = [texts.index(name) for name in ("C/R/K/S/s/Recur", "proto", "chksum", "offset", "key", "sequence number")]
    assert order == sorted(order)
    assert "0x0000002a" in texts and "0x00000001" in texts
