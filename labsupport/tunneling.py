"""IP tunnels: IPIP, GRE (and gretap), SIT / 6in4 and Geneve: build, parse, overhead, what each carries.

Models the notes' "tunneling" section the way Linux's tunnel devices build packets:

- :func:`ipip_packet` (`ip link add tunl type ipip`; Calico's `tunl0`): an IPv4 packet in IPv4, protocol 4.
- :func:`gre_packet` (`type gre` / `type gretap`): protocol 47 with the optional checksum, key and
  sequence number (RFC 2784, RFC 2890); the protocol type says what is inside (0x0800 IPv4, 0x86DD
  IPv6, 0x6558 an Ethernet frame for gretap).
- :func:`sit_packet` (`type sit`): an IPv6 packet in IPv4, protocol 41 (RFC 4213).
- :func:`geneve_packet` (`type geneve`): UDP 6081, a VXLAN-like header with TLV options (RFC 8926).
- :func:`decapsulate` reads any of them back; :func:`overhead` is the MTU cost;
  :func:`tunnel_clashes` shows which tunnels between the same two hosts the kernel can tell apart.
"""

from __future__ import annotations

from dataclasses import dataclass

from labsupport.addressing import parse_ipv4_address
from labsupport.errors import LabInputError
from labsupport.overlay import (
    ETHERNET_HEADER,
    IANA_VXLAN_PORT,
    LINUX_VXLAN_PORT,
    OUTER_IP_HEADER,
    UDP_HEADER,
    UNDERLAYS,
    VLAN_TAG,
    check_range,
    check_vni,
    flow_source_port,
    outer_addresses,
    outer_ip,
    parse_ip_address,
)
from labsupport.overlay import overhead as vxlan_overhead
from labsupport.packets import concrete

IPPROTO_IPIP, IPPROTO_IPV6, IPPROTO_GRE, IPPROTO_UDP = 4, 41, 47, 17
ETH_P_IP, ETH_P_IPV6, ETH_P_TEB = 0x0800, 0x86DD, 0x6558  # GRE / Geneve protocol types
GENEVE_PORT = 6081
GENEVE_HEADER = 8
GENEVE_MAX_OPTIONS = 252  # 6-bit Opt Len in 4-byte words
GENEVE_MAX_OPTION_DATA = 124  # 5-bit option Length in 4-byte words
GRE_BASE = 4
GRE_C, GRE_R, GRE_K, GRE_S = 0x80, 0x40, 0x20, 0x10  # the flag bits of the first byte (RFC 1701, RFC 2890)
NAMES = ("none", "vxlan", "ipip", "gre", "gretap", "sit", "geneve")
ETHERNET_CARRIERS = ("vxlan", "gretap", "geneve")
MAX_GRE_KEY = 2**32 - 1


def _load_geneve():
    from scapy.config import conf

    if "geneve" not in conf.contribs:
        from scapy.main import load_contrib

        load_contrib("geneve")
    from scapy.contrib.geneve import GENEVE, GeneveOptions

    return GENEVE, GeneveOptions


def _ipv4_outer(outer_src, outer_dst, kind: str):
    src, dst = outer_addresses(outer_src, outer_dst)
    if src.version != 4:
        raise LabInputError("outer_src", str(outer_src), f"an IPv4 address: {kind} runs over IPv4 only")
    return src, dst


