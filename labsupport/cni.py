"""Pods on different nodes: what each CNI plugin sets up, and how a packet crosses the underlay.

Models the notes' "Pod to Pod network" across nodes (the L2 / Route / Overlay / Cloud table),
"Overlay network", "CNI" (flannel, Calico, Weave, Cilium), the AWS VPC CNI example and
"Cross-host 网络模型" (direct routing, tunnels):

- :func:`cluster` builds one of two clusters (`two-nodes`: node-1 and node-2 on 192.168.56.0/24;
  `two-subnets`: also node-3 on 192.168.57.0/24 behind a router that knows no pod routes) with
  one plugin in one mode, using iproute2's verbs (:class:`labsupport.host.Namespace`): the
  devices, addresses, routes, FDB and neighbour entries and MTUs each node gets.
- :func:`walk` sends a ping across nodes through the kernel model of
  :class:`labsupport.pod_network.Engine`: every hop, with the frame on the wire at each
  (the encapsulated one on the nodes' eth0), and :func:`overhead_of` measures the bytes the
  encapsulation added.
- :func:`routes_text` is what `python -m labsupport cni routes` prints; :func:`comparison_table`
  derives the notes' L2 / Route / Overlay / Cloud table from walks on these models.

Where a plugin programs something that is not a route, a device or a table entry (Cilium's eBPF
programs, Weave's Open vSwitch datapath and its userspace router), the model says what it
stands in for, in :attr:`Cluster.modelled` and in the comments.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import lru_cache
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from labsupport import tunneling
from labsupport.addressing import ZERO_MAC, stable_mac
from labsupport.errors import LabInputError
from labsupport.host import Namespace
from labsupport.overlay import LINUX_VXLAN_PORT
from labsupport.pod_network import (
    AWS_LINK_LOCAL_GATEWAY,
    ETH_P_ARP,
    ETH_P_IP,
    Engine,
    Hook,
    Hop,
    Node,
    Segment,
    Walk,
    add_secondary_eni,
    add_vpc_cni_pod,
)
from labsupport.pod_network import walk as _walk

PLUGINS: dict[str, tuple[str, ...]] = {  # the first mode is the plugin's default
    "flannel": ("vxlan", "host-gw"),
    "calico": ("ipip", "bgp", "vxlan", "ipip-crosssubnet", "vxlan-crosssubnet"),
    "weave": ("fastdp", "sleeve"),
    "cilium": ("vxlan",),
    "aws-vpc-cni": ("eni",),
}
TOPOLOGIES = ("two-nodes", "two-subnets")
CLUSTER_CIDR = "10.244.0.0/16"
UNDERLAY_MTU = 1500


@dataclass(frozen=True)
class NodeSpec:
    """One node of the shared addressing: its uplink address and gateway, pod CIDR and one pod."""

    name: str
    address: str  # eth0, with its prefix
    gateway: str
    pod_cidr: str
    pod: str
    host_veth: str

    @property
    def ip(self) -> IPv4Address:
        """The node's own address (eth0)."""
        return IPv4Interface(self.address).ip

    @property
    def subnet(self) -> IPv4Network:
        """The underlay subnet the node sits on."""
        return IPv4Interface(self.address).network

    def pod_address(self, host: int) -> IPv4Address:
        """The host-th address of the node's pod CIDR (0 is the network address, .0)."""
        return IPv4Network(self.pod_cidr).network_address + host


NODE_SPECS = (
    NodeSpec("node-1", "192.168.56.10/24", "192.168.56.1", "10.244.1.0/24", "pod-a", "veth-pod-a"),
    NodeSpec("node-2", "192.168.56.11/24", "192.168.56.1", "10.244.2.0/24", "pod-b", "veth-pod-b"),
    NodeSpec("node-3", "192.168.57.10/24", "192.168.57.1", "10.244.3.0/24", "pod-c", "veth-pod-c"),
)
ROUTER = "router"
ROUTER_PORTS = (("eth0", "192.168.56.1/24"), ("eth1", "192.168.57.1/24"))


@dataclass(frozen=True)
class Refusal:
    """A command a plugin ran on a node that the kernel refused, and the kernel's words."""

    node: str
    command: str
    error: str

    def __str__(self) -> str:
        return f"{self.node}: `{self.command}` → Error: {self.error}"


@dataclass
class Cluster:
    """Nodes running one CNI plugin: every namespace (nodes, pods, the router) and the underlay."""

    plugin: str
    mode: str
    topology: str
    nodes: dict[str, Node]
    router: Namespace
    segments: tuple[Segment, ...]
    pod_mtu: int
    encapsulation: str  # "none", "vxlan", "ipip" or "sleeve": what crosses the underlay
    refused: list[Refusal] = field(default_factory=list)
    modelled: list[str] = field(default_factory=list)  # what the model stands in for, honestly said

    @property
    def namespaces(self) -> dict[str, Namespace]:
        """Every namespace by name: each node's, each pod's, and the router's."""
        out = {ROUTER: self.router}
        for node in self.nodes.values():
            out.update(node.namespaces)
        return out

    @property
    def pods(self) -> list[str]:
        """Pod names, node by node."""
        return [pod for node in self.nodes.values() for pod in node.pods]

    def node(self, name: str) -> Namespace:
        """A node's root namespace, or the one clear error naming the nodes there are."""
        if name not in self.nodes:
            elsewhere = [t for t in TOPOLOGIES if name in {s.name for s in _specs(t)}]
            hint = f" ({name} is in topology {elsewhere[0]})" if elsewhere else ""
            raise LabInputError("node", name, f"one of {', '.join(self.nodes)}{hint}")
        return self.nodes[name].host

    def node_of(self, pod: str) -> str:
        """The node a pod runs on."""
        for name, node in self.nodes.items():
            if pod in node.pods:
                return name
        raise LabInputError("pod", pod, f"one of {', '.join(self.pods)}")

    def pod_ip(self, pod: str) -> IPv4Address:
        """The pod's address (`kubectl get pod -o wide`)."""
        return self.nodes[self.node_of(pod)].pod_ip(pod)

    def owner_of(self, ip: IPv4Address) -> str | None:
        """Which namespace owns an address, if any."""
        return next((name for name, ns in self.namespaces.items() if ip in ns.local_addresses()), None)

    def engine(self) -> Engine:
        """The packet engine over every namespace, the underlay segments joining the nodes, and the
        plugin's hooks where it runs code rather than kernel tables (eBPF, a userspace router)."""
        hooks = _HOOKS[self.plugin](self) if self.plugin in _HOOKS else {}
        return Engine(self.namespaces, self.segments, hooks)


# --- building -------------------------------------------------------------------------------------


def _specs(topology: str) -> tuple[NodeSpec, ...]:
    return NODE_SPECS[:2] if topology == "two-nodes" else NODE_SPECS


def check_choice(plugin: str, mode: str | None, topology: str) -> str:
    """Check plugin, mode and topology; return the mode (the plugin's default when None)."""
    if plugin not in PLUGINS:
        raise LabInputError("plugin", plugin, f"one of {', '.join(PLUGINS)}")
    modes = PLUGINS[plugin]
    if mode is None:
        mode = modes[0]
    if mode not in modes:
        raise LabInputError("mode", mode, f"for {plugin}, one of {', '.join(modes)}")
    if topology not in TOPOLOGIES:
        raise LabInputError("topology", topology, f"one of {', '.join(TOPOLOGIES)}")
    return mode


