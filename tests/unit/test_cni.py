"""labsupport.cni: what each CNI plugin sets up on the nodes, and a ping across nodes.

Expected values come from
- a real kernel (Linux 6.18, iproute2 6.1): the flannel VXLAN cluster built in scratch namespaces
  with the model's MACs and addresses, a ping from pod-a to pod-b, and `tcpdump -w` on node-1's
  eth0 (the frame: outer Ethernet / IPv4 192.168.56.10 → .11, TTL 64, no DF / UDP → 8472 / VXLAN
  flags 0x08, VNI 1 / inner Ethernet between the two flannel.1 MACs / IPv4 TTL 63 / ICMP, 148
  bytes); every model node but the IPIP ones (this kernel has no ipip module) rebuilt in a scratch
  namespace, whose `ip route`, `ip neigh` and `bridge fdb show` (`dst` entries) printed what the
  model prints, and whose vxlan devices' `ip -d link show` kind lines start with the model's;
  "Nexthop has invalid gateway." is what `ip route add 10.244.3.0/24 via 192.168.57.10 dev eth0`
  answered on a node of 192.168.56.0/24;
- upstream sources, cited in labsupport/cni.py: Calico's veth name (`echo -n default.pod-a |
  sha1sum | cut -b -11` gives 5e1c4d6c68c), BIRD's route words (`proto bird onlink`, as Calico's
  documentation prints them), Weave's VNI (router/fastdp.go extractPeers: source in the low 12 bits)
  and sleeve layout (router/sleeve.go, crypto.go), Cilium's lxc name (`echo -n pod-a | sha256sum`
  gives 9bb860b4a6e4...);
- arithmetic: VXLAN 14 + 8 + 8 + 20 = 50, IPIP 20, sleeve 20 + 8 + 6 + 6 + 6 + 2 + 14 = 62.
"""

from __future__ import annotations

import pytest

from labsupport import cni
from labsupport.addressing import stable_mac
from labsupport.errors import LabInputError

WORKING = [
    (plugin, mode, topology)
    for plugin, modes in cni.PLUGINS.items()
    for mode in modes
    for topology in cni.TOPOLOGIES
    if (plugin, mode, topology) not in {("flannel", "host-gw", "two-subnets"), ("calico", "bgp", "two-subnets")}
]


def _far(topology: str) -> str:
    return "pod-b" if topology == "two-nodes" else "pod-c"


@pytest.fixture(scope="module")
def flannel_ping():
    return cni.walk(cni.cluster("flannel", "vxlan", "two-nodes"), "pod-a", "pod-b")


# --- flannel vxlan: the kernel's own words ------------------------------------------------------------


def test_flannel_vxlan_node_tables_are_the_kernels():
    node = cni.cluster("flannel", "vxlan").node("node-1")
    assert node.ip_route() == (
        "default via 192.168.56.1 dev eth0\n"
        "10.244.1.0/24 dev cni0 proto kernel scope link src 10.244.1.1\n"
        "10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink\n"
        "192.168.56.0/24 dev eth0 proto kernel scope link src 192.168.56.10"
    )
    remote = stable_mac("node-2", "flannel.1")
    assert node.ip_neigh() == f"10.244.2.0 dev flannel.1 lladdr {remote} PERMANENT"
    assert node.bridge_fdb().splitlines()[0] == f"{remote} dev flannel.1 dst 192.168.56.11 self permanent"


def test_flannel_vxlan_devices():
    node = cni.cluster("flannel", "vxlan").node("node-1")
    vtep = node.links["flannel.1"]
    assert (vtep.kind, vtep.mtu, [str(a) for a in vtep.addresses]) == ("vxlan", 1450, ["10.244.1.0/32"])
    assert (node.links["cni0"].mtu, str(node.links["cni0"].addresses[0])) == (1450, "10.244.1.1/24")
    details = node.ip_link_details()
    assert ("    vxlan id 1 local 192.168.56.10 dev eth0 srcport 0 0 dstport 8472 nolearning ttl auto ageing 300"
            " udpcsum noudp6zerocsumtx noudp6zerocsumrx") in details.splitlines()
    assert "3: flannel.1: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1450 qdisc noqueue state UNKNOWN mode DEFAULT" in details


