"""labsupport.overlay: VXLAN encapsulation, the VTEP's tables, MTU arithmetic.

Expected values come from
- RFC 7348 §5 (header layout: flags byte with the I bit 0x08, 24 reserved bits, 24-bit VNI, 8 reserved
  bits) and Linux's `VXLAN_HEADROOM (20 + 8 + 8 + 14)` / `VXLAN6_HEADROOM (40 + 8 + 8 + 14)`;
- a real kernel (Linux 6.18, iproute2 6.1) tried as a new user would: two namespaces joined by a
  veth, a `vxlan id 1 … dstport 8472 nolearning` device in each with flannel-style static entries,
  one ping captured with tcpdump and read with tshark: outer IPv4 TTL 64, TOS 0, DF clear, UDP
  checksum present (the device prints `udpcsum`), outer total length 134 for an 84-byte inner
  packet (+50), VXLAN flags 0x0800 and VNI 1; `bridge fdb show dev vx` and `ip neigh show dev vx`
  printed the lines asserted below, less the space iproute2 ends each with (learned entries with
  learning on, static ones with `bridge fdb add … self permanent`; the order of entries, `append`,
  a learned entry moving to a new VTEP in place, and a permanent one that a packet from another VTEP
  leaves alone while the packet is dropped). tests/kernel/test_tshark_encapsulation.py re-checks the
  model's frames against tshark.
"""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP, in4_chksum
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether
from scapy.layers.vxlan import VXLAN

from labsupport import overlay
from labsupport.errors import LabInputError

POD_A, POD_B = "0a:58:0a:f4:01:02", "0a:58:0a:f4:02:02"
PING = bytes(16) + bytes(range(0x10, 0x38))


def pod_frame(sport: int | None = None, dport: int = 80, tagged: bool = False) -> Ether:
    ip = IP(src="10.244.1.2", dst="10.244.2.2", id=0, flags="DF")
    body = ip / ICMP(type=8, id=1, seq=1) / PING if sport is None else ip / UDP(sport=sport, dport=dport) / b"hi"
    if tagged:
        return Ether(src=POD_A, dst=POD_B) / Dot1Q(vlan=10) / body
    return Ether(src=POD_A, dst=POD_B) / body


def test_vxlan_header_for_vni_1_is_the_rfc_layout() -> None:
    packet = overlay.vxlan_packet(pod_frame(), "192.168.56.10", "192.168.56.11")
    header = bytes(packet)[20 + 8: 20 + 8 + 8]
    assert header == bytes.fromhex("0800000000000100")
    big = overlay.vxlan_packet(pod_frame(), "192.168.56.10", "192.168.56.11", vni=0xABCDEF)
    assert bytes(big)[28:36] == bytes.fromhex("08000000abcdef00")


def test_outer_headers_match_the_linux_vxlan_device() -> None:
    packet = overlay.vxlan_packet(pod_frame(), "192.168.56.10", "192.168.56.11")
    assert isinstance(packet, IP)  # the outer L3 packet: the node's stack adds the outer Ethernet
    assert (packet.ttl, packet.tos, int(packet.flags), packet.id, packet.proto) == (64, 0, 0, 0, 17)
    assert packet[UDP].dport == overlay.LINUX_VXLAN_PORT == 8472
    assert packet.len == 134 and packet[UDP].len == 114  # as captured from the kernel for one ping
    assert packet[UDP].chksum != 0
    assert in4_chksum(17, packet, bytes(packet[UDP])) == 0  # the ones' complement sum checks out
    assert overlay.vxlan_packet(pod_frame(), "192.168.56.10", "192.168.56.11", udp_checksum=False)[UDP].chksum == 0


def test_iana_port_and_custom_ports_keep_vxlan_layers() -> None:
    for port in (overlay.IANA_VXLAN_PORT, 9999):
        packet = overlay.vxlan_packet(pod_frame(), "192.168.56.10", "192.168.56.11", dstport=port)
        assert packet[UDP].dport == port and packet[VXLAN].vni == 1 and packet[Ether].dst == POD_B


