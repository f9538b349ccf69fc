"""Pod networking on one node: namespaces, veth pairs, a bridge, and the way a packet goes.

Models the notes' "Container to Container", "Pod to Pod" (one node), "Inside Pod", "On the
Node" and "Docker网络原理" sections:

- :func:`build_node` is what a bridge CNI plugin (or Docker with `docker0`) sets up: one
  namespace per pod, a veth pair per pod with one end in the pod (`eth0`) and one on the
  node enslaved to the bridge, the bridge holding the pods' gateway address.
- :func:`aws_vpc_cni_node` is the notes' AWS VPC CNI node: /32 pod addresses, the
  `169.254.1.1` gateway with a permanent ARP entry, per-pod host routes and policy routing.
- :func:`walk` sends one ping (or UDP datagram) and records every hop: route lookup, ARP,
  bridge learning and forwarding, delivery and the reply, with the scapy frame at each.
- :func:`check_requirements` runs the three Kubernetes network requirements against a node.
"""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from ipaddress import IPv4Address, IPv4Network

from labsupport import overlay, tunneling
from labsupport.addressing import (
    BROADCAST_MAC,
    ZERO_MAC,
    check_ifname,
    cni_mac,
    parse_ipv4_address,
    parse_ipv4_interface,
    parse_ipv4_network,
    stable_mac,
)
from labsupport.errors import LabInputError
from labsupport.host import FdbEntry, Namespace
from labsupport.tunneling import IPPROTO_IPIP

MAX_PODS = 8
PING_PAYLOAD = bytes(16) + bytes(range(0x10, 0x38))  # ping's 56 bytes: a zeroed timestamp, then its pattern
ETH_P_ARP, ETH_P_IP = 0x0806, 0x0800


@dataclass
class Node:
    """A Kubernetes node: its root namespace plus one namespace per pod, in creation order."""

    name: str
    namespaces: dict[str, Namespace] = field(default_factory=dict)

    @property
    def host(self) -> Namespace:
        """The node's root namespace (where the bridge and the host ends of the veths live)."""
        return self.namespaces[self.name]

    @property
    def pods(self) -> list[str]:
        """Pod namespace names, in creation order."""
        return [n for n, ns in self.namespaces.items() if ns.role == "pod"]

    def namespace(self, name: str, fieldname: str = "namespace") -> Namespace:
        """The namespace called name (the node's own name means the root namespace)."""
        try:
            return self.namespaces[name]
        except KeyError:
            raise LabInputError(fieldname, name, f"one of {', '.join(self.namespaces)}") from None

    def pod_ip(self, pod: str) -> IPv4Address:
        """The pod's address: the first global address on its eth0 (what `kubectl get pod -o wide` shows)."""
        return self.namespace(pod, "pod").link("eth0").addresses[0].ip

    def owner_of(self, ip: IPv4Address) -> str | None:
        """Which namespace owns an address, if any."""
        return next((name for name, ns in self.namespaces.items() if ip in ns.local_addresses()), None)

    def engine(self) -> Engine:
        """The packet engine over this node's namespaces (its uplink leads out of the model)."""
        return Engine(self.namespaces)

    def add_pod(
        self,
        name: str,
        address: str,
        host_veth: str,
        bridge: str | None = None,
        gateway: str | None = None,
        containers: tuple[str, ...] = ("app",),
        mtu: int = 1500,
        host_mac: str | None = None,
    ) -> Namespace:
        """What a CNI plugin's ADD does for one pod: `ip netns add`, a veth pair, `eth0` inside with the
        address, the host end on the node (enslaved to the bridge if there is one), the pod's routes.
        Both veth ends get mtu; the host end host_mac, else a stable stand-in for the kernel's random one."""
        if name in self.namespaces:
            raise LabInputError("pod.name", name, "a name no other pod or the node already has")
        check_ifname(host_veth, "pod.host_veth")
        iface = parse_ipv4_interface(address, "pod.address")
        owner = self.owner_of(iface.ip)
        if owner is not None:
            raise LabInputError("pod.address", address, f"an address not already used (by {owner})")
        if bridge is not None:
            br = self.host.link(bridge, "pod.bridge")
            subnet = br.addresses[0].network
            if iface.ip not in subnet or iface.network != subnet:
                raise LabInputError("pod.address", address, f"an address inside the bridge's subnet {subnet}")
        pod = Namespace(name, role="pod", containers=tuple(containers))
        host_end = self.host.add_link(
            host_veth, "veth", host_mac or stable_mac(self.name, host_veth), mtu=mtu, master=bridge
        )
        pod_end = pod.add_link("eth0", "veth", cni_mac(iface.ip), mtu=mtu)
        pod_end.index = 2  # a fresh namespace has lo as 1, so the pod's eth0 is 2
        host_end.peer, host_end.peer_index = (name, "eth0"), pod_end.index
        pod_end.peer, pod_end.peer_index = (self.name, host_veth), host_end.index
        pod.add_address("eth0", iface)
        if gateway is not None:
            pod.add_route("default", via=gateway, dev="eth0")
        self.namespaces[name] = pod
        return pod