def test_flannel_pod_routes_come_from_the_bridge_plugin():
    pod = cni.cluster("flannel", "vxlan").namespaces["pod-a"]
    assert pod.ip_route() == (
        "default via 10.244.1.1 dev eth0\n"
        "10.244.0.0/16 via 10.244.1.1 dev eth0\n"
        "10.244.1.0/24 dev eth0 proto kernel scope link src 10.244.1.2"
    )


def test_flannel_vxlan_frame_on_node_1_eth0(flannel_ping):
    from scapy.layers.inet import ICMP, IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.layers.vxlan import VXLAN

    frames = [f for f in flannel_ping.frames("node-1", "eth0") if VXLAN in f]
    request = frames[0]
    assert [type(layer).__name__ for layer in _layers(request)][:7] == ["Ether", "IP", "UDP", "VXLAN", "Ether", "IP", "ICMP"]
    assert (request[Ether].src, request[Ether].dst) == (stable_mac("node-1", "eth0"), stable_mac("node-2", "eth0"))
    outer = request[IP]
    assert (outer.src, outer.dst, outer.ttl, outer.proto, int(outer.flags)) == ("192.168.56.10", "192.168.56.11", 64, 17, 0)
    assert request[UDP].dport == 8472
    assert (request[VXLAN].flags, request[VXLAN].vni) == (0x08, 1)
    inner = request[VXLAN].payload
    assert (inner.src, inner.dst) == (stable_mac("node-1", "flannel.1"), stable_mac("node-2", "flannel.1"))
    assert (inner[IP].src, inner[IP].dst, inner[IP].ttl, inner[ICMP].type) == ("10.244.1.2", "10.244.2.2", 63, 8)
    assert len(bytes(request)) == 148
    assert cni.overhead_of(flannel_ping) == 50


def _layers(frame):
    while frame:
        yield frame
        frame = frame.payload


def test_flannel_vxlan_hops_in_order(flannel_ping):
    from scapy.layers.inet import ICMP

    request_path = [
        (h.namespace, h.device) for h in flannel_ping.hops
        if h.frame is not None and ICMP in h.frame and h.frame[ICMP].type == 8
    ]
    assert request_path == [
        ("pod-a", "eth0"), ("node-1", "veth-pod-a"), ("node-1", "flannel.1"), ("node-1", "eth0"),
        ("node-2", "eth0"), ("node-2", "flannel.1"), ("node-2", "cni0"), ("pod-b", "eth0"),
    ]
    assert flannel_ping.delivered and flannel_ping.replied


def test_write_pcap_keeps_the_encapsulated_frames(flannel_ping, tmp_path):
    from scapy.utils import rdpcap

    path = flannel_ping.write_pcap(str(tmp_path / "eth0.pcap"), "node-1", "eth0")
    back = rdpcap(path)
    sent = flannel_ping.frames("node-1", "eth0")
    assert [bytes(p) for p in back] == [bytes(f) for f in sent] and len(sent) == 4  # ARP, its reply, request, reply


def test_the_cluster_is_not_changed_by_a_walk(flannel_ping):
    assert flannel_ping.node_after.node("node-1").ip_neigh() != cni.cluster("flannel", "vxlan").node("node-1").ip_neigh()
    assert "192.168.56.11" not in cni.cluster("flannel", "vxlan").node("node-1").ip_neigh()


# --- every plugin ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("plugin", "mode", "topology"), WORKING)
def test_a_ping_crosses_nodes_and_comes_back(plugin, mode, topology):
    result = cni.walk(cni.cluster(plugin, mode, topology), "pod-a", _far(topology))
    assert result.delivered and result.replied


