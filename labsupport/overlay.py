"""VXLAN overlays: encapsulation, the VTEP's forwarding tables, and what the overhead costs the pods' MTU.

Models the notes' "Overlay network" section (VXLAN, VTEP, the 24-bit VNI, the frame format) the
way Linux's `vxlan` driver does it, which is what flannel's `flannel.1` and Calico's `vxlan.calico` are:

- :func:`vxlan_packet` wraps a pod's Ethernet frame in UDP/IP as the device's transmit path does
  (outer IPv4 or IPv6, UDP source port from the inner flow, the 8-byte header with the I flag and VNI);
  :func:`vxlan_decapsulate` is the receive side.
- :class:`Vtep` is one vxlan device on a namespace of its own: its forwarding database and neighbour
  entries, learning from received packets (the default) versus flannel's static entries
  (`nolearning`), printed as `bridge fdb show dev flannel.1` and `ip neigh show dev flannel.1` print
  them. The forwarding itself is :class:`labsupport.host.Namespace`'s, the same the packet engine
  (:class:`labsupport.pod_network.Engine`) uses for a cluster node's `flannel.1`.
- :func:`overhead` and :func:`pod_mtu` are the MTU arithmetic (1500 − 50 = flannel's 1450).
"""

from __future__ import annotations

import hashlib
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import TYPE_CHECKING

from labsupport.addressing import parse_ipv4_address, parse_mac
from labsupport.errors import LabInputError
from labsupport.packets import concrete

if TYPE_CHECKING:
    from labsupport.host import FdbEntry, Neighbour

LINUX_VXLAN_PORT = 8472  # drivers/net/vxlan: "the Linux default is 8472 for compatibility with early adopters"
IANA_VXLAN_PORT = 4789  # RFC 7348
MAX_VNI = 2**24 - 1  # 24 bits: 16,777,216 networks
LOCAL_PORT_RANGE = (32768, 60999)  # net.ipv4.ip_local_port_range's default
UNDERLAYS = ("ipv4", "ipv6")
OUTER_IP_HEADER = {"ipv4": 20, "ipv6": 40}
ETHERNET_HEADER, VLAN_TAG, UDP_HEADER, VXLAN_HEADER = 14, 4, 8, 8
VXLAN_FLAGS_WORD = bytes.fromhex("08000000")  # RFC 7348: the I flag, then 24 reserved bits
MIN_MTU = {"ipv4": 68, "ipv6": 1280}  # the smallest MTU each protocol allows (RFC 791, RFC 8200)


def parse_ip_address(value: object, field: str) -> IPv4Address | IPv6Address:
    """Read an IPv4 or IPv6 address, as `ip link add … type vxlan local ADDR remote ADDR` takes them."""
    try:
        return ip_address(str(value).strip())
    except ValueError:
        raise LabInputError(field, value, "expected an IPv4 or IPv6 address such as 192.168.56.10 or fd00::10") from None


def outer_addresses(outer_src: object, outer_dst: object) -> tuple[IPv4Address | IPv6Address, IPv4Address | IPv6Address]:
    """Both tunnel endpoints, of the same family (a tunnel's local and remote are both IPv4 or both IPv6)."""
    src = parse_ip_address(outer_src, "outer_src")
    dst = parse_ip_address(outer_dst, "outer_dst")
    if src.version != dst.version:
        raise LabInputError("outer_dst", outer_dst, f"an IPv{src.version} address, like the tunnel's source {src}")
    return src, dst