@pytest.mark.parametrize(
    ("outer", "tagged", "expected"),
    [(("192.168.56.10", "192.168.56.11"), False, 50), (("fd00::10", "fd00::11"), False, 70),
     (("192.168.56.10", "192.168.56.11"), True, 54), (("fd00::10", "fd00::11"), True, 74)],
)
def test_overhead_equals_the_bytes_scapy_builds(outer, tagged, expected) -> None:
    frame = pod_frame(tagged=tagged)
    packet = overlay.vxlan_packet(frame, *outer)
    measured = len(bytes(packet)) - len(bytes(frame[IP]))
    underlay = "ipv6" if ":" in outer[0] else "ipv4"
    assert measured == overlay.overhead("vxlan", underlay, inner_vlan=tagged) == expected
    assert isinstance(packet, IPv6 if underlay == "ipv6" else IP)


def test_pod_mtu_is_flannels_1450_and_refuses_too_small_underlays() -> None:
    assert overlay.pod_mtu(1500) == 1450
    assert overlay.pod_mtu(1500, underlay="ipv6") == 1430
    assert overlay.pod_mtu(9001) == 8951  # a jumbo-frame underlay (AWS)
    assert overlay.pod_mtu(1500, "ipip") == 1480
    assert overlay.pod_mtu(118) == 68
    with pytest.raises(LabInputError) as error:
        overlay.pod_mtu(117)
    assert error.value.field == "underlay_mtu" and "at least 118" in str(error.value)
    for bad in (0, "big", 70000, True):
        with pytest.raises(LabInputError, match="underlay_mtu"):
            overlay.pod_mtu(bad)
    with pytest.raises(LabInputError, match="underlay"):
        overlay.overhead("vxlan", "ipx")


@pytest.mark.parametrize("vni", [-1, 2**24, 16777216, "abc", True, None, 1.5])
def test_vni_outside_24_bits_is_the_one_error(vni) -> None:
    with pytest.raises(LabInputError) as error:
        overlay.vxlan_packet(pod_frame(), "192.168.56.10", "192.168.56.11", vni=vni)
    assert error.value.field == "vni" and "16777215" in error.value.allowed


def test_vni_limits_are_accepted() -> None:
    for vni in (0, 16777215):
        packet = overlay.vxlan_packet(pod_frame(), "192.168.56.10", "192.168.56.11", vni=vni)
        assert overlay.vxlan_decapsulate(packet)[0] == vni


def test_bad_addresses_and_frames_name_their_field() -> None:
    with pytest.raises(LabInputError, match="outer_src"):
        overlay.vxlan_packet(pod_frame(), "192.168.56.300", "192.168.56.11")
    with pytest.raises(LabInputError, match="outer_dst"):
        overlay.vxlan_packet(pod_frame(), "192.168.56.10", "fd00::1")
    with pytest.raises(LabInputError, match="inner_frame"):
        overlay.vxlan_packet(pod_frame()[IP], "192.168.56.10", "192.168.56.11")
    with pytest.raises(LabInputError, match="packet"):
        overlay.vxlan_decapsulate(IP() / ICMP())
    no_i_flag = overlay.vxlan_packet(pod_frame(), "192.168.56.10", "192.168.56.11")
    no_i_flag[VXLAN].flags = 0
    with pytest.raises(LabInputError, match="I flag"):
        overlay.vxlan_decapsulate(IP(bytes(no_i_flag)))