@pytest.mark.parametrize(
    ("plugin", "mode", "overhead", "mtu"),
    [
        ("flannel", "vxlan", 50, 1450), ("flannel", "host-gw", 0, 1500), ("calico", "ipip", 20, 1480),
        ("calico", "bgp", 0, 1500), ("calico", "vxlan", 50, 1450), ("weave", "fastdp", 50, 1376),
        ("weave", "sleeve", 62, 1376), ("cilium", "vxlan", 50, 1450), ("aws-vpc-cni", "eni", 0, 1500),
    ],
)
def test_overhead_and_pod_mtu(plugin, mode, overhead, mtu):
    """Every plugin but Weave gives its pods the largest MTU that fits; Weave its documented 1376."""
    built = cni.cluster(plugin, mode)
    assert cni.overhead_of(cni.walk(built, "pod-a", "pod-b")) == overhead
    assert built.pod_mtu == mtu == built.namespaces["pod-a"].links["eth0"].mtu
    assert cni.pod_mtu_for(built.encapsulation) + overhead == cni.UNDERLAY_MTU
    assert mtu + overhead <= cni.UNDERLAY_MTU


@pytest.mark.parametrize("mode", ["ipip-crosssubnet", "vxlan-crosssubnet"])
def test_crosssubnet_encapsulates_only_across_subnets(mode):
    built = cni.cluster("calico", mode, "two-subnets")
    assert cni.overhead_of(cni.walk(built, "pod-a", "pod-b")) == 0
    assert cni.overhead_of(cni.walk(built, "pod-a", "pod-c")) == (20 if mode.startswith("ipip") else 50)


# --- host-gw and BGP across subnets ------------------------------------------------------------------


def test_host_gw_across_subnets_the_kernel_refuses_the_route():
    built = cni.cluster("flannel", "host-gw", "two-subnets")
    refused = {(r.node, r.command) for r in built.refused}
    assert ("node-1", "ip route add 10.244.3.0/24 via 192.168.57.10 dev eth0") in refused
    assert ("node-3", "ip route add 10.244.1.0/24 via 192.168.56.10 dev eth0") in refused
    assert len(refused) == 4 and {r.error for r in built.refused} == {"Nexthop has invalid gateway."}
    assert "10.244.2.0/24 via 192.168.56.11 dev eth0" in built.node("node-1").ip_route()
    assert "10.244.3.0/24" not in built.node("node-1").ip_route()
    text = cni.routes_text("flannel", "host-gw", "node-1", "two-subnets")
    assert text.startswith("$ ip route add 10.244.3.0/24 via 192.168.57.10 dev eth0\nError: Nexthop has invalid gateway.\n")


def test_host_gw_across_subnets_the_packet_dies_at_the_router():
    result = cni.walk(cni.cluster("flannel", "host-gw", "two-subnets"), "pod-a", "pod-c")
    assert not result.delivered
    last = result.hops[-1]
    assert (last.namespace, last.event) == ("router", "no route to 10.244.3.2: dropped (Network is unreachable)")
    assert "default via 192.168.56.1" in next(h.event for h in result.hops if h.namespace == "node-1" and h.event.startswith("forwards"))


def test_host_gw_within_a_subnet_routes_pod_addresses_on_the_wire():
    from scapy.layers.inet import IP

    result = cni.walk(cni.cluster("flannel", "host-gw"), "pod-a", "pod-b")
    ips = [f[IP] for f in result.frames("node-1", "eth0") if IP in f]
    assert (ips[0].src, ips[0].dst, ips[0].ttl) == ("10.244.1.2", "10.244.2.2", 63)


def test_calico_bgp_across_subnets_needs_the_router_to_know_the_block():
    built = cni.cluster("calico", "bgp", "two-subnets")
    assert "10.244.3.0/26 via 192.168.56.1 dev eth0 proto bird" in built.node("node-1").ip_route()
    assert not built.refused
    result = cni.walk(built, "pod-a", "pod-c")
    assert not result.delivered and result.hops[-1].namespace == "router"


