"""Kernel twins of the overlay chapters: flannel's VXLAN between two nodes, and IPIP where the kernel has it.

:class:`VxlanTwin` builds the shared two-node cluster ("two-nodes": node-1 192.168.56.10, node-2
192.168.56.11, pods pod-a 10.244.1.2 and pod-b 10.244.2.2) in network namespaces, with the devices
and entries flannel's vxlan backend installs on each node:

- the underlay: one veth pair, node-1 `eth0` ↔ node-2 `eth0` (MTU 1500), nothing else on it; each
  node's default route via the model's gateway 192.168.56.1 (no packet of the twin goes there, so the
  gateway itself is not built);
- `ip link add flannel.1 type vxlan id 1 local NODE_IP dev eth0 dstport 8472 nolearning`, MTU 1450,
  address 10.244.N.0/32;
- per remote node M, in flannel's order (`pkg/backend/vxlan`: AddARP, AddFDB, then the route, each a
  netlink "replace"): `ip neigh replace 10.244.M.0 lladdr MAC dev flannel.1 nud permanent`,
  `bridge fdb replace MAC dev flannel.1 dst NODE_M_IP self permanent`,
  `ip route replace 10.244.M.0/24 via 10.244.M.0 dev flannel.1 onlink`;
- the CNI side: bridge `cni0` 10.244.N.1/24 (MTU 1450), one pod behind it on a veth (MTU 1450), its
  default route and flannel's route to the cluster network 10.244.0.0/16 via 10.244.N.1;
  `net.ipv4.ip_forward=1` on the nodes.

Every MAC is the model's (`stable_mac(node, ifname)`, a pod's eth0 `cni_mac(ip)`), so frames compare
byte for byte. :func:`run_vxlan_twin` pings pod-a → pod-b, captures node-1's `eth0` (`tcpdump -w` inside
the namespace), and compares the encapsulated frames field by field with the model's walk
(:mod:`labsupport.cni`), and the nodes' `ip -j route`, `ip -j -d link show flannel.1`,
`bridge -j fdb show dev flannel.1` and `ip -j neigh show dev flannel.1` with the model's.

:func:`tunnel_support` asks the kernel which tunnel devices it can create (`ip link add … type KIND` in
a scratch namespace of the twin's own). :class:`IpipTwin` builds the same two nodes as Calico in IPIP mode
leaves them (`cni.cluster("calico", "ipip", "two-nodes")`): the fallback `tunl0` with the node's tunnel
address, BIRD's `10.244.M.0/26 via NODE_M_IP dev tunl0 proto bird onlink` routes and blackhole, the
pods as /32s behind `cali…` veths with proxy ARP for their gateway 169.254.1.1; the commands are
:func:`calico_ipip_commands`. :func:`run_ipip_twin` compares each namespace's `ip -j route` and the frames
on node-1's eth0 with the model's walk. It runs only where `type ipip` exists: elsewhere it says so, with
the kernel's own message.

Safety: these are :class:`~labsupport.kernel.Twin` subclasses, so everything of Twin holds — namespaces
named `k8s101-<pid>-<hex>-<name>`, the stale sweep, every command inside the twin's own namespaces
(`ip -n NS`, `bridge -n NS`, `ip netns exec NS`), cleanup on exit, error, SIGINT/SIGTERM and at
interpreter exit. The underlay joins the two node namespaces only: no device, route or address is
added to this machine's namespace and no packet leaves the twin.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from ipaddress import IPv4Network
from pathlib import Path

from labsupport.addressing import cni_mac, stable_mac
from labsupport.errors import LabInputError
from labsupport.host import Namespace
from labsupport.kernel import (
    Twin,
    TwinError,
    _route_text,
    available,
    compare_frames,
    frame_fields,
    parse_ip_json,
)
from labsupport.overlay import LINUX_VXLAN_PORT, LOCAL_PORT_RANGE, overhead, vxlan_decapsulate
from labsupport.pod_network import Node
from labsupport.tunneling import IPPROTO_IPIP
from labsupport.tunneling import overhead as tunnel_overhead

VXLAN_DEVICE = "flannel.1"  # flannel: fmt.Sprintf("flannel.%v", VNI)
VNI = 1
IPIP_DEVICE = "tunl0"  # the ipip module's fallback device, in every namespace once the module is loaded
UNDERLAY_DEVICE = "eth0"
BRIDGE = "cni0"
UNDERLAY_MTU = 1500
# What `ip link add` tries per kind in the scratch namespace (addresses of TEST-NET-1, RFC 5737; the
# device is never set up, so nothing is ever sent).
PROBE_ARGS = {
    "vxlan": ("id", "1", "dstport", str(LINUX_VXLAN_PORT)),
    "ipip": ("local", "192.0.2.1", "remote", "192.0.2.2"),
    "gre": ("local", "192.0.2.1", "remote", "192.0.2.2"),
    "gretap": ("local", "192.0.2.1", "remote", "192.0.2.2"),
    "sit": ("local", "192.0.2.1", "remote", "192.0.2.2"),
    "geneve": ("id", "1", "remote", "192.0.2.2"),
}
TUNNEL_KINDS = tuple(PROBE_ARGS)
# The module that provides each kind (`ip link add … type KIND` loads it on demand where modules load).
TUNNEL_MODULES = {"vxlan": "vxlan", "ipip": "ipip", "gre": "ip_gre", "gretap": "ip_gre", "sit": "sit", "geneve": "geneve"}


def module_not_loaded(kind: str, root: Path = Path("/")) -> str | None:
    """Why probing `kind` would change the host, or None: when its module is neither loaded nor built in
    (no /sys/module/NAME) but can be loaded (listed in /lib/modules/RELEASE/modules.dep), `ip link add`
    would load it, and loading ipip, ip_gre or sit adds fallback devices (tunl0, gre0, gretap0, sit0, …)
    to every namespace, the host's included. The twins never do that; `modprobe NAME` is the reader's call.
    `root` is where /sys and /lib are (a test points it at a made-up tree)."""
    module = TUNNEL_MODULES[kind]
    if (root / "sys/module" / module).exists():
        return None
    try:
        listed = (root / "lib/modules" / os.uname().release / "modules.dep").read_text()
    except OSError:
        return None  # nothing can be loaded: the probe cannot change the host
    if f"/{module}.ko" not in listed:
        return None
    return (f"the {module} module is not loaded, and loading it would add its fallback devices to every "
            f"namespace, the host's too; run `modprobe {module}` first to let the twin use {kind}")


# --- which tunnel devices this kernel has ------------------------------------------------------------


class _Scratch(Twin):
    """One empty namespace of the twin's own (`<prefix>-scratch`), for asking the kernel things."""

    def __init__(self, prefix: str | None = None) -> None:
        node = Node("scratch")
        node.namespaces["scratch"] = Namespace("scratch", role="node")
        super().__init__(node, prefix)