def ipip_packet(inner_ip, outer_src, outer_dst, ttl: int = 64, df: bool = True):
    """An IPv4 packet inside IPv4, protocol 4 (RFC 2003), as `ip link add tunl1 type ipip` sends it.

    The inner packet is unchanged; the outer header adds 20 bytes. IPIP carries IPv4 only: an IPv6
    inner packet is refused (that is SIT's job, or GRE's). The notes say "IPv4 unicast only"; the
    header itself can hold any IPv4 packet, multicast included, so the model refuses only what it
    cannot describe. The outer header: TTL ttl (the device's
    default `ttl inherit` copies the inner TTL, 64 for a pod's packet), TOS 0, and DF set, because
    Linux tunnel devices default to `pmtudisc` (path MTU discovery); df=False is `nopmtudisc`.
    """
    from scapy.layers.inet import IP

    if not isinstance(inner_ip, IP):
        raise LabInputError("inner_ip", type(inner_ip).__name__,
                            "an IPv4 packet: IPIP carries IPv4 only (IPv6 goes over sit or GRE)")
    src, dst = _ipv4_outer(outer_src, outer_dst, "IPIP")
    outer = outer_ip(src, dst, IPPROTO_IPIP, ttl)
    outer.flags = "DF" if df else 0
    return concrete(outer / inner_ip.copy())


def gre_packet(inner, outer_src, outer_dst, key: int | None = None, seq: int | None = None, checksum: bool = False):
    """A packet or frame inside GRE, protocol 47, as `ip link add gre1 type gre|gretap … [key K] [oseq] [ocsum]` sends it.

    The protocol type follows the inner: IPv4 0x0800, IPv6 0x86DD (GRE carries both, multicast
    too), an Ethernet frame 0x6558 (Transparent Ethernet Bridging: gretap, which carries ARP,
    broadcasts and any EtherType). Optional fields in RFC 2890's order: checksum + reserved (C bit),
    key (K bit, 32 bits: `key`/`ikey`/`okey`), sequence number (S bit: `oseq`). The outer header is
    IPv4 or, for IPv6 endpoints, IPv6 (`ip6gre`/`ip6gretap`); over IPv4 with DF set (`pmtudisc`, the default).
    """
    from scapy.layers.inet import IP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import GRE, Ether

    if isinstance(inner, Ether):
        proto = ETH_P_TEB
    elif isinstance(inner, IP):
        proto = ETH_P_IP
    elif isinstance(inner, IPv6):
        proto = ETH_P_IPV6
    else:
        raise LabInputError("inner", type(inner).__name__, "an IPv4 or IPv6 packet, or an Ethernet frame (gretap)")
    src, dst = outer_addresses(outer_src, outer_dst)
    header = GRE(proto=proto)
    if checksum:
        header.chksum_present, header.offset = 1, 0
    if key is not None:
        header.key_present, header.key = 1, check_range(key, "key", 0, MAX_GRE_KEY)
    if seq is not None:
        header.seqnum_present, header.sequence_number = 1, check_range(seq, "seq", 0, MAX_GRE_KEY)
    outer = outer_ip(src, dst, IPPROTO_GRE)
    if src.version == 4:
        outer.flags = "DF"
    return concrete(outer / header / inner.copy())


def sit_packet(inner_ipv6, outer_src, outer_dst):
    """An IPv6 packet inside IPv4, protocol 41 (RFC 4213 "6in4"), as `ip link add sit1 type sit` sends it.

    20 bytes of overhead, so the IPv6 MTU over a 1500-byte IPv4 link is 1480. SIT carries IPv6 only
    and runs over IPv4 only. Linux's sit device defaults to TTL 64 and `pmtudisc` (DF set).
    """
    from scapy.layers.inet6 import IPv6

    if not isinstance(inner_ipv6, IPv6):
        raise LabInputError("inner", type(inner_ipv6).__name__, "an IPv6 packet: SIT carries IPv6 over IPv4")
    src, dst = _ipv4_outer(outer_src, outer_dst, "SIT")
    outer = outer_ip(src, dst, IPPROTO_IPV6)
    outer.flags = "DF"
    return concrete(outer / inner_ipv6.copy())


@dataclass(frozen=True)
class GeneveOption:
    """One Geneve TLV option (RFC 8926 §3.5): class (who defined it), type, and data, bytes whose length is
    a multiple of 4 up to 124 (the option's 5-bit Length counts 4-byte words)."""

    option_class: int
    option_type: int
    data: bytes = b""

    def __post_init__(self) -> None:
        object.__setattr__(self, "option_class", check_range(self.option_class, "option_class", 0, 0xFFFF))
        object.__setattr__(self, "option_type", check_range(self.option_type, "option_type", 0, 0xFF))
        if not isinstance(self.data, bytes) or len(self.data) % 4 or len(self.data) > GENEVE_MAX_OPTION_DATA:
            raise LabInputError("data", self.data, f"bytes, a multiple of 4 long and at most {GENEVE_MAX_OPTION_DATA}")


