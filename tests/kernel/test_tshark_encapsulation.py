"""Wireshark's dissectors read the model's tunnel frames as the model says they are.

For every encapsulation (VXLAN over IPv4 and IPv6, IPIP, GRE plain / key / sequence / checksum, gretap,
SIT, Geneve with an option) the frame goes to a pcap (labsupport.packets.write_pcap) and comes back
through `tshark -r FILE -T json` with IPv4/UDP/TCP checksum validation switched on. The VNI, GRE key
and sequence number, inner and outer addresses and ports, protocols, lengths and checksum statuses
must equal what the model built, and tshark must report no malformed packet and no expert warning.

tshark knows VXLAN on the IANA port 4789 only: Linux's default port 8472 is read as plain UDP data
unless the capture is decoded with `-d udp.port==8472,vxlan`, which is what these tests do (and one
test shows the difference). Runs in the kernel tier because that is where the real tools live; it
needs tshark (Debian package tshark), not root.
"""

from __future__ import annotations

import json
import subprocess

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import Ether

from labsupport import overlay, packets, tunneling

A, B = "192.168.56.10", "192.168.56.11"
A6, B6 = "fd00:56::10", "fd00:56::11"
NODE_1, NODE_2 = "02:00:00:00:00:0a", "02:00:00:00:00:0b"
POD_A, POD_B = "0a:58:0a:f4:01:02", "0a:58:0a:f4:02:02"
PI_WARN = 0x00600000  # epan/proto.h: PI_WARN; PI_ERROR is 0x00800000


def pod_frame(payload: str = "icmp") -> Ether:
    ip = IP(src="10.244.1.2", dst="10.244.2.2", id=0, flags="DF")
    if payload == "icmp":
        body = ip / ICMP(type=8, id=1, seq=1) / bytes(56)
    elif payload == "udp":
        body = ip / UDP(sport=40000, dport=5000) / b"hello"
    else:
        body = ip / TCP(sport=40000, dport=8080, flags="S", seq=1)
    return Ether(src=POD_A, dst=POD_B) / body


def _pairs(pairs):
    """json.loads hook: tshark repeats keys (two "ip" layers in IPIP); keep every value, in order."""
    out: dict = {}
    for key, value in pairs:
        out.setdefault(key, []).append(value)
    return out


def tshark(path, *extra: str) -> list[dict]:
    run = subprocess.run(
        ["tshark", "-r", str(path), "-T", "json", "-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE",
         "-o", "tcp.check_checksum:TRUE", *extra],
        capture_output=True, text=True, check=False, timeout=120,
    )
    assert run.returncode == 0, run.stderr
    return [p["_source"][0]["layers"][0] for p in json.loads(run.stdout, object_pairs_hook=_pairs)]


def one(layer: dict, key: str) -> str:
    (value,) = layer[key]
    return value


def walk(node, found: list[tuple[str, object]]) -> list[tuple[str, object]]:
    if isinstance(node, dict):
        for key, values in node.items():
            for value in values:
                found.append((key, value))
                walk(value, found)
    elif isinstance(node, list):
        for value in node:
            walk(value, found)
    return found


def assert_clean(layers: dict) -> None:
    """No malformed packet, no expert info at warning level or above, no bad checksum."""
    found = walk(layers, [])
    assert not [k for k, _ in found if k.startswith("_ws.malformed")], layers.keys()
    severities = [int(v) for k, v in found if k == "_ws.expert.severity"]
    assert all(s < PI_WARN for s in severities), [v for k, v in found if k == "_ws.expert.message"]
    statuses = [v for k, v in found if k.endswith("checksum.status")]
    assert statuses and "0" not in statuses  # 1 = good, 2 = unverified (a zero UDP checksum)


def save(tmp_path, frame) -> tuple:
    path = tmp_path / "frame.pcap"
    packets.write_pcap(path, [frame])
    return path


@pytest.fixture(autouse=True)
def _tshark(requires_tools) -> None:
    requires_tools(("tshark", "tshark"))