def _underlay(topology: str) -> tuple[dict[str, Node], Namespace, tuple[Segment, ...]]:
    """The nodes' root namespaces on their subnets, and the router (the nodes' default gateway).

    Mirrors `ip addr add NODE_IP/24 dev eth0`, `ip route add default via GATEWAY` on each node;
    the router has one port per subnet and forwards (net.ipv4.ip_forward=1), with no pod routes.
    """
    specs = _specs(topology)
    nodes: dict[str, Node] = {}
    for spec in specs:
        host = Namespace(spec.name, role="node", forwarding=True)
        host.add_link("eth0", "ether", stable_mac(spec.name, "eth0"))
        host.add_address("eth0", spec.address)
        host.add_route("default", via=spec.gateway, dev="eth0")
        nodes[spec.name] = Node(spec.name, {spec.name: host})
    router = Namespace(ROUTER, role="router", forwarding=True)
    subnets = sorted({spec.subnet for spec in specs})
    segments = []
    for (dev, address), subnet in zip(ROUTER_PORTS, subnets, strict=False):
        router.add_link(dev, "ether", stable_mac(ROUTER, dev))
        router.add_address(dev, address)
        ports = [(spec.name, "eth0") for spec in specs if spec.subnet == subnet] + [(ROUTER, dev)]
        segments.append(Segment(f"underlay {subnet}", tuple(ports)))
    return nodes, router, tuple(segments)


def _try_route(cluster: Cluster, node: str, command: str, **route) -> None:
    """Run `ip route add …` as a plugin's daemon does: a refusal is logged and the daemon goes on."""
    try:
        cluster.node(node).add_route(**route)
    except LabInputError as error:
        words = error.allowed.rsplit("(", 1)[-1].rstrip(")")
        cluster.refused.append(Refusal(node, command, f"{words}."))


FLANNEL_VXLAN_PORT = LINUX_VXLAN_PORT  # flannel backend/vxlan: Port 0 leaves the kernel's default, 8472


def _flannel(cluster: Cluster, specs: tuple[NodeSpec, ...]) -> None:
    """flannel: the bridge `cni0` holding each node's pod gateway, and per remote node either a
    VXLAN route (vxlan backend) or a plain route via the node's address (host-gw backend)."""
    vxlan = cluster.mode == "vxlan"
    for spec in specs:
        node = cluster.nodes[spec.name]
        host = node.host
        if vxlan:
            # flannel backend/vxlan: device "flannel.<VNI>", VNI 1, the kernel's default port 8472,
            # learning off, MTU = uplink MTU - 50; its address is the .0 of the node's subnet, /32.
            host.add_vxlan(
                "flannel.1", vni=1, dstport=FLANNEL_VXLAN_PORT, mac=stable_mac(spec.name, "flannel.1"),
                local=str(spec.ip), dev="eth0", learning=False, mtu=cluster.pod_mtu,
            )
            host.add_address("flannel.1", f"{spec.pod_address(0)}/32")
        host.add_link("cni0", "bridge", stable_mac(spec.name, "cni0"), mtu=cluster.pod_mtu)
        gateway = spec.pod_address(1)
        host.add_address("cni0", f"{gateway}/{IPv4Network(spec.pod_cidr).prefixlen}")
        # The flannel CNI plugin delegates to the bridge plugin: isDefaultGateway (kube-flannel's
        # manifest) and an IPAM route to the cluster network (flannel-io/cni-plugin, flannel_linux.go).
        pod = node.add_pod(
            spec.pod, f"{spec.pod_address(2)}/{IPv4Network(spec.pod_cidr).prefixlen}", host_veth=spec.host_veth,
            bridge="cni0", gateway=str(gateway), mtu=cluster.pod_mtu,
        )
        pod.add_route(CLUSTER_CIDR, via=str(gateway), dev="eth0")
    for spec, other in _pairs(specs):
        host = cluster.nodes[spec.name].host
        if vxlan:
            # flannel design: per remote node one onlink route, one permanent ARP entry and one
            # FDB entry (the remote VTEP's MAC is behind the remote node's address).
            _vxlan_peer(host, "flannel.1", other, other.pod_cidr, other.pod_address(0), "flannel.1")
        else:
            # host-gw: `ip route replace POD_CIDR via NODE_IP dev eth0`, no onlink: the kernel
            # refuses a gateway that is not on eth0's subnet ("Nexthop has invalid gateway").
            _try_route(
                cluster, spec.name, f"ip route add {other.pod_cidr} via {other.ip} dev eth0",
                dst=other.pod_cidr, via=str(other.ip), dev="eth0",
            )
    if not vxlan:
        cluster.modelled.append(
            "host-gw routes each remote pod CIDR via the remote node's address: the next hop must be on "
            "the node's own subnet (layer-2 adjacent), or the kernel refuses the route."
        )


def _pairs(specs: tuple[NodeSpec, ...]) -> list[tuple[NodeSpec, NodeSpec]]:
    """Every (node, other node) pair: what each node programs about each of the others."""
    return [(spec, other) for spec in specs for other in specs if other is not spec]


def _vxlan_peer(host: Namespace, dev: str, other: NodeSpec, dst: str, vtep: IPv4Address, remote_dev: str) -> None:
    """A VXLAN peer as flannel and Calico's Felix program it: `ip route add DST via VTEP dev DEV onlink`,
    `ip neigh replace VTEP lladdr MAC dev DEV nud permanent`, `bridge fdb append MAC dev DEV dst NODE_IP`."""
    remote_mac = stable_mac(other.name, remote_dev)
    host.add_route(dst, via=str(vtep), dev=dev, onlink=True)
    host.add_neighbour(str(vtep), remote_mac, dev, "PERMANENT")
    host.add_fdb(remote_mac, dev, dst=str(other.ip))


# --- Calico ---------------------------------------------------------------------------------------

CALICO_BLOCK_PREFIX = 26  # Calico IPAM hands nodes /26 blocks of the pool (blockSize default)
CALICO_VETH_MAC = "ee:ee:ee:ee:ee:ee"  # every cali* host veth: the pods only ever talk to the node
CALICO_VXLAN_VNI, CALICO_VXLAN_PORT = 4096, 4789  # felix config_params.go: VXLANVNI, VXLANPort
FELIX_PROTO = "80"  # Felix's own routes (blackholes, same-subnet VXLAN routes) as `ip route` shows them


def calico_veth_name(pod: str, namespace: str = "default") -> str:
    """The host-side veth Calico names for a pod: `cali` + the first 11 hex digits of SHA-1 of
    `NAMESPACE.POD` (libcalico-go VethNameForWorkload; the same recipe users rebuild with sha1sum)."""
    return "cali" + hashlib.sha1(f"{namespace}.{pod}".encode()).hexdigest()[:11]


def _calico_block(spec: NodeSpec) -> IPv4Network:
    return IPv4Network(f"{spec.pod_address(0)}/{CALICO_BLOCK_PREFIX}")