# --- Calico ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "routes"),
    [
        ("ipip", ["blackhole 10.244.1.0/26 proto bird", "10.244.2.0/26 via 192.168.56.11 dev tunl0 proto bird onlink",
                  "10.244.3.0/26 via 192.168.57.10 dev tunl0 proto bird onlink"]),
        ("bgp", ["blackhole 10.244.1.0/26 proto bird", "10.244.2.0/26 via 192.168.56.11 dev eth0 proto bird"]),
        ("vxlan", ["blackhole 10.244.1.0/26 proto 80", "10.244.2.0/26 via 10.244.2.0 dev vxlan.calico onlink",
                   "10.244.3.0/26 via 10.244.3.0 dev vxlan.calico onlink"]),
        ("ipip-crosssubnet", ["10.244.2.0/26 via 192.168.56.11 dev eth0 proto bird",
                              "10.244.3.0/26 via 192.168.57.10 dev tunl0 proto bird onlink"]),
        ("vxlan-crosssubnet", ["10.244.2.0/26 via 192.168.56.11 dev eth0 proto 80 onlink",
                               "10.244.3.0/26 via 10.244.3.0 dev vxlan.calico onlink"]),
    ],
)
def test_calico_routes_per_mode(mode, routes):
    table = cni.cluster("calico", mode, "two-subnets").node("node-1").ip_route().splitlines()
    assert set(routes) <= set(table)
    assert "10.244.1.2 dev cali5e1c4d6c68c scope link" in table


def test_calico_pods_use_169_254_1_1_answered_by_proxy_arp():
    built = cni.cluster("calico", "ipip")
    assert built.namespaces["pod-a"].ip_route() == "default via 169.254.1.1 dev eth0\n169.254.1.1 dev eth0 scope link"
    veth = built.node("node-1").links[cni.calico_veth_name("pod-a")]
    assert (veth.name, veth.mac, veth.proxy_arp, veth.master) == ("cali5e1c4d6c68c", "ee:ee:ee:ee:ee:ee", True, None)
    assert not [lk for lk in built.node("node-1").links.values() if lk.kind == "bridge"]
    result = cni.walk(built, "pod-a", "pod-b")
    answer = next(h for h in result.hops if "proxy_arp" in h.event)
    assert (answer.device, answer.frame.hwsrc, answer.frame.psrc) == ("cali5e1c4d6c68c", "ee:ee:ee:ee:ee:ee", "169.254.1.1")
    assert built.node("node-1").ip_neigh() == "10.244.1.2 dev cali5e1c4d6c68c lladdr 0a:58:0a:f4:01:02 PERMANENT"


def test_calico_ipip_frame_is_ip_in_ip():
    from scapy.layers.inet import ICMP, IP

    result = cni.walk(cni.cluster("calico", "ipip"), "pod-a", "pod-b")
    frame = next(f for f in result.frames("node-1", "eth0") if IP in f and f[IP].proto == 4)
    assert (frame[IP].src, frame[IP].dst) == ("192.168.56.10", "192.168.56.11")
    inner = frame[IP].payload
    assert (inner.src, inner.dst, inner.ttl, inner[ICMP].type) == ("10.244.1.2", "10.244.2.2", 63, 8)
    assert frame[IP].ttl == 63  # tunl0's `ttl inherit`
    assert next(f.summary() for f in result.frames("node-1", "tunl0")).startswith("IP / ICMP 10.244.1.2 > 10.244.2.2")


def test_calico_vxlan_device_and_peers():
    node = cni.cluster("calico", "vxlan").node("node-1")
    assert node.links["vxlan.calico"].vxlan.details().startswith(
        "vxlan id 4096 local 192.168.56.10 dev eth0 srcport 0 0 dstport 4789 nolearning")
    assert node.bridge_fdb() == f"{stable_mac('node-2', 'vxlan.calico')} dev vxlan.calico dst 192.168.56.11 self permanent"


# --- Weave, Cilium, AWS --------------------------------------------------------------------------------