def assert_inner(layers: dict, frame: Ether, index: int = 1) -> None:
    """The inner Ethernet, IPv4 and payload headers are the pod's."""
    inner_eth = layers["eth"][index]
    assert (one(inner_eth, "eth.src"), one(inner_eth, "eth.dst")) == (frame.src, frame.dst)
    inner_ip = layers["ip"][-1]
    assert (one(inner_ip, "ip.src"), one(inner_ip, "ip.dst")) == (frame[IP].src, frame[IP].dst)
    assert int(one(inner_ip, "ip.len")) == len(bytes(frame[IP]))


@pytest.mark.parametrize("payload", ["icmp", "udp", "tcp"])
@pytest.mark.parametrize("outer", [(A, B), (A6, B6)], ids=["ipv4-underlay", "ipv6-underlay"])
def test_vxlan(tmp_path, outer, payload) -> None:
    frame = pod_frame(payload)
    packet = overlay.vxlan_packet(frame, *outer, vni=0x123456)
    wire = packets.ethernet(packet, NODE_1, NODE_2)
    (layers,) = tshark(save(tmp_path, wire), "-d", "udp.port==8472,vxlan")
    proto = {"icmp": "icmp:data", "udp": "udp:data", "tcp": "tcp"}[payload]
    l3 = "ip" if outer[0] == A else "ipv6"
    assert one(layers["frame"][0], "frame.protocols") == f"eth:ethertype:{l3}:udp:vxlan:eth:ethertype:ip:{proto}"
    assert int(one(layers["frame"][0], "frame.len")) == len(bytes(wire))
    vxlan = layers["vxlan"][0]
    assert (one(vxlan, "vxlan.flags"), one(vxlan, "vxlan.vni")) == ("0x0800", str(0x123456))
    udp = layers["udp"][0]
    assert int(one(udp, "udp.srcport")) == packet[UDP].sport == overlay.flow_source_port(frame)
    assert int(one(udp, "udp.dstport")) == 8472
    assert int(one(udp, "udp.length")) == len(bytes(frame)) + 16
    assert one(udp, "udp.checksum.status") == "1"  # present and correct, as the kernel's `udpcsum` default sends it
    if l3 == "ip":
        ip = layers["ip"][0]
        assert (one(ip, "ip.src"), one(ip, "ip.dst"), one(ip, "ip.proto"), one(ip, "ip.ttl")) == (A, B, "17", "64")
        assert one(ip, "ip.flags_tree")["ip.flags.df"] == ["0"]
        assert int(one(ip, "ip.len")) - len(bytes(frame[IP])) == overlay.overhead("vxlan", "ipv4") == 50
    else:
        ip6 = layers["ipv6"][0]
        assert (one(ip6, "ipv6.src"), one(ip6, "ipv6.dst"), one(ip6, "ipv6.nxt"), one(ip6, "ipv6.hlim")) == (A6, B6, "17", "64")
        assert 40 + int(one(ip6, "ipv6.plen")) - len(bytes(frame[IP])) == overlay.overhead("vxlan", "ipv6") == 70
    assert_inner(layers, frame)
    if payload != "icmp":
        inner_l4, model = layers[payload][-1], frame[UDP if payload == "udp" else TCP]
        assert (int(one(inner_l4, f"{payload}.srcport")), int(one(inner_l4, f"{payload}.dstport"))) == (model.sport, model.dport)
    assert_clean(layers)


def test_vxlan_header_bytes_for_vni_1(tmp_path) -> None:
    wire = packets.ethernet(overlay.vxlan_packet(pod_frame(), A, B), NODE_1, NODE_2)
    (layers,) = tshark(save(tmp_path, wire), "-d", "udp.port==8472,vxlan", "-x")
    header, offset, length = one(layers, "vxlan_raw")[:3]  # tshark -x: the bytes its VXLAN dissector read
    assert (header, offset, length) == ("0800000000000100", 14 + 20 + 8, 8)
    assert bytes(wire)[offset:offset + length] == bytes.fromhex(header)


