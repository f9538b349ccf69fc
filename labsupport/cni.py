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

from dataclasses import dataclass, field
from functools import lru_cache
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from labsupport.addressing import stable_mac
from labsupport.errors import LabInputError
from labsupport.host import Namespace
from labsupport.pod_network import Engine, Node, Segment, Walk
from labsupport.pod_network import walk as _walk

PLUGINS: dict[str, tuple[str, ...]] = {  # the first mode is the plugin's default
    "flannel": ("vxlan", "host-gw"),
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
    encapsulation: str  # "none", "vxlan", "ipip" or "udp": what crosses the underlay
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
        """The packet engine over every namespace, the underlay segments joining the nodes."""
        return Engine(self.namespaces, self.segments)


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
                "flannel.1", vni=1, dstport=8472, mac=stable_mac(spec.name, "flannel.1"),
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
    for spec in specs:
        host = cluster.nodes[spec.name].host
        for other in specs:
            if other is spec:
                continue
            if vxlan:
                # flannel design: per remote node one onlink route, one permanent ARP entry and one
                # FDB entry (the remote VTEP's MAC is behind the remote node's address).
                remote_vtep = other.pod_address(0)
                remote_mac = stable_mac(other.name, "flannel.1")
                host.add_route(other.pod_cidr, via=str(remote_vtep), dev="flannel.1", onlink=True)
                host.add_neighbour(str(remote_vtep), remote_mac, "flannel.1", "PERMANENT")
                host.add_fdb(remote_mac, "flannel.1", dst=str(other.ip))
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


_BUILDERS = {"flannel": _flannel}
_ENCAPSULATION = {("flannel", "vxlan"): "vxlan", ("flannel", "host-gw"): "none"}


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
    from labsupport import overlay

    nodes, router, segments = _underlay(topology)
    encapsulation = _ENCAPSULATION[(plugin, mode)]
    mtu = UNDERLAY_MTU if encapsulation in ("none",) else overlay.pod_mtu(UNDERLAY_MTU, encapsulation)
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
    """Bytes the plugin added to the first pod packet on its way across the underlay: the IP length of
    the frame on the source node's uplink minus the IP length the source pod sent (0 when routed)."""
    from scapy.layers.inet import IP

    sent = next(h.frame for h in result.hops if h.frame is not None and IP in h.frame)
    source_node = result.node_after.node_of(result.source) if result.source in result.node_after.pods else result.source
    on_wire = [
        h.frame for h in result.hops
        if h.namespace == source_node and h.device == "eth0" and h.frame is not None and IP in h.frame
        and h.event.startswith("transmits")
    ]
    if not on_wire:
        raise LabInputError("walk", result.source, "a walk whose packet left the source node on eth0")
    return len(bytes(on_wire[0][IP])) - len(bytes(sent[IP]))