@contextlib.contextmanager
def scratch_namespace(prefix: str | None = None):
    """A Twin with one empty namespace, "scratch": `ip netns add <prefix>-scratch`, deleted on leaving
    (and on errors and signals, as every Twin). Use `twin.ip("scratch", …)` inside."""
    with _Scratch(prefix) as twin:
        yield twin


def tunnel_support(kinds: tuple[str, ...] = TUNNEL_KINDS) -> dict[str, tuple[bool, str]]:
    """Which tunnel devices the kernel can create: kind → (available, the kernel's answer).

    Runs, in a scratch namespace of its own, `ip -n NS link add t-KIND type KIND …` per kind (vxlan,
    ipip, gre, gretap, sit, geneve; endpoints from TEST-NET-1, the device never set up) and deletes the
    namespace. Where the module is missing iproute2 answers "Error: Unknown device type." and that text
    is the reason. A kind whose module could be loaded but is not is not tried (see
    :func:`module_not_loaded`): probing would load it and change the host. Without root or namespaces
    every kind is (False, why).
    """
    ok, reason = available()
    if not ok:
        return {kind: (False, reason) for kind in kinds}
    out: dict[str, tuple[bool, str]] = {}
    with scratch_namespace() as twin:
        for kind in kinds:
            if kind not in PROBE_ARGS:
                raise LabInputError("kind", kind, f"one of {', '.join(TUNNEL_KINDS)}")
            command = ("link", "add", f"t-{kind}", "type", kind, *PROBE_ARGS[kind])
            refusal = module_not_loaded(kind)
            if refusal is not None:
                out[kind] = (False, refusal)
                continue
            try:
                twin.ip("scratch", *command)
            except TwinError as exc:
                out[kind] = (False, exc.detail)
            else:
                out[kind] = (True, f"`ip link add … type {kind}` works")
    return out


# --- the cluster the twins build ----------------------------------------------------------------------


def vxlan_cluster():
    """The model the VXLAN twin is compared with: `cni.cluster("flannel", "vxlan", "two-nodes")`."""
    from labsupport import cni

    return cni.cluster("flannel", "vxlan", "two-nodes")


def calico_ipip_cluster():
    """The model the IPIP twin is compared with: `cni.cluster("calico", "ipip", "two-nodes")`."""
    from labsupport import cni

    return cni.cluster("calico", "ipip", "two-nodes")


def node_specs(network) -> tuple:
    """A cluster's nodes as the shared addressing gives them (`cni.NodeSpec`: address, pod CIDR, pod…)."""
    from labsupport import cni

    return tuple(spec for spec in cni.NODE_SPECS if spec.name in network.nodes)


# --- the twins ------------------------------------------------------------------------------------------


def _prefixed(spec, host: int) -> str:
    """The host-th address of the node's pod CIDR with the CIDR's length: `10.244.1.1/24`."""
    return f"{spec.pod_address(host)}/{IPv4Network(spec.pod_cidr).prefixlen}"