def geneve_packet(inner_frame, outer_src, outer_dst, vni: int = 1, options: tuple[GeneveOption, ...] = ()):
    """An Ethernet frame in Geneve (RFC 8926), as `ip link add gnv0 type geneve id VNI remote ADDR` sends it.

    Like VXLAN (UDP, source port from the inner flow, a 24-bit VNI) plus a protocol type (0x6558
    for Ethernet) and 0–252 bytes of TLV options, whose length the header states in 4-byte words.
    Sent to UDP 6081 with a zero UDP checksum over IPv4: Linux's geneve device computes one only when
    `udpcsum` is given (`geneve_nl2info()` sets TUNNEL_CSUM only when asked), unlike vxlan, whose IPv4
    default is `udpcsum`.
    """
    from scapy.layers.inet import UDP
    from scapy.layers.l2 import Ether

    GENEVE, GeneveOptions = _load_geneve()
    if not isinstance(inner_frame, Ether):
        raise LabInputError("inner_frame", type(inner_frame).__name__, "a scapy Ether frame")
    src, dst = outer_addresses(outer_src, outer_dst)
    for option in options:
        if not isinstance(option, GeneveOption):
            raise LabInputError("options", option, "GeneveOption(option_class, option_type, data) values")
    total = sum(4 + len(o.data) for o in options)
    if total > GENEVE_MAX_OPTIONS:
        raise LabInputError("options", f"{total} bytes", f"at most {GENEVE_MAX_OPTIONS} bytes of options")
    tlvs = [GeneveOptions(classid=o.option_class, type=o.option_type, data=o.data) for o in options]
    udp = UDP(sport=flow_source_port(inner_frame), dport=GENEVE_PORT, chksum=0)
    header = GENEVE(proto=ETH_P_TEB, vni=check_vni(vni), options=tlvs)
    return concrete(outer_ip(src, dst, IPPROTO_UDP) / udp / header / inner_frame.copy())


@dataclass(frozen=True)
class Tunnelled:
    """What a receiver reads from a tunnel packet: which encapsulation, its identifiers, the inner packet."""

    kind: str  # ipip, gre, gretap, sit, vxlan, geneve
    outer_src: str
    outer_dst: str
    inner: object  # scapy IP, IPv6 or Ether
    key: int | None = None
    seq: int | None = None
    vni: int | None = None
    checksum: bool = False


def vxlan_ports() -> dict[int, str]:
    """The UDP ports read as VXLAN, each with whose port it is: Linux's default 8472 (flannel), IANA's 4789
    (RFC 7348; Calico, Cilium) and Weave's fast datapath 6784 (its `vxlan-6784` port)."""
    from labsupport.cni import WEAVE_FASTDP_PORT

    return {LINUX_VXLAN_PORT: "Linux", IANA_VXLAN_PORT: "IANA", WEAVE_FASTDP_PORT: "Weave fast datapath"}


INNER_HEADER = {ETH_P_IP: 20, ETH_P_IPV6: 40, ETH_P_TEB: ETHERNET_HEADER}
INNER_NAME = {ETH_P_IP: "IPv4", ETH_P_IPV6: "IPv6", ETH_P_TEB: "Ethernet"}


def _short(data: bytes, need: int, what: str, part: str = "header") -> None:
    """The one error when fewer bytes arrived than the header (part) of what needs."""
    if len(data) < need:
        raise LabInputError("packet", f"{len(data)} bytes of {what}", f"at least {need}: the {what} {part}")