def _calico(cluster: Cluster, specs: tuple[NodeSpec, ...]) -> None:
    """Calico: no bridge; each pod a /32 behind a `cali*` veth (proxy ARP answers for the pods'
    `169.254.1.1` gateway), a host route and a static ARP entry per pod, a blackhole for the node's
    own block, and per remote block a route learned by BIRD (BGP, IPIP) or programmed by Felix (VXLAN)."""
    mode = cluster.mode
    bird = not mode.startswith("vxlan")  # in VXLAN modes Felix programs the routes (bird_ipam.cfg rejects them)
    for spec in specs:
        node = cluster.nodes[spec.name]
        host = node.host
        block = _calico_block(spec)
        if mode.startswith("ipip"):
            # The ipip module's fallback device tunl0 (any remote, any local); Felix gives it the
            # tunnel address Calico IPAM allocated from the node's block, as a /32.
            host.add_link("tunl0", "ipip", ZERO_MAC, mtu=cluster.pod_mtu)
            host.add_address("tunl0", f"{block.network_address}/32")
        elif mode.startswith("vxlan"):
            # Felix vxlan_mgr.go: vxlan id VXLANVNI local NODE_IP dev PARENT dstport VXLANPort, learning
            # off (netlink's zero value), the VTEP address from the block, /32.
            host.add_vxlan(
                "vxlan.calico", vni=CALICO_VXLAN_VNI, dstport=CALICO_VXLAN_PORT,
                mac=stable_mac(spec.name, "vxlan.calico"), local=str(spec.ip), dev="eth0", learning=False,
                mtu=cluster.pod_mtu,
            )
            host.add_address("vxlan.calico", f"{block.network_address}/32")
        # bird_aggr.cfg.template: `route BLOCK blackhole` for the node's own blocks (BIRD exports it
        # to the kernel as proto bird); Felix programs the same blackhole itself in VXLAN mode.
        host.add_route(str(block), kind="blackhole", proto="bird" if bird else FELIX_PROTO)
        pod_ip = spec.pod_address(2)
        veth = calico_veth_name(spec.pod)
        pod = node.add_pod(spec.pod, f"{pod_ip}/32", host_veth=veth, mtu=cluster.pod_mtu, host_mac=CALICO_VETH_MAC)
        # The Calico CNI plugin: `169.254.1.1 dev eth0 scope link`, `default via 169.254.1.1 dev eth0`.
        pod.add_route(AWS_LINK_LOCAL_GATEWAY, dev="eth0", scope="link")
        pod.add_route("default", via=AWS_LINK_LOCAL_GATEWAY, dev="eth0")
        # Felix: proxy_arp=1 on the cali veth, `POD dev caliX scope link`, and a static ARP entry
        # for the workload's MAC (felix/routetable).
        host.links[veth].proxy_arp = True
        host.add_route(str(pod_ip), dev=veth, scope="link")
        host.add_neighbour(str(pod_ip), pod.links["eth0"].mac, veth, "PERMANENT")
    for spec, other in _pairs(specs):
        host = cluster.nodes[spec.name].host
        block = str(_calico_block(other))
        same_subnet = other.subnet == spec.subnet
        if mode.startswith("vxlan"):
            if mode == "vxlan" or not same_subnet:
                _vxlan_peer(host, "vxlan.calico", other, block, _calico_block(other).network_address, "vxlan.calico")
            else:  # CrossSubnet, same subnet: Felix routes natively (observed as `proto 80 onlink`)
                host.add_route(block, via=str(other.ip), dev="eth0", proto=FELIX_PROTO, onlink=True)
            continue
        if mode == "ipip" or (mode == "ipip-crosssubnet" and not same_subnet):
            # bird_ipam.cfg.template: krt_tunnel = "tunl0" for pools in IPIP mode (CrossSubnet: only
            # when the BGP next hop is off the node's subnet); BIRD writes it `via NODE dev tunl0 onlink`.
            host.add_route(block, via=str(other.ip), dev="tunl0", proto="bird", onlink=True)
        elif same_subnet:
            host.add_route(block, via=str(other.ip), dev="eth0", proto="bird")
        else:
            # BGP without encapsulation across subnets: the peers are multihop and BIRD resolves the next
            # hop recursively (bird.cfg.template: `multihop; gateway recursive;`): through the default
            # route, so the route points at the router, which has to know the pod block itself.
            host.add_route(block, via=spec.gateway, dev="eth0", proto="bird")
    cluster.modelled.append(
        "Calico's BGP sessions (BIRD, TCP 179) are not modelled: the routes they end in are. Blocks are "
        f"/{CALICO_BLOCK_PREFIX} from each node's {CLUSTER_CIDR} share, the tunnel address is the block's first."
    )


# --- Weave ----------------------------------------------------------------------------------------

WEAVE_PORT = 6783  # the router's TCP control port, and sleeve's UDP port
WEAVE_FASTDP_PORT = WEAVE_PORT + 1  # router/fastdp.go: "We use the weave port number plus 1 for vxlan"
# site/tasks/manage/fastdp.md in weaveworks/weave: "Weave Net defaults to 1376 bytes" (WEAVE_MTU), in either
# mode: room for fast datapath's VXLAN plus IPsec ESP when encryption is on ("overheads of around 84-87 bytes").
WEAVE_MTU = 1376
WEAVE_NAME_SIZE = 6  # a peer name is a MAC-like 6 bytes (router/peer_name_mac.go)
# router/sleeve.go: IP + UDP (28), the sender's name, per frame its source and destination peer
# names and a 2-byte length (crypto.go NonEncryptor), then the Ethernet frame.
SLEEVE_OVERHEAD = 28 + WEAVE_NAME_SIZE + 2 * WEAVE_NAME_SIZE + 2 + 14
OVS_TUNNEL_MTU = 65485  # ovs-created vxlan netdevs get the largest MTU (kernel commit 7e059158d57b)


def sleeve_payload(sender: bytes, source: bytes, destination: bytes, frame: bytes) -> bytes:
    """The UDP payload of a sleeve packet carrying one frame, unencrypted (router/sleeve.go with crypto.go's
    NonEncryptor): the sending peer's name, then the frame's source and destination peers' names, the frame's
    length (2 bytes, big-endian) and the Ethernet frame."""
    return sender + source + destination + len(frame).to_bytes(2, "big") + frame


def read_sleeve(payload: bytes):
    """The Ethernet frame in a sleeve packet's UDP payload (:func:`sleeve_payload`'s layout), as the
    receiving router's readUDP and NonDecryptor read it; a payload too short for the header or for the
    length it states is refused."""
    from scapy.layers.l2 import Ether

    start = 3 * WEAVE_NAME_SIZE + 2
    if len(payload) < start:
        raise LabInputError("sleeve payload", f"{len(payload)} bytes",
                            f"at least {start}: three peer names of {WEAVE_NAME_SIZE} bytes and a 2-byte length")
    length = int.from_bytes(payload[start - 2:start], "big")
    if len(payload) < start + length:
        raise LabInputError("sleeve payload", f"{len(payload) - start} bytes after the header",
                            f"the {length} bytes of frame the header states")
    return Ether(payload[start:start + length])


def _weave_peer(node: str) -> tuple[bytes, int]:
    """A node's weave peer name (6 bytes) and its 12-bit short ID; both are random in Weave, stable here."""
    name = bytes.fromhex(stable_mac(node, "weave-peer").replace(":", ""))
    return name, int.from_bytes(name[-2:], "big") & 0xFFF