def test_flow_source_port_is_per_flow_and_in_the_local_port_range() -> None:
    ports = {overlay.flow_source_port(pod_frame(sport=s)) for s in range(40000, 40050)}
    assert all(32768 <= p <= 60999 for p in ports)
    assert len(ports) > 40  # different flows spread over ports (ECMP entropy)
    assert overlay.flow_source_port(pod_frame(sport=40000)) == overlay.flow_source_port(pod_frame(sport=40000))
    arp_like = Ether(src=POD_A, dst="ff:ff:ff:ff:ff:ff", type=0x0806) / bytes(28)
    assert 32768 <= overlay.flow_source_port(arp_like) <= 60999
    tcp = Ether(src=POD_A, dst=POD_B) / IP(src="10.244.1.2", dst="10.244.2.2") / TCP(sport=1234, dport=443)
    packet = overlay.vxlan_packet(tcp, "192.168.56.10", "192.168.56.11")
    assert packet[UDP].sport == overlay.flow_source_port(tcp)


@settings(max_examples=60, deadline=None)
@given(
    vni=st.integers(0, overlay.MAX_VNI),
    sport=st.integers(1, 65535),
    dport=st.integers(1, 65535),
    outer=st.sampled_from([("192.168.56.10", "192.168.56.11"), ("fd00::10", "fd00::11")]),
    port=st.sampled_from([overlay.LINUX_VXLAN_PORT, overlay.IANA_VXLAN_PORT]),
)
def test_round_trip_build_then_decapsulate(vni, sport, dport, outer, port) -> None:
    frame = pod_frame(sport=sport, dport=dport)
    packet = overlay.vxlan_packet(frame, *outer, vni=vni, dstport=port)
    got_vni, inner = overlay.vxlan_decapsulate(packet.__class__(bytes(packet)))
    assert got_vni == vni and bytes(inner) == bytes(frame)
    captured = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / packet  # as tcpdump sees it
    assert overlay.vxlan_decapsulate(Ether(bytes(captured)))[0] == vni


# --- the VTEP ------------------------------------------------------------------------------------


def flannel_vtep() -> overlay.Vtep:
    vtep = overlay.Vtep("flannel.1", 1, "192.168.56.10", "0a:00:00:00:00:01", learning=False)
    vtep.fdb_add("0a:00:00:00:00:02", "192.168.56.11")
    vtep.neigh_add("10.244.2.0", "0a:00:00:00:00:02")
    return vtep


def test_flannel_static_entries_print_as_iproute2() -> None:
    # iproute2 ends each line with a space; the model's views leave trailing spaces out.
    vtep = flannel_vtep()
    assert vtep.bridge_fdb_show() == "0a:00:00:00:00:02 dst 192.168.56.11 self permanent"
    assert vtep.ip_neigh_show() == "10.244.2.0 lladdr 0a:00:00:00:00:02 PERMANENT"
    assert vtep.fdb[0].line(with_dev=True) == "0a:00:00:00:00:02 dev flannel.1 dst 192.168.56.11 self permanent"
    assert vtep.neighbours[0].line(with_dev=True) == "10.244.2.0 dev flannel.1 lladdr 0a:00:00:00:00:02 PERMANENT"


def test_flannel_vtep_sends_to_the_node_its_fdb_names_and_learns_nothing() -> None:
    vtep = flannel_vtep()
    frame = Ether(src="0a:00:00:00:00:01", dst="0a:00:00:00:00:02") / IP(src="10.244.1.2", dst="10.244.2.2") / ICMP()
    (packet,) = vtep.encapsulate(frame)
    assert packet.dst == "192.168.56.11" and packet.src == "192.168.56.10" and packet[VXLAN].vni == 1
    assert vtep.lookup("0a:00:00:00:00:09") == []  # unknown MAC, no default entry: dropped
    assert vtep.learn("0a:00:00:00:00:03", "192.168.56.12") is None
    reply = overlay.vxlan_packet(Ether(src="0a:00:00:00:00:03", dst="0a:00:00:00:00:01") / IP(), "192.168.56.12",
                                 "192.168.56.10")
    assert vtep.receive(reply)[Ether].src == "0a:00:00:00:00:03"
    assert len(vtep.fdb) == 1
    with pytest.raises(LabInputError, match="vni"):
        vtep.receive(overlay.vxlan_packet(frame, "192.168.56.12", "192.168.56.10", vni=2))