def _inner(proto_type: int, body: bytes, carrier: str):
    """The packet a protocol type (an EtherType) names, after the length and version checks the kernel's
    `ip_rcv` / `ipv6_rcv` make (an inner packet failing them is dropped)."""
    from scapy.layers.inet import IP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether

    if proto_type not in INNER_HEADER:
        raise LabInputError("packet", f"{carrier} protocol type {proto_type:#06x}",
                            "0x0800 (IPv4), 0x86dd (IPv6) or 0x6558 (Ethernet)")
    what = f"inner {INNER_NAME[proto_type]}"
    _short(body, INNER_HEADER[proto_type], what)
    if proto_type == ETH_P_TEB:
        return Ether(body)
    version = 4 if proto_type == ETH_P_IP else 6
    if body[0] >> 4 != version:
        raise LabInputError("packet", f"IP version {body[0] >> 4} in the {what} packet", f"{version}: {carrier} says IPv{version}")
    if version == 4:
        header, total = (body[0] & 0x0F) * 4, int.from_bytes(body[2:4], "big")
        if not 20 <= header <= total <= len(body):
            raise LabInputError("packet", f"{what} packet of {len(body)} bytes with header length {header} and total "
                                f"length {total}", "20 ≤ header length ≤ total length ≤ the bytes received")
        return IP(body)
    total = 40 + int.from_bytes(body[4:6], "big")
    if total > len(body):
        raise LabInputError("packet", f"{what} packet of {len(body)} bytes with payload length {total - 40}",
                            "40 + payload length ≤ the bytes received")
    return IPv6(body)


def decapsulate(packet) -> Tunnelled:
    """Read a tunnel packet back (outer IPv4/IPv6 first, or a captured frame with outer Ethernet):
    what the receiving tunnel device does before handing the inner packet to the stack.

    The outer protocol picks the reader, as the kernel's protocol handlers do: 4 `ipip_rcv`, 41
    `ipip6_rcv` (sit), 47 `gre_rcv` (GRE version 0 without the deprecated routing bit, as
    `gre_parse_header()` accepts), UDP to 6081 `geneve_udp_encap_recv` or to a VXLAN port
    (:func:`vxlan_ports`) `vxlan_rcv`. Every header is checked for length first; anything else, a
    fragment (the kernel reassembles before any of these run) or a short or malformed packet is the
    one LabInputError.
    """
    from scapy.layers.inet import IP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import GRE, Ether
    from scapy.packet import Packet

    from labsupport.overlay import vxlan_decapsulate

    if isinstance(packet, Ether):
        packet = packet.payload
    if not isinstance(packet, (IP, IPv6)):
        raise LabInputError("packet", packet.summary() if isinstance(packet, Packet) else repr(packet),
                            "an IPv4 or IPv6 packet carrying a tunnel")
    if isinstance(packet, IP) and (packet.flags.MF or packet.frag):
        raise LabInputError("packet", f"an IPv4 fragment (offset {packet.frag * 8})",
                            "a whole packet: the kernel reassembles it before the tunnel reads it")
    proto = packet.proto if isinstance(packet, IP) else packet.nh
    ends = str(packet.src), str(packet.dst)
    payload = bytes(packet.payload)
    if proto == IPPROTO_IPIP:
        return Tunnelled("ipip", *ends, _inner(ETH_P_IP, payload, "IPIP"))
    if proto == IPPROTO_IPV6:
        return Tunnelled("sit", *ends, _inner(ETH_P_IPV6, payload, "SIT"))
    if proto == IPPROTO_GRE:
        _short(payload, GRE_BASE, "GRE")
        flags, version = payload[0], payload[1] & 0x07
        if version or flags & GRE_R:
            raise LabInputError("packet", f"GRE flags {flags:#04x}, version {version}",
                                "version 0 without the routing bit (RFC 2784; version 1 is PPTP's)")
        size = GRE_BASE + 4 * (bool(flags & GRE_C) + bool(flags & GRE_K) + bool(flags & GRE_S))
        _short(payload, size, "GRE", "header with its optional fields")
        gre = GRE(payload[:size])
        proto_type = int.from_bytes(payload[2:4], "big")
        return Tunnelled("gretap" if proto_type == ETH_P_TEB else "gre", *ends, _inner(proto_type, payload[size:], "GRE"),
                         key=gre.key if gre.key_present else None,
                         seq=gre.sequence_number if gre.seqnum_present else None, checksum=bool(gre.chksum_present))
    if proto == IPPROTO_UDP:
        _short(payload, UDP_HEADER, "UDP")
        port, body = int.from_bytes(payload[2:4], "big"), payload[UDP_HEADER:]
        if port == GENEVE_PORT:
            _short(body, GENEVE_HEADER, "Geneve")
            version, options = body[0] >> 6, (body[0] & 0x3F) * 4
            if version:
                raise LabInputError("packet", f"Geneve version {version}", "0 (RFC 8926)")
            _short(body, GENEVE_HEADER + options, "Geneve", f"header and its {options} bytes of options")
            inner = _inner(int.from_bytes(body[2:4], "big"), body[GENEVE_HEADER + options:], "Geneve")
            return Tunnelled("geneve", *ends, inner, vni=int.from_bytes(body[4:7], "big"))
        ports = vxlan_ports()
        if port not in ports:
            known = ", ".join(f"{number} ({whose})" for number, whose in ports.items())
            raise LabInputError("packet", f"UDP port {port}", f"Geneve's {GENEVE_PORT} or a VXLAN port: {known}")
        vni, inner = vxlan_decapsulate(UDP(payload))
        return Tunnelled("vxlan", *ends, inner, vni=vni)
    raise LabInputError("packet", f"IP protocol {proto}", "4 (IPIP), 41 (SIT), 47 (GRE) or UDP (VXLAN, Geneve)")


