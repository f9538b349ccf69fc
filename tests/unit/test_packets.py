"""labsupport.packets: byte-range annotation, the annotated hexdump, layered summaries, pcaps.

The byte offsets asserted here are the header layouts of the RFCs (IPv4 RFC 791: TTL at byte 8 of
the header; UDP RFC 768: 8 bytes; VXLAN RFC 7348 §5: VNI in bytes 4-6 of its header; GRE RFC 2784 /
RFC 2890: checksum, key, sequence in that order) and pcap's link types (1 Ethernet, 101 raw IP,
from tcpdump's pcap-linktype list). tests/kernel/test_tshark_encapsulation.py has tshark read the
same frames.
"""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, UDP, IPOption_RR
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import Dot1Q, Ether
from scapy.utils import PcapReader, rdpcap

from labsupport import overlay, packets, tunneling
from labsupport.errors import LabInputError

A, B = "192.168.56.10", "192.168.56.11"
NODE_1, NODE_2 = "02:00:00:00:00:0a", "02:00:00:00:00:0b"


def pod_frame(payload: bytes = bytes(56), udp: bool = False) -> Ether:
    ip = IP(src="10.244.1.2", dst="10.244.2.2", id=0, flags="DF")
    l4 = UDP(sport=40000, dport=53) if udp else ICMP(type=8, id=1, seq=1)
    return Ether(src="0a:58:0a:f4:01:02", dst="0a:58:0a:f4:02:02") / ip / l4 / payload


def vxlan_on_wire(**kwargs) -> Ether:
    return packets.ethernet(overlay.vxlan_packet(pod_frame(**kwargs), A, B), NODE_1, NODE_2)


def assert_covers(frame) -> list[packets.ByteRange]:
    ranges = packets.annotate(frame)
    assert ranges[0].start == 0 and ranges[-1].end == len(bytes(frame))
    assert all(r.start < r.end for r in ranges)
    for before, after in pairwise(ranges):
        assert before.end == after.start
    return ranges


SAMPLES = {
    "vxlan": lambda: vxlan_on_wire(),
    "vxlan6": lambda: overlay.vxlan_packet(pod_frame(), "fd00::10", "fd00::11"),
    "ipip": lambda: tunneling.ipip_packet(pod_frame()[IP], A, B),
    "gre": lambda: tunneling.gre_packet(pod_frame()[IP], A, B, key=1, seq=2, checksum=True),
    "gretap": lambda: tunneling.gre_packet(pod_frame(), A, B, key=9),
    "sit": lambda: tunneling.sit_packet(IPv6(src="fd00::1", dst="fd00::2") / ICMPv6EchoRequest(), A, B),
    "geneve": lambda: tunneling.geneve_packet(pod_frame(), A, B, options=(tunneling.GeneveOption(0x0100, 1, b"abcdefgh"),)),
    "ip options": lambda: IP(options=[IPOption_RR()]) / UDP(),
    "vlan": lambda: Ether() / Dot1Q(vlan=7) / IP() / UDP(),
    "padding": lambda: Ether(bytes(Ether() / IP() / UDP()) + bytes(18)),
}


@pytest.mark.parametrize("name", SAMPLES)
def test_every_byte_is_annotated_exactly_once(name) -> None:
    ranges = assert_covers(SAMPLES[name]())
    assert all(r.layer and r.field and r.value for r in ranges)


def test_vxlan_frame_layers_are_labelled_with_their_nesting() -> None:
    ranges = packets.annotate(vxlan_on_wire())
    layers = list(dict.fromkeys(r.layer for r in ranges))
    assert layers == ["outer Ethernet", "outer IPv4", "UDP", "VXLAN", "inner Ethernet", "inner IPv4", "ICMP", "payload"]
    by_label = {(r.layer, r.field): r for r in ranges}
    ttl = by_label[("outer IPv4", "ttl")]
    assert (ttl.start, ttl.end, ttl.value, ttl.label) == (14 + 8, 14 + 9, "64", "outer IPv4 · ttl = 64")
    vni = by_label[("VXLAN", "vni")]
    assert (vni.start, vni.end) == (14 + 20 + 8 + 4, 14 + 20 + 8 + 7)
    assert bytes(vxlan_on_wire())[vni.start:vni.end] == b"\x00\x00\x01"
    assert by_label[("outer IPv4", "proto")].value == "17 (udp)"


def test_a_protocol_on_both_sides_of_the_tunnel_is_marked_outer_and_inner() -> None:
    ranges = packets.annotate(vxlan_on_wire(udp=True))
    assert {"outer UDP", "inner UDP"} <= {r.layer for r in ranges}
    assert [*dict.fromkeys(r.layer for r in packets.annotate(SAMPLES["ipip"]()))][:2] == ["outer IPv4", "inner IPv4"]
    assert [*dict.fromkeys(r.layer for r in packets.annotate(SAMPLES["sit"]()))][:2] == ["outer IPv4", "inner IPv6"]
    assert [*dict.fromkeys(r.layer for r in packets.annotate(pod_frame()))][:2] == ["Ethernet", "IPv4"]