def outer_ip(src: IPv4Address | IPv6Address, dst: IPv4Address | IPv6Address, proto: int, ttl: int = 64,
             ip_id: int = 0):
    """The outer IP header a Linux tunnel device writes: TTL 64 ("ttl auto"), TOS 0, DF clear, and a
    fixed IP id (0, so the model reproduces; the kernel's varies).

    For IPv6: hop limit = ttl, traffic class 0, flow label 0. The proto is the IPv4 protocol
    number or IPv6 next header (17 UDP, 4 IPIP, 41 IPv6, 47 GRE).
    """
    from scapy.layers.inet import IP
    from scapy.layers.inet6 import IPv6

    ttl_value = check_range(ttl, "ttl", 1, 255)
    if src.version == 6:
        return IPv6(src=str(src), dst=str(dst), nh=proto, hlim=ttl_value, tc=0, fl=0)
    return IP(src=str(src), dst=str(dst), proto=proto, ttl=ttl_value, tos=0, flags=0, id=check_range(ip_id, "ip_id", 0, 65535))


def check_range(value: object, field: str, low: int, high: int) -> int:
    """A whole number from low to high, or the one LabInputError naming the field."""
    number = value if isinstance(value, int) and not isinstance(value, bool) else None
    if number is None and isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    if number is None or not low <= number <= high:
        raise LabInputError(field, value, f"a whole number from {low} to {high}")
    return number


def check_vni(vni: object, field: str = "vni") -> int:
    """The VXLAN Network Identifier: 24 bits, 0 to 16777215 (`ip link add … type vxlan id VNI`)."""
    return check_range(vni, field, 0, MAX_VNI)


def _ether(frame, field: str):
    from scapy.layers.l2 import Ether

    if not isinstance(frame, Ether):
        raise LabInputError(field, type(frame).__name__, "a scapy Ether frame (the pod's frame as the vxlan device gets it)")
    return frame


def flow_source_port(inner_frame) -> int:
    """The outer UDP source port for an inner frame: a hash of its flow, scaled into 32768–60999.

    Linux's `udp_flow_src_port()` takes the skb's flow hash (addresses, protocol and ports of the
    inner packet, or the two MACs when there is no IP), folds it (`hash ^= hash << 16`) and scales
    it into the local port range (`net.ipv4.ip_local_port_range`, 32768–60999 by default):
    `((u64) hash * (max - min)) >> 32) + min`. The kernel's hash is keyed with a random secret each
    machine chooses at boot, so the real port differs from machine to machine and boot to boot; this
    model uses SHA-256 of the same fields instead, so one flow always gets the same port here and
    different flows (usually) different ones, which is what ECMP in the underlay relies on. The
    kernel's hash is symmetric (`__flow_hash_consistentify()` puts the lower address, then the lower
    port, first), and so is this one: within ONE kernel a request and its reply leave with the same
    source port, as the kernel twin saw (its two nodes are namespaces sharing one kernel). On two
    real nodes the request is hashed on node-1 and the reply on node-2, each with its own secret, so
    their ports differ; the model, one hash for the whole cluster, behaves like the twin.
    RFC 7348 suggests 49152–65535; Linux uses its local port range.
    """
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.inet6 import IPv6

    frame = _ether(inner_frame, "inner_frame")
    if IP in frame or IPv6 in frame:
        l3 = frame[IP] if IP in frame else frame[IPv6]
        proto = l3.proto if IP in frame else l3.nh
        l4 = next((frame[layer] for layer in (TCP, UDP) if layer in frame), None)
        ends = sorted(
            (ip_address(address), port)
            for address, port in ((l3.src, l4.sport if l4 else 0), (l3.dst, l4.dport if l4 else 0))
        )
        parts = [str(proto)] + [f"{address} {port}" for address, port in ends]
    else:
        parts = sorted([frame.src, frame.dst]) + [str(frame.type)]
    digest = int.from_bytes(hashlib.sha256("|".join(parts).encode()).digest()[:4], "big")
    digest ^= (digest << 16) & 0xFFFFFFFF
    low, high = LOCAL_PORT_RANGE
    return ((digest * (high - low)) >> 32) + low