def _weave(cluster: Cluster, specs: tuple[NodeSpec, ...]) -> None:
    """Weave: one flat layer-2 network for all pods (`10.244.0.0/16` on every pod's eth0), each node's
    `weave` bridge, and the router joining the bridges of all nodes: by VXLAN from the kernel's Open
    vSwitch datapath (fast datapath, UDP 6784) or by the router itself in UDP 6783 (sleeve)."""
    prefix = IPv4Network(CLUSTER_CIDR).prefixlen
    for spec in specs:
        node = cluster.nodes[spec.name]
        host = node.host
        bridge_ip = spec.pod_address(1)
        host.add_link("weave", "bridge", stable_mac(spec.name, "weave"), mtu=cluster.pod_mtu)
        host.add_address("weave", f"{bridge_ip}/{prefix}")  # `weave expose`: the node's address on the pod network
        host.add_link("vethwe-bridge", "veth", stable_mac(spec.name, "vethwe-bridge"), mtu=cluster.pod_mtu, master="weave")
        if cluster.mode == "fastdp":
            host.add_vxlan(
                f"vxlan-{WEAVE_FASTDP_PORT}", vni=0, dstport=WEAVE_FASTDP_PORT,
                mac=stable_mac(spec.name, f"vxlan-{WEAVE_FASTDP_PORT}"), learning=False, external=True,
                mtu=OVS_TUNNEL_MTU,
            )
        node.add_pod(
            spec.pod, f"{spec.pod_address(2)}/{prefix}", host_veth=spec.host_veth, bridge="weave",
            gateway=str(bridge_ip), mtu=cluster.pod_mtu,
        )
    cluster.modelled.append(
        "Weave's router is modelled as a learning bridge between the nodes' `weave` bridges, reached "
        "through `vethwe-bridge` (whose other end is the Open vSwitch datapath, or the router's capture in "
        "sleeve mode). Fast datapath: the datapath's `vxlan-6784` port sends VXLAN with VNI = destination "
        "peer's short ID << 12 | source's. Sleeve: the router sends the frame in UDP 6783 after the sender's "
        "and both peers' names and the frame's length (unencrypted)."
    )


def _weave_hooks(cluster: Cluster) -> dict[tuple[str, str, str], Hook]:
    """The Weave router on each node (a userspace process and, for fast datapath, its kernel flows), as a
    model: one hook where a frame from the node's pods leaves the `weave` bridge through `vethwe-bridge`,
    and one where a peer's VXLAN (fast datapath) or sleeve (UDP 6783) packet arrives. The real router's
    flow cache, heartbeats, MAC expiry, multi-hop relaying and encryption are left out."""
    from scapy.layers.inet import IP, UDP
    from scapy.packet import Raw

    specs = {spec.name: spec for spec in _specs(cluster.topology)}
    by_ip = {str(spec.ip): spec.name for spec in specs.values()}
    learned: dict[tuple[str, str], str] = {}  # (node, MAC) → the peer node it is behind
    fastdp = cluster.mode == "fastdp"
    vport = f"vxlan-{WEAVE_FASTDP_PORT}"

    def to_peers(engine: Engine, ns: str, dev: str, frame) -> bool:
        """A frame from the node's bridge to the other nodes: stands in for the router's
        handleCapturedPacket (router/network_router.go): the destination MAC is looked up in the router's
        MAC cache; a known MAC goes to the peer it is behind, an unknown one to every peer. Fast datapath:
        what the flow the router installs in the kernel's Open vSwitch datapath does
        (fastDatapathForwarder.Forward in router/fastdp.go: set the tunnel, VNI = destination's short ID
        << 12 | source's, and output on the `vxlan-6784` vport). Sleeve: the userspace router sends the
        frame itself in UDP 6783 (sleeveForwarder in router/sleeve.go)."""
        peer = learned.get((ns, frame.dst))
        peers = [peer] if peer else [name for name in specs if name != ns]
        why = f"{frame.dst} is behind peer {peer}" if peer else f"{frame.dst} is not known: to every peer"
        src_name, src_id = _weave_peer(ns)
        for name in peers:
            dst_name, dst_id = _weave_peer(name)
            remote = specs[name].ip
            if fastdp:
                vni = (dst_id << 12) | src_id
                engine.record(ns, dev, f"weave router (fast datapath flow): {why}; VXLAN to {remote}:{WEAVE_FASTDP_PORT}, "
                              f"VNI {vni} = peer {dst_id} << 12 | peer {src_id}")
                engine.vxlan_transmit(ns, vport, frame, remote=remote, vni=vni)
            else:
                payload = sleeve_payload(src_name, src_name, dst_name, bytes(frame))
                # sleeve.go's Process(): a frame with DF goes to the DF sender, a raw socket with
                # IP_PMTUDISC_DO (outer DF set) that leaves the UDP checksum 0 (ComputeChecksums: false);
                # others to the ordinary UDP socket (IP_PMTUDISC_DONT), once the connection's
                # fragmentation test has passed, as on an established connection.
                df = IP in frame and "DF" in frame[IP].flags
                packet = IP(src=str(specs[ns].ip), dst=str(remote), ttl=64, id=0, flags="DF" if df else 0) / UDP(
                    sport=WEAVE_PORT, dport=WEAVE_PORT, chksum=0 if df else None) / Raw(payload)
                engine.record(ns, dev, f"weave router (sleeve, userspace) captures the frame: {why}; "
                              f"UDP {WEAVE_PORT} to {remote}")
                engine.send_ip(ns, packet)
        return True

    def from_peer(engine: Engine, ns: str, peer_ip: str, frame) -> None:
        """A frame from a peer, whichever way it came: stands in for handleForwardedPacket
        (router/network_router.go): learn that the frame's source MAC is behind that peer (Macs.AddForced),
        then inject the frame into the local bridge (Bridge.InjectPacket), here through `vethwe-bridge`."""
        peer = by_ip.get(peer_ip, peer_ip)
        learned[(ns, frame.src)] = peer
        engine.record(ns, "vethwe-bridge", f"weave router: learns {frame.src} is behind peer {peer}; "
                      "hands the frame to the weave bridge")
        engine.receive(ns, "vethwe-bridge", frame)

    def from_vxlan(engine: Engine, ns: str, dev: str, frame) -> bool:
        """A fast datapath frame out of the `vxlan-6784` vport: stands in for the datapath's miss handler
        for that vport (getVxlanVportID in router/fastdp.go), which reads both peers from the tunnel's VNI
        (extractPeers: source = VNI & 0xfff, destination = VNI >> 12 & 0xfff) and hands the frame on."""
        source, vni = engine.tunnel_info  # router/fastdp.go extractPeers: the VNI names both peers
        engine.record(ns, dev, f"weave datapath: VNI {vni} is from peer {vni & 0xFFF} to peer {(vni >> 12) & 0xFFF}")
        from_peer(engine, ns, str(source), frame)
        return True

    def from_sleeve(engine: Engine, ns: str, port: str, packet) -> bool:
        """A sleeve packet on the router's UDP socket: stands in for SleeveOverlay.readUDP and handleFrame
        (router/sleeve.go), which read the frame after the peers' names (:func:`read_sleeve`)."""
        engine.record(ns, "-", f"weave router reads a sleeve packet on UDP {port} from {packet[IP].src}")
        from_peer(engine, ns, packet[IP].src, read_sleeve(bytes(packet[UDP].payload)))
        return True

    hooks: dict[tuple[str, str, str], Hook] = {}
    for name in specs:
        hooks[(name, "egress", "vethwe-bridge")] = to_peers
        if fastdp:
            hooks[(name, "ingress", vport)] = from_vxlan
        else:
            hooks[(name, "udp", str(WEAVE_PORT))] = from_sleeve
    return hooks