def build_node(
    pods: int = 2,
    bridge: str = "cni0",
    pod_cidr: str = "10.244.1.0/24",
    node_ip: str = "192.168.56.10/24",
    node_gateway: str = "192.168.56.1",
    name: str = "node-1",
    containers: tuple[str, ...] = ("app",),
) -> Node:
    """A node as the bridge CNI plugin (or Docker, with bridge `docker0`) sets it up.

    Mirrors, per pod: `ip netns add`, `ip link add vethX type veth peer name eth0 netns POD`,
    `ip link set vethX master BRIDGE up`, `ip addr add POD_IP/LEN brd + dev eth0`,
    `ip route add default via BRIDGE_IP`; and on the node `ip addr add GATEWAY/LEN dev BRIDGE`.
    The bridge takes the first address of the pod CIDR, pods the next ones; every pod runs
    the given containers, which share its namespace.
    """
    if not isinstance(pods, int) or not 1 <= pods <= MAX_PODS:
        raise LabInputError("pods", pods, f"a whole number of pods from 1 to {MAX_PODS}")
    check_ifname(bridge, "bridge")
    if bridge in {"lo", "eth0"}:
        raise LabInputError("bridge", bridge, "a name no other device of the node has (lo and eth0 are taken)")
    cidr = parse_ipv4_network(pod_cidr, "pod_cidr")
    if cidr.prefixlen > 29:
        raise LabInputError("pod_cidr", pod_cidr, "a prefix of /29 or shorter, with room for the bridge and pods")
    if cidr.overlaps(IPv4Network("224.0.0.0/4")):
        raise LabInputError("pod_cidr", pod_cidr, "a unicast prefix: 224.0.0.0/4 is multicast, sent without ARP")
    node_iface = parse_ipv4_interface(node_ip, "node_ip")
    if cidr.overlaps(node_iface.network):
        raise LabInputError(
            "pod_cidr", pod_cidr, f"a pod CIDR that does not overlap the node's network {node_iface.network}"
        )
    usable = cidr.num_addresses - 2  # network and broadcast addresses excluded (/29 or shorter here)
    if pods + 1 > usable:
        raise LabInputError("pods", pods, f"at most {usable - 1} pods in {cidr}")
    hosts = [cidr.network_address + i for i in range(1, pods + 2)]  # the bridge, then the pods

    node = Node(name)
    host = Namespace(name, role="node", forwarding=True)
    node.namespaces[name] = host
    host.add_link("eth0", "ether", stable_mac(name, "eth0"))
    host.add_address("eth0", node_iface)
    host.add_route("default", via=node_gateway, dev="eth0")
    gateway = hosts[0]
    host.add_link(bridge, "bridge", cni_mac(gateway))
    host.add_address(bridge, f"{gateway}/{cidr.prefixlen}")
    for i in range(pods):
        pod_name = f"pod-{chr(ord('a') + i)}"
        node.add_pod(
            pod_name,
            f"{hosts[i + 1]}/{cidr.prefixlen}",
            host_veth="veth" + stable_mac(name, pod_name).replace(":", "")[4:12],
            bridge=bridge,
            gateway=str(gateway),
            containers=containers,
        )
    return node


# The notes' "Inside Pod" and "On the Node" outputs, as data. The secondary ENI's own address is not in
# the notes; 10.0.108.20 stands in for it.
AWS_PODS = (
    ("pod-a", "10.0.97.30", "aws8db0408c9a8", "2a:09:74:cd:c4:62", "eni-1", "56:41:95:26:17:41"),
    ("pod-b", "10.0.97.159", "awsbcd978401eb", None, None, None),
    ("pod-c", "10.0.97.226", "awsc2f87dc4cdd", None, None, None),
    ("pod-d", "10.0.102.98", "aws4914061689b", None, None, None),
)
AWS_POD_MTU = 1500  # the notes' pod prints `eth0@if231: … mtu 1500`; the node's ENIs keep EC2's 9001
AWS_VPC_CIDR = "10.0.0.0/16"
AWS_LINK_LOCAL_GATEWAY = "169.254.1.1"


def aws_vpc_cni_node(name: str = "ip-10-0-104-183") -> Node:
    """The notes' node running the AWS VPC CNI: no bridge, routed pods, policy routing per ENI.

    Mirrors what the plugin programs (amazon-vpc-cni-k8s, docs/cni-proposal.md): in each pod
    `ip addr add POD/32 dev eth0`, `ip route add 169.254.1.1 dev eth0 scope link`,
    `ip route add default via 169.254.1.1`, `ip neigh add 169.254.1.1 lladdr HOST_VETH_MAC nud permanent`;
    on the node `ip route add POD dev HOST_VETH scope link`, `ip rule add to POD lookup main pref 512`,
    `ip rule add not to VPC_CIDR lookup main pref 1025`, and for pods on a secondary ENI
    `ip rule add from POD lookup eni-N pref 1536` with table eni-N routing out that ENI.
    """
    node = Node(name)
    host = Namespace(name, role="node", forwarding=True)
    node.namespaces[name] = host
    host.add_link("eth0", "ether", "02:4f:1a:3c:9e:01", mtu=9001)
    host.add_address("eth0", "10.0.104.183/19")
    host.add_route("default", via="10.0.96.1", dev="eth0")
    add_secondary_eni(host, "eth1", "02:4f:1a:3c:9e:02", "10.0.108.20/19", "10.0.96.1", "eni-1", 2, mtu=9001)
    host.add_rule(1025, "main", dst=AWS_VPC_CIDR, invert=True)
    for pod_name, ip, veth, veth_mac, eni_table, pod_mac in AWS_PODS:
        add_vpc_cni_pod(
            node, pod_name, ip, veth, veth_mac or stable_mac(name, veth), pod_mac or stable_mac(pod_name, "eth0"),
            eni_table, mtu=AWS_POD_MTU,
        )
    return node


def add_secondary_eni(
    host: Namespace, dev: str, mac: str, address: str, gateway: str, table: str, table_id: int, mtu: int = 1500
) -> None:
    """A secondary ENI as the AWS VPC CNI sets it up: the device with its address, whose connected
    route the plugin leaves out of main, and its own table (`default via GW dev DEV`, `GW dev DEV scope link`)."""
    host.add_link(dev, "ether", mac, mtu=mtu)
    host.links[dev].addresses.append(parse_ipv4_interface(address, f"{dev}.address"))
    host.add_table(table, table_id)
    host.add_route(gateway, dev=dev, table=table, scope="link")
    host.add_route("default", via=gateway, dev=dev, table=table)