def overhead(name: str, underlay: str = "ipv4", key: bool = False, seq: bool = False, checksum: bool = False,
             options: int = 0, inner_vlan: bool = False) -> int:
    """Bytes an encapsulation adds to each packet, counted against the underlay MTU: the one place for
    every encapsulation but VXLAN, whose arithmetic is :func:`labsupport.overlay.overhead`'s.

    outer IP header (20 IPv4, 40 IPv6) + the encapsulation's own header + the inner Ethernet header
    for those that carry frames: ipip 20, sit 20, gre 24 (+4 each for checksum, key, sequence
    number), gretap 24 + 14, geneve 20 + 8 + 8 + options + 14, vxlan 50; +4 for an 802.1Q-tagged
    inner frame. "none" is 0 (plain routing, as host-gw or Calico BGP).
    """
    if name not in NAMES:
        raise LabInputError("encapsulation", name, f"one of {', '.join(NAMES)}")
    if (key or seq or checksum) and name not in ("gre", "gretap"):
        raise LabInputError("encapsulation", name, "gre or gretap for a key, sequence number or checksum")
    if options and name != "geneve":
        raise LabInputError("options", options, "0: only Geneve has options")
    if name == "vxlan":  # overlay's arithmetic, which checks the underlay itself
        return vxlan_overhead("vxlan", underlay, inner_vlan)
    if underlay not in UNDERLAYS:
        raise LabInputError("underlay", underlay, f"one of {', '.join(UNDERLAYS)}")
    if inner_vlan and name not in ETHERNET_CARRIERS:
        raise LabInputError("inner_vlan", inner_vlan, f"only for encapsulations that carry Ethernet frames: {', '.join(ETHERNET_CARRIERS)}")
    if name == "sit" and underlay != "ipv4":
        raise LabInputError("underlay", underlay, "ipv4: SIT carries IPv6 over IPv4")
    if name == "none":
        return 0
    tag = VLAN_TAG if inner_vlan else 0
    ip = OUTER_IP_HEADER[underlay]
    if name in ("ipip", "sit"):
        return ip
    if name in ("gre", "gretap"):
        size = ip + GRE_BASE + 4 * (bool(key) + bool(seq) + bool(checksum))
        return size + (ETHERNET_HEADER + tag if name == "gretap" else 0)
    words = check_range(options, "options", 0, GENEVE_MAX_OPTIONS)
    if words % 4:
        raise LabInputError("options", options, "a multiple of 4 bytes")
    return ip + UDP_HEADER + GENEVE_HEADER + words + ETHERNET_HEADER + tag