# --- Cilium ---------------------------------------------------------------------------------------

CILIUM_VXLAN_PORT = 8472  # Cilium's default tunnel port for VXLAN (the Linux default)
CILIUM_FIRST_IDENTITY = 256  # identities below 256 are reserved (host, world, ...)


def cilium_veth_name(container_id: str) -> str:
    """The host-side veth Cilium names for an endpoint: `lxc` + the first 12 hex digits of SHA-256 of
    its ID (cilium pkg/datapath/connector, Endpoint2IfName). The model uses the pod name as the ID."""
    return "lxc" + hashlib.sha256(container_id.encode()).hexdigest()[:12]


def _cilium(cluster: Cluster, specs: tuple[NodeSpec, ...]) -> None:
    """Cilium (tunnel mode, endpoint routes): no bridge; each pod a /32 behind an `lxc*` veth, the node's
    `cilium_host` holding the pods' gateway address, and `cilium_vxlan`, a VXLAN device in external
    (collect-metadata) mode: eBPF programs give it the remote node and the VNI for each packet."""
    for spec in specs:
        node = cluster.nodes[spec.name]
        host = node.host
        router_ip = spec.pod_address(1)
        net = host.add_link("cilium_net", "veth", stable_mac(spec.name, "cilium_net"), mtu=UNDERLAY_MTU)
        hst = host.add_link("cilium_host", "veth", stable_mac(spec.name, "cilium_host"), mtu=UNDERLAY_MTU)
        net.peer, net.peer_index = (spec.name, "cilium_host"), hst.index
        hst.peer, hst.peer_index = (spec.name, "cilium_net"), net.index
        host.add_address("cilium_host", f"{router_ip}/32")
        host.add_vxlan(
            "cilium_vxlan", vni=0, dstport=CILIUM_VXLAN_PORT, mac=stable_mac(spec.name, "cilium_vxlan"),
            learning=False, external=True, mtu=UNDERLAY_MTU,
        )
        pod_ip = spec.pod_address(2)
        veth = cilium_veth_name(spec.pod)
        pod = node.add_pod(spec.pod, f"{pod_ip}/32", host_veth=veth, mtu=cluster.pod_mtu)
        pod.add_route(str(router_ip), dev="eth0", scope="link")
        pod.add_route("default", via=str(router_ip), dev="eth0")
        host.add_route(str(pod_ip), dev=veth, scope="link")  # --enable-endpoint-routes
    for spec, other in _pairs(specs):
        # For the node's own traffic to remote pods: via its cilium_host address (eBPF takes it from there).
        router_ip = str(spec.pod_address(1))
        cluster.nodes[spec.name].host.add_route(other.pod_cidr, via=router_ip, dev="cilium_host", src=router_ip)
    cluster.modelled.append(
        "Cilium's datapath is eBPF programs, not routes: the model stands in for bpf_lxc at each lxc's tc "
        "ingress (answers the pod's ARP, delivers to local pods, or looks the destination's pod CIDR up in "
        "the tunnel map and sends the frame out of cilium_vxlan with VNI = the source's security identity) "
        "and for bpf_overlay at cilium_vxlan (delivers to the local pod). TTL is decremented once, at "
        "delivery; route MTUs are left out."
    )


def _cilium_hooks(cluster: Cluster) -> dict[tuple[str, str, str], Hook]:
    """Cilium's tc programs as a model: bpf_lxc's from-container on each lxc's ingress and bpf_overlay's
    from-overlay on cilium_vxlan's. The endpoint map (cilium_lxc) and the tunnel map (pod CIDR → node, in
    the ipcache in newer releases) are built from the cluster; conntrack, policy, services and the per-packet
    metadata are left out."""
    from scapy.layers.inet import IP
    from scapy.layers.l2 import ARP, Ether

    specs = _specs(cluster.topology)
    endpoints = {}  # pod IP → (node, lxc, pod MAC): the endpoint map
    for spec in specs:
        veth = cilium_veth_name(spec.pod)
        endpoints[str(spec.pod_address(2))] = (spec.name, veth, cluster.nodes[spec.name].namespaces[spec.pod].links["eth0"].mac)
    tunnel = {IPv4Network(spec.pod_cidr): spec for spec in specs}  # pod CIDR → node: the tunnel map
    identity = {ip: CILIUM_FIRST_IDENTITY + i for i, ip in enumerate(endpoints)}

    def deliver_local(engine: Engine, ns: str, packet, where: str) -> bool:
        """A packet for a pod on this node: stands in for ipv4_local_delivery (bpf/lib/l3.h): the endpoint
        map gives the pod's lxc and MAC; the TTL is decremented, the MACs rewritten (the lxc's to the pod's)
        and the frame redirected out of the lxc. False when the pod is on another node."""
        node, veth, mac = endpoints[packet.dst]
        if node != ns:
            return False
        lxc_mac = engine.namespaces[ns].links[veth].mac
        packet = packet.copy()
        packet.ttl -= 1
        del packet.chksum
        frame = Ether(src=lxc_mac, dst=mac, type=ETH_P_IP)
        frame.add_payload(packet)
        engine.record(ns, veth, f"eBPF ({where}, model): endpoint map: {packet.dst} is behind {veth}; rewrites the "
                      f"MACs, redirects (ttl {packet.ttl})", frame)
        engine.transmit(ns, veth, frame)
        return True

    def from_container(engine: Engine, ns: str, dev: str, frame) -> bool:
        """A frame the pod sent, at its lxc's tc ingress: stands in for cil_from_container (bpf/bpf_lxc.c).
        ARP requests are answered with the lxc's MAC (tail_handle_arp, the ARP responder); IPv4 goes through
        handle_ipv4_from_lxc: to a local pod by deliver_local, to a pod CIDR of another node by
        encap_and_redirect_lxc (out of cilium_vxlan to that node, the source's security identity as VNI).
        Anything else is left to the kernel (False)."""
        link = engine.namespaces[ns].links[dev]
        if frame.type == ETH_P_ARP and frame[ARP].op == 1:
            arp = frame[ARP]
            reply = Ether(src=link.mac, dst=arp.hwsrc, type=ETH_P_ARP) / ARP(
                op=2, hwsrc=link.mac, psrc=arp.pdst, hwdst=arp.hwsrc, pdst=arp.psrc)
            engine.record(ns, dev, f"eBPF (bpf_lxc, model): answers ARP who-has {arp.pdst} with {link.mac}", reply)
            engine.transmit(ns, dev, reply)
            return True
        if frame.type != ETH_P_IP:
            return False
        packet = frame[IP]
        if packet.dst in endpoints and deliver_local(engine, ns, packet, "bpf_lxc"):
            return True
        remote = next((spec for cidr, spec in tunnel.items() if IPv4Address(packet.dst) in cidr), None)
        if remote is None or remote.name == ns:
            return False
        vni = identity.get(packet.src, 2)  # 2 is the reserved identity `world`
        engine.record(ns, dev, f"eBPF (bpf_lxc, model): tunnel map: {remote.pod_cidr} is on {remote.ip}; "
                      f"encapsulates with VNI {vni} (the source's security identity)")
        engine.vxlan_transmit(ns, "cilium_vxlan", frame, remote=remote.ip, vni=vni)
        return True

    def from_overlay(engine: Engine, ns: str, dev: str, frame) -> bool:
        """A frame out of cilium_vxlan (the VXLAN header already removed): stands in for cil_from_overlay
        (bpf/bpf_overlay.c), which delivers a packet for a local pod with ipv4_local_delivery; the rest is
        left to the kernel (False)."""
        return frame.type == ETH_P_IP and frame[IP].dst in endpoints and deliver_local(engine, ns, frame[IP], "bpf_overlay")

    hooks: dict[tuple[str, str, str], Hook] = {}
    for spec in specs:
        hooks[(spec.name, "ingress", cilium_veth_name(spec.pod))] = from_container
        hooks[(spec.name, "ingress", "cilium_vxlan")] = from_overlay
    return hooks