class _TwoNodeTwin(Twin):
    """Two node namespaces on one veth underlay and one pod namespace per node; a subclass builds the CNI
    plugin's side (`_plugin`: the overlay device, the pods, the routes) and names the devices of a node
    that the build waits for (`_node_devices`)."""

    def __init__(self, specs: tuple | None = None, prefix: str | None = None) -> None:
        self.specs = tuple(specs) if specs is not None else node_specs(vxlan_cluster())
        if len(self.specs) != 2:
            raise TwinError(f"the overlay twins join two nodes, not {len(self.specs)}")
        model = Node("two-nodes")
        for spec in self.specs:
            model.namespaces[spec.name] = Namespace(spec.name, role="node", forwarding=True)
        for spec in self.specs:
            model.namespaces[spec.pod] = Namespace(spec.pod, role="pod")
        super().__init__(model, prefix)

    def _node_devices(self, spec) -> set[str]:
        raise NotImplementedError

    def _plugin(self) -> None:
        raise NotImplementedError

    def _settle_devices(self, name: str) -> set[str]:
        for spec in self.specs:
            if name == spec.pod:
                return {"lo", "eth0"}
            if name == spec.name:
                return {"lo", UNDERLAY_DEVICE, *self._node_devices(spec)}
        return set()

    def build(self) -> None:
        """Build both nodes and pods. Per namespace `ip netns add` and Twin's sysctls (ip_forward=1 on the
        nodes); then the underlay:

        - `ip -n NODE1 link add eth0 type veth peer name eth0 netns NODE2`,
          `ip -n NODE link set dev eth0 address MAC mtu 1500 up`, `ip -n NODE addr add IP/24 brd + dev eth0`,
          `ip -n NODE route add default via 192.168.56.1 dev eth0` (the model's gateway; no packet of the
          twin goes to it, so it is not built);

        then the plugin's side (the subclass's `_plugin`), and waits until every device is up (and has its
        fe80:: address).
        """
        start = time.perf_counter()
        one, two = self.specs
        for spec in self.specs:
            self._add_namespace(self.names[spec.name], True)
        for spec in self.specs:
            self._add_namespace(self.names[spec.pod], False)
        self.ip(
            one.name,
            "link",
            "add",
            UNDERLAY_DEVICE,
            "type",
            "veth",
            "peer",
            "name",
            UNDERLAY_DEVICE,
            "netns",
            self.real(two.name),
        )
        for spec in self.specs:
            self.ip(spec.name, "link", "set", "dev", "lo", "up")
            self._up(spec.name, UNDERLAY_DEVICE, stable_mac(spec.name, UNDERLAY_DEVICE), UNDERLAY_MTU)
            self.ip(spec.name, "addr", "add", spec.address, "brd", "+", "dev", UNDERLAY_DEVICE)
            self.ip(spec.name, "route", "add", "default", "via", spec.gateway, "dev", UNDERLAY_DEVICE)
        self._plugin()
        self.timings["commands"] = time.perf_counter() - start
        self._settle()
        self.timings["build"] = time.perf_counter() - start

    def _up(self, ns: str, dev: str, mac: str, mtu: int) -> None:
        """`ip -n NS link set dev DEV address MAC mtu MTU up`."""
        self.ip(ns, "link", "set", "dev", dev, "address", mac, "mtu", str(mtu), "up")

    # --- reading and traffic ---------------------------------------------------------------------

    def routes(self, name: str) -> list[dict]:
        """`ip -j -n NS route show table main`: the IPv4 unicast routes :func:`parse_ip_json` keeps."""
        dump = json.loads(self.ip(name, "-j", "route", "show", "table", "main") or "[]")
        return parse_ip_json([], dump, [], [], [])["route"].get("main", [])

    def ping_captured(self, source: str, destination: str, on: tuple[str, str]) -> tuple[bool, list]:
        """Ping destination from the pod `source` once (`ping -c1 -e 1`) while capturing `on` = (namespace,
        device) with tcpdump (`ip netns exec NS tcpdump -i DEV -w FILE`); returns (replied, the frames)."""
        replied: list[bool] = []
        frames = self.capture(*on, lambda: replied.append(self.ping(source, str(destination))))
        return bool(replied and replied[0]), frames