def add_vpc_cni_pod(
    node: Node, pod_name: str, ip: str, veth: str, veth_mac: str, pod_mac: str, eni_table: str | None,
    mtu: int = AWS_POD_MTU,
) -> Namespace:
    """One pod as the AWS VPC CNI adds it: a /32 address (an ENI's secondary address), the link-local
    gateway `169.254.1.1` with a permanent ARP entry for the host veth, the node's host route and its
    policy rules (to the pod: main, pref 512; from a pod on a secondary ENI: that ENI's table, 1536)."""
    host = node.host
    pod = Namespace(pod_name, role="pod", containers=("app",))
    host_end = host.add_link(veth, "veth", veth_mac, mtu=mtu)
    pod_end = pod.add_link("eth0", "veth", pod_mac, mtu=mtu)
    pod_end.index = 3
    host_end.peer, host_end.peer_index = (pod_name, "eth0"), pod_end.index
    pod_end.peer, pod_end.peer_index = (node.name, veth), host_end.index
    pod.add_address("eth0", f"{ip}/32")
    pod.add_route(AWS_LINK_LOCAL_GATEWAY, dev="eth0", scope="link")
    pod.add_route("default", via=AWS_LINK_LOCAL_GATEWAY, dev="eth0")
    pod.add_neighbour(AWS_LINK_LOCAL_GATEWAY, host_end.mac, "eth0", "PERMANENT")
    host.add_route(ip, dev=veth, scope="link")
    host.add_rule(512, "main", dst=ip)
    if eni_table:
        host.add_rule(1536, eni_table, src=ip)
    node.namespaces[pod_name] = pod
    return pod


# --- a packet's way ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hop:
    """One thing that happened to the packet: where, what, and the frame on the wire (if any)."""

    namespace: str
    device: str
    event: str
    frame: object = None  # a scapy Ether frame, as captured on that device

    def frame_summary(self) -> str:
        """The frame in tcpdump -e style words (scapy's summary), or '' for a decision."""
        return self.frame.summary() if self.frame is not None else ""


@dataclass
class Walk:
    """The hops of one exchange (request and reply), and the node's state afterwards."""

    source: str
    destination: str
    hops: list[Hop]
    node_after: Node  # for a walk across nodes, the cni.Cluster after it (it has `namespaces` too)
    delivered: bool
    replied: bool

    def table(self) -> str:
        """The walk as numbered lines: namespace and device, then what happened."""
        width = max(len(f"{h.namespace}/{h.device}") for h in self.hops)
        return "\n".join(
            f"{i:>2}. {f'{h.namespace}/{h.device}':<{width}}  {h.event}" for i, h in enumerate(self.hops, 1)
        )

    def frames(self, namespace: str | None = None, device: str | None = None) -> list:
        """Every frame seen on a device, in order, with deterministic timestamps (1 ms apart).

        With namespace and device, only what a capture there would see (`tcpdump -i DEVICE`
        inside that namespace): each frame once, sent or received.
        """
        seen = [
            h for h in self.hops
            if h.frame is not None and namespace in (None, h.namespace) and device in (None, h.device)
        ]
        out = []
        for i, hop in enumerate(seen):
            frame = hop.frame.copy()
            frame.time = 1_700_000_000 + i / 1000
            out.append(frame)
        return out

    def write_pcap(self, path: str, namespace: str | None = None, device: str | None = None) -> str:
        """Save the frames (all, or those seen on one device) as a pcap Wireshark opens (scapy's wrpcap)."""
        from scapy.utils import wrpcap

        wrpcap(path, self.frames(namespace, device))
        return path


@dataclass(frozen=True)
class Segment:
    """An Ethernet segment joining devices of different namespaces: the underlay between nodes.

    It behaves as a switch that knows every attached MAC: a unicast frame goes to the port that
    owns its destination, a broadcast (or an unknown destination) to every other port. A cloud
    VPC's fabric is a controller-programmed one: fabric_arp maps the addresses the fabric itself
    answers ARP for to the MAC of the interface (ENI) they are assigned to, and its ARP requests
    reach no host.
    """

    name: str
    ports: tuple[tuple[str, str], ...]  # (namespace, device)
    fabric_arp: tuple[tuple[str, str], ...] = ()  # (address, MAC)


# A hook stands in for code that is not a route or a table entry: an eBPF program at a device's tc
# ingress, a userspace daemon reading a device or a UDP socket. It is called with the engine, the
# namespace, the device (or port) and the frame (or packet); it returns True when it took it.
Hook = Callable[["Engine", str, str, object], bool]