def test_learning_vtep_floods_then_learns_as_the_kernel_printed() -> None:
    vtep = overlay.Vtep("vx", 1, "192.168.56.11", "0a:00:00:00:00:02")
    vtep.fdb_add("00:00:00:00:00:00", "192.168.56.10", append=True)
    assert vtep.lookup("0a:00:00:00:00:01") == [IPv4Address("192.168.56.10")]  # flooded to the default dst
    arriving = overlay.vxlan_packet(Ether(src="0a:00:00:00:00:01", dst="ff:ff:ff:ff:ff:ff") / IP(),
                                    "192.168.56.10", "192.168.56.11")
    vtep.receive(arriving)
    assert vtep.bridge_fdb_show().splitlines() == [
        "0a:00:00:00:00:01 dst 192.168.56.10 self",
        "00:00:00:00:00:00 dst 192.168.56.10 self permanent",
    ]
    assert not vtep.fdb[0].permanent
    assert vtep.learn("0a:00:00:00:00:01", "192.168.56.10") is None  # already known


def test_a_learned_entry_moves_in_place_to_a_new_vtep() -> None:
    # Linux 6.18: a learned MAC that arrives from another VTEP keeps its place in the list, with the new dst.
    vtep = overlay.Vtep("vx", 1, "192.168.56.11", "0a:00:00:00:00:02")
    vtep.learn("0a:00:00:00:00:01", "192.168.56.10")
    vtep.fdb_add("0a:00:00:00:00:03", "192.168.56.13")
    moved = vtep.learn("0a:00:00:00:00:01", "192.168.56.14")
    assert moved is not None and moved.dst == IPv4Address("192.168.56.14") and not moved.permanent
    assert vtep.bridge_fdb_show().splitlines() == [
        "0a:00:00:00:00:03 dst 192.168.56.13 self permanent",
        "0a:00:00:00:00:01 dst 192.168.56.14 self",
    ]


def test_a_packet_from_another_vtep_never_moves_a_permanent_entry() -> None:
    """Regression: the packet engine used to replace a permanent entry with a learned one. Linux 6.18
    (a learning vxlan device with `bridge fdb add MAC … dst OTHER self permanent`, then a ping from MAC
    over another VTEP) kept the entry permanent, in place, and dropped the packet (vxlan_snoop: "Don't
    migrate static entries, drop packets")."""
    vtep = overlay.Vtep("vx", 1, "192.168.56.10", "0a:00:00:00:00:01")
    vtep.fdb_add("0a:00:00:00:00:02", "192.168.56.99")
    vtep.fdb_add("0a:00:00:00:00:03", "192.168.56.13")
    before = vtep.bridge_fdb_show()
    arriving = overlay.vxlan_packet(Ether(src="0a:00:00:00:00:02", dst="0a:00:00:00:00:01") / IP(),
                                    "192.168.56.11", "192.168.56.10")
    with pytest.raises(LabInputError, match="permanent FDB entry") as excinfo:
        vtep.receive(arriving)
    assert excinfo.value.field == "packet"
    assert vtep.bridge_fdb_show() == before == (
        "0a:00:00:00:00:03 dst 192.168.56.13 self permanent\n0a:00:00:00:00:02 dst 192.168.56.99 self permanent"
    )
    assert vtep.learn("0a:00:00:00:00:02", "192.168.56.11") is None
    vtep.fdb_add("0a:00:00:00:00:04", "192.168.56.11")  # a permanent entry naming the VTEP it came from
    from_four = overlay.vxlan_packet(Ether(src="0a:00:00:00:00:04", dst="0a:00:00:00:00:01") / IP(),
                                     "192.168.56.11", "192.168.56.10")
    assert vtep.receive(from_four)[Ether].src == "0a:00:00:00:00:04"  # accepted, nothing changes
    assert vtep.fdb[0].permanent