class VxlanTwin(_TwoNodeTwin):
    """flannel's vxlan backend on two real nodes; the module docstring lists every command. For example::

        with VxlanTwin() as twin:
            replied, frames = twin.ping_captured("pod-a", "10.244.2.2", ("node-1", "eth0"))
            twin.read_vxlan("node-1")     # ip -j route, ip -d link, bridge fdb and ip neigh of flannel.1

    :func:`run_vxlan_twin` does this and compares everything with the model.
    """

    pod_mtu = UNDERLAY_MTU - overhead("vxlan")

    def _node_devices(self, spec) -> set[str]:
        return {BRIDGE, spec.host_veth, VXLAN_DEVICE}

    def _plugin(self) -> None:
        """flannel's side: per node the vxlan device (`_tunnel`), then the bridge plugin's pod, then per
        remote node flannel's three entries (`_remote`). The pod, per node:

        - `ip -n NODE link add cni0 type bridge`, `… address MAC mtu 1450 up`,
          `ip -n NODE addr add 10.244.N.1/24 brd + dev cni0`;
        - `ip -n NODE link add veth-pod-a type veth peer name eth0 netns POD`, the host end `master cni0`,
          the pod's eth0 with its `cni_mac`, `ip -n POD addr add 10.244.N.2/24 brd + dev eth0`,
          `ip -n POD route add default via 10.244.N.1 dev eth0` and flannel's IPAM route
          `ip -n POD route add 10.244.0.0/16 via 10.244.N.1 dev eth0`.
        """
        from labsupport.cni import CLUSTER_CIDR

        for spec in self.specs:
            self._tunnel(spec)
        for spec in self.specs:
            gateway = str(spec.pod_address(1))
            self.ip(spec.name, "link", "add", BRIDGE, "type", "bridge")
            self._up(spec.name, BRIDGE, stable_mac(spec.name, BRIDGE), self.pod_mtu)
            self.ip(spec.name, "addr", "add", _prefixed(spec, 1), "brd", "+", "dev", BRIDGE)
            self.ip(
                spec.name,
                "link",
                "add",
                spec.host_veth,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                self.real(spec.pod),
            )
            self.ip(
                spec.name,
                "link",
                "set",
                "dev",
                spec.host_veth,
                "address",
                stable_mac(spec.name, spec.host_veth),
                "mtu",
                str(self.pod_mtu),
                "master",
                BRIDGE,
                "up",
            )
            self.ip(spec.pod, "link", "set", "dev", "lo", "up")
            self._up(spec.pod, "eth0", cni_mac(spec.pod_address(2)), self.pod_mtu)
            self.ip(spec.pod, "addr", "add", _prefixed(spec, 2), "brd", "+", "dev", "eth0")
            self.ip(spec.pod, "route", "add", "default", "via", gateway, "dev", "eth0")
            self.ip(spec.pod, "route", "add", CLUSTER_CIDR, "via", gateway, "dev", "eth0")
        for spec in self.specs:
            for remote in self.specs:
                if remote is not spec:
                    self._remote(spec, remote)

    def _tunnel(self, spec) -> None:
        """`ip link add flannel.1 type vxlan id 1 local NODE_IP dev eth0 dstport 8472 nolearning`,
        `ip link set dev flannel.1 address MAC mtu 1450 up`, `ip addr add 10.244.N.0/32 dev flannel.1`."""
        self.ip(
            spec.name,
            "link",
            "add",
            VXLAN_DEVICE,
            "type",
            "vxlan",
            "id",
            str(VNI),
            "local",
            str(spec.ip),
            "dev",
            UNDERLAY_DEVICE,
            "dstport",
            str(LINUX_VXLAN_PORT),
            "nolearning",
        )
        self._up(spec.name, VXLAN_DEVICE, stable_mac(spec.name, VXLAN_DEVICE), self.pod_mtu)
        self.ip(spec.name, "addr", "add", f"{spec.pod_address(0)}/32", "dev", VXLAN_DEVICE)

    def _remote(self, spec, remote) -> None:
        """flannel's three entries for one remote node, in its order (neighbour, FDB entry, then the route:
        "the kernel would ARP for the Gw IP address if it hadn't already been set above")."""
        vtep_ip, vtep_mac = str(remote.pod_address(0)), stable_mac(remote.name, VXLAN_DEVICE)
        self.ip(
            spec.name,
            "neigh",
            "replace",
            vtep_ip,
            "lladdr",
            vtep_mac,
            "dev",
            VXLAN_DEVICE,
            "nud",
            "permanent",
        )
        self.bridge(
            spec.name,
            "fdb",
            "replace",
            vtep_mac,
            "dev",
            VXLAN_DEVICE,
            "dst",
            str(remote.ip),
            "self",
            "permanent",
        )
        self.ip(spec.name, "route", "replace", remote.pod_cidr, "via", vtep_ip, "dev", VXLAN_DEVICE, "onlink")

    def read_vxlan(self, name: str) -> dict:
        """What the kernel has on one node, the parts flannel writes, shaped as :func:`model_vxlan_state`:
        `route` (`ip -j route`, main table, IPv4 unicast), `vxlan` (from `ip -j -d link show flannel.1`:
        id, port, local, dev, learning, udp_csum, mtu, mac), `details` (the kind line of `ip -d link show
        flannel.1`, up to `addrgenmode`), `fdb` (`bridge -j fdb show dev flannel.1`) and `neigh`
        (`ip -j neigh show dev flannel.1`)."""
        link = json.loads(self.ip(name, "-j", "-d", "link", "show", "dev", VXLAN_DEVICE))[0]
        info = link.get("linkinfo", {}).get("info_data", {})
        text = self.ip(name, "-d", "link", "show", "dev", VXLAN_DEVICE)
        kind_line = next(
            (line.strip() for line in text.splitlines() if line.strip().startswith("vxlan ")), ""
        )
        return {
            "route": self.routes(name),
            "vxlan": {
                "id": info.get("id"),
                "port": info.get("port"),
                "local": info.get("local"),
                "dev": info.get("link"),
                "learning": info.get("learning"),
                "udp_csum": info.get("udp_csum"),
                "mtu": link.get("mtu"),
                "mac": link.get("address"),
            },
            "details": kind_line.split(" addrgenmode")[0],
            "fdb": json.loads(self.bridge(name, "-j", "fdb", "show", "dev", VXLAN_DEVICE) or "[]"),
            "neigh": json.loads(self.ip(name, "-j", "neigh", "show", "dev", VXLAN_DEVICE) or "[]"),
        }


