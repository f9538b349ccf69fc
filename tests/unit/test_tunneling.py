"""labsupport.tunneling: IPIP, GRE, gretap, SIT and Geneve packets, their overheads, what they carry.

Expected values come from the RFCs' header definitions: IPIP protocol 4 with the inner packet unchanged
(RFC 2003 §3), GRE protocol 47 with the C/K/S bits and optional fields in the order checksum +
reserved1, key, sequence number, each 4 bytes (RFC 2784 §2, RFC 2890 §2), protocol types 0x0800,
0x86DD and 0x6558 (IEEE EtherTypes; 0x6558 Transparent Ethernet Bridging), SIT protocol 41 (RFC 4213
§3.5), Geneve on UDP 6081 with Opt Len in 4-byte words and protocol type 0x6558 for Ethernet (RFC 8926
§3.4); overheads are measured on the bytes scapy builds, and tests/kernel/test_tshark_encapsulation.py
has Wireshark's dissectors read the same frames. Linux tunnel devices default to `pmtudisc` (DF set
on the outer header): `ipip6_netlink_parms()` / `ipip_netlink_parms()` set `frag_off = htons(IP_DF)`
unless `nopmtudisc` is given. This machine's kernel has no ipip, gre or sit module, so those are not
compared with a live device here.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import GRE, Ether

from labsupport import overlay, tunneling
from labsupport.errors import LabInputError

A, B = "192.168.56.10", "192.168.56.11"


def inner_ip() -> IP:
    return IP(src="10.244.1.2", dst="10.244.2.2", id=0, flags="DF") / ICMP(type=8, id=1, seq=1) / bytes(56)


def inner_ipv6() -> IPv6:
    return IPv6(src="fd00:10:244:1::2", dst="fd00:10:244:2::2") / UDP(sport=40000, dport=53) / b"query"


def frame() -> Ether:
    return Ether(src="0a:58:0a:f4:01:02", dst="0a:58:0a:f4:02:02") / inner_ip()


def added(packet, inner) -> int:
    return len(bytes(packet)) - len(bytes(inner))


def test_ipip_is_protocol_4_and_adds_20_bytes() -> None:
    inner = inner_ip()
    packet = tunneling.ipip_packet(inner, A, B)
    assert packet.proto == 4 and bytes(packet)[20:] == bytes(inner)  # the inner packet is unchanged
    assert (packet.ttl, packet.tos, str(packet.flags), packet.id) == (64, 0, "DF", 0)
    assert added(packet, inner) == tunneling.overhead("ipip") == 20
    assert str(tunneling.ipip_packet(inner, A, B, df=False).flags) == ""


def test_ipip_refuses_ipv6_inner_packets_and_ipv6_endpoints() -> None:
    with pytest.raises(LabInputError) as error:
        tunneling.ipip_packet(inner_ipv6(), A, B)
    assert error.value.field == "inner_ip" and "IPv4 only" in error.value.allowed
    with pytest.raises(LabInputError, match="outer_src"):
        tunneling.ipip_packet(inner_ip(), "fd00::1", "fd00::2")
    with pytest.raises(LabInputError, match="inner_ip"):
        tunneling.ipip_packet(frame(), A, B)


@pytest.mark.parametrize(
    ("options", "header_hex", "size"),
    [
        ({}, "00000800", 4),
        ({"key": 0x01020304}, "2000080001020304", 8),
        ({"seq": 7}, "1000080000000007", 8),
        ({"key": 5, "seq": 7}, "300008000000000500000007", 12),
        ({"checksum": True, "key": 5, "seq": 7}, None, 16),
    ],
)
def test_gre_header_bits_and_optional_fields(options, header_hex, size) -> None:
    inner = inner_ip()
    packet = tunneling.gre_packet(inner, A, B, **options)
    header = bytes(packet)[20:20 + size]
    assert packet.proto == 47 and bytes(packet)[20 + size:] == bytes(inner)
    if header_hex:
        assert header == bytes.fromhex(header_hex)
    else:
        assert header[0] == 0xB0 and header[2:4] == b"\x08\x00" and header[6:8] == b"\x00\x00"  # C K S; reserved1
        assert GRE(bytes(packet)[20:]).chksum != 0
    assert added(packet, inner) == tunneling.overhead("gre", **{k: bool(v) for k, v in options.items()}) == 20 + size


def test_gre_checksum_covers_header_and_payload() -> None:
    from scapy.utils import checksum

    packet = tunneling.gre_packet(inner_ip(), A, B, checksum=True)
    assert checksum(bytes(packet)[20:]) == 0  # RFC 2784: ones' complement over GRE header and payload


def test_gre_carries_ipv6_and_ethernet_with_the_right_protocol_type() -> None:
    six = tunneling.gre_packet(inner_ipv6(), A, B)
    assert six[GRE].proto == 0x86DD and six[IPv6].dst == "fd00:10:244:2::2"
    tap = tunneling.gre_packet(frame(), A, B, key=42)
    assert tap[GRE].proto == 0x6558 and tap[GRE].key == 42
    assert added(tap, frame()[IP]) == tunneling.overhead("gretap", key=True) == 20 + 8 + 14
    over6 = tunneling.gre_packet(inner_ip(), "fd00::10", "fd00::11")
    assert isinstance(over6, IPv6) and over6.nh == 47 and added(over6, inner_ip()) == tunneling.overhead("gre", "ipv6")
    multicast = IP(src="10.244.1.2", dst="224.0.0.5", proto=89) / b"ospf hello"
    assert tunneling.decapsulate(tunneling.gre_packet(multicast, A, B)).inner.dst == "224.0.0.5"
    with pytest.raises(LabInputError, match="key"):
        tunneling.gre_packet(inner_ip(), A, B, key=2**32)
    with pytest.raises(LabInputError, match="inner"):
        tunneling.gre_packet(b"raw", A, B)


def test_sit_carries_ipv6_over_ipv4_only() -> None:
    inner = inner_ipv6()
    packet = tunneling.sit_packet(inner, A, B)
    assert packet.proto == 41 and bytes(packet)[20:] == bytes(inner)
    assert added(packet, inner) == tunneling.overhead("sit") == 20
    assert overlay.pod_mtu(1500, "sit") == 1480  # RFC 4213's IPv6 MTU over a 1500-byte IPv4 link
    with pytest.raises(LabInputError, match="inner"):
        tunneling.sit_packet(inner_ip(), A, B)
    with pytest.raises(LabInputError, match="outer_src"):
        tunneling.sit_packet(inner, "fd00::1", "fd00::2")
    with pytest.raises(LabInputError, match="underlay"):
        tunneling.overhead("sit", "ipv6")


def test_geneve_header_options_and_overhead() -> None:
    option = tunneling.GeneveOption(0x0102, 0x80, b"\x00\x00\x00\x2a")
    packet = tunneling.geneve_packet(frame(), A, B, vni=0x123456, options=(option,))
    udp = bytes(packet)[20:]
    assert packet[UDP].dport == tunneling.GENEVE_PORT == 6081
    # Ver 0, Opt Len 2 words; flags 0; protocol 0x6558; VNI; reserved; then class, type, length 1 word, data
    assert udp[8:16] == bytes.fromhex("0200655812345600")
    assert udp[16:24] == bytes.fromhex("010280010000002a")
    assert added(packet, frame()[IP]) == tunneling.overhead("geneve", options=8) == 58
    assert tunneling.overhead("geneve") == 50
    assert packet[UDP].chksum == 0
    too_many = tuple(tunneling.GeneveOption(1, 1, bytes(124)) for _ in range(3))
    with pytest.raises(LabInputError, match="252"):
        tunneling.geneve_packet(frame(), A, B, options=too_many)
    with pytest.raises(LabInputError, match="vni"):
        tunneling.geneve_packet(frame(), A, B, vni=-1)


def test_overhead_table_and_its_errors() -> None:
    assert [tunneling.overhead(n) for n in tunneling.NAMES] == [0, 50, 20, 24, 38, 20, 50]
    assert tunneling.overhead("gretap", inner_vlan=True) == 42
    assert tunneling.overhead("vxlan", "ipv6") == overlay.overhead("vxlan", "ipv6") == 70
    with pytest.raises(LabInputError, match="encapsulation"):
        tunneling.overhead("wireguard")
    with pytest.raises(LabInputError, match="inner_vlan"):
        tunneling.overhead("ipip", inner_vlan=True)
    with pytest.raises(LabInputError, match="encapsulation"):
        tunneling.overhead("ipip", key=True)
    with pytest.raises(LabInputError, match="options"):
        tunneling.overhead("geneve", options=6)


@settings(max_examples=50, deadline=None)
@given(
    kind=st.sampled_from(["ipip", "gre", "gretap", "sit", "geneve", "vxlan"]),
    key=st.none() | st.integers(0, 2**32 - 1),
    seq=st.none() | st.integers(0, 2**32 - 1),
    checksum=st.booleans(),
    vni=st.integers(0, 2**24 - 1),
)
def test_round_trip_build_then_decapsulate(kind, key, seq, checksum, vni) -> None:
    if kind == "ipip":
        inner, packet = inner_ip(), tunneling.ipip_packet(inner_ip(), A, B)
    elif kind == "sit":
        inner, packet = inner_ipv6(), tunneling.sit_packet(inner_ipv6(), A, B)
    elif kind in ("gre", "gretap"):
        inner = frame() if kind == "gretap" else inner_ip()
        packet = tunneling.gre_packet(inner, A, B, key=key, seq=seq, checksum=checksum)
    elif kind == "geneve":
        inner, packet = frame(), tunneling.geneve_packet(frame(), A, B, vni=vni)
    else:
        inner, packet = frame(), overlay.vxlan_packet(frame(), A, B, vni=vni)
    captured = Ether(bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / packet))
    got = tunneling.decapsulate(captured)
    assert got.kind == kind and (got.outer_src, got.outer_dst) == (A, B)
    assert bytes(got.inner) == bytes(inner)
    if kind in ("gre", "gretap"):
        assert (got.key, got.seq, got.checksum) == (key, seq, checksum)
    if kind in ("geneve", "vxlan"):
        assert got.vni == vni


def test_decapsulate_refuses_what_is_not_a_tunnel() -> None:
    with pytest.raises(LabInputError, match="IP protocol 1"):
        tunneling.decapsulate(inner_ip())
    with pytest.raises(LabInputError, match="packet"):
        tunneling.decapsulate(b"bytes")


@pytest.mark.parametrize(
    ("packet", "said"),
    [
        (IP(proto=47) / b"\x00", "1 bytes of GRE"),
        (IP(proto=47) / bytes.fromhex("00006558") / b"\x00\x00", "2 bytes of inner Ethernet"),
        (IP(proto=47) / bytes.fromhex("20000800000000"), "7 bytes of GRE"),  # K set, key cut short
        (IP(proto=47) / bytes.fromhex("000108004500"), "GRE flags 0x00, version 1"),  # PPTP's enhanced GRE
        (IP(proto=47) / bytes.fromhex("00008137"), "GRE protocol type 0x8137"),
        (IP(proto=17) / b"\x17\xc1\x17", "3 bytes of UDP"),
        (IP(proto=17) / UDP(sport=40000, dport=6081) / b"\x02\x00", "2 bytes of Geneve"),
        (IP(proto=17) / UDP(sport=40000, dport=6081) / bytes.fromhex("0100655800000100"), "8 bytes of Geneve"),
        (IP(proto=17) / UDP(sport=40000, dport=6081) / bytes.fromhex("4000655800000100"), "Geneve version 1"),
        (IP(proto=41) / b"junk", "4 bytes of inner IPv6"),
        (IP(proto=41) / bytes(40), "IP version 0 in the inner IPv6 packet"),
        (IP(proto=4) / bytes.fromhex("4500001e") / bytes(16), "total length 30"),
        (IP(proto=17) / UDP(sport=40000, dport=53) / bytes(30), "UDP port 53"),
        (IP(proto=17) / UDP(sport=40000, dport=8472) / bytes.fromhex("08000000000001000000"), "10 bytes of UDP payload"),
        (IP(proto=17) / UDP(sport=40000, dport=8472) / bytes.fromhex("8c00000000000100") / bytes(14),
         "VXLAN header 8c00000000000100"),  # the G (group policy) flag: scapy reads a different layout
        (IP(proto=17) / UDP(sport=40000, dport=4789) / bytes.fromhex("0800000000000101") / bytes(14),
         "VXLAN header 0800000000000101"),  # a reserved bit set
        (IP(proto=4, flags="MF") / inner_ip(), "an IPv4 fragment (offset 0)"),
    ],
)
def test_decapsulate_refuses_short_and_malformed_packets_with_the_one_error(packet, said) -> None:
    with pytest.raises(LabInputError) as error:
        tunneling.decapsulate(IP(bytes(packet)))
    assert error.value.field == "packet" and said in str(error.value.value)


def test_vxlan_is_read_on_linux_iana_and_weave_fast_datapath_ports_only() -> None:
    from labsupport.cni import WEAVE_FASTDP_PORT

    assert set(tunneling.vxlan_ports()) == {overlay.LINUX_VXLAN_PORT, overlay.IANA_VXLAN_PORT, WEAVE_FASTDP_PORT}
    for port in tunneling.vxlan_ports():
        got = tunneling.decapsulate(IP(bytes(overlay.vxlan_packet(frame(), A, B, vni=7, dstport=port))))
        assert (got.kind, got.vni, bytes(got.inner)) == ("vxlan", 7, bytes(frame()))
    with pytest.raises(LabInputError) as error:
        tunneling.decapsulate(overlay.vxlan_packet(frame(), A, B, dstport=4790))
    assert error.value.value == "UDP port 4790" and "8472 (Linux), 4789 (IANA), 6784 (Weave fast datapath)" in error.value.allowed


def _built(kind: str):
    inner = ("fd00::1", "fd00::2") if kind == "sit" else ("10.244.1.2", "10.244.2.2")
    return tunneling.build(kind, A, B, *inner, payload="udp:5000", key=5 if kind in ("gre", "gretap") else None)


@pytest.mark.parametrize("kind", tunneling.BUILDER_KINDS)
def test_every_truncation_is_refused_until_the_inner_packet_is_whole(kind) -> None:
    """Cut the outer packet after 0..n-1 bytes of its payload: IP inside (ipip, sit, gre) is refused at
    every length, as `ip_rcv` / `ipv6_rcv` drop it; Ethernet inside (vxlan, gretap, geneve) is refused
    until the inner Ethernet header is there, and then handed on as far as it goes (Ethernet has no length)."""
    built = _built(kind)
    raw = bytes(built.packet)
    inner = bytes(built.inner) if kind in ("ipip", "sit", "gre") else bytes(tunneling.decapsulate(built.packet).inner)
    start = len(raw) - len(inner)  # where the inner packet or frame begins
    for cut in range(20, len(raw)):
        packet = IP(raw[:cut])
        if kind in ("ipip", "sit", "gre") or cut < start + 14:
            with pytest.raises(LabInputError):
                tunneling.decapsulate(packet)
        else:
            assert bytes(tunneling.decapsulate(packet).inner) == inner[:cut - start]


@settings(max_examples=200, deadline=None)
@given(
    outer=st.sampled_from([(IP, "proto", A, B), (IPv6, "nh", "fd00::10", "fd00::11")]),
    proto=st.sampled_from([4, 41, 47, 17]),
    port=st.sampled_from([6081, 8472, 4789, 6784, 53]),
    body=st.binary(max_size=80),
)
def test_decapsulate_on_any_bytes_reads_a_tunnel_or_raises_the_one_error(outer, proto, port, body) -> None:
    cls, field, src, dst = outer
    payload = bytes(UDP(sport=40000, dport=port) / body) if proto == 17 else body
    packet = cls(bytes(cls(src=src, dst=dst, **{field: proto}) / payload))
    try:
        got = tunneling.decapsulate(packet)
    except LabInputError as error:
        assert error.field == "packet"
    else:
        assert got.kind in tunneling.NAMES and (got.outer_src, got.outer_dst) == (src, dst)


def test_one_ipip_tunnel_per_endpoint_pair_but_one_gre_tunnel_per_key() -> None:
    ipip = [tunneling.Tunnel("tunl1", "ipip", A, B), tunneling.Tunnel("tunl2", "ipip", A, B)]
    assert tunneling.tunnel_clashes(ipip) == [("tunl1", "tunl2")]
    gre = [tunneling.Tunnel(f"gre{k}", "gre", A, B, key=k) for k in range(100)]
    gre.append(tunneling.Tunnel("gre-nokey", "gre", A, B))
    assert tunneling.tunnel_clashes(gre) == []
    assert tunneling.tunnel_clashes([*gre, tunneling.Tunnel("again", "gre", A, B, key=7)]) == [("gre7", "again")]
    mixed = [tunneling.Tunnel("tunl1", "ipip", A, B), tunneling.Tunnel("sit1", "sit", A, B),
             tunneling.Tunnel("gre1", "gre", A, B), tunneling.Tunnel("tunl2", "ipip", A, "192.168.56.12")]
    assert tunneling.tunnel_clashes(mixed) == []
    assert tunneling.tunnels_per_endpoint_pair("ipip") == 1
    assert tunneling.tunnels_per_endpoint_pair("gre") == 2**32 + 1
    with pytest.raises(LabInputError, match="key"):
        tunneling.Tunnel("tunl1", "ipip", A, B, key=1).identity()
    with pytest.raises(LabInputError, match="kind"):
        tunneling.tunnels_per_endpoint_pair("vxlan")


def test_gre_and_gretap_have_tables_of_their_own() -> None:
    """ip_gre.c keeps gre devices in `ipgre_net_id`'s table and gretap devices in `gre_tap_net_id`'s;
    `ipgre_rcv()` picks the gretap table for protocol type 0x6558: same endpoints and key, no clash."""
    gre = tunneling.Tunnel("gre1", "gre", A, B, key=1)
    tap = tunneling.Tunnel("gretap1", "gretap", A, B, key=1)
    assert gre.identity() != tap.identity()
    assert tunneling.tunnel_clashes([gre, tap, tunneling.Tunnel("gre-nokey", "gre", A, B),
                                     tunneling.Tunnel("gretap-nokey", "gretap", A, B)]) == []
    assert tunneling.tunnel_clashes([gre, tap, tunneling.Tunnel("gretap2", "gretap", A, B, key=1)]) == [("gretap1", "gretap2")]
    assert tunneling.tunnels_per_endpoint_pair("gretap") == 2**32 + 1


def test_tunnel_endpoints_are_parsed_as_ip_link_add_reads_them() -> None:
    assert tunneling.tunnel_clashes([tunneling.Tunnel("tunl1", "ipip", A, B),
                                     tunneling.Tunnel("tunl2", "ipip", f" {A}", f"{B} ")]) == [("tunl1", "tunl2")]
    for local, remote, field in [("192.168.56.x", B, "local"), (A, "", "remote"), (A, "fd00::11", "remote")]:
        with pytest.raises(LabInputError) as error:
            tunneling.Tunnel("gre1", "gre", local, remote).identity()
        assert (error.value.field, error.value.value) == (field, remote if field == "remote" else local)


@pytest.mark.parametrize("data", ["abcd", b"abc", bytes(128), bytearray(4), None])
def test_geneve_option_data_is_bytes_of_whole_words(data) -> None:
    with pytest.raises(LabInputError) as error:
        tunneling.GeneveOption(1, 1, data)
    assert error.value.field == "data" and error.value.value == data
    assert len(tunneling.GeneveOption(1, 1, bytes(124)).data) == 124
    with pytest.raises(LabInputError, match="option_class"):
        tunneling.GeneveOption(0x10000, 1)
    with pytest.raises(LabInputError, match="options"):
        tunneling.geneve_packet(frame(), A, B, options=((1, 1, b""),))


def test_what_each_carries_is_stated_for_every_tunnel() -> None:
    assert set(tunneling.CARRIES) == set(tunneling.NAMES) - {"none"}
    assert "not IPv6" in tunneling.CARRIES["ipip"] and "IPv6" in tunneling.CARRIES["gre"]


# --- the builder behind the command line and the labs -------------------------------------------


@pytest.mark.parametrize("kind", tunneling.BUILDER_KINDS)
@pytest.mark.parametrize("payload", ["icmp", "udp:5000", "tcp:443"])
def test_builder_overhead_is_the_bytes_it_adds(kind, payload) -> None:
    inner = ("fd00::1", "fd00::2") if kind == "sit" else ("10.244.1.2", "10.244.2.2")
    built = tunneling.build(kind, A, B, *inner, payload=payload)
    assert len(bytes(built.packet)) - len(bytes(built.inner)) == built.overhead == tunneling.overhead(kind)
    assert sum(size for _, size in built.breakdown()) == built.overhead
    assert built.pod_mtu == 1500 - built.overhead
    assert bytes(built.wire)[14:] == bytes(built.packet) and tunneling.decapsulate(built.wire).kind == kind


def test_builder_breakdown_names_the_headers() -> None:
    assert tunneling.build("vxlan", A, B, "10.244.1.2", "10.244.2.2").breakdown() == [
        ("outer IPv4", 20), ("UDP", 8), ("VXLAN", 8), ("inner Ethernet", 14)]
    assert tunneling.build("gre", "fd00::10", "fd00::11", "10.244.1.2", "10.244.2.2", key=1, checksum=True).breakdown() == [
        ("outer IPv6", 40), ("GRE", 12)]
    assert tunneling.build("ipip", A, B, "10.244.1.2", "10.244.2.2").overhead_line() == (
        "overhead: 20 bytes = outer IPv4 20\npod MTU on a 1500-byte IPv4 underlay: 1500 - 20 = 1480")


def test_builder_payloads_and_errors() -> None:
    tcp = tunneling.inner_packet("10.244.1.2", "10.244.2.2", "tcp:8080")
    assert (tcp.sport, tcp.dport, str(tcp.payload.flags)) == (40000, 8080, "S")
    assert tunneling.parse_payload(" UDP:53 ") == ("udp", 53)
    for bad in ("udp", "tcp:70000", "sctp:1", "icmp:1", ""):
        with pytest.raises(LabInputError, match="payload"):
            tunneling.parse_payload(bad)
    with pytest.raises(LabInputError, match="inner_dst"):
        tunneling.inner_packet("10.244.1.2", "fd00::2")
    with pytest.raises(LabInputError, match="vni"):
        tunneling.build("ipip", A, B, "10.244.1.2", "10.244.2.2", vni=1)
    with pytest.raises(LabInputError, match="seq"):
        tunneling.build("vxlan", A, B, "10.244.1.2", "10.244.2.2", seq=1)
    with pytest.raises(LabInputError, match="encapsulation"):
        tunneling.build("wireguard", A, B, "10.244.1.2", "10.244.2.2")
    with pytest.raises(LabInputError) as error:
        tunneling.build("ipip", A, B, " fd00::1", "fd00::2")
    assert str(error.value) == ("inner_src: ' fd00::1' is not allowed; "
                                "an IPv4 address: IPIP carries IPv4 only (IPv6 goes over sit or GRE)")
    with pytest.raises(LabInputError) as error:
        tunneling.build("sit", A, B, "10.244.1.2", "10.244.2.2")
    assert str(error.value) == "inner_src: '10.244.1.2' is not allowed; an IPv6 address: sit carries IPv6 over IPv4"
    with pytest.raises(LabInputError) as error:
        tunneling.build("sit", A, B, "fd00::1", "fd00::2", underlay_mtu=1299)
    assert error.value.field == "underlay_mtu" and "at least 1300" in error.value.allowed  # IPv6 needs 1280
    assert tunneling.build("sit", A, B, "fd00::1", "fd00::2", underlay_mtu=1300).pod_mtu == 1280
    assert overlay.pod_mtu(1300, "sit") == 1280