# --- what each carries, and how many tunnels fit between two hosts -------------------------------


CARRIES = {
    "ipip": "IPv4 packets (protocol 4); not IPv6, not Ethernet frames (the notes say unicast only; "
            "RFC 2003's header would hold a multicast packet too)",
    "sit": "IPv6 packets over IPv4 (protocol 41); not IPv4, not Ethernet frames",
    "gre": "IPv4 and IPv6 packets, unicast and multicast (the protocol type names the inner protocol)",
    "gretap": "whole Ethernet frames (protocol type 0x6558): ARP, broadcast, multicast, any EtherType",
    "vxlan": "whole Ethernet frames over UDP, in one of 16,777,216 networks (VNI)",
    "geneve": "Ethernet frames (or IP packets) over UDP with a VNI and extensible TLV options",
}


@dataclass(frozen=True)
class Tunnel:
    """A tunnel device between two hosts, as `ip link add NAME type KIND local L remote R [key K]` makes it."""

    name: str
    kind: str
    local: str
    remote: str
    key: int | None = None

    def identity(self) -> tuple:
        """What the kernel matches an arriving packet against to pick this device, and what a second
        `ip link add` with the same values is refused for ("File exists").

        Each kind has its own table per network namespace (`ipip_net_id`, `sit_net_id`, and for GRE
        `ipgre_net_id` and `gre_tap_net_id`: `ipgre_rcv()` looks in the gretap table when the protocol
        type is 0x6558, in the gre table otherwise), so the kind comes first. IPIP and SIT: then
        (local, remote) only, there is nothing else in the packet. GRE and gretap: (local, remote, key),
        the 32-bit key in the GRE header (no key counts as its own value). The addresses are IPv4, as
        `local` and `remote` of these kinds are (IPv6 endpoints are other kinds: ip6tnl, ip6gre).
        """
        if self.kind not in ("ipip", "sit", "gre", "gretap"):
            raise LabInputError("kind", self.kind, "ipip, sit, gre or gretap")
        ends = (self.kind, str(parse_ipv4_address(self.local, "local")), str(parse_ipv4_address(self.remote, "remote")))
        if self.kind in ("ipip", "sit"):
            if self.key is not None:
                raise LabInputError("key", self.key, f"none: {self.kind} has no key field")
            return ends
        return (*ends, None if self.key is None else check_range(self.key, "key", 0, MAX_GRE_KEY))


def tunnel_clashes(tunnels: list[Tunnel]) -> list[tuple[str, str]]:
    """Pairs of tunnels the kernel cannot tell apart (the second `ip link add` fails: File exists).

    Between one pair of hosts there is room for ONE IPIP tunnel (and one SIT tunnel: a different
    protocol number), but for one GRE tunnel per key: 2**32 keyed ones plus one without a key, and as
    many gretap tunnels again (a table of their own, told apart by the protocol type 0x6558).
    The notes say "up to 64K GRE tunnels"; the key field in RFC 2890 is 32 bits, so the header
    allows 4,294,967,296 keys. 64K (65,536) is what a 16-bit field would give: the notes' number is
    not a limit of the GRE header.
    """
    seen: dict[tuple, str] = {}
    clashes = []
    for tunnel in tunnels:
        identity = tunnel.identity()
        if identity in seen:
            clashes.append((seen[identity], tunnel.name))
        else:
            seen[identity] = tunnel.name
    return clashes