def calico_ipip_commands(specs: tuple | None = None) -> list[tuple[str, tuple[str, ...]]]:
    """What Calico in IPIP mode runs on each node and pod of the two-node cluster, once the underlay is up
    and `tunl0` exists: (namespace, command) pairs, `ip …` to run as `ip -n NAMESPACE …` and `sysctl -w …`
    as `ip netns exec NAMESPACE sysctl -w …` (a `netns POD` names the pod's namespace). In order, per node:

    - Felix (`route_mgr.go`, configureTunnelDevice): `ip link set dev tunl0 mtu 1480 up`,
      `ip addr add 10.244.N.0/32 dev tunl0` (the tunnel address: the first of the node's IPAM block);
    - BIRD (`bird_aggr.cfg.template`, `bird_ipam.cfg.template`): `ip route add blackhole 10.244.N.0/26
      proto bird` for the node's own block and, per remote node M,
      `ip route add 10.244.M.0/26 via NODE_M_IP dev tunl0 proto bird onlink`;
    - the Calico CNI plugin, for the node's pod: `ip link add caliXXXXXXXXXXX type veth peer name eth0
      netns POD`, the host end `address ee:ee:ee:ee:ee:ee mtu 1480 up`, `sysctl -w
      net.ipv4.conf.caliX.proxy_arp=1 net.ipv4.neigh.caliX.proxy_delay=0 net.ipv4.conf.caliX.forwarding=1`;
      in the pod `ip link set dev eth0 address MAC mtu 1480 up` (the model's `cni_mac`),
      `ip addr add 10.244.N.2/32 dev eth0`, `ip route add 169.254.1.1 dev eth0 scope link`,
      `ip route add default via 169.254.1.1 dev eth0`; on the node `ip route add 10.244.N.2 dev caliX scope
      link` and `ip neigh add 10.244.N.2 lladdr MAC dev caliX nud permanent`.

    Block size, veth names and MACs are :mod:`labsupport.cni`'s (`CALICO_BLOCK_PREFIX`, `calico_veth_name`,
    `CALICO_VETH_MAC`), so the state these commands leave is what `cni.cluster("calico", "ipip")` models.
    """
    from labsupport import cni
    from labsupport.pod_network import AWS_LINK_LOCAL_GATEWAY as GATEWAY  # Calico's pod gateway too

    specs = tuple(specs) if specs is not None else node_specs(calico_ipip_cluster())
    mtu = str(IpipTwin.pod_mtu)
    out: list[tuple[str, tuple[str, ...]]] = []
    for spec in specs:
        node, block = spec.name, cni._calico_block(spec)
        out += [
            (node, ("ip", "link", "set", "dev", IPIP_DEVICE, "mtu", mtu, "up")),
            (node, ("ip", "addr", "add", f"{block.network_address}/32", "dev", IPIP_DEVICE)),
            (node, ("ip", "route", "add", "blackhole", str(block), "proto", "bird")),
        ]
        for remote in specs:
            if remote is not spec:
                route = (str(cni._calico_block(remote)), "via", str(remote.ip), "dev", IPIP_DEVICE)
                out.append((node, ("ip", "route", "add", *route, "proto", "bird", "onlink")))
    for spec in specs:
        node, pod, veth = spec.name, spec.pod, cni.calico_veth_name(spec.pod)
        pod_ip, pod_mac = str(spec.pod_address(2)), cni_mac(spec.pod_address(2))
        sysctls = (
            f"net.ipv4.conf.{veth}.proxy_arp=1",
            f"net.ipv4.neigh.{veth}.proxy_delay=0",
            f"net.ipv4.conf.{veth}.forwarding=1",
        )
        out += [
            (node, ("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", pod)),
            (node, ("ip", "link", "set", "dev", veth, "address", cni.CALICO_VETH_MAC, "mtu", mtu, "up")),
            (node, ("sysctl", "-w", *sysctls)),
            (pod, ("ip", "link", "set", "dev", "lo", "up")),
            (pod, ("ip", "link", "set", "dev", "eth0", "address", pod_mac, "mtu", mtu, "up")),
            (pod, ("ip", "addr", "add", f"{pod_ip}/32", "dev", "eth0")),
            (pod, ("ip", "route", "add", GATEWAY, "dev", "eth0", "scope", "link")),
            (pod, ("ip", "route", "add", "default", "via", GATEWAY, "dev", "eth0")),
            (node, ("ip", "route", "add", pod_ip, "dev", veth, "scope", "link")),
            (node, ("ip", "neigh", "add", pod_ip, "lladdr", pod_mac, "dev", veth, "nud", "permanent")),
        ]
    return out


class IpipTwin(_TwoNodeTwin):
    """Calico's IPIP mode on two real nodes, as `cni.cluster("calico", "ipip", "two-nodes")` models it: the
    ipip module's fallback device `tunl0` with the node's tunnel address, BIRD's routes
    `10.244.M.0/26 via NODE_M_IP dev tunl0 proto bird onlink` (the route's gateway is the outer
    destination) and a blackhole for the node's own block, and each pod a /32 behind a `cali…` veth whose
    node end answers ARP for the pods' gateway 169.254.1.1 (proxy ARP). The commands are
    :func:`calico_ipip_commands`.

    `tunl0` is used as the kernel makes it: `ttl inherit`, `tos 0`, `nopmtudisc` (ip_tunnel_init_net
    creates the fallback device from zeroed parameters), so the outer header copies the inner TTL and DF
    bit (ip_tunnel_xmit), as the model's `ipip_transmit` does. Needs the kernel's ipip module: see
    :func:`tunnel_support`.
    """

    pod_mtu = UNDERLAY_MTU - tunnel_overhead("ipip")

    def _node_devices(self, spec) -> set[str]:
        from labsupport.cni import calico_veth_name

        return {IPIP_DEVICE, calico_veth_name(spec.pod)}

    def _plugin(self) -> None:
        """`_ensure_tunl0` on each node, then every command of :func:`calico_ipip_commands`, in order."""
        for spec in self.specs:
            self._ensure_tunl0(spec)
        for ns, command in calico_ipip_commands(self.specs):
            if command[0] == "sysctl":
                self.netns_exec(ns, *command)
                continue
            args = list(command[1:])
            if "netns" in args:
                where = args.index("netns") + 1
                args[where] = self.real(args[where])
            self.ip(ns, *args)

    def _ensure_tunl0(self, spec) -> None:
        """Felix's check for the device (configureTunnelDevice): `ip -n NODE link show dev tunl0`; where it is
        missing, `ip -n NODE link add tunl0 type ipip`, as Felix's netlink LinkAdd of an Iptun named tunl0.
        On a kernel without the ipip module that fails with the kernel's "Error: Unknown device type."."""
        if not self.ip(spec.name, "link", "show", "dev", IPIP_DEVICE, check=False).strip():
            self.ip(spec.name, "link", "add", IPIP_DEVICE, "type", "ipip")


# --- frames ------------------------------------------------------------------------------------------