# --- AWS VPC CNI ----------------------------------------------------------------------------------

AWS_VPC_CIDR = "192.168.0.0/16"  # the model's VPC: both node subnets are VPC subnets
AWS_ENI_TABLE, AWS_ENI_TABLE_ID = "eni-1", 2


def aws_veth_name(pod: str, namespace: str = "default") -> str:
    """The host-side veth the AWS VPC CNI names for a pod: the prefix (AWS_VPC_K8S_CNI_VETHPREFIX,
    `eni` by default; the notes show an older `aws`) + 11 hex digits of SHA-1 of `NAMESPACE.POD`."""
    return "eni" + hashlib.sha1(f"{namespace}.{pod}".encode()).hexdigest()[:11]


def aws_addresses(spec: NodeSpec) -> tuple[IPv4Address, IPv4Address]:
    """A node's secondary ENI (eth1) address and its pod's address, a secondary address of that ENI:
    in the VPC CNI, pod addresses are VPC addresses from the node's subnet, not from 10.244.0.0/16."""
    base = spec.ip + 10 * (int(spec.name.rsplit("-", 1)[1]))
    return base, base + 1


def _aws(cluster: Cluster, specs: tuple[NodeSpec, ...]) -> None:
    """The AWS VPC CNI as in the notes: a secondary ENI per node, pods on its secondary addresses
    (/32, gateway `169.254.1.1` with a permanent ARP entry), policy routing (to a pod: main; from a
    pod: the ENI's table; not to the VPC: main); no encapsulation: the VPC fabric knows every address."""
    fabric = []
    for spec in specs:
        node = cluster.nodes[spec.name]
        host = node.host
        eni_ip, pod_ip = aws_addresses(spec)
        add_secondary_eni(
            host, "eth1", stable_mac(spec.name, "eth1"), f"{eni_ip}/{spec.subnet.prefixlen}", spec.gateway,
            AWS_ENI_TABLE, AWS_ENI_TABLE_ID,
        )
        host.add_rule(1025, "main", dst=AWS_VPC_CIDR, invert=True)
        veth = aws_veth_name(spec.pod)
        add_vpc_cni_pod(
            node, spec.pod, str(pod_ip), veth, stable_mac(spec.name, veth), stable_mac(spec.pod, "eth0"),
            AWS_ENI_TABLE, mtu=cluster.pod_mtu,
        )
        fabric += [(str(spec.ip), host.links["eth0"].mac), (str(eni_ip), host.links["eth1"].mac),
                   (str(pod_ip), host.links["eth1"].mac)]
    fabric += [(str(a.ip), lk.mac) for lk in cluster.router.links.values() if lk.kind == "ether" for a in lk.addresses]
    cluster.segments = tuple(
        Segment(seg.name, seg.ports + tuple((s.name, "eth1") for s in specs if s.subnet.with_prefixlen in seg.name),
                tuple(fabric))
        for seg in cluster.segments
    )
    cluster.modelled.append(
        "The VPC is modelled as its fabric: it answers ARP itself with the MAC of the ENI an address is "
        "assigned to (pod addresses included), so no host ever sees another's ARP; the router stands for "
        "the VPC router at each subnet's .1. Pod addresses are VPC addresses from the nodes' subnets."
    )


_BUILDERS = {"flannel": _flannel, "calico": _calico, "weave": _weave, "cilium": _cilium, "aws-vpc-cni": _aws}
_HOOKS = {"weave": _weave_hooks, "cilium": _cilium_hooks}


def encapsulation_of(plugin: str, mode: str) -> str:
    """What carries pod traffic between nodes: "vxlan", "ipip", "sleeve" (Weave's UDP) or "none"."""
    if plugin == "weave":
        return "vxlan" if mode == "fastdp" else "sleeve"
    for name in ("vxlan", "ipip"):
        if mode.startswith(name):
            return name
    return "vxlan" if plugin == "cilium" else "none"


def pod_mtu_for(encapsulation: str) -> int:
    """The largest pod MTU that fits a 1500-byte underlay: its MTU minus the encapsulation's overhead (what
    flannel, Calico and Cilium give their pods; Weave gives :data:`WEAVE_MTU` whatever it wraps in)."""
    from labsupport import overlay

    if encapsulation == "none":
        return UNDERLAY_MTU
    if encapsulation == "sleeve":
        return UNDERLAY_MTU - SLEEVE_OVERHEAD
    return overlay.pod_mtu(UNDERLAY_MTU, encapsulation)


def cluster(plugin: str = "flannel", mode: str | None = None, topology: str = "two-nodes") -> Cluster:
    """The cluster with one CNI plugin in one mode, as its daemons and CNI binaries leave the nodes.

    plugin and mode: see :data:`PLUGINS` (mode None is the plugin's default); topology is
    `two-nodes` or `two-subnets`. Mirrors, on each node, the `ip link add`, `ip addr add`,
    `ip route add`, `ip neigh add` and `bridge fdb append` commands the plugin runs (or their
    netlink equivalents); a command the kernel refuses is in :attr:`Cluster.refused`.
    The result is cached per arguments: treat it as read-only (a walk works on a copy).
    """
    mode = check_choice(plugin, mode, topology)
    return _build(plugin, mode, topology)


@lru_cache(maxsize=64)
def _build(plugin: str, mode: str, topology: str) -> Cluster:
    nodes, router, segments = _underlay(topology)
    encapsulation = encapsulation_of(plugin, mode)
    mtu = WEAVE_MTU if plugin == "weave" else pod_mtu_for(encapsulation)
    result = Cluster(plugin, mode, topology, nodes, router, segments, mtu, encapsulation)
    _BUILDERS[plugin](result, _specs(topology))
    return result


# --- a packet across nodes ------------------------------------------------------------------------


def walk(network: Cluster, source: str, destination: str, proto: str = "icmp", port: int = 8080) -> Walk:
    """Send one ping (`ping -c1 DST`) or UDP datagram from a pod (or node) to another across nodes.

    The cluster is not changed: the walk runs on a copy, returned as `node_after` (the cluster
    after the exchange: the ARP and FDB entries it taught). Each hop holds the frame as a capture
    on that device would show it: on the nodes' eth0, the encapsulated frame.
    """
    if not isinstance(network, Cluster):
        raise LabInputError("cluster", type(network).__name__, "a cluster from cni.cluster()")
    return _walk(network, source, destination, proto=proto, port=port)


