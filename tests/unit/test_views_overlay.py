"""The overlay lab's views: the packet builder shows the model's packet, bytes and overhead, and bad
input in place; the figures are drawn from the bytes the model builds."""

from __future__ import annotations

import base64
import re
import xml.etree.ElementTree as ET
from itertools import pairwise

import pytest

from labsupport import packets, tunneling
from labsupport.views import overlay as views

SVG = "{http://www.w3.org/2000/svg}"


def texts_of(markup: str) -> list[str]:
    return [t.text for t in ET.fromstring(markup).iter(f"{SVG}text")]


@pytest.fixture(scope="module")
def ui():
    return views.vxlan_builder()


def test_builder_precomputes_underlay_and_payload(ui) -> None:
    assert ui.n_states == 2 * 3
    ui.set(underlay="ipv6", payload="udp:8080")
    shown = "\n".join(ui.visible())
    built = tunneling.build("vxlan", *views.UNDERLAYS["ipv6"], *views.PODS[4], payload="udp:8080")
    assert built.overhead_line() in shown and "1500 - 70 = 1430" in shown
    assert packets.layered_summary(built.wire) in shown
    assert "<Tab bytes>" in shown and "<Tab pcap>" in shown


def test_typed_vni_endpoints_and_mtu_rebuild_the_packet(ui) -> None:
    ui.set(underlay="ipv4", payload="icmp", vni="4096", endpoints="10.0.0.1 > 10.0.0.2", underlay_mtu="9001")
    shown = "\n".join(ui.visible())
    assert ui.error is None
    assert "VXLAN · vni = 0x001000" in shown and "10.0.0.1 > 10.0.0.2" in shown
    assert "9001 - 50 = 8951" in shown
    ui.set(vni="1", endpoints="", underlay_mtu="1500")


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ({"vni": "16777216"}, "vni: '16777216' is not allowed; a whole number from 0 to 16777215"),
        ({"underlay_mtu": "100"}, "underlay_mtu: 100 is not allowed; at least 118: vxlan over ipv4 costs 50 bytes"),
        ({"endpoints": "10.0.0.1"}, "tunnel endpoints: '10.0.0.1' is not allowed; two addresses as SRC > DST"),
        ({"pods": "10.244.1.2 > fd00::2"}, "inner_dst: 'fd00::2' is not allowed; an IPv4 address"),
    ],
)
def test_bad_input_is_shown_in_place_and_the_last_packet_stays(ui, typed, message) -> None:
    ui.set(underlay="ipv4", payload="icmp", vni="1", endpoints="", pods="", underlay_mtu="1500")
    before = ui.visible()
    ui.set(**typed)
    assert ui.error is not None and ui.error.startswith(message)
    assert ui.visible() == before
    ui.set(vni="1", endpoints="", pods="", underlay_mtu="1500")
    assert ui.error is None


def test_nested_boxes_name_every_layer_with_its_size() -> None:
    built = tunneling.build("vxlan", *views.UNDERLAYS["ipv4"], *views.PODS[4])
    figure = views.draw_nested(built.wire, "vxlan")
    texts = texts_of(figure.markup)
    expected = ["outer Ethernet · 14 bytes", "outer IPv4 · 20 bytes", "UDP · 8 bytes", "VXLAN · 8 bytes",
                "inner Ethernet · 14 bytes", "inner IPv4 · 20 bytes", "ICMP · 8 bytes", "payload · 56 bytes"]
    assert [t for t in texts if " bytes" in t and "·" in t] == expected
    assert f"{len(bytes(built.wire))} bytes from here" in texts
    rects = list(ET.fromstring(figure.markup).iter(f"{SVG}rect"))
    for outer, inner in pairwise(rects):  # each box lies inside the one before
        ox, oy, ow, oh = (float(outer.get(k)) for k in ("x", "y", "width", "height"))
        ix, iy, iw, ih = (float(inner.get(k)) for k in ("x", "y", "width", "height"))
        assert ox < ix and oy < iy and ix + iw < ox + ow and iy + ih < oy + oh
    assert figure.markup == views.draw_nested(built.wire, "vxlan").markup


def test_vxlan_format_is_the_rfc_layout_from_the_models_bytes() -> None:
    texts = texts_of(views.vxlan_format().markup)
    for field, value in (("flags", "0x08 (Instance)"), ("reserved1", "0"), ("vni", "0x000001"), ("reserved2", "0x00")):
        assert field in texts and value in texts
    rects = {(r.get("x"), r.get("y"), r.get("width")) for r in ET.fromstring(views.vxlan_format().markup).iter(f"{SVG}rect")}
    assert len(rects) == 4  # flags 1 byte + reserved 3 bytes; VNI 3 bytes + reserved 1 byte
    widths = sorted(float(w) for _, _, w in rects)
    assert widths[0] * 3 == widths[2] and widths[1] == widths[0]


def test_hexdump_html_colours_each_field_by_layer() -> None:
    built = tunneling.build("vxlan", *views.UNDERLAYS["ipv4"], *views.PODS[4])
    markup = views.hexdump_html(built.wire)
    rows = re.findall(r'<span style="background:(#[0-9a-f]{6})" title="([^"]*)">', markup)
    assert len(rows) == len(packets.hexdump_rows(built.wire))
    by_label = {label: colour for colour, label in rows}
    assert by_label["VXLAN · vni = 0x000001"] == views.LAYER_COLOURS["VXLAN"]
    assert by_label["outer IPv4 · ttl = 64"] == by_label["inner IPv4 · ttl = 64"] == views.LAYER_COLOURS["IPv4"]


def test_pcap_link_holds_the_frame() -> None:
    built = tunneling.build("vxlan", *views.UNDERLAYS["ipv4"], *views.PODS[4])
    link = views.pcap_link(built.wire, "vxlan.pcap")
    data = base64.b64decode(re.search(r"base64,([A-Za-z0-9+/=]+)", link).group(1))
    assert data == packets.pcap_bytes([built.wire]) and bytes(built.wire) in data
    assert 'download="vxlan.pcap"' in link


def test_colour_of_labels() -> None:
    assert views.colour("outer IPv4") == views.colour("inner IPv4") == views.LAYER_COLOURS["IPv4"]
    assert views.colour("Geneve option 1") == views.LAYER_COLOURS["Geneve"]
    assert views.colour("SCTP") == views.OTHER_COLOUR