def test_weave_is_one_layer_2_network_across_nodes():
    built = cni.cluster("weave", "fastdp")
    assert built.namespaces["pod-a"].ip_route() == (
        "default via 10.244.1.1 dev eth0\n10.244.0.0/16 dev eth0 proto kernel scope link src 10.244.1.2")
    result = cni.walk(built, "pod-a", "pod-b")
    assert "broadcasts ARP who-has 10.244.2.2 tell 10.244.1.2" in result.hops[1].event
    assert any(h.namespace == "pod-b" and h.event.startswith("ARP who-has 10.244.2.2 is mine") for h in result.hops)


def test_weave_fast_datapath_vni_names_both_peers():
    from scapy.layers.inet import UDP
    from scapy.layers.vxlan import VXLAN

    result = cni.walk(cni.cluster("weave", "fastdp"), "pod-a", "pod-b")
    frame = next(f for f in result.frames("node-1", "eth0") if VXLAN in f)
    _, src_id = cni._weave_peer("node-1")
    _, dst_id = cni._weave_peer("node-2")
    assert frame[UDP].dport == 6784
    assert (frame[VXLAN].vni & 0xFFF, frame[VXLAN].vni >> 12) == (src_id, dst_id)


def test_weave_sleeve_packet_layout():
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether

    result = cni.walk(cni.cluster("weave", "sleeve"), "pod-a", "pod-b")
    sleeve = [f for f in result.frames("node-1", "eth0") if UDP in f]
    inner = [Ether(bytes(f[UDP].payload)[20:]) for f in sleeve]
    assert [i.payload.name for i in inner] == ["ARP", "ARP", "IP", "IP"]
    # sleeve.go: the ping request has DF, so it goes through the DF sender (outer DF, UDP checksum 0);
    # ARP (not IP) and the kernel's echo reply (no DF) go through the ordinary UDP socket (no DF, checksummed).
    request = sleeve[2]
    assert (request[UDP].sport, request[UDP].dport, str(request[IP].flags), request[UDP].chksum) == (6783, 6783, "DF", 0)
    assert all((str(f[IP].flags), f[UDP].chksum != 0) == ("", True) for f in sleeve[:2] + sleeve[3:])
    frame = request
    payload = bytes(frame[UDP].payload)
    me, _ = cni._weave_peer("node-1")
    peer, _ = cni._weave_peer("node-2")
    assert payload[:18] == me + me + peer  # the sender's name, then the frame's source and destination peers
    length = int.from_bytes(payload[18:20], "big")
    assert len(payload) == 20 + length and Ether(payload[20:]).src == "0a:58:0a:f4:01:02"


def test_cilium_devices_and_vni_is_the_identity():
    from scapy.layers.vxlan import VXLAN

    built = cni.cluster("cilium", "vxlan")
    node = built.node("node-1")
    assert cni.cilium_veth_name("pod-a") == "lxc9bb860b4a6e4"
    assert node.links["cilium_vxlan"].vxlan.details().startswith("vxlan external id 0 srcport 0 0 dstport 8472 nolearning")
    assert not [lk for lk in node.links.values() if lk.kind == "bridge"]
    assert "10.244.1.2 dev lxc9bb860b4a6e4 scope link" in node.ip_route()
    result = cni.walk(built, "pod-a", "pod-b")
    vnis = [f[VXLAN].vni for f in result.frames("node-1", "eth0") if VXLAN in f]
    assert vnis == [cni.CILIUM_FIRST_IDENTITY, cni.CILIUM_FIRST_IDENTITY + 1]  # pod-a's request, pod-b's reply
    assert any("eBPF (bpf_lxc, model): answers ARP who-has 10.244.1.1" in h.event for h in result.hops)