def overhead_of(result: Walk) -> int:
    """Bytes the plugin added to the first pod packet on its way across the underlay: the frame that carried
    it out of the source node's uplink, read back by :func:`unwrap` (0 when routed as it is). The frame is
    found by the packet's ICMP or UDP bytes, which no hop changes."""
    from scapy.layers.inet import ICMP, IP, UDP

    network = result.node_after
    source = result.source if result.source in network.namespaces else network.owner_of(IPv4Address(result.source))
    sent = next(h.frame[IP] for h in result.hops if h.namespace == source and h.frame is not None and IP in h.frame)
    l4 = bytes(sent[ICMP] if ICMP in sent else sent[UDP])
    origin = network.node_of(source) if source in network.pods else source
    ports = uplinks(network)
    for hop in result.hops:
        if hop.namespace == origin and (hop.namespace, hop.device) in ports and hop.frame is not None \
                and hop.event.startswith("transmits") and IP in hop.frame and l4 in bytes(hop.frame):
            return unwrap(hop.frame).overhead
    raise LabInputError("walk", f"{result.source} → {result.destination}", "a walk whose packet left the source node")


# --- reading a walk: the request's way and what wraps it on the wire ------------------------------

#: The UDP ports the models' VXLAN is sent to (flannel and Cilium: Linux's 8472; Calico: 4789; Weave's fast
#: datapath: 6784), which a capture tool must be told to decode as VXLAN (`tshark -d udp.port==8472,vxlan`).
VXLAN_PORTS = frozenset({FLANNEL_VXLAN_PORT, CALICO_VXLAN_PORT, CILIUM_VXLAN_PORT, WEAVE_FASTDP_PORT})


def uplinks(network: Cluster) -> set[tuple[str, str]]:
    """Every (namespace, device) attached to the underlay: the nodes' uplinks and the router's ports (where
    `tcpdump -i DEV` shows what crosses between the nodes)."""
    return {port for segment in network.segments for port in segment.ports}


def request_hops(result: Walk) -> list[Hop]:
    """The hops of the ping's echo request alone, from the source pod's eth0 to its delivery (or to where
    it was dropped): each frame that carries the request's ICMP bytes, and each decision taken about it
    (a hop without a frame right after one of those, in the same namespace). ARP exchanges on the way and
    the reply are left out. What `tcpdump -i DEV icmp` (or the tunnel's port) shows on each device."""
    from scapy.layers.inet import ICMP

    first = next((h for h in result.hops if h.frame is not None and h.frame.haslayer(ICMP)), None)
    if first is None:
        return []
    ping = bytes(first.frame[ICMP])
    out: list[Hop] = []
    carrying: Hop | None = None  # the last frame seen, if it carried the request
    for hop in result.hops[result.hops.index(first):]:
        if hop.frame is not None:
            carrying = hop if ping in bytes(hop.frame) else None
            if carrying is not None:
                out.append(hop)
        elif carrying is not None and hop.namespace == carrying.namespace:
            out.append(hop)
        if "delivered" in hop.event and hop.namespace != result.source:
            break
    return out


def crossings(network: Cluster, hops: list[Hop]) -> list[tuple[Hop, Hop]]:
    """The request's trips across the underlay: each (sending port, receiving port) pair of frame hops
    on :func:`uplinks`, in the order they happened."""
    ports = uplinks(network)
    wire = [h for h in hops if h.frame is not None and (h.namespace, h.device) in ports]
    sent = [h for h in wire if h.event.startswith("transmits")]
    received = [h for h in wire if h.event.startswith("receives")]
    return list(zip(sent, received))


@dataclass(frozen=True)
class Unwrapped:
    """A captured frame read back: its IP packet, what wraps the pod's packet in it and the pod's packet."""

    outer: object  # scapy IP: the frame's own IP packet
    encapsulation: str  # "vxlan", "ipip", "sleeve" or "none", as Cluster.encapsulation names them
    pod_packet: object  # scapy IP: the pod's packet (outer itself when nothing wraps it)
    vni: int | None = None
    ports: tuple[int, int] | None = None  # UDP source and destination port of VXLAN and sleeve

    @property
    def overhead(self) -> int:
        """Bytes of encapsulation in front of the pod's IP packet, counted against the underlay MTU: the
        outer IP packet's length minus the pod's (0 when nothing wraps it)."""
        return len(bytes(self.outer)) - len(bytes(self.pod_packet))


def unwrap(frame) -> Unwrapped:
    """Read a frame the way `tcpdump -nn -e -v` (tshark with `-d udp.port==PORT,vxlan`) would: IPIP (protocol
    4) and VXLAN on :data:`VXLAN_PORTS` are unwrapped by :func:`labsupport.tunneling.decapsulate`, as the
    receiving tunnel device does; Weave's sleeve (UDP 6783) by :func:`read_sleeve`, as its router does;
    anything else is the pod's packet itself, routed as it is."""
    from scapy.layers.inet import IP, UDP
    from scapy.packet import Packet

    if not isinstance(frame, Packet) or IP not in frame:
        raise LabInputError("frame", frame.summary() if isinstance(frame, Packet) else repr(frame),
                            "a captured frame carrying an IPv4 packet")
    outer = frame[IP]
    udp = outer.payload if isinstance(outer.payload, UDP) else None
    ports = (udp.sport, udp.dport) if udp is not None else None
    if outer.proto == tunneling.IPPROTO_IPIP or (udp is not None and udp.dport in VXLAN_PORTS):
        read = tunneling.decapsulate(frame)
        kind, inner, vni = read.kind, read.inner, read.vni
    elif udp is not None and udp.dport == WEAVE_PORT:
        kind, inner, vni = "sleeve", read_sleeve(bytes(udp.payload)), None
    else:
        return Unwrapped(outer, "none", outer)
    if IP not in inner:
        raise LabInputError("frame", inner.summary(), f"{kind} carrying a pod's IPv4 packet")
    return Unwrapped(outer, kind, inner[IP], vni, None if kind == "ipip" else ports)


def matching_plugins(ip_route: str, node: str = "node-1", topology: str = "two-nodes") -> list[tuple[str, str]]:
    """Every (plugin, mode) of the model whose node prints exactly this `ip route` (blank lines and
    surrounding spaces ignored): how a reader names the plugin from a node's routes."""
    want = [line.strip() for line in str(ip_route).strip().splitlines() if line.strip()]
    return [(plugin, mode) for plugin, modes in PLUGINS.items() for mode in modes
            if cluster(plugin, mode, topology).node(node).ip_route().splitlines() == want]


# --- views ----------------------------------------------------------------------------------------


def routes_text(plugin: str, mode: str | None = None, node: str = "node-1", topology: str = "two-nodes") -> str:
    """What `python -m labsupport cni routes --plugin NAME [--mode MODE] --node NAME` prints: the node's
    `ip route`, `bridge fdb show` and `ip neigh` (and `ip rule` and the extra tables when the plugin uses
    policy routing), as on the node right after the plugin set it up; first, any command the kernel
    refused, with the kernel's answer."""
    built = cluster(plugin, mode, topology)
    ns = built.node(node)
    parts = [f"$ {r.command}\nError: {r.error}" for r in built.refused if r.node == node]
    parts.append("$ ip route\n" + ns.ip_route())
    extra = [name for name, table in ns.tables.items() if name not in ("main", "default") and table.routes]
    if extra:
        parts.append("$ ip rule\n" + ns.ip_rule())
        parts += [f"$ ip route show table {name}\n" + ns.ip_route(name) for name in extra]
    parts.append("$ bridge fdb show\n" + ns.bridge_fdb())
    parts.append("$ ip neigh\n" + ns.ip_neigh())
    return "\n".join(part.rstrip("\n") for part in parts)