class Engine:
    """Moves frames between namespaces the way the kernel does, recording hops.

    Frames in flight wait in a FIFO queue, so a flood reaches every port before anyone answers,
    and a packet waiting for ARP sits in the neighbour's queue until the reply comes (arp_queue).
    Devices on a :class:`Segment` reach each other; a device on none leads out of the model.
    vxlan devices encapsulate (FDB lookup of the inner destination MAC → remote VTEP) and the UDP
    port of a vxlan device decapsulates, by the namespace's VTEP methods (`vxlan_lookup`,
    `vxlan_learn`), which :class:`labsupport.overlay.Vtep` uses too; `tunl0` (ipip) encapsulates
    towards its route's gateway. hooks holds :data:`Hook` functions by (namespace, place, device or
    port), place "ingress" (a frame received on a device), "egress" (a frame sent to one) or "udp"
    (a datagram for a local port).
    """

    def __init__(
        self,
        namespaces: dict[str, Namespace],
        segments: tuple[Segment, ...] = (),
        hooks: dict[tuple[str, str, str], Hook] | None = None,
    ) -> None:
        self.namespaces = namespaces
        self.segments = {port: seg for seg in segments for port in seg.ports}
        self.hooks = hooks or {}
        self.hops: list[Hop] = []
        self.delivered: list[tuple[str, object]] = []
        self.wire: deque = deque()
        self.waiting_for_arp: dict[tuple[str, str, IPv4Address], list] = {}
        # What an `external` vxlan device attaches to the frame it decapsulated (the skb's
        # ip_tunnel_info): the outer source address and the VNI, for the hook that reads it.
        self.tunnel_info: tuple[IPv4Address, int] | None = None

    def run(self) -> None:
        """Deliver the frames in flight, oldest first, until none is left (the packets' way ends)."""
        while self.wire:
            self.wire.popleft()()

    def record(self, ns: str, dev: str, event: str, frame=None) -> None:
        """Note one hop: where (namespace, device), what happened, and the frame as captured there."""
        if len(self.hops) > 500:
            raise RuntimeError("packet walk did not converge: a forwarding loop in the model")
        # Frames are never changed once sent (forwarding changes a copy), so a hop can keep the frame itself.
        self.hops.append(Hop(ns, dev, event, frame))

    # layer 3: sending and forwarding

    def send_ip(self, ns_name: str, packet) -> None:
        """A packet the namespace itself sends (ip_local_out): route lookup (`ip route get`), then a
        local destination is looped back over `lo`, a blackhole drops it, anything else is output."""
        ns = self.namespaces[ns_name]
        decision = ns.route_get(packet.dst, src=packet.src)
        self.record(ns_name, decision.route.dev or "-", f"route lookup for {packet.dst}: {decision.explain()}")
        if decision.route.kind == "local":
            self.record(ns_name, "lo", f"{packet.dst} is local: looped back")
            self.deliver(ns_name, "lo", packet)
            return
        if decision.route.kind == "blackhole":
            self.record(ns_name, "-", f"blackhole route: {packet.dst} is dropped")
            return
        self.output(ns_name, decision.route, packet)

    def output(self, ns_name: str, route, packet) -> None:
        """Send a routed packet out of the route's device (ip_output → ip_finish_output2 →
        neigh_output): an ipip device encapsulates; otherwise the next hop's neighbour entry gives the
        destination MAC, and without one the packet waits while ARP asks (neigh_resolve_output)."""
        ns = self.namespaces[ns_name]
        if ns.links[route.dev].kind == "ipip":
            self.ipip_transmit(ns_name, route, packet)
            return
        nexthop = route.via or IPv4Address(packet.dst)
        entry = ns.neighbour(nexthop, route.dev)
        if entry is None:
            key = (ns_name, route.dev, nexthop)
            first = key not in self.waiting_for_arp
            self.waiting_for_arp.setdefault(key, []).append(packet)
            if first:
                self.arp_request(ns_name, route.dev, nexthop, ns.source_for(route))
            return
        self.record(ns_name, route.dev, f"neighbour table: {nexthop} is at {entry.mac} ({entry.state})")
        if entry.state == "STALE":
            ns.add_neighbour(str(nexthop), entry.mac, route.dev, "DELAY")
        self.send_frame(ns_name, route.dev, entry.mac, nexthop, packet)

    def send_frame(self, ns_name: str, dev: str, mac: str, nexthop: IPv4Address, packet) -> None:
        """Put the packet in an Ethernet frame from dev's MAC to the next hop's (neigh_hh_output /
        dev_hard_header) and transmit it."""
        from scapy.layers.l2 import Ether

        link = self.namespaces[ns_name].links[dev]
        frame = Ether(src=link.mac, dst=mac, type=ETH_P_IP)
        frame.add_payload(packet)  # no copy (`/` copies): a packet is never changed once sent
        self.record(ns_name, dev, f"transmits {_describe(packet)} to {mac} (next hop {nexthop})", frame)
        self.transmit(ns_name, dev, frame)

    def arp_request(self, ns_name: str, dev: str, nexthop: IPv4Address, src: IPv4Address) -> None:
        """Broadcast ARP who-has nexthop tell src on dev (arp_solicit), the packet queued meanwhile."""
        from scapy.layers.l2 import ARP, Ether

        link = self.namespaces[ns_name].links[dev]
        request = Ether(src=link.mac, dst=BROADCAST_MAC, type=ETH_P_ARP) / ARP(
            op=1, hwsrc=link.mac, psrc=str(src), hwdst=ZERO_MAC, pdst=str(nexthop)
        )
        self.record(
            ns_name, dev, f"no neighbour entry for {nexthop}: queues the packet, broadcasts ARP who-has {nexthop} tell {src}",
            request,
        )
        self.transmit(ns_name, dev, request)

    # layer 2: links, the bridge and the underlay

    def transmit(self, ns_name: str, dev: str, frame) -> None:
        """A frame sent on dev (dev_queue_xmit → the driver's xmit): an egress hook may take it; a
        bridge floods or forwards it (br_dev_xmit), a veth hands it to its peer (veth_xmit), a vxlan
        device encapsulates it (vxlan_xmit), a device on a segment puts it on the wire; any other
        device leads out of the model."""
        link = self.namespaces[ns_name].links[dev]
        hook = self.hooks.get((ns_name, "egress", dev))
        if hook is not None and hook(self, ns_name, dev, frame):
            return
        if link.kind == "bridge":
            self.wire.append(lambda: self.bridge_forward(ns_name, link.name, None, frame))
        elif link.kind == "veth" and link.peer is not None:
            peer_ns, peer_dev = link.peer
            self.wire.append(lambda: self.receive(peer_ns, peer_dev, frame))
        elif link.kind == "vxlan":
            self.vxlan_transmit(ns_name, dev, frame)
        elif (ns_name, dev) in self.segments:
            segment = self.segments[(ns_name, dev)]
            self.wire.append(lambda: self.switch(segment, (ns_name, dev), frame))
        else:
            self.record(ns_name, dev, "leaves the node on its uplink: beyond this model", frame)

    def switch(self, segment: Segment, came_from: tuple[str, str], frame) -> None:
        """The underlay between namespaces: a switch that knows every port's MAC (unicast to its owner,
        broadcast and unknown MACs flooded), or a cloud fabric answering ARP itself."""
        from scapy.layers.l2 import ARP, Ether

        if segment.fabric_arp and frame.type == ETH_P_ARP and frame[ARP].op == 1:
            asked = frame[ARP].pdst
            mac = dict(segment.fabric_arp).get(asked)
            if mac is None:
                self.record(segment.name, "fabric", f"ARP who-has {asked}: no interface has it, no reply")
                return
            reply = Ether(src=mac, dst=frame.src, type=ETH_P_ARP) / ARP(
                op=2, hwsrc=mac, psrc=asked, hwdst=frame.src, pdst=frame[ARP].psrc
            )
            self.record(segment.name, "fabric", f"the fabric answers ARP who-has {asked}: is-at {mac}", reply)
            self.wire.append(lambda: self.receive(*came_from, reply))
            return
        others = [port for port in segment.ports if port != came_from]
        owners = [port for port in others if self.namespaces[port[0]].links[port[1]].mac == frame.dst]
        for ns_name, dev in owners or others:  # a broadcast or an unknown MAC floods
            self.wire.append(lambda ns_name=ns_name, dev=dev: self.receive(ns_name, dev, frame))

    def receive(self, ns_name: str, dev: str, frame) -> None:
        """A frame arriving on dev (netif_receive_skb): an ingress hook (tc ingress) may take it; a
        bridge port hands it to its bridge (br_handle_frame), other devices to the layer-2 input."""
        link = self.namespaces[ns_name].links[dev]
        self.record(ns_name, dev, f"receives {_describe(frame)}", frame)
        hook = self.hooks.get((ns_name, "ingress", dev))
        if hook is not None and hook(self, ns_name, dev, frame):
            return
        if link.master is not None:
            self.bridge_forward(ns_name, link.master, dev, frame)
        else:
            self.l2_input(ns_name, dev, frame)

    def bridge_forward(self, ns_name: str, bridge: str, in_port: str | None, frame) -> None:
        """The bridge's forwarding (br_handle_frame → br_handle_frame_finish, or br_dev_xmit when the
        node itself sends on the bridge, in_port None): learn the source MAC's port, pass a frame for the
        bridge's own MAC up, forward a known MAC to its port, flood the rest (and pass a copy up)."""
        ns = self.namespaces[ns_name]
        br = ns.links[bridge]
        mine = [e for e in ns.fdb if e.bridge == bridge]
        if in_port is not None:
            known = next((e for e in mine if e.mac == frame.src), None)
            if known is None or known.port != in_port:
                ns.fdb = [e for e in ns.fdb if (e.mac, e.bridge) != (frame.src, bridge)] + [
                    FdbEntry(frame.src, in_port, bridge)
                ]
                self.record(ns_name, bridge, f"bridge learns {frame.src} is behind {in_port}")
        if frame.dst == br.mac:
            self.record(ns_name, bridge, "destination MAC is the bridge's own: up to the node's IP stack")
            self.l2_input(ns_name, bridge, frame)
            return
        entry = next((e for e in ns.fdb if e.bridge == bridge and e.mac == frame.dst), None)
        if frame.dst != BROADCAST_MAC and entry is not None:
            self.record(ns_name, bridge, f"FDB: {frame.dst} is behind {entry.port}: forwards there only")
            if entry.port != in_port:
                self.transmit(ns_name, entry.port, frame)
            return
        ports = [p.name for p in ns.bridge_ports(bridge) if p.name != in_port]
        targets = ports + ([bridge] if in_port is not None else [])
        why = "broadcast" if frame.dst == BROADCAST_MAC else f"unknown {frame.dst}"
        self.record(ns_name, bridge, f"{why}: floods to {', '.join(targets) or 'no other port'}")
        for port in ports:
            self.transmit(ns_name, port, frame)
        if in_port is not None:
            self.l2_input(ns_name, bridge, frame)

    def l2_input(self, ns_name: str, dev: str, frame) -> None:
        """A frame for this device's stack (__netif_receive_skb_core → the EtherType's handler): ignored
        unless it is for dev's MAC or broadcast; ARP to arp_rcv, IPv4 to ip_rcv."""
        link = self.namespaces[ns_name].links[dev]
        if frame.dst not in (link.mac, BROADCAST_MAC):
            self.record(ns_name, dev, f"not addressed to {link.mac}: ignored")
        elif frame.type == ETH_P_ARP:
            self.arp_input(ns_name, dev, frame)
        elif frame.type == ETH_P_IP:
            self.ip_input(ns_name, dev, frame.payload)

    def arp_input(self, ns_name: str, dev: str, frame) -> None:
        """arp_rcv → arp_process: a reply fills the neighbour entry (REACHABLE) and releases the queued
        packets; a request for a local address (or, with proxy_arp, one routed out of another device)
        is answered, the asker noted STALE."""
        from scapy.layers.l2 import ARP, Ether

        ns = self.namespaces[ns_name]
        arp = frame[ARP]
        sender, target = IPv4Address(arp.psrc), IPv4Address(arp.pdst)
        if arp.op == 2:
            ns.add_neighbour(str(sender), arp.hwsrc, dev, "REACHABLE")
            self.record(ns_name, dev, f"ARP reply: {sender} is at {arp.hwsrc}; neighbour entry REACHABLE")
            for packet in self.waiting_for_arp.pop((ns_name, dev, sender), []):
                self.send_frame(ns_name, dev, arp.hwsrc, sender, packet)
            return
        link = ns.links[dev]
        if ns.owns(target):
            why = f"ARP who-has {target} is mine"
        elif link.proxy_arp and ns.forwarding and self._routed_elsewhere(ns, target, dev):
            why = f"ARP who-has {target}: routed out of another device, so {dev} answers for it (proxy_arp)"
        else:
            self.record(ns_name, dev, f"ARP who-has {target}: not an address of {ns_name}, no reply")
            return
        if ns.neighbour(sender, dev) is None:
            ns.add_neighbour(str(sender), arp.hwsrc, dev, "STALE")
        reply = Ether(src=link.mac, dst=arp.hwsrc, type=ETH_P_ARP) / ARP(
            op=2, hwsrc=link.mac, psrc=str(target), hwdst=arp.hwsrc, pdst=str(sender)
        )
        self.record(ns_name, dev, f"{why}: learns {sender} (STALE), replies is-at {link.mac}", reply)
        self.transmit(ns_name, dev, reply)

    @staticmethod
    def _routed_elsewhere(ns: Namespace, target: IPv4Address, dev: str) -> bool:
        """arp_process's proxy condition: the route to target is unicast out of a device other than dev."""
        try:
            route = ns.route_get(target).route
        except LabInputError:
            return False
        return route.kind == "unicast" and route.dev != dev

    def ip_input(self, ns_name: str, dev: str, packet) -> None:
        """ip_rcv → ip_rcv_finish's route lookup: a local destination is delivered (ip_local_deliver);
        otherwise, with ip_forward on, the packet is forwarded (ip_forward: TTL − 1) and output, or
        dropped (no route, a blackhole, forwarding off)."""
        ns = self.namespaces[ns_name]
        dst = IPv4Address(packet.dst)
        if ns.owns(dst):
            self.deliver(ns_name, dev, packet)
            return
        if not ns.forwarding:
            self.record(ns_name, dev, f"{dst} is not local and ip_forward is 0: dropped")
            return
        try:
            decision = ns.route_get(dst, src=packet.src, iif=dev)
        except LabInputError:
            self.record(ns_name, dev, f"no route to {dst}: dropped (Network is unreachable)")
            return
        if decision.route.kind == "blackhole":
            self.record(ns_name, dev, f"blackhole route for {dst}: dropped ({decision.explain()})")
            return
        packet = packet.copy()  # the received frame stays as captured
        packet.ttl -= 1
        del packet.chksum
        self.record(ns_name, decision.route.dev, f"forwards (ttl {packet.ttl}): {decision.explain()}")
        self.output(ns_name, decision.route, packet)

    def deliver(self, ns_name: str, dev: str, packet) -> None:
        """ip_local_deliver: a tunnel's packet is decapsulated (IPIP's protocol 4, a vxlan device's UDP
        port), a datagram for a hooked UDP port goes to its daemon, an echo request is answered (icmp_echo),
        an echo reply or datagram reaches its socket."""
        from scapy.layers.inet import ICMP, IP, UDP

        if self.decapsulate(ns_name, packet):
            return
        if packet.haslayer(UDP):
            hook = self.hooks.get((ns_name, "udp", str(packet[UDP].dport)))
            if hook is not None and hook(self, ns_name, str(packet[UDP].dport), packet):
                return
        self.delivered.append((ns_name, packet))
        if packet.haslayer(ICMP) and packet[ICMP].type == 8:
            self.record(ns_name, dev, f"ICMP echo request from {packet.src} delivered; the kernel answers it")
            # The kernel answers from its ICMP socket, which sends with IP_PMTUDISC_DONT: no DF bit.
            reply = IP(src=packet.dst, dst=packet.src, ttl=64, id=0) / ICMP(
                type=0, id=packet[ICMP].id, seq=packet[ICMP].seq
            ) / bytes(packet[ICMP].payload)
            self.send_ip(ns_name, reply)
        elif packet.haslayer(ICMP):
            self.record(ns_name, dev, f"ICMP echo reply from {packet.src} delivered to ping")
        elif packet.haslayer(UDP):
            self.record(ns_name, dev, f"UDP from {packet.src}:{packet[UDP].sport} delivered to port {packet[UDP].dport}")

    # tunnels: VXLAN and IPIP

    def vxlan_transmit(self, ns_name: str, dev: str, frame, remote: IPv4Address | None = None, vni: int | None = None) -> None:
        """What the vxlan driver does with a frame sent on dev (vxlan_xmit): look the inner destination
        MAC up in the device's FDB (`Namespace.vxlan_lookup`; or take remote and VNI from the sender, for
        an `external` device), put the frame in UDP to each remote VTEP found, and route that packet as
        the node's own (udp_tunnel_xmit_skb)."""
        ns = self.namespaces[ns_name]
        settings = ns.links[dev].vxlan
        if remote is not None:
            remotes, why = [remote], f"the sender gives the tunnel: remote {remote}"
        else:
            entries = ns.vxlan_lookup(dev, frame.dst)
            remotes = [e.dst for e in entries]
            if entries and entries[0].mac == ZERO_MAC and frame.dst != ZERO_MAC:
                why = f"FDB: no entry for {frame.dst}: the default entries send it to {', '.join(map(str, remotes))}"
            else:
                why = f"FDB: {frame.dst} is behind VTEP {', '.join(map(str, remotes))}"
        if not remotes:
            self.record(ns_name, dev, f"FDB of {dev} has no entry for {frame.dst} and no default: dropped")
            return
        vni = settings.vni if vni is None else vni
        for dst in remotes:
            local = settings.local or ns.source_for(ns.route_get(dst).route)
            outer = _vxlan_outer(bytes(frame), str(local), str(dst), vni, settings.dstport)
            self.record(ns_name, dev, f"{why}: encapsulates in VXLAN (VNI {vni}), UDP {local} → {dst}:{settings.dstport}")
            self.send_ip(ns_name, outer)

    def ipip_transmit(self, ns_name: str, route, packet) -> None:
        """What `tunl0` (ipip, remote any) does with a packet routed to it (ipip_tunnel_xmit): the outer
        destination is the route's gateway."""
        ns = self.namespaces[ns_name]
        self.record(ns_name, route.dev, f"sends {_describe(packet)} into {route.dev}", packet)
        if route.via is None:
            self.record(ns_name, route.dev, f"{route.dev} has no remote and the route no gateway: dropped")
            return
        local = ns.source_for(ns.route_get(route.via).route)
        # `ttl inherit`: the outer header copies the inner TTL; with `nopmtudisc` the outer DF bit is the
        # inner one (ip_tunnel_xmit: df = tnl_params->frag_off | inner DF).
        outer = _ipip_outer(bytes(packet), str(local), str(route.via), packet.ttl, bool(int(packet.flags) & 2))
        self.record(ns_name, route.dev, f"encapsulates in IPIP (protocol {IPPROTO_IPIP}), {local} → {route.via}")
        self.send_ip(ns_name, outer)

    def decapsulate(self, ns_name: str, packet) -> bool:
        """A packet for this namespace that is a tunnel's: a vxlan device's UDP port (vxlan_rcv), or IPIP
        on tunl0 (ipip_rcv). The inner frame (or packet) enters as if received on the tunnel device; a
        learning vxlan device learns its source first (`Namespace.vxlan_learn`, the kernel's vxlan_snoop)."""
        from scapy.layers.inet import UDP

        ns = self.namespaces[ns_name]
        if packet.proto == IPPROTO_IPIP:
            tunnel = next((lk for lk in ns.links.values() if lk.kind == "ipip"), None)
            if tunnel is None:
                return False
            inner = packet.payload
            self.record(ns_name, tunnel.name, f"IPIP from {packet.src}: {tunnel.name} strips the outer header")
            self.record(ns_name, tunnel.name, f"receives {_describe(inner)}", inner)
            self.ip_input(ns_name, tunnel.name, inner)
            return True
        if not packet.haslayer(UDP):
            return False
        port = packet[UDP].dport
        vxlan = next(
            (
                lk for lk in ns.links.values()
                if lk.vxlan is not None and lk.vxlan.dstport == port and lk.vxlan.local in (None, IPv4Address(packet.dst))
            ),
            None,
        )
        if vxlan is None:
            return False
        vni, inner = overlay.vxlan_decapsulate(packet)
        if not vxlan.vxlan.external and vni != vxlan.vxlan.vni:
            self.record(ns_name, vxlan.name, f"VNI {vni} is not {vxlan.name}'s ({vxlan.vxlan.vni}): dropped")
            return True
        self.record(ns_name, vxlan.name, f"UDP port {port} is {vxlan.name}'s: strips the outer headers (VNI {vni})")
        learned = ns.vxlan_learn(vxlan.name, inner.src, packet.src)
        if learned == "static":
            self.record(ns_name, vxlan.name, f"a permanent FDB entry puts {inner.src} behind another VTEP than "
                                             f"{packet.src}: dropped (a static entry is never moved)")
            return True
        if learned in ("learned", "migrated"):
            self.record(ns_name, vxlan.name, f"learns {inner.src} is behind VTEP {packet.src}")
        self.tunnel_info = (IPv4Address(packet.src), vni)
        self.receive(ns_name, vxlan.name, inner)
        return True