def test_aws_vpc_cni_policy_routing_and_no_encapsulation():
    from scapy.layers.inet import IP

    built = cni.cluster("aws-vpc-cni")
    node = built.node("node-1")
    pod_ip = built.pod_ip("pod-a")
    assert node.ip_rule().splitlines()[1:4] == [
        f"512:\tfrom all to {pod_ip} lookup main",
        "1025:\tnot from all to 192.168.0.0/16 lookup main",
        f"1536:\tfrom {pod_ip} lookup eni-1",
    ]
    assert node.ip_route("eni-1") == "default via 192.168.56.1 dev eth1\n192.168.56.1 dev eth1 scope link"
    assert built.namespaces["pod-a"].ip_neigh().startswith("169.254.1.1 dev eth0 lladdr ")
    result = cni.walk(built, "pod-a", "pod-b")
    out = [f[IP] for f in result.frames("node-1", "eth1") if IP in f]
    assert (out[0].src, out[0].dst) == (str(pod_ip), str(built.pod_ip("pod-b")))
    assert any(h.device == "fabric" and f"who-has {built.pod_ip('pod-b')}:" in h.event for h in result.hops)


# --- reading a walk -----------------------------------------------------------------------------------


def test_uplinks_are_the_ports_on_the_underlay():
    assert cni.uplinks(cni.cluster("flannel", "vxlan", "two-subnets")) == {
        ("node-1", "eth0"), ("node-2", "eth0"), ("node-3", "eth0"), ("router", "eth0"), ("router", "eth1")}
    aws = cni.uplinks(cni.cluster("aws-vpc-cni", "eni"))  # the pods' secondary ENIs are on the VPC too
    assert {("node-1", "eth1"), ("node-2", "eth1")} < aws


def test_request_hops_follow_the_echo_request_alone(flannel_ping):
    from scapy.layers.inet import ICMP

    hops = cni.request_hops(flannel_ping)
    frames = [h for h in hops if h.frame is not None]
    assert all(h.frame[ICMP].type == 8 for h in frames)  # no ARP, no reply
    assert (frames[0].namespace, frames[0].device) == ("pod-a", "eth0")
    assert hops[-1].namespace == "pod-b" and "delivered" in hops[-1].event


def test_crossings_pair_each_trip_across_the_underlay():
    network = cni.cluster("flannel", "vxlan", "two-subnets")
    trips = cni.crossings(network, cni.request_hops(cni.walk(network, "pod-a", "pod-c")))
    assert [((s.namespace, s.device), (r.namespace, r.device)) for s, r in trips] == [
        (("node-1", "eth0"), ("router", "eth0")), (("router", "eth1"), ("node-3", "eth0"))]


@pytest.mark.parametrize(
    ("plugin", "mode", "encapsulation", "overhead", "vni", "dport"),
    [
        ("flannel", "vxlan", "vxlan", 50, 1, 8472),
        ("calico", "ipip", "ipip", 20, None, None),
        ("calico", "vxlan", "vxlan", 50, 4096, 4789),
        ("cilium", "vxlan", "vxlan", 50, 256, 8472),
        ("weave", "fastdp", "vxlan", 50, "peers", 6784),
        ("weave", "sleeve", "sleeve", 62, None, 6783),
        ("aws-vpc-cni", "eni", "none", 0, None, None),
        ("flannel", "host-gw", "none", 0, None, None),
    ],
)
def test_unwrap_finds_the_pods_packet_in_each_plugins_frame(plugin, mode, encapsulation, overhead, vni, dport):
    network = cni.cluster(plugin, mode)
    result = cni.walk(network, "pod-a", "pod-b")
    sent = cni.crossings(network, cni.request_hops(result))[0][0]
    read = cni.unwrap(sent.frame)
    assert (read.encapsulation, read.overhead) == (encapsulation, overhead)
    assert read.overhead == cni.overhead_of(result)  # one reading of the wire for both
    assert (read.pod_packet.src, read.pod_packet.dst) == (str(network.pod_ip("pod-a")), str(network.pod_ip("pod-b")))
    if vni == "peers":  # Weave's fast datapath: destination's short ID << 12 | source's
        vni = cni._weave_peer("node-2")[1] << 12 | cni._weave_peer("node-1")[1]
    assert read.vni == vni
    assert (read.ports[1] if read.ports else None) == dport
    if encapsulation == "none":
        assert read.pod_packet is read.outer