def test_tshark_reads_8472_as_vxlan_only_when_told_but_4789_always(tmp_path) -> None:
    linux = packets.ethernet(overlay.vxlan_packet(pod_frame(), A, B), NODE_1, NODE_2)
    (plain,) = tshark(save(tmp_path, linux))
    assert "vxlan" not in plain and one(plain["frame"][0], "frame.protocols") == "eth:ethertype:ip:udp:data"
    iana = packets.ethernet(overlay.vxlan_packet(pod_frame(), A, B, dstport=overlay.IANA_VXLAN_PORT), NODE_1, NODE_2)
    (layers,) = tshark(save(tmp_path, iana))
    assert one(layers["vxlan"][0], "vxlan.vni") == "1"


def test_ipip(tmp_path) -> None:
    frame = pod_frame()
    packet = tunneling.ipip_packet(frame[IP], A, B)
    (layers,) = tshark(save(tmp_path, packets.ethernet(packet, NODE_1, NODE_2)))
    assert one(layers["frame"][0], "frame.protocols") == "eth:ethertype:ip:ip:icmp:data"
    outer, inner = layers["ip"]
    assert (one(outer, "ip.src"), one(outer, "ip.dst"), one(outer, "ip.proto")) == (A, B, "4")
    assert one(outer, "ip.flags_tree")["ip.flags.df"] == ["1"]
    assert int(one(outer, "ip.len")) - int(one(inner, "ip.len")) == tunneling.overhead("ipip") == 20
    assert (one(inner, "ip.src"), one(inner, "ip.dst")) == ("10.244.1.2", "10.244.2.2")
    assert_clean(layers)


GRE_CASES = {
    "plain": {},
    "key": {"key": 0xDEADBEEF},
    "seq": {"seq": 4242},
    "csum": {"checksum": True},
    "all": {"key": 7, "seq": 1, "checksum": True},
}


@pytest.mark.parametrize("case", GRE_CASES)
def test_gre(tmp_path, case) -> None:
    options = GRE_CASES[case]
    frame = pod_frame("udp")
    packet = tunneling.gre_packet(frame[IP], A, B, **options)
    (layers,) = tshark(save(tmp_path, packets.ethernet(packet, NODE_1, NODE_2)))
    assert one(layers["frame"][0], "frame.protocols") == "eth:ethertype:ip:gre:ip:udp:data"
    gre = layers["gre"][0]
    flags = one(gre, "gre.flags_and_version_tree")
    assert one(gre, "gre.proto") == "0x0800"
    assert flags["gre.flags.checksum"] == ["1" if options.get("checksum") else "0"]
    assert flags["gre.flags.key"] == ["1" if "key" in options else "0"]
    assert flags["gre.flags.sequence_number"] == ["1" if "seq" in options else "0"]
    if "key" in options:
        assert int(one(gre, "gre.key"), 16) == options["key"]
    if "seq" in options:
        assert int(one(gre, "gre.sequence_number")) == options["seq"]
    if options.get("checksum"):
        assert one(gre, "gre.checksum.status") == "1"
    outer, inner = layers["ip"]
    assert one(outer, "ip.proto") == "47"
    overhead = tunneling.overhead("gre", key="key" in options, seq="seq" in options, checksum=bool(options.get("checksum")))
    assert int(one(outer, "ip.len")) - int(one(inner, "ip.len")) == overhead
    assert (one(layers["udp"][0], "udp.srcport"), one(layers["udp"][0], "udp.dstport")) == ("40000", "5000")
    assert_clean(layers)


def test_gretap_carries_the_ethernet_frame(tmp_path) -> None:
    frame = pod_frame()
    packet = tunneling.gre_packet(frame, A, B, key=100)
    (layers,) = tshark(save(tmp_path, packets.ethernet(packet, NODE_1, NODE_2)))
    assert one(layers["frame"][0], "frame.protocols") == "eth:ethertype:ip:gre:eth:ethertype:ip:icmp:data"
    assert one(layers["gre"][0], "gre.proto") == "0x6558" and int(one(layers["gre"][0], "gre.key"), 16) == 100
    outer, inner = layers["ip"]
    assert int(one(outer, "ip.len")) - int(one(inner, "ip.len")) == tunneling.overhead("gretap", key=True) == 42
    assert_inner(layers, frame)
    assert_clean(layers)