@lru_cache(maxsize=256)
def _vxlan_outer(frame: bytes, local: str, remote: str, vni: int, dstport: int):
    """overlay.vxlan_packet for a frame given as bytes, remembered: a walk repeated (a widget redrawn)
    encapsulates the same frames again, and the result is never changed once sent."""
    from scapy.layers.l2 import Ether

    return overlay.vxlan_packet(Ether(frame), local, remote, vni=vni, dstport=dstport)


@lru_cache(maxsize=256)
def _ipip_outer(packet: bytes, local: str, remote: str, ttl: int, df: bool):
    """tunneling.ipip_packet for a packet given as bytes, remembered like :func:`_vxlan_outer`."""
    from scapy.layers.inet import IP

    return tunneling.ipip_packet(IP(packet), local, remote, ttl=ttl, df=df)


def _describe(packet) -> str:
    """A few words for a frame or packet: ARP who-has / is-at, ICMP echo request / reply, UDP."""
    from scapy.layers.inet import ICMP, IP, UDP
    from scapy.layers.l2 import ARP
    from scapy.layers.vxlan import VXLAN

    if packet.haslayer(VXLAN):
        return f"VXLAN (VNI {packet[VXLAN].vni}, UDP {packet[UDP].dport}) carrying {_describe(packet[VXLAN].payload)}"
    if packet.haslayer(IP) and packet[IP].proto == IPPROTO_IPIP:
        return f"IPIP carrying {_describe(packet[IP].payload)}"
    if packet.haslayer(ARP):
        arp = packet[ARP]
        return f"ARP who-has {arp.pdst}" if arp.op == 1 else f"ARP {arp.psrc} is-at {arp.hwsrc}"
    if packet.haslayer(ICMP):
        return "ICMP echo " + ("request" if packet[ICMP].type == 8 else "reply")
    if packet.haslayer(UDP):
        return f"UDP to port {packet[UDP].dport}"
    return "a frame"