def test_fdb_add_and_append_as_the_kernel_does() -> None:
    # Linux 6.18: `bridge fdb add` of a MAC with an entry says "File exists"; `append` adds another dst
    # after the others to the all-zeros entry and leaves a unicast MAC's entry alone; the newest MAC is listed first.
    vtep = overlay.Vtep("vx", 1, "192.168.56.10", "0a:00:00:00:00:01")
    vtep.fdb_add("00:00:00:00:00:00", "192.168.56.11")
    with pytest.raises(LabInputError, match="append"):
        vtep.fdb_add("00:00:00:00:00:00", "192.168.56.12")
    vtep.fdb_add("00:00:00:00:00:00", "192.168.56.12", append=True)
    vtep.fdb_add("00:00:00:00:00:00", "192.168.56.12", append=True)
    vtep.fdb_add("0a:00:00:00:00:05", "192.168.56.15")
    vtep.fdb_add("0a:00:00:00:00:05", "192.168.56.17", append=True)
    assert vtep.lookup("ff:ff:ff:ff:ff:ff") == [IPv4Address("192.168.56.11"), IPv4Address("192.168.56.12")]
    assert vtep.bridge_fdb_show().splitlines() == [
        "0a:00:00:00:00:05 dst 192.168.56.15 self permanent",
        "00:00:00:00:00:00 dst 192.168.56.11 self permanent",
        "00:00:00:00:00:00 dst 192.168.56.12 self permanent",
    ]
    with pytest.raises(LabInputError, match="vni"):
        overlay.Vtep("vx", 2**24, "192.168.56.10", "0a:00:00:00:00:01")
    with pytest.raises(LabInputError, match="local"):
        overlay.Vtep("vx", 1, None, "0a:00:00:00:00:01")


def test_a_request_and_its_reply_leave_with_the_same_source_port() -> None:
    """Within one kernel the flow hash is symmetric, so a request and its reply get one source port: the
    kernel twin, whose two nodes share one kernel, saw that. On two real nodes each kernel keys the hash
    with its own boot-time secret, so the ports differ there; the model is one hash, like the twin."""
    from scapy.layers.inet import ICMP, IP, UDP
    from scapy.layers.l2 import Ether

    request = Ether() / IP(src="10.244.1.2", dst="10.244.2.2") / UDP(sport=40000, dport=53)
    reply = Ether() / IP(src="10.244.2.2", dst="10.244.1.2") / UDP(sport=53, dport=40000)
    other = Ether() / IP(src="10.244.1.2", dst="10.244.2.2") / UDP(sport=40001, dport=53)
    assert overlay.flow_source_port(request) == overlay.flow_source_port(reply)
    assert overlay.flow_source_port(request) != overlay.flow_source_port(other)
    ping = Ether() / IP(src="10.244.1.2", dst="10.244.2.2") / ICMP(type=8)
    pong = Ether() / IP(src="10.244.2.2", dst="10.244.1.2") / ICMP(type=0)
    assert overlay.flow_source_port(ping) == overlay.flow_source_port(pong)


@pytest.mark.parametrize("first_word", ["0c000000", "08000001", "00000000", "88000000"])
def test_a_vxlan_header_with_bits_it_does_not_parse_is_refused(first_word) -> None:
    """vxlan_rcv() drops a header with any flag but I (G, the GPE bits) or a reserved bit set."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether

    body = bytes.fromhex(first_word) + bytes.fromhex("00000100") + bytes(Ether())
    with pytest.raises(LabInputError, match="08000000 VVVVVV00"):
        overlay.vxlan_decapsulate(IP() / UDP(dport=8472) / body)
    reserved = bytes.fromhex("08000000") + bytes.fromhex("00000101") + bytes(Ether())
    with pytest.raises(LabInputError):
        overlay.vxlan_decapsulate(IP() / UDP(dport=8472) / reserved)