def test_unwrap_leaves_a_pods_udp_datagram_alone():
    from scapy.layers.inet import UDP

    result = cni.walk(cni.cluster("flannel", "host-gw"), "pod-a", "pod-b", proto="udp")
    sent = next(f for f in result.frames("node-1", "eth0") if UDP in f)
    assert sent[UDP].dport == 8080  # not a tunnel's port: the pod's own datagram, routed as it is
    assert cni.unwrap(sent).encapsulation == "none" and cni.overhead_of(result) == 0


def test_unwrap_refuses_what_carries_no_ip_packet():
    from scapy.layers.l2 import ARP, Ether

    with pytest.raises(LabInputError) as excinfo:
        cni.unwrap(Ether() / ARP())
    assert excinfo.value.field == "frame" and "IPv4" in excinfo.value.allowed
    with pytest.raises(LabInputError):
        cni.unwrap(b"\x45\x00")


def test_sleeve_payload_reads_back_and_short_ones_are_refused():
    from scapy.layers.l2 import Ether

    frame = bytes(Ether(src="0a:58:0a:f4:01:02", dst="0a:58:0a:f4:02:02") / (b"x" * 46))
    names = [bytes([n] * cni.WEAVE_NAME_SIZE) for n in (1, 1, 2)]
    payload = cni.sleeve_payload(*names, frame)
    assert len(payload) == 3 * cni.WEAVE_NAME_SIZE + 2 + len(frame)
    assert bytes(cni.read_sleeve(payload)) == frame
    for short in (payload[:19], payload[:-1]):
        with pytest.raises(LabInputError) as excinfo:
            cni.read_sleeve(short)
        assert excinfo.value.field == "sleeve payload"


def test_routes_name_the_plugin_unless_two_modes_route_alike():
    for plugin, modes in cni.PLUGINS.items():
        for mode in modes:
            routes = cni.cluster(plugin, mode, "two-subnets").node("node-1").ip_route()
            assert (plugin, mode) in cni.matching_plugins(routes, topology="two-subnets")
    same_subnet = cni.cluster("calico", "bgp").node("node-1").ip_route()
    assert cni.matching_plugins(same_subnet) == [("calico", "bgp"), ("calico", "ipip-crosssubnet")]
    assert cni.matching_plugins(f"\n  {same_subnet}\n\n") == cni.matching_plugins(same_subnet)
    with pytest.raises(LabInputError) as excinfo:
        cni.matching_plugins(same_subnet, node="node-3")
    assert excinfo.value.field == "node"


# --- the notes' table --------------------------------------------------------------------------------


def test_comparison_places_each_model_by_what_its_walks_did():
    by_label = {p.label: p for p in cni.comparison()}
    assert by_label["bridge (one node)"].approach == "L2"
    assert {by_label[name].approach for name in ("flannel host-gw", "calico bgp")} == {"Route"}
    assert {by_label[name].approach for name in ("flannel vxlan", "calico ipip", "weave sleeve", "cilium vxlan")} == {"Overlay"}
    assert by_label["aws-vpc-cni eni"].approach == "Cloud"
    assert (by_label["calico ipip-crosssubnet"].approach, by_label["calico ipip-crosssubnet"].approach_across) == ("Route", "Overlay")
    assert by_label["flannel host-gw"].needs_l2_adjacency and not by_label["calico bgp"].needs_l2_adjacency
    assert by_label["calico bgp"].underlay_knows_pods and not by_label["flannel vxlan"].underlay_knows_pods


def test_comparison_table_has_the_notes_columns():
    lines = cni.comparison_table().splitlines()
    assert lines[0] == "|  | L2 | Route | Overlay | Cloud |"
    overhead = next(line for line in lines if line.startswith("| encapsulation overhead"))
    assert overhead == "| encapsulation overhead (bytes) | 0 | 0 | 20, 50, 62 | 0 |"


# --- views and bad input -----------------------------------------------------------------------------