def tunnels_per_endpoint_pair(kind: str) -> int:
    """How many tunnels of one kind the kernel can tell apart between the same local and remote address."""
    if kind in ("ipip", "sit"):
        return 1
    if kind in ("gre", "gretap"):
        return MAX_GRE_KEY + 1 + 1  # every 32-bit key, plus the tunnel without a key
    raise LabInputError("kind", kind, "ipip, sit, gre or gretap")


# --- the packet builder (command line and labs) --------------------------------------------------

BUILDER_KINDS = ("vxlan", "ipip", "gre", "gretap", "sit", "geneve")
TUNNEL_DEVICE = {"vxlan": "flannel.1", "gretap": "gretap1", "geneve": "geneve0"}  # kinds that carry Ethernet
PAYLOADS = "icmp, udp:PORT or tcp:PORT (PORT from 1 to 65535)"
CLIENT_PORT = 40000
UNDERLAY_NAMES = {"ipv4": "IPv4", "ipv6": "IPv6"}
#: The kinds that carry one IP version only: the version, and why (the builder's error for the other one).
INNER_VERSION = {
    "ipip": (4, "an IPv4 address: IPIP carries IPv4 only (IPv6 goes over sit or GRE)"),
    "sit": (6, "an IPv6 address: sit carries IPv6 over IPv4"),
}


def parse_payload(text: object) -> tuple[str, int | None]:
    """`icmp`, `udp:PORT` or `tcp:PORT` → (protocol, port): what the inner packet carries."""
    value = str(text).strip().lower()
    if value == "icmp":
        return "icmp", None
    proto, _, port = value.partition(":")
    if proto in ("udp", "tcp") and port.isdigit() and 1 <= int(port) <= 65535:
        return proto, int(port)
    raise LabInputError("payload", text, PAYLOADS)


def inner_packet(inner_src, inner_dst, payload: str = "icmp"):
    """The pod's packet: `ping -c1 DST` (ICMP echo with ping's 56 bytes), a UDP datagram or a TCP SYN
    from port 40000; IPv4 or IPv6 after the addresses; TTL 64, IP id 0, DF set as a Linux pod sends it."""
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6

    from labsupport.pod_network import PING_PAYLOAD

    src = parse_ip_address(inner_src, "inner_src")
    dst = parse_ip_address(inner_dst, "inner_dst")
    if src.version != dst.version:
        raise LabInputError("inner_dst", inner_dst, f"an IPv{src.version} address, like the pod's source {src}")
    proto, port = parse_payload(payload)
    if src.version == 4:
        ip = IP(src=str(src), dst=str(dst), ttl=64, id=0, flags="DF")
        echo = ICMP(type=8, id=1, seq=1)
    else:
        ip = IPv6(src=str(src), dst=str(dst), hlim=64)
        echo = ICMPv6EchoRequest(id=1, seq=1)
    if proto == "icmp":
        return ip / echo / PING_PAYLOAD
    if proto == "udp":
        return ip / UDP(sport=CLIENT_PORT, dport=port) / b"hello"
    return ip / TCP(sport=CLIENT_PORT, dport=port, flags="S", seq=1, window=64240)