# --- the notes' table, from the models --------------------------------------------------------------

APPROACHES = ("L2", "Route", "Overlay", "Cloud")


@dataclass(frozen=True)
class Profile:
    """What walks on one plugin and mode show, and the notes' approach each falls in: within one
    subnet (pod-a → pod-b) and across subnets (pod-a → pod-c, None when not delivered)."""

    plugin: str
    mode: str
    approach: str
    approach_across: str | None
    overhead: int
    overhead_across: int | None
    pod_mtu: int
    pod_addresses_on_underlay: bool
    pod_addresses_on_underlay_across: bool | None
    needs_l2_adjacency: bool
    underlay_knows_pods: bool
    across_subnets: bool | None  # None: not a question for pods on one node

    @property
    def label(self) -> str:
        """plugin and mode as a reader types them: `calico ipip`."""
        return f"{self.plugin} {self.mode}".strip()


def _approach(result: Walk, overhead: int, pod_ip: IPv4Address) -> str:
    """Cloud when the fabric answered ARP for the pod address, Overlay when the packet was
    encapsulated, L2 when the source pod ARPed for the destination pod itself, else Route."""
    if any(h.device == "fabric" and f"who-has {pod_ip}:" in h.event for h in result.hops):
        return "Cloud"
    if overhead:
        return "Overlay"
    if any(h.namespace == result.source and f"ARP who-has {pod_ip} tell" in h.event for h in result.hops):
        return "L2"
    return "Route"


def _pods_on_wire(result: Walk, pod_ip: IPv4Address) -> bool:
    from scapy.layers.inet import IP

    ports = uplinks(result.node_after)
    return any(
        (h.namespace, h.device) in ports and h.frame is not None and IP in h.frame and h.frame[IP].dst == str(pod_ip)
        for h in result.hops
    )


@lru_cache(maxsize=32)
def profile(plugin: str, mode: str | None = None) -> Profile:
    """Walk a ping pod-a → pod-b (one subnet) and pod-a → pod-c (across subnets) and read off the
    approach, the overhead, whether pod addresses cross the underlay, whether the nodes must be
    layer-2 adjacent (the kernel refused a route to a node on another subnet), and whether the
    underlay must know pod addresses (the router, which has no pod routes, dropped the packet
    although every route was accepted; or the fabric answered ARP for a pod)."""
    mode = check_choice(plugin, mode, "two-nodes")
    near_cluster, far_cluster = cluster(plugin, mode, "two-nodes"), cluster(plugin, mode, "two-subnets")
    near, far = walk(near_cluster, "pod-a", "pod-b"), walk(far_cluster, "pod-a", "pod-c")
    pod_b, pod_c = near_cluster.pod_ip("pod-b"), far_cluster.pod_ip("pod-c")
    overhead = overhead_of(near)
    approach = _approach(near, overhead, pod_b)
    far_overhead = overhead_of(far) if far.delivered else None
    stopped = any(h.namespace == ROUTER and f"no route to {pod_c}" in h.event for h in far.hops)
    return Profile(
        plugin, mode, approach,
        _approach(far, far_overhead, pod_c) if far.delivered else None,
        overhead, far_overhead, near_cluster.pod_mtu,
        pod_addresses_on_underlay=_pods_on_wire(near, pod_b),
        pod_addresses_on_underlay_across=_pods_on_wire(far, pod_c) if far.delivered else None,
        needs_l2_adjacency=bool(far_cluster.refused),
        underlay_knows_pods=(stopped and not far_cluster.refused) or approach == "Cloud",
        across_subnets=far.delivered,
    )


def same_node_profile() -> Profile:
    """The notes' L2 example, pod to pod on the same node (the bridge of :func:`pod_network.build_node`):
    the source pod ARPs for the destination pod itself and nothing reaches the underlay."""
    from labsupport.pod_network import build_node

    node = build_node(pods=2)
    result = _walk(node, "pod-a", "pod-b")
    pod_b = node.pod_ip("pod-b")
    arps = any(h.namespace == "pod-a" and f"ARP who-has {pod_b} tell" in h.event for h in result.hops)
    left = any(h.event.startswith("leaves the node") for h in result.hops)
    return Profile(
        "bridge", "(one node)", "L2" if arps and result.delivered else "Route", None, 0, None,
        node.host.links["cni0"].mtu, pod_addresses_on_underlay=left, pod_addresses_on_underlay_across=None,
        needs_l2_adjacency=False, underlay_knows_pods=False, across_subnets=None,
    )


def comparison() -> list[Profile]:
    """Every plugin and mode's :class:`Profile`, after the same-node bridge."""
    return [same_node_profile()] + [profile(plugin, mode) for plugin, modes in PLUGINS.items() for mode in modes]


def comparison_table() -> str:
    """The notes' L2 / Route / Overlay / Cloud table, each cell computed from :func:`comparison`:
    which models fall in each approach (a CrossSubnet mode in two, by where its walks went), the
    encapsulation overheads and pod MTUs measured, and the yes/no rows read from the walks."""
    columns: dict[str, list[dict]] = {a: [] for a in APPROACHES}
    for p in comparison():
        common = {"mtu": p.pod_mtu, "l2": p.needs_l2_adjacency, "knows": p.underlay_knows_pods,
                  "across": p.across_subnets}
        columns[p.approach].append(
            {"name": p.label, "overhead": p.overhead, "on_wire": p.pod_addresses_on_underlay, **common})
        if p.approach_across not in (None, p.approach):
            columns[p.approach_across].append({"name": f"{p.label} (across subnets)", "overhead": p.overhead_across,
                                               "on_wire": p.pod_addresses_on_underlay_across, **common})

    def values(approach: str, key: str) -> str:
        got = sorted({e[key] for e in columns[approach]})
        return ", ".join(map(str, got)) or "–"

    def yes_no(approach: str, key: str) -> str:
        answers: dict[str, list[str]] = {}
        for e in columns[approach]:
            if e[key] is not None:
                answers.setdefault("yes" if e[key] else "no", []).append(e["name"])
        if len(answers) <= 1:
            return next(iter(answers), "–")
        return "; ".join(f"{word}: {', '.join(names)}" for word, names in sorted(answers.items(), reverse=True))

    rows = [
        ("Ex. (these models)", lambda a: "<br>".join(e["name"] for e in columns[a]) or "–"),
        ("encapsulation overhead (bytes)", lambda a: values(a, "overhead")),
        ("pod MTU on a 1500-byte underlay", lambda a: values(a, "mtu")),
        ("pod addresses on the underlay", lambda a: yes_no(a, "on_wire")),
        ("nodes must be layer-2 adjacent", lambda a: yes_no(a, "l2")),
        ("underlay must know pod addresses", lambda a: yes_no(a, "knows")),
        ("pod-a reaches pod-c on another subnet", lambda a: yes_no(a, "across")),
    ]
    lines = ["|  | " + " | ".join(APPROACHES) + " |", "| --- |" + " --- |" * len(APPROACHES)]
    lines += [f"| {title} | " + " | ".join(cell(a) for a in APPROACHES) + " |" for title, cell in rows]
    return "\n".join(lines)