def vxlan_packet(
    inner_frame,
    outer_src,
    outer_dst,
    vni: int = 1,
    dstport: int = LINUX_VXLAN_PORT,
    udp_checksum: bool = True,
):
    """Encapsulate a pod's Ethernet frame as a Linux vxlan device sends it: outer IP / UDP / VXLAN / frame.

    Mirrors `ip link add flannel.1 type vxlan id VNI local OUTER_SRC dstport 8472 nolearning`
    sending a frame whose FDB entry says `dst OUTER_DST`. Returns the OUTER L3 packet (scapy IP, or
    IPv6 when the endpoints are IPv6) without an outer Ethernet header: the node's own stack routes
    it and adds Ethernet after ARP, as the kernel does.

    - Outer IP: TTL 64 (`ttl auto`), TOS 0, DF clear (the driver's defaults), IP id 0 (fixed so the
      model reproduces; the kernel's varies): :func:`outer_ip`.
    - UDP: destination port dstport (Linux default 8472, IANA 4789), source port from
      :func:`flow_source_port`. udp_checksum=True matches this kernel's default (`ip -d link show`
      prints `udpcsum` for a new IPv4 vxlan device, and captured frames carry a checksum);
      RFC 7348 says the checksum SHOULD be transmitted as zero over IPv4 (`udpcsum` off, i.e.
      `noudpcsum`). Over IPv6 a zero checksum needs `udp6zerocsumtx`.
    - VXLAN header: flags 0x08 (I: the VNI is valid), 24 reserved bits, the 24-bit VNI, 8 reserved bits.
    """
    from scapy.layers.inet import UDP
    from scapy.layers.vxlan import VXLAN

    frame = _ether(inner_frame, "inner_frame")
    src, dst = outer_addresses(outer_src, outer_dst)
    vni_value = check_vni(vni)
    port = check_range(dstport, "dstport", 1, 65535)
    udp = UDP(sport=flow_source_port(frame), dport=port, chksum=None if udp_checksum else 0)
    return concrete(outer_ip(src, dst, 17) / udp / VXLAN(flags=0x08, vni=vni_value) / frame.copy())


def vxlan_decapsulate(packet_or_frame) -> tuple[int, object]:
    """The receive side: from an outer packet (or a captured frame with outer Ethernet) to (VNI, inner frame).

    What the vxlan device does with a datagram arriving on its UDP port (`vxlan_rcv()`): check that the
    header is the I flag and a VNI with nothing else set, read the VNI, hand the inner Ethernet frame to
    the device with that VNI. Works for any destination port
    (the UDP payload is read as VXLAN whatever the port).
    """
    from scapy.layers.inet import UDP
    from scapy.layers.l2 import Ether
    from scapy.packet import Packet

    if not isinstance(packet_or_frame, Packet) or UDP not in packet_or_frame:
        raise LabInputError("packet", getattr(packet_or_frame, "summary", lambda: repr(packet_or_frame))(),
                            "a UDP packet carrying VXLAN (outer IP / UDP / VXLAN / Ethernet)")
    payload = bytes(packet_or_frame[UDP].payload)
    if len(payload) < VXLAN_HEADER + ETHERNET_HEADER:
        raise LabInputError("packet", f"{len(payload)} bytes of UDP payload",
                            f"at least {VXLAN_HEADER + ETHERNET_HEADER} (VXLAN header and inner Ethernet)")
    if payload[:4] != VXLAN_FLAGS_WORD or payload[7]:
        raise LabInputError("packet", f"VXLAN header {payload[:VXLAN_HEADER].hex()}", "08000000 VVVVVV00: the I flag "
                            "alone and zero reserved bits (`vxlan_rcv()` drops a header with bits it does not parse)")
    return int.from_bytes(payload[4:7], "big"), Ether(payload[VXLAN_HEADER:])