def test_gre_optional_fields_and_geneve_options_are_labelled() -> None:
    gre = {r.field: r for r in packets.annotate(SAMPLES["gre"]()) if r.layer == "GRE"}
    assert [gre[f].start for f in ("chksum", "key", "sequence_number")] == [24, 28, 32]
    assert gre["key"].value == "0x00000001"
    geneve = packets.annotate(SAMPLES["geneve"]())
    option = [r for r in geneve if r.layer == "Geneve option 1"]
    assert [r.field for r in option] == ["classid", "type", "reserved/length", "data"]
    assert option[0].start == 20 + 8 + 8


def test_hexdump_shows_every_byte_once_with_its_label() -> None:
    frame = vxlan_on_wire()
    dump = packets.hexdump(frame)
    hexes = "".join(line[6:6 + 47].replace(" ", "") for line in dump.splitlines())
    assert bytes.fromhex(hexes) == bytes(frame)
    assert "outer IPv4 · ttl = 64" in dump and "VXLAN · vni = 0x000001" in dump
    first = dump.splitlines()[0]
    assert first.startswith("0000  " + NODE_2.replace(":", " ")) and first.endswith(f"outer Ethernet · dst = {NODE_2}")


def test_layered_summary_has_one_indented_line_per_layer() -> None:
    lines = packets.layered_summary(vxlan_on_wire()).splitlines()
    assert len(lines) == 8
    assert [len(line) - len(line.lstrip()) for line in lines] == [0, 2, 4, 6, 8, 10, 12, 14]
    assert lines[2].strip().startswith("UDP ") and lines[2].endswith("> 8472, length 114")
    assert lines[3].strip() == "VXLAN flags 0x08, vni 1"
    assert "key 0x1, seq 2, checksum" in packets.layered_summary(SAMPLES["gre"]())


def test_write_pcap_is_deterministic_and_reads_back(tmp_path) -> None:
    frames = [vxlan_on_wire(), vxlan_on_wire(udp=True)]
    first, second = tmp_path / "a.pcap", tmp_path / "b.pcap"
    packets.write_pcap(first, frames)
    packets.write_pcap(second, frames)
    assert first.read_bytes() == second.read_bytes()
    back = rdpcap(str(first))
    assert [bytes(p) for p in back] == [bytes(f) for f in frames]
    assert [float(p.time) for p in back] == [packets.PCAP_EPOCH, packets.PCAP_EPOCH + 0.001]
    with PcapReader(str(first)) as reader:
        assert reader.linktype == 1
    raw = tmp_path / "raw.pcap"
    packets.write_pcap(raw, [SAMPLES["ipip"](), SAMPLES["vxlan6"]()])
    with PcapReader(str(raw)) as reader:
        assert reader.linktype == 101
    with pytest.raises(LabInputError, match="frames"):
        packets.write_pcap(raw, [vxlan_on_wire(), SAMPLES["ipip"]()])
    with pytest.raises(LabInputError, match="frames"):
        packets.write_pcap(raw, [])


@settings(max_examples=40, deadline=None)
@given(
    payload=st.binary(max_size=64),
    vni=st.integers(0, 2**24 - 1),
    kind=st.sampled_from(["vxlan", "gre", "geneve", "ipip"]),
    udp=st.booleans(),
)
def test_annotation_covers_any_payload(payload, vni, kind, udp) -> None:
    inner = pod_frame(payload, udp=udp)
    packet = {
        "vxlan": lambda: overlay.vxlan_packet(inner, A, B, vni=vni),
        "gre": lambda: tunneling.gre_packet(inner, A, B, key=vni, seq=vni),
        "geneve": lambda: tunneling.geneve_packet(inner, A, B, vni=vni),
        "ipip": lambda: tunneling.ipip_packet(inner[IP], A, B),
    }[kind]()
    assert_covers(packets.ethernet(packet, NODE_1, NODE_2))


def test_layer_sizes_add_up_to_the_frame_options_with_their_header() -> None:
    frame = vxlan_on_wire()
    assert packets.layer_sizes(frame) == [
        ("outer Ethernet", 14), ("outer IPv4", 20), ("UDP", 8), ("VXLAN", 8), ("inner Ethernet", 14),
        ("inner IPv4", 20), ("ICMP", 8), ("payload", 56),
    ]  # RFC 7348's outer headers, then the pod's 84-byte ping
    geneve = packets.layer_sizes(SAMPLES["geneve"]())
    assert ("Geneve", 8 + 12) in geneve  # RFC 8926: 8-byte header + a 4-byte option header and 8 bytes of data
    assert sum(size for _, size in geneve) == len(bytes(SAMPLES["geneve"]()))


@pytest.mark.parametrize("view", [packets.annotate, packets.hexdump, packets.layered_summary, packets.layer_sizes])
@pytest.mark.parametrize("not_a_packet", [b"\x45\x00", "Ether()", None, 42])
def test_views_refuse_what_is_not_a_packet(view, not_a_packet) -> None:
    with pytest.raises(LabInputError) as excinfo:
        view(not_a_packet)
    assert excinfo.value.field == "frame" and excinfo.value.value == type(not_a_packet).__name__