def underlay_frame_fields(frame, port: int = LINUX_VXLAN_PORT) -> dict:
    """The fields a model and a kernel must agree on in a frame on the underlay.

    An encapsulated frame — VXLAN (UDP to `port`) or IPIP (IP protocol 4) — gives its outer Ethernet and
    IPv4 fields (IP id and checksum left out); for VXLAN also the UDP destination port and length, whether
    a UDP checksum is present (non-zero), the VXLAN flags, VNI and reserved bits; then the inner frame's
    (or packet's) :func:`~labsupport.kernel.frame_fields`, prefixed `inner_`. The outer UDP source port is
    left out (see :func:`source_port_problems`), and so is the UDP checksum's value: a capture on a veth
    shows the partial checksum the stack leaves for the device to finish, not the final one.
    Any other frame (ARP on the underlay): :func:`~labsupport.kernel.frame_fields`.
    """
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.layers.vxlan import VXLAN

    frame = Ether(bytes(frame))
    vxlan = frame.haslayer(UDP) and frame[UDP].dport == port
    ipip = frame.haslayer(IP) and frame[IP].proto == IPPROTO_IPIP
    if not (vxlan or ipip):
        return frame_fields(frame)
    eth, ip = frame[Ether], frame[IP]
    out: dict = {"eth_src": eth.src, "eth_dst": eth.dst, "eth_type": eth.type}
    for name in ("version", "ihl", "tos", "len", "frag", "ttl", "proto", "src", "dst"):
        out[f"ip_{name}"] = getattr(ip, name)
    out["ip_flags"] = str(ip.flags)
    if ipip:
        inner = IP(bytes(ip.payload))
    else:
        udp = frame[UDP]
        out.update(udp_dport=udp.dport, udp_len=udp.len, udp_checksum_present=udp.chksum != 0)
        header = VXLAN(bytes(udp.payload)[:8])
        out.update(
            vxlan_flags=int(header.flags),
            vxlan_reserved1=header.reserved1,
            vxlan_vni=header.vni,
            vxlan_reserved2=header.reserved2,
        )
        _, inner = vxlan_decapsulate(frame)
    out.update({f"inner_{k}": v for k, v in frame_fields(inner).items()})
    return out


def compare_underlay_frames(model_frames: list, real_frames: list, port: int = LINUX_VXLAN_PORT) -> list[str]:
    """Differences between the model's frames on the underlay and captured ones, in order, field by field
    (:func:`underlay_frame_fields`); [] when they agree."""
    return compare_frames(model_frames, real_frames, lambda frame: underlay_frame_fields(frame, port))


def source_port_problems(frames: list, port: int = LINUX_VXLAN_PORT) -> list[str]:
    """What is wrong with the captured VXLAN frames' outer UDP source ports ([] when nothing).

    The kernel picks the port from the inner flow's hash (`udp_flow_src_port`), keyed with a seed chosen
    at boot, so its value cannot equal a model's; what must hold is that it lies in the local port range
    (32768–60999) and is the same for every packet of one direction of the flow (same outer source and
    destination): that is what keeps a flow on one ECMP path of the underlay.
    """
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether

    low, high = LOCAL_PORT_RANGE
    seen: dict[tuple[str, str], set[int]] = {}
    problems = []
    for frame in frames:
        frame = Ether(bytes(frame))
        if not (frame.haslayer(UDP) and frame[UDP].dport == port):
            continue
        sport = frame[UDP].sport
        if not low <= sport <= high:
            problems.append(f"outer UDP source port {sport} is outside {low}–{high}")
        seen.setdefault((frame[IP].src, frame[IP].dst), set()).add(sport)
    for (src, dst), ports in sorted(seen.items()):
        if len(ports) > 1:
            problems.append(f"{src} → {dst}: one flow, several outer source ports {sorted(ports)}")
    return problems


def source_ports(frames: list, port: int = LINUX_VXLAN_PORT) -> dict[tuple[str, str], list[int]]:
    """The outer UDP source ports of captured VXLAN frames, per (outer source, outer destination)."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether

    out: dict[tuple[str, str], list[int]] = {}
    for frame in frames:
        frame = Ether(bytes(frame))
        if frame.haslayer(UDP) and frame[UDP].dport == port:
            out.setdefault((frame[IP].src, frame[IP].dst), []).append(frame[UDP].sport)
    return out


# --- node state, kernel and model ------------------------------------------------------------------


def model_vxlan_state(ns: Namespace) -> dict:
    """A model node's flannel state, shaped as :meth:`VxlanTwin.read_vxlan` reads the kernel's: its main
    table routes (`Namespace.ip_json`), the vxlan device's settings and kind line (`ip -d link show`),
    its FDB entries (`bridge -j fdb show dev flannel.1`: mac, dst, flags ["self"], state "permanent") and
    its neighbour entries (`ip -j neigh show dev flannel.1`: dst, lladdr, state)."""
    link = ns.links[VXLAN_DEVICE]
    vx = link.vxlan
    return {
        "route": ns.ip_json()["route"].get("main", []),
        "vxlan": {
            "id": vx.vni,
            "port": vx.dstport,
            "local": str(vx.local) if vx.local is not None else None,
            "dev": vx.dev,
            "learning": vx.learning,
            "udp_csum": "udpcsum" in vx.details().split(),
            "mtu": link.mtu,
            "mac": link.mac,
        },
        "details": vx.details(),
        "fdb": [
            {
                "mac": e.mac,
                "dst": str(e.dst),
                "flags": ["self"],
                **({"state": "permanent"} if e.permanent else {}),
            }
            for e in ns.vxlan_fdb(VXLAN_DEVICE)
        ],
        "neigh": [
            {"dst": str(n.ip), "lladdr": n.mac, "state": [n.state]}
            for n in ns.neighbours
            if n.dev == VXLAN_DEVICE
        ],
    }


def compare_routes(model: list[dict], kernel: list[dict], what: str = "ip route") -> list[str]:
    """Routes only the model or only the kernel has, as `ip route` lines ([] when the sets agree)."""
    model_lines = [_route_text(r) for r in model]
    real_lines = [_route_text(r) for r in kernel]
    diffs = [f"{what}: only in the model: {line}" for line in model_lines if line not in real_lines]
    diffs += [f"{what}: only in the kernel: {line}" for line in real_lines if line not in model_lines]
    return diffs


def route_differences(network, state: dict[str, dict]) -> list[str]:
    """Each namespace's routes in the kernel (`state[name]["route"]`, as :meth:`_TwoNodeTwin.routes` reads
    them) against the same namespace of the model cluster, prefixed with the namespace's name."""
    diffs = []
    for name, real in state.items():
        want = network.namespaces[name].ip_json()["route"].get("main", [])
        diffs += [f"{name}: {d}" for d in compare_routes(want, real["route"])]
    return diffs