def overhead(encapsulation: str = "vxlan", underlay: str = "ipv4", inner_vlan: bool = False) -> int:
    """Bytes an encapsulation adds to each pod packet, counted against the underlay MTU.

    VXLAN: outer IPv4 20 (IPv6 40) + UDP 8 + VXLAN 8 + inner Ethernet 14 = 50 (70), as Linux's
    `VXLAN_HEADROOM` / `VXLAN6_HEADROOM`; +4 when the inner frame carries an 802.1Q tag. The other
    encapsulations ("ipip", "gre", "gretap", "sit", "geneve", "none") are in
    :func:`labsupport.tunneling.overhead` and are answered from there.
    """
    if encapsulation != "vxlan":
        from labsupport.tunneling import overhead as tunnel_overhead

        return tunnel_overhead(encapsulation, underlay=underlay, inner_vlan=inner_vlan)
    if underlay not in UNDERLAYS:
        raise LabInputError("underlay", underlay, f"one of {', '.join(UNDERLAYS)}")
    return OUTER_IP_HEADER[underlay] + UDP_HEADER + VXLAN_HEADER + ETHERNET_HEADER + (VLAN_TAG if inner_vlan else 0)


def pod_mtu(underlay_mtu: int, encapsulation: str = "vxlan", underlay: str = "ipv4", inner_vlan: bool = False) -> int:
    """The MTU to give pods (and flannel.1, cni0) so an encapsulated packet fits the underlay unfragmented.

    flannel: `mtu = external interface MTU - 50` (1500 → 1450). VTEPs must not fragment (RFC 7348),
    so a pod MTU below the protocol minimum (68 for IPv4; 1280 for the IPv6 that SIT carries) means
    the underlay is too small.
    """
    cost = overhead(encapsulation, underlay, inner_vlan)
    return mtu_left(underlay_mtu, cost, f"{encapsulation} over {underlay}", "ipv6" if encapsulation == "sit" else "ipv4")


def mtu_left(underlay_mtu: int, cost: int, what: str, inner: str = "ipv4") -> int:
    """The underlay MTU minus an encapsulation's cost, or the one error if that leaves less than the
    inner protocol's minimum MTU."""
    mtu = check_range(underlay_mtu, "underlay_mtu", 68, 65535)
    if mtu - cost < MIN_MTU[inner]:
        raise LabInputError(
            "underlay_mtu", underlay_mtu,
            f"at least {cost + MIN_MTU[inner]}: {what} costs {cost} bytes "
            f"and {'IPv4' if inner == 'ipv4' else 'IPv6'} needs an MTU of at least {MIN_MTU[inner]}",
        )
    return mtu - cost


# --- the VTEP: forwarding database and neighbour entries --------------------------------------------