@dataclass(frozen=True)
class Encapsulated:
    """One built tunnel packet with everything the labs and the command line show about it."""

    kind: str
    packet: object  # the outer L3 packet (scapy IP or IPv6)
    wire: object  # the same with the sending node's Ethernet header: what `tcpdump -i eth0` captures
    inner: object  # the pod's packet (scapy IP or IPv6)
    overhead: int
    underlay: str
    underlay_mtu: int
    pod_mtu: int

    def breakdown(self) -> list[tuple[str, int]]:
        """The bytes added, layer by layer: [("outer IPv4", 20), ("UDP", 8), ("VXLAN", 8), ("inner Ethernet", 14)]."""
        from labsupport.packets import annotate

        sizes: dict[str, int] = {}
        inner_start = len(bytes(self.packet)) - len(bytes(self.inner))
        for item in annotate(self.packet):
            if item.start < inner_start:
                name = item.layer.rsplit(" option ", 1)[0]
                sizes[name] = sizes.get(name, 0) + item.end - item.start
        return list(sizes.items())

    def overhead_line(self) -> str:
        """Two lines: `overhead: 50 bytes = outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14`, then
        `pod MTU on a 1500-byte IPv4 underlay: 1500 - 50 = 1450`."""
        parts = " + ".join(f"{name} {size}" for name, size in self.breakdown())
        return (f"overhead: {self.overhead} bytes = {parts}\n"
                f"pod MTU on a {self.underlay_mtu}-byte {UNDERLAY_NAMES[self.underlay]} underlay: "
                f"{self.underlay_mtu} - {self.overhead} = {self.pod_mtu}")

    def text(self) -> str:
        """What `python -m labsupport encap …` prints: the layers, the annotated bytes, the overhead."""
        from labsupport.packets import hexdump, layered_summary

        return "\n".join([
            "layers (as captured on the sending node's eth0):", layered_summary(self.wire), "",
            "bytes:", hexdump(self.wire), "", self.overhead_line(),
        ])


def build(kind: str, outer_src, outer_dst, inner_src, inner_dst, payload: str = "icmp", vni: int | None = None,
          key: int | None = None, seq: int | None = None, checksum: bool = False,
          underlay_mtu: int = 1500) -> Encapsulated:
    """Build one pod packet in one tunnel: the builder behind `python -m labsupport encap KIND …` and the labs.

    The inner Ethernet addresses of vxlan, gretap and geneve stand for the two tunnel devices' MACs
    (the pod's packet is routed into the device, which then sends it to the remote device), and the
    outer ones for the nodes' eth0: both are derived from the addresses with `stable_mac`, as the
    kernel's would be random.
    """
    from labsupport.addressing import stable_mac
    from labsupport.overlay import mtu_left, vxlan_packet
    from labsupport.packets import ethernet

    if kind not in BUILDER_KINDS:
        raise LabInputError("encapsulation", kind, f"one of {', '.join(BUILDER_KINDS)}")
    if vni is not None and kind not in ("vxlan", "geneve"):
        raise LabInputError("vni", vni, "only with vxlan or geneve")
    if (key is not None or seq is not None or checksum) and kind not in ("gre", "gretap"):
        raise LabInputError("key" if key is not None else "seq" if seq is not None else "checksum",
                            key if key is not None else seq if seq is not None else checksum, "only with gre or gretap")
    src, dst = outer_addresses(outer_src, outer_dst)
    inner = inner_packet(inner_src, inner_dst, payload)
    if kind in INNER_VERSION and inner.version != INNER_VERSION[kind][0]:
        raise LabInputError("inner_src", inner_src, INNER_VERSION[kind][1])
    if kind in TUNNEL_DEVICE:
        from scapy.layers.l2 import Ether

        device = TUNNEL_DEVICE[kind]
        frame = Ether(src=stable_mac(str(src), device), dst=stable_mac(str(dst), device)) / inner
    if kind == "vxlan":
        packet = vxlan_packet(frame, src, dst, vni=1 if vni is None else vni)
    elif kind == "geneve":
        packet = geneve_packet(frame, src, dst, vni=1 if vni is None else vni)
    elif kind == "ipip":
        packet = ipip_packet(inner, src, dst)
    elif kind == "sit":
        packet = sit_packet(inner, src, dst)
    else:
        packet = gre_packet(frame if kind == "gretap" else inner, src, dst, key=key, seq=seq, checksum=checksum)
    underlay = "ipv4" if src.version == 4 else "ipv6"
    cost = overhead(kind, underlay, key=key is not None, seq=seq is not None, checksum=checksum)
    wire = ethernet(packet, stable_mac(str(src), "eth0"), stable_mac(str(dst), "eth0"))
    mtu = mtu_left(underlay_mtu, cost, f"{kind} over {underlay}", "ipv4" if inner.version == 4 else "ipv6")
    return Encapsulated(kind, packet, wire, concrete(inner), cost, underlay, underlay_mtu, mtu)