def test_routes_text_sections():
    text = cni.routes_text("flannel", None, "node-2")
    assert [line for line in text.splitlines() if line.startswith("$")] == ["$ ip route", "$ bridge fdb show", "$ ip neigh"]
    aws = cni.routes_text("aws-vpc-cni", node="node-1")
    assert "$ ip rule" in aws and "$ ip route show table eni-1" in aws


@pytest.mark.parametrize(
    ("args", "field", "allowed_has"),
    [
        (("cilia", None, "two-nodes"), "plugin", "flannel, calico, weave, cilium, aws-vpc-cni"),
        (("flannel", "udp", "two-nodes"), "mode", "vxlan, host-gw"),
        (("calico", "always", "two-nodes"), "mode", "ipip, bgp, vxlan, ipip-crosssubnet, vxlan-crosssubnet"),
        (("flannel", None, "three-nodes"), "topology", "two-nodes, two-subnets"),
    ],
)
def test_bad_plugin_mode_topology(args, field, allowed_has):
    with pytest.raises(LabInputError) as excinfo:
        cni.cluster(*args)
    assert excinfo.value.field == field and allowed_has in excinfo.value.allowed


def test_bad_node_names_the_nodes_and_where_node_3_is():
    with pytest.raises(LabInputError) as excinfo:
        cni.routes_text("flannel", node="node-3")
    assert excinfo.value.field == "node"
    assert excinfo.value.allowed == "one of node-1, node-2 (node-3 is in topology two-subnets)"
    with pytest.raises(LabInputError) as excinfo:
        cni.routes_text("flannel", node="node-9")
    assert excinfo.value.field == "node"


def test_walk_needs_a_cluster():
    with pytest.raises(LabInputError) as excinfo:
        cni.walk("flannel", "pod-a", "pod-b")
    assert excinfo.value.field == "cluster"


def test_calico_ipip_outer_df_is_the_inner_one():
    from scapy.layers.inet import ICMP, IP

    result = cni.walk(cni.cluster("calico", "ipip"), "pod-a", "pod-b")
    outer = {f[ICMP].type: int(f[IP].flags) for f in result.frames("node-1", "eth0") if IP in f and f[IP].proto == 4}
    assert outer == {8: 2, 0: 0}  # ping sets DF on its request; the kernel's echo reply does not


# --- the command line ------------------------------------------------------------------------------


def test_cli_cni_routes_prints_what_routes_text_prints(capsys) -> None:
    from labsupport.__main__ import main

    assert main(["cni", "routes", "--plugin", "calico", "--mode", "ipip", "--node", "node-2"]) == 0
    assert capsys.readouterr().out.rstrip("\n") == cni.routes_text("calico", "ipip", "node-2")


def test_cli_cni_routes_shows_the_refused_host_gw_route_across_subnets(capsys) -> None:
    from labsupport.__main__ import main

    argv = ["cni", "routes", "--plugin", "flannel", "--mode", "host-gw", "--node", "node-1",
            "--topology", "two-subnets"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "$ ip route add 10.244.3.0/24 via 192.168.57.10 dev eth0\nError: Nexthop has invalid gateway." in out
    assert "10.244.3.0/24" not in out.split("$ ip route\n", 1)[1]


@pytest.mark.parametrize(
    ("argv", "field"),
    [
        (["--plugin", "flanel", "--node", "node-1"], "plugin"),
        (["--plugin", "flannel", "--mode", "udp", "--node", "node-1"], "mode"),
        (["--plugin", "flannel", "--node", "node-3"], "node"),
        (["--plugin", "flannel", "--node", "node-1", "--topology", "mesh"], "topology"),
    ],
)
def test_cli_cni_bad_input_is_one_line_and_status_2(argv, field, capsys) -> None:
    from labsupport.__main__ import main

    assert main(["cni", "routes", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {field}: ")


def test_every_vxlan_port_a_plugin_uses_is_one_the_decapsulator_reads() -> None:
    from labsupport import tunneling

    assert cni.VXLAN_PORTS <= set(tunneling.vxlan_ports())