class Vtep:
    """One vxlan device (a VXLAN Tunnel End Point) on a namespace of its own: its VNI, local address, and
    the tables it forwards by.

    learning=True is the kernel's default (`ip link add vx type vxlan id 1 …`): a received packet
    teaches inner source MAC → outer source IP. flannel creates `flannel.1` with `nolearning` and
    writes one permanent FDB entry and one permanent neighbour entry per remote node instead.

    A view over :class:`labsupport.host.Namespace`: the device and its entries live in `namespace`,
    and the forwarding (`vxlan_lookup`, `vxlan_learn`, `add_fdb`, the printing) is the namespace's,
    which the packet engine uses for the VTEPs of a cluster's nodes too.
    """

    def __init__(self, name: str, vni: int, local: str, mac: str, dstport: int = LINUX_VXLAN_PORT,
                 learning: bool = True) -> None:
        """`ip link add NAME address MAC type vxlan id VNI local LOCAL dstport PORT [nolearning]`."""
        from labsupport.host import Namespace  # host imports this module (check_vni, check_range)

        self.name = name
        self.namespace = Namespace("node", role="node")
        address = parse_ipv4_address(local, "vxlan.local")  # a VTEP of its own sends from its own address
        self.namespace.add_vxlan(name, vni, dstport, mac, local=str(address), learning=learning)

    @property
    def vni(self) -> int:
        """`id VNI`."""
        return self.namespace.links[self.name].vxlan.vni

    @property
    def local(self) -> IPv4Address:
        """`local ADDRESS`: the outer source address of what it sends."""
        return self.namespace.links[self.name].vxlan.local

    @property
    def dstport(self) -> int:
        """`dstport PORT`: the outer UDP destination port."""
        return self.namespace.links[self.name].vxlan.dstport

    @property
    def fdb(self) -> list[FdbEntry]:
        """Its FDB entries (MAC → remote VTEP), newest MAC first, as `bridge fdb show dev NAME` lists them."""
        return self.namespace.vxlan_fdb(self.name)

    @property
    def neighbours(self) -> list[Neighbour]:
        """Its neighbour entries (a remote VTEP's overlay address → its device MAC)."""
        return [n for n in self.namespace.neighbours if n.dev == self.name]

    def fdb_add(self, mac: str, dst: str, append: bool = False) -> FdbEntry:
        """`bridge fdb add MAC dev DEV dst DST self permanent` (or `bridge fdb append` for another
        all-zeros default destination: several dsts per MAC only with append)."""
        return self.namespace.add_fdb(mac, self.name, dst, append=append)

    def neigh_add(self, ip: str, mac: str) -> Neighbour:
        """`ip neigh add IP dev DEV lladdr MAC nud permanent` (flannel: the remote VTEP's overlay address)."""
        return self.namespace.add_neighbour(ip, mac, self.name, "PERMANENT")

    def learn(self, inner_src_mac: str, outer_src: str) -> FdbEntry | None:
        """What receiving a VXLAN packet teaches the device: inner source MAC → outer source IP.

        The entry learned (or moved to a new VTEP), else None: with `nolearning` (flannel's), or when
        an entry already says so, or when a permanent entry names another VTEP (the kernel never moves
        a static entry; :meth:`receive` drops such a packet).
        """
        if self.namespace.vxlan_learn(self.name, inner_src_mac, outer_src) not in ("learned", "migrated"):
            return None
        mac = parse_mac(inner_src_mac, "inner_src_mac")
        return next(e for e in self.fdb if e.mac == mac)

    def lookup(self, inner_dst_mac: str) -> list[IPv4Address]:
        """Where the device sends a frame for inner_dst_mac: the entry's dst, or else every all-zeros
        default dst (flooding), or [] (the frame is dropped)."""
        return [e.dst for e in self.namespace.vxlan_lookup(self.name, inner_dst_mac)]

    def bridge_fdb_show(self) -> str:
        """`bridge fdb show dev NAME`."""
        return self.namespace.vxlan_fdb_show(self.name)

    def ip_neigh_show(self) -> str:
        """`ip neigh show dev NAME`."""
        return self.namespace.ip_neigh(dev=self.name)

    def encapsulate(self, inner_frame) -> list:
        """Send one inner frame: look its destination MAC up and build one packet per remote VTEP."""
        frame = _ether(inner_frame, "inner_frame")
        return [vxlan_packet(frame, self.local, dst, vni=self.vni, dstport=self.dstport) for dst in self.lookup(frame.dst)]

    def receive(self, packet) -> object:
        """Receive one outer packet: check the VNI, learn (if learning), return the inner frame.

        The kernel drops a packet for another VNI, and (with learning on) one whose inner source MAC
        has a permanent entry naming another VTEP: both raise the one error.
        """
        from scapy.layers.inet import IP

        vni, inner = vxlan_decapsulate(packet)
        if vni != self.vni:
            raise LabInputError("vni", vni, f"{self.vni}: {self.name} drops packets for other VNIs")
        if IP in packet and self.namespace.vxlan_learn(self.name, inner.src, packet[IP].src) == "static":
            raise LabInputError(
                "packet", f"{inner.src} from VTEP {packet[IP].src}",
                f"a VTEP its permanent FDB entry names: {self.name} drops it and keeps the entry",
            )
        return inner