def test_gre_over_ipv6_carrying_ipv6(tmp_path) -> None:
    inner = IPv6(src="fd00:10:244:1::2", dst="fd00:10:244:2::2") / UDP(sport=40000, dport=5000) / b"hello"
    packet = tunneling.gre_packet(inner, A6, B6, key=1)
    (layers,) = tshark(save(tmp_path, packets.ethernet(packet, NODE_1, NODE_2)))
    assert one(layers["frame"][0], "frame.protocols") == "eth:ethertype:ipv6:gre:ipv6:udp:data"
    assert one(layers["gre"][0], "gre.proto") == "0x86dd"
    outer, inner6 = layers["ipv6"]
    assert int(one(outer, "ipv6.plen")) + 40 - (int(one(inner6, "ipv6.plen")) + 40) == tunneling.overhead("gre", "ipv6", key=True)
    assert one(inner6, "ipv6.dst") == "fd00:10:244:2::2"
    assert_clean(layers)


def test_sit(tmp_path) -> None:
    inner = IPv6(src="fd00:10:244:1::2", dst="fd00:10:244:2::2") / ICMPv6EchoRequest(id=1, seq=1, data=b"ping")
    packet = tunneling.sit_packet(inner, A, B)
    (layers,) = tshark(save(tmp_path, packets.ethernet(packet, NODE_1, NODE_2)))
    assert one(layers["frame"][0], "frame.protocols") == "eth:ethertype:ip:ipv6:icmpv6:data"
    ip = layers["ip"][0]
    assert (one(ip, "ip.proto"), one(ip, "ip.src"), one(ip, "ip.dst")) == ("41", A, B)
    ip6 = layers["ipv6"][0]
    assert (one(ip6, "ipv6.src"), one(ip6, "ipv6.dst")) == ("fd00:10:244:1::2", "fd00:10:244:2::2")
    assert int(one(ip, "ip.len")) - (40 + int(one(ip6, "ipv6.plen"))) == tunneling.overhead("sit") == 20
    assert_clean(layers)


def test_geneve_with_an_option(tmp_path) -> None:
    frame = pod_frame("udp")
    option = tunneling.GeneveOption(0x0100, 0x01, b"\x00\x00\x00\x2a\x00\x00\x00\x07")
    packet = tunneling.geneve_packet(frame, A, B, vni=4096, options=(option,))
    (layers,) = tshark(save(tmp_path, packets.ethernet(packet, NODE_1, NODE_2)))
    assert one(layers["frame"][0], "frame.protocols") == "eth:ethertype:ip:udp:geneve:eth:ethertype:ip:udp:data"
    geneve = layers["geneve"][0]
    assert int(one(geneve, "geneve.vni"), 16) == 4096 and one(geneve, "geneve.proto_type") == "0x6558"
    assert int(one(geneve, "geneve.option.length")) == 12  # tshark counts the option bytes: 4 header + 8 data
    parsed = one(one(one(geneve, "geneve.options_tree"), "geneve.option_tree"), "geneve.option.class")
    assert parsed == "0x0100"
    assert int(one(layers["udp"][0], "udp.dstport")) == tunneling.GENEVE_PORT
    outer = layers["ip"][0]
    assert int(one(outer, "ip.len")) - len(bytes(frame[IP])) == tunneling.overhead("geneve", options=12) == 62
    assert_inner(layers, frame)
    assert_clean(layers)


def test_raw_ip_pcaps_open_too(tmp_path) -> None:
    path = tmp_path / "raw.pcap"
    packets.write_pcap(path, [overlay.vxlan_packet(pod_frame(), A6, B6), overlay.vxlan_packet(pod_frame("udp"), A6, B6)])
    captured = tshark(path, "-d", "udp.port==8472,vxlan")
    assert [one(p["frame"][0], "frame.protocols") for p in captured] == [
        "raw:ipv6:udp:vxlan:eth:ethertype:ip:icmp:data", "raw:ipv6:udp:vxlan:eth:ethertype:ip:udp:data"]
    assert [float(one(p["frame"][0], "frame.time_epoch")) for p in captured] == [packets.PCAP_EPOCH, packets.PCAP_EPOCH + 0.001]