def compare_vxlan_state(model: dict, kernel: dict) -> list[str]:
    """Differences between a node's flannel state in the model and on the kernel (both shaped as
    :meth:`VxlanTwin.read_vxlan`): routes as `ip route` lines, the vxlan device's settings and kind line,
    the FDB and neighbour entries of flannel.1; [] when they agree."""
    diffs = compare_routes(model["route"], kernel["route"])
    for key, value in model["vxlan"].items():
        if kernel["vxlan"].get(key) != value:
            diffs.append(
                f"ip -d link show {VXLAN_DEVICE} {key}: model {value!r}, kernel {kernel['vxlan'].get(key)!r}"
            )
    if model["details"] != kernel["details"]:
        diffs.append(
            f"ip -d link show {VXLAN_DEVICE}: model `{model['details']}`, kernel `{kernel['details']}`"
        )
    for part, what in (
        ("fdb", f"bridge fdb show dev {VXLAN_DEVICE}"),
        ("neigh", f"ip neigh show dev {VXLAN_DEVICE}"),
    ):
        m = [json.dumps(e, sort_keys=True) for e in model[part]]
        k = [json.dumps(e, sort_keys=True) for e in kernel[part]]
        diffs += [f"{what}: only in the model: {e}" for e in m if e not in k]
        diffs += [f"{what}: only in the kernel: {e}" for e in k if e not in m]
    return diffs


# --- the report and the one call a lab makes ----------------------------------------------------------


@dataclass
class OverlayReport:
    """What an overlay twin run found: whether the ping crossed, the frames captured on node-1's eth0 and
    the nodes' state compared with the model (`differences`, [] when they agree), the outer source ports
    seen, and how long each phase took."""

    kind: str  # "vxlan" or "ipip"
    source: str = "pod-a"
    destination: str = "pod-b"
    capture: tuple[str, str] = ("node-1", UNDERLAY_DEVICE)
    skipped: str | None = None
    error: str | None = None
    kernel_replied: bool | None = None
    model_replied: bool | None = None
    frames: list = field(default_factory=list)  # what tcpdump captured
    state: dict[str, dict] = field(default_factory=dict)  # per namespace, what the kernel has (see the runs)
    differences: list[str] = field(default_factory=list)
    source_ports: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    checked: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def agrees(self) -> bool:
        """True when the twin ran and kernel and model agreed on everything compared."""
        return (
            self.skipped is None
            and self.error is None
            and self.kernel_replied is not None
            and self.kernel_replied == self.model_replied
            and not self.differences
        )

    def summary(self) -> str:
        """The report as a learner reads it: what was compared, and each difference."""
        head = f"{self.kind.upper()} twin: ping {self.source} → {self.destination} across two node namespaces"
        if self.skipped is not None:
            return f"{head}: skipped — {self.skipped}"
        lines = [head]
        if self.error:
            lines.append(f"  stopped by an error: {self.error}")
        if self.kernel_replied is not None:
            lines.append(
                f"  ping on the kernel: {'replied' if self.kernel_replied else 'no reply'}"
                f" (model: {'replied' if self.model_replied else 'no reply'})"
            )
        lines += [f"  compared: {item}" for item in self.checked]
        if self.source_ports:
            # the values come from the kernel's flow hash, seeded at boot: kept out of the summary (they
            # are in source_ports) so a stored lab output stays the same from machine to machine
            low, high = LOCAL_PORT_RANGE
            lines.append(
                f"  outer UDP source ports: {len(self.source_ports)} direction(s) of the flow, each checked "
                f"to be in {low}–{high} and one per direction (the kernel hashes the inner flow with a "
                "boot-time seed, so the values are not the model's)"
            )
        if self.kernel_replied is not None:
            lines.append("  kernel and model agree" if not self.differences else "  kernel and model differ:")
            lines += [f"    {d}" for d in self.differences]
        return "\n".join(lines)

    def timing(self) -> str:
        """How long each phase took (kept out of the summary, so stored lab outputs stay stable)."""
        parts = ", ".join(f"{k} {v:.2f}" for k, v in self.timings.items() if k != "total")
        return f"took {self.timings.get('total', 0):.2f} s ({parts})"

    def __str__(self) -> str:
        return self.summary()

    def _repr_pretty_(self, printer, cycle) -> None:  # IPython's pretty printer, without importing IPython
        printer.text(self.summary())