def _endpoint(node: Node, name_or_ip: str, fieldname: str) -> tuple[str, IPv4Address]:
    """A namespace name (its first address) or an address (and who owns it)."""
    if name_or_ip in node.namespaces:
        ns = node.namespaces[name_or_ip]
        if ns.role == "pod":
            return name_or_ip, node.pod_ip(name_or_ip)
        return name_or_ip, next(a.ip for lk in ns.links.values() if lk.kind != "loopback" for a in lk.addresses)
    ip = parse_ipv4_address(name_or_ip, fieldname)
    return node.owner_of(ip) or "", ip


def walk(node: Node, source: str, destination: str, proto: str = "icmp", port: int = 8080) -> Walk:
    """Send one ping (`ping -c1 DST`) or UDP datagram from source to destination and record every hop.

    source is a namespace (a pod or the node); destination a namespace or an address. The node
    is not changed: the walk runs on a copy, returned as `node_after` with the ARP entries and
    FDB entries the exchange taught it.
    """
    from scapy.layers.inet import ICMP, IP, UDP

    if proto not in ("icmp", "udp"):
        raise LabInputError("proto", proto, "icmp or udp")
    try:
        port_number = 0 if isinstance(port, bool) else int(port)
    except (TypeError, ValueError, OverflowError):
        port_number = 0
    if not 1 <= port_number <= 65535:
        raise LabInputError("port", port, "a port from 1 to 65535")
    work = copy.deepcopy(node)
    src_name, _ = _endpoint(work, source, "source")
    if src_name not in work.namespaces:
        raise LabInputError("source", source, f"one of {', '.join(work.namespaces)}")
    dst_name, dst_ip = _endpoint(work, destination, "destination")
    src_ns = work.namespaces[src_name]
    if src_ns.owns(dst_ip):  # 127.0.0.1 and the source's own addresses: every namespace has its own
        dst_name = src_name
    decision = src_ns.route_get(dst_ip)
    src_ip = src_ns.source_for(decision.route)
    if proto == "icmp":
        packet = IP(src=str(src_ip), dst=str(dst_ip), ttl=64, id=0, flags="DF") / ICMP(type=8, id=1, seq=1) / PING_PAYLOAD
    else:
        packet = IP(src=str(src_ip), dst=str(dst_ip), ttl=64, id=0, flags="DF") / UDP(sport=40000, dport=port_number) / b"hello"
    engine = work.engine()
    engine.send_ip(src_name, packet)
    engine.run()
    delivered = any(ns == dst_name and str(p.dst) == str(dst_ip) for ns, p in engine.delivered)
    replied = proto == "icmp" and any(ns == src_name and str(p.dst) == str(src_ip) for ns, p in engine.delivered)
    return Walk(source, destination, engine.hops, work, delivered, replied)