def _why_not(kind: str | None = None) -> str | None:
    """Why an overlay twin cannot run here (no root, namespaces, tcpdump, or the tunnel device), or None."""
    ok, reason = available()
    if ok and shutil.which("tcpdump") is None:
        ok, reason = False, "needs the `tcpdump` command (Debian package tcpdump)"
    if ok and kind is not None:
        ok, reason = tunnel_support((kind,))[kind]
        reason = f"this kernel has no {kind} device (`ip link add … type {kind}`: {reason})"
    return None if ok else reason


def _run_overlay_twin(kind: str, network, twin_class, read_state) -> OverlayReport:
    """The steps both overlay twins share: walk the model, build the twin (`twin_class`), read and compare
    its state (`read_state(twin, specs, report)`), ping pod-a → pod-b capturing node-1's eth0, compare the
    frames with the walk's, clean up; timings per phase; skipped or error reported, never raised."""
    from labsupport import cni

    model = cni.walk(network, "pod-a", "pod-b")
    report = OverlayReport(kind, model_replied=model.replied)
    report.skipped = _why_not(None if kind == "vxlan" else kind)
    if report.skipped is not None:
        return report
    start = time.perf_counter()
    specs = node_specs(network)
    try:
        with twin_class(specs) as twin:
            report.timings["build"] = twin.timings["build"]
            t = time.perf_counter()
            read_state(twin, specs, report)
            report.timings["read"] = time.perf_counter() - t
            t = time.perf_counter()
            report.kernel_replied, report.frames = twin.ping_captured(
                "pod-a", str(network.pod_ip("pod-b")), report.capture
            )
            report.timings["ping"] = time.perf_counter() - t
            t = time.perf_counter()
        report.timings["cleanup"] = time.perf_counter() - t
        report.differences += compare_underlay_frames(model.frames(*report.capture), report.frames)
        report.checked.append(f"{len(report.frames)} frames on node-1/eth0, field by field")
    except TwinError as exc:
        report.error = str(exc)
    report.timings["total"] = time.perf_counter() - start
    return report


def run_vxlan_twin() -> OverlayReport:
    """Build flannel's vxlan backend on two real nodes (:class:`VxlanTwin`), ping pod-a → pod-b, and compare
    with the model (`cni.cluster("flannel", "vxlan", "two-nodes")` and its `cni.walk`):

    - each node's `ip -j route`, `ip -j -d link show flannel.1` (and its kind line), `bridge -j fdb show dev
      flannel.1` and `ip -j neigh show dev flannel.1`, and each pod's `ip -j route`, as flannel left them;
    - the frames on node-1's eth0 during the ping (`tcpdump -w`) with the walk's `frames("node-1", "eth0")`,
      field by field (:func:`underlay_frame_fields`: IP ids and checksums aside);
    - the outer UDP source ports: in 32768–60999 and one per direction of the flow.

    Without root, network namespaces or tcpdump the report says why (`skipped`); errors of the twin are
    reported (`error`), not raised.
    """
    network = vxlan_cluster()

    def read_state(twin: VxlanTwin, specs, report: OverlayReport) -> None:
        for spec in specs:
            report.state[spec.name] = twin.read_vxlan(spec.name)
            want = model_vxlan_state(network.node(spec.name))
            report.differences += [f"{spec.name}: {d}" for d in compare_vxlan_state(want, report.state[spec.name])]
            report.differences += route_differences(network, {spec.pod: {"route": twin.routes(spec.pod)}})
        report.checked.append(
            "ip -j route, ip -j -d link show flannel.1, bridge -j fdb show dev flannel.1, "
            "ip -j neigh show dev flannel.1 on " + ", ".join(s.name for s in specs)
            + "; ip -j route on " + ", ".join(s.pod for s in specs)
        )

    report = _run_overlay_twin("vxlan", network, VxlanTwin, read_state)
    if report.skipped is None and report.error is None:
        report.source_ports = source_ports(report.frames)
        report.differences += source_port_problems(report.frames)
    return report


def run_ipip_twin() -> OverlayReport:
    """Build Calico's IPIP mode on two real nodes (:class:`IpipTwin`), ping pod-a → pod-b, and compare with
    the model (`cni.cluster("calico", "ipip", "two-nodes")` and its `cni.walk`):

    - each node's and each pod's `ip -j route` with the model's (:func:`compare_routes`);
    - the frames on node-1's eth0 during the ping with the walk's `frames("node-1", "eth0")`, field by field
      (:func:`underlay_frame_fields`: IP ids and checksums aside), the outer TTL and DF bit included.

    Where the kernel has no ipip device the report is `skipped`, with the kernel's own message (see
    :func:`tunnel_support`); errors of the twin are reported (`error`), not raised.
    """
    network = calico_ipip_cluster()

    def read_state(twin: IpipTwin, specs, report: OverlayReport) -> None:
        names = [s.name for s in specs] + [s.pod for s in specs]
        report.state = {name: {"route": twin.routes(name)} for name in names}
        report.differences += route_differences(network, report.state)
        report.checked.append("ip -j route on " + ", ".join(names))

    return _run_overlay_twin("ipip", network, IpipTwin, read_state)


__all__ = [
    "IPIP_DEVICE",
    "PROBE_ARGS",
    "TUNNEL_KINDS",
    "VXLAN_DEVICE",
    "IpipTwin",
    "OverlayReport",
    "VxlanTwin",
    "calico_ipip_cluster",
    "calico_ipip_commands",
    "compare_routes",
    "compare_underlay_frames",
    "compare_vxlan_state",
    "model_vxlan_state",
    "node_specs",
    "route_differences",
    "run_ipip_twin",
    "run_vxlan_twin",
    "scratch_namespace",
    "source_port_problems",
    "source_ports",
    "tunnel_support",
    "underlay_frame_fields",
    "vxlan_cluster",
]