# --- the three requirements -----------------------------------------------------------------------

REQUIREMENTS = (
    "all pods can communicate with all other pods without NAT",
    "all nodes can communicate with all pods without NAT",
    "the IP that a pod sees itself as is the same IP that others see it as",
)


@dataclass(frozen=True)
class RequirementCheck:
    """One of the Kubernetes network requirements, checked on a model, with its evidence."""

    requirement: str
    passed: bool
    evidence: str

    def __str__(self) -> str:
        return f"[{'PASS' if self.passed else 'FAIL'}] {self.requirement}\n       {self.evidence}"


def check_requirements(node: Node) -> list[RequirementCheck]:
    """Run the three requirements of the Kubernetes network model against a node, by sending packets.

    Each check walks real exchanges through the model and compares the addresses on the frames
    that arrive with the addresses the senders own: a rewrite anywhere (NAT) would show there.
    """
    pods = node.pods
    pairs = [(a, b) for a in pods for b in pods if a != b]
    pod_ok, pod_seen = True, []
    for a, b in pairs:
        result = walk(node, a, b)
        arrived = _arrivals(result, b)
        ok = result.delivered and all(str(p.src) == str(node.pod_ip(a)) for p in arrived)
        pod_ok &= ok
        pod_seen.append(f"{a}→{b} {'src kept' if ok else 'FAILED'}")
    node_ok, node_seen = True, []
    for b in pods:
        result = walk(node, node.name, b)
        sent_from = {str(a.ip) for lk in node.host.links.values() for a in lk.addresses}
        ok = result.delivered and all(str(p.src) in sent_from for p in _arrivals(result, b))
        node_ok &= ok
        node_seen.append(f"{node.name}→{b} {'src kept' if ok else 'FAILED'}")
    self_ok, self_seen = True, []
    for b in pods:
        own = str(node.pod_ip(b))
        seen_by_others = {
            str(p.src) for a in pods if a != b for p in _arrivals(walk(node, b, a), a)
        }
        ok = seen_by_others <= {own}
        self_ok &= ok
        self_seen.append(f"{b} is {own}, others see {', '.join(sorted(seen_by_others)) or 'no traffic'}")
    return [
        RequirementCheck(REQUIREMENTS[0], pod_ok, "; ".join(pod_seen) or "only one pod"),
        RequirementCheck(REQUIREMENTS[1], node_ok, "; ".join(node_seen)),
        RequirementCheck(REQUIREMENTS[2], self_ok, "; ".join(self_seen)),
    ]


def _arrivals(result: Walk, namespace: str) -> list:
    from scapy.layers.inet import IP

    return [
        h.frame[IP]
        for h in result.hops
        if h.namespace == namespace and h.event.startswith("receives") and h.frame is not None and h.frame.haslayer(IP)
    ]


def container_to_container(node: Node, pod: str) -> str:
    """Containers of one pod share its namespace: they reach each other on 127.0.0.1 (over `lo`).

    Shows the route the kernel uses (`ip route get 127.0.0.1` inside the pod) and who shares it.
    """
    ns = node.namespace(pod, "pod")
    decision = ns.route_get("127.0.0.1")
    names = ", ".join(ns.containers)
    return (
        f"containers of {pod}: {names} — one network namespace, one eth0 ({node.pod_ip(pod)}), one lo\n"
        f"127.0.0.1 from any of them: {decision.explain()}"
    )

