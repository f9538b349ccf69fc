"""labsupport.pod_network: the bridge node, the notes' AWS VPC CNI node, and the packet walk.

Expected values come from
- the study notes' printed outputs ("Inside Pod", "On the Node"), compared line by line. The notes
  were printed by older tools: iproute2 then put two spaces between some words and ended lines
  with a space, so whitespace runs are normalised before comparing; the notes' annotations
  (`<------ Pod's IP`, `<<<<<<< ENI's secondary IP address`) and the `...` line are not tool output
  and are dropped;
- a real kernel (Linux 6.18, iproute2 6.1) running the same configuration in scratch namespaces:
  the neighbour states right after one ping, what the bridge learns, what `ip` prints
  (tests/kernel/test_kernel_formats.py repeats this live);
- definitions: ARP (RFC 826), the bridge's learning and flooding, ping's 56-byte payload.
"""

from __future__ import annotations

import logging
import re
import warnings
from ipaddress import IPv4Address, IPv4Network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labsupport.addressing import ZERO_MAC, cni_mac, stable_mac
from labsupport.errors import LabInputError
from labsupport.host import Namespace
from labsupport.pod_network import (
    AWS_LINK_LOCAL_GATEWAY,
    REQUIREMENTS,
    Engine,
    Segment,
    aws_vpc_cni_node,
    build_node,
    check_requirements,
    container_to_container,
    walk,
)

BROADCAST = "ff:ff:ff:ff:ff:ff"


# --- the notes, as printed -------------------------------------------------------------------------------

NOTES_POD_IP_ADDR = """\
1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN qlen 1
   link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00
   inet 127.0.0.1/8 scope host lo
      valid_lft forever preferred_lft forever
   inet6 ::1/128 scope host 
      valid_lft forever preferred_lft forever
3: eth0@if231: <BROADCAST,MULTICAST,UP,LOWER_UP,M-DOWN> mtu 1500 qdisc noqueue state UP 
   link/ether 56:41:95:26:17:41 brd ff:ff:ff:ff:ff:ff
   inet 10.0.97.30/32 brd 10.0.97.226 scope global eth0 <<<<<<< ENI's secondary IP address
      valid_lft forever preferred_lft forever
   inet6 fe80::5441:95ff:fe26:1741/64 scope link 
      valid_lft forever preferred_lft forever"""

NOTES_POD_IP_ROUTE = """\
default via 169.254.1.1 dev eth0 
169.254.1.1 dev eth0 """

NOTES_POD_ARP = "? (169.254.1.1) at 2a:09:74:cd:c4:62 [ether] PERM on eth0"

NOTES_NODE_IP_ROUTE = """\
default via 10.0.96.1 dev eth0 
10.0.96.0/19 dev eth0  proto kernel  scope link  src 10.0.104.183 
10.0.97.30 dev aws8db0408c9a8  scope link  <------------------------Pod's IP
10.0.97.159 dev awsbcd978401eb  scope link 
10.0.97.226 dev awsc2f87dc4cdd  scope link 
10.0.102.98 dev aws4914061689b  scope link 
..."""

NOTES_ENI_1 = """\
default via 10.0.96.1 dev eth1 
10.0.96.1 dev eth1  scope link """

NOTES_IP_RULE = """\
0:\tfrom all lookup local 
512:\tfrom all to 10.0.97.30 lookup main <---------- to Pod's traffic
1025:\tnot from all to 10.0.0.0/16 lookup main 
1536:\tfrom 10.0.97.30 lookup eni-1 <-------------- from Pod's traffic"""

_ANNOTATION = re.compile(r"\s*<[-<]{2,}.*$")


def tool_lines(text: str) -> list[str]:
    """Lines of printed output with whitespace runs collapsed (the notes' iproute2 printed double
    spaces and trailing blanks), the author's `<----` annotations and `...` elisions dropped."""
    out = []
    for line in text.splitlines():
        line = " ".join(_ANNOTATION.sub("", line).split())
        if line and line != "...":
            out.append(line)
    return out


# --- the bridge node ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def node():
    return build_node(pods=3)


def test_build_node_addresses_the_bridge_first_then_the_pods(node):
    assert node.pods == ["pod-a", "pod-b", "pod-c"]
    assert [str(node.pod_ip(p)) for p in node.pods] == ["10.244.1.2", "10.244.1.3", "10.244.1.4"]
    cni0 = node.host.links["cni0"]
    assert (cni0.kind, [str(a) for a in cni0.addresses]) == ("bridge", ["10.244.1.1/24"])
    for pod in node.pods:
        ns = node.namespace(pod)
        eth0 = ns.links["eth0"]
        assert eth0.mac == cni_mac(node.pod_ip(pod))
        host_end = node.host.links[eth0.peer[1]]
        assert host_end.master == "cni0" and host_end.peer == (pod, "eth0")
        assert eth0.peer_index == host_end.index and host_end.peer_index == eth0.index == 2
        assert ns.ip_route().splitlines() == [
            "default via 10.244.1.1 dev eth0",
            f"10.244.1.0/24 dev eth0 proto kernel scope link src {node.pod_ip(pod)}",
        ]
    assert node.host.forwarding


def test_build_node_pod_ip_addr_matches_the_kernel(node):
    # The same pod built with `ip` (same MACs) printed exactly this (trailing spaces removed,
    # the node's namespace renamed to the model's name).
    veth = node.namespace("pod-a").links["eth0"].peer_index
    assert node.namespace("pod-a").ip_addr().splitlines()[6:] == [
        f"2: eth0@if{veth}: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP group default qlen 1000",
        "    link/ether 0a:58:0a:f4:01:02 brd ff:ff:ff:ff:ff:ff link-netns node-1",
        "    inet 10.244.1.2/24 brd 10.244.1.255 scope global eth0",
        "       valid_lft forever preferred_lft forever",
        "    inet6 fe80::858:aff:fef4:102/64 scope link",
        "       valid_lft forever preferred_lft forever",
    ]


def test_build_node_names_the_bridge_as_asked():
    docker = build_node(pods=1, bridge="docker0", pod_cidr="172.17.0.0/16")
    assert docker.host.links["docker0"].kind == "bridge"
    assert str(docker.pod_ip("pod-a")) == "172.17.0.2"
    assert docker.host.ip_route().splitlines()[1] == "172.17.0.0/16 dev docker0 proto kernel scope link src 172.17.0.1"


# --- the AWS VPC CNI node against the notes ------------------------------------------------------------------


@pytest.fixture(scope="module")
def aws():
    return aws_vpc_cni_node()


def test_aws_node_main_table_is_the_notes(aws):
    assert tool_lines(aws.host.ip_route()) == tool_lines(NOTES_NODE_IP_ROUTE)


def test_aws_node_eni_1_table_is_the_notes(aws):
    assert tool_lines(aws.host.ip_route("eni-1")) == tool_lines(NOTES_ENI_1)


def test_aws_node_rules_contain_the_notes_rules_in_order(aws):
    # The notes list the rules of one pod and stop before the two rules every namespace has.
    # The plugin adds `to POD lookup main pref 512` for every pod, so the model lists four 512 rules;
    # a kernel built the same way listed exactly the model's nine lines (table 2 printed by number).
    model = tool_lines(aws.host.ip_rule())
    notes = tool_lines(NOTES_IP_RULE)
    positions = [model.index(line) for line in notes]
    assert positions == sorted(positions)
    assert model[-2:] == ["32766: from all lookup main", "32767: from all lookup default"]
    assert [line for line in model if line not in notes] == [
        "512: from all to 10.0.97.159 lookup main",
        "512: from all to 10.0.97.226 lookup main",
        "512: from all to 10.0.102.98 lookup main",
        "32766: from all lookup main",
        "32767: from all lookup default",
    ]


def test_aws_node_local_table_matches_the_kernel(aws):
    # Same node built in a namespace (secondary ENI's connected route deleted from main):
    assert aws.host.ip_route("local").splitlines() == [
        "local 10.0.104.183 dev eth0 proto kernel scope host src 10.0.104.183",
        "local 10.0.108.20 dev eth1 proto kernel scope host src 10.0.108.20",
        "broadcast 10.0.127.255 dev eth0 proto kernel scope link src 10.0.104.183",
        "broadcast 10.0.127.255 dev eth1 proto kernel scope link src 10.0.108.20",
        "local 127.0.0.0/8 dev lo proto kernel scope host src 127.0.0.1",
        "local 127.0.0.1 dev lo proto kernel scope host src 127.0.0.1",
        "broadcast 127.255.255.255 dev lo proto kernel scope link src 127.0.0.1",
    ]


def test_aws_pod_arp_is_the_notes(aws):
    assert aws.namespace("pod-a").arp_a() == NOTES_POD_ARP


def test_aws_pod_routes_are_the_notes_plus_the_scope_iproute2_prints(aws):
    model = tool_lines(aws.namespace("pod-a").ip_route())
    notes = tool_lines(NOTES_POD_IP_ROUTE)
    assert model[0] == notes[0] == "default via 169.254.1.1 dev eth0"
    # The gateway's own route must have link scope, or the kernel refuses the default route via it
    # ('Nexthop has invalid gateway', confirmed with a scope-global route), and iproute2 prints a
    # non-global scope (confirmed: `169.254.1.1 dev eth0 scope link`). The notes' pod output came
    # from an older tool (it also prints `qlen 1` and `M-DOWN` and no `group`), which left it out.
    assert model[1] == "169.254.1.1 dev eth0 scope link"
    assert model[1].removesuffix(" scope link") == notes[1]


def _blocks(text: str) -> dict[str, list[str]]:
    """`ip addr` split per device (name without @ifN), each line whitespace-normalised."""
    blocks: dict[str, list[str]] = {}
    current = None
    for line in tool_lines(text):
        header = re.match(r"^(\d+): ([^:@]+)(@if\d+)?: ", line)
        if header:
            current = header.group(2)
            blocks[current] = [line]
        else:
            blocks[current].append(line)
    return blocks


def _header(line: str) -> dict:
    match = re.match(r"^(\d+): ([^:@]+)(?:@if\d+)?: <([^>]*)> mtu (\d+) qdisc (\S+)(?: master \S+)? state (\S+)", line)
    index, name, flags, mtu, qdisc, state = match.groups()
    return {"index": int(index), "name": name, "flags": set(flags.split(",")) - {"M-DOWN"}, "mtu": int(mtu),
            "qdisc": qdisc, "state": state}


def test_aws_pod_ip_addr_is_the_notes_where_todays_tools_agree(aws):
    model, notes = _blocks(aws.namespace("pod-a").ip_addr()), _blocks(NOTES_POD_IP_ADDR)
    assert list(model) == list(notes) == ["lo", "eth0"]
    # Headers: index, name, flags, MTU, qdisc and state. Left aside: the notes' tool printed `M-DOWN`
    # (BusyBox `ip` still does for a veth whose peer is in another namespace, confirmed with BusyBox
    # 1.35), `qlen 1` and no `group default`; the peer's ifindex (231 on the notes' busy node) is a
    # per-namespace counter.
    for dev in ("lo", "eth0"):
        assert _header(model[dev][0]) == _header(notes[dev][0])
    assert _header(model["eth0"][0])["index"] == 3
    assert model["lo"][1:] == notes["lo"][1:]
    eth0_model, eth0_notes = model["eth0"][1:], notes["eth0"][1:]
    # link/ether: the same MAC; today's iproute2 adds the peer's namespace after it (confirmed with 6.1).
    assert eth0_model[0].startswith(eth0_notes[0] + " link-netns ")
    # inet: a /32 has no broadcast address (the broadcast of 10.0.97.30/32 could only be 10.0.97.30
    # itself), and iproute2 prints no `brd` for it, `brd +` or not (confirmed:
    # `inet 10.0.97.30/32 scope global eth0`). The notes' `brd 10.0.97.226` is another pod's address
    # (the node routes 10.0.97.226 to awsc2f87dc4cdd), an artefact of how the notes were put together.
    assert "10.0.97.226 dev awsc2f87dc4cdd scope link" in aws.host.ip_route().splitlines()
    assert eth0_notes[1] == "inet 10.0.97.30/32 brd 10.0.97.226 scope global eth0"
    assert eth0_model[1] == "inet 10.0.97.30/32 scope global eth0"
    assert eth0_model[1] == eth0_notes[1].replace(" brd 10.0.97.226", "")
    # valid_lft and the EUI-64 link-local address derived from 56:41:95:26:17:41: identical.
    assert eth0_model[2:] == eth0_notes[2:]
    assert "inet6 fe80::5441:95ff:fe26:1741/64 scope link" in eth0_model


def test_aws_pods_have_permanent_arp_for_the_gateway_and_no_bridge(aws):
    assert not any(lk.kind == "bridge" for lk in aws.host.links.values())
    for pod in aws.pods:
        ns = aws.namespace(pod)
        entry = ns.neighbour(IPv4Address(AWS_LINK_LOCAL_GATEWAY), "eth0")
        host_end = aws.host.links[ns.links["eth0"].peer[1]]
        assert (entry.state, entry.mac) == ("PERMANENT", host_end.mac)


@pytest.mark.parametrize(
    "dst, src, iif, priority, table, dev",
    [
        ("10.0.97.30", "10.0.97.159", "awsbcd978401eb", 512, "main", "aws8db0408c9a8"),  # to a pod
        ("10.0.97.30", None, None, 512, "main", "aws8db0408c9a8"),  # the node itself to a pod
        ("10.0.50.7", "10.0.97.30", "aws8db0408c9a8", 1536, "eni-1", "eth1"),  # pod on eni-1 to the VPC
        ("8.8.8.8", "10.0.97.30", "aws8db0408c9a8", 1025, "main", "eth0"),  # pod to the internet
        ("10.0.50.7", "10.0.97.159", "awsbcd978401eb", 32766, "main", "eth0"),  # pod without an eni rule
    ],
)
def test_aws_policy_routing(aws, dst, src, iif, priority, table, dev):
    # The same `ip route get DST from SRC iif IIF` on the kernel build: 10.0.50.7 -> `via 10.0.96.1 dev
    # eth1 table 2`, 8.8.8.8 -> `via 10.0.96.1 dev eth0`, 10.0.97.159 -> `dev awsbcd978401eb` (confirmed).
    decision = aws.host.route_get(dst, src=src, iif=iif)
    assert (decision.rule.priority, decision.table.label, decision.route.dev) == (priority, table, dev)


# --- the packet walk on the bridge: pod-a pings pod-b --------------------------------------------------------


@pytest.fixture(scope="module")
def ping_ab(node):
    return walk(node, "pod-a", "pod-b")


def _hops(w, namespace=None, device=None, starts=""):
    return [h for h in w.hops if namespace in (None, h.namespace) and device in (None, h.device)
            and h.event.startswith(starts)]


def _veth_of(node, pod):
    return node.namespace(pod).links["eth0"].peer[1]


def test_ping_is_delivered_and_answered(ping_ab):
    assert ping_ab.delivered and ping_ab.replied
    assert _hops(ping_ab, "pod-b", "eth0", "ICMP echo request from 10.244.1.2 delivered")
    assert _hops(ping_ab, "pod-a", "eth0", "ICMP echo reply from 10.244.1.3 delivered")


def test_the_first_frame_is_an_arp_broadcast(ping_ab, node):
    from scapy.layers.l2 import ARP

    first = ping_ab.frames()[0]
    assert first.dst == BROADCAST and first.src == cni_mac(IPv4Address("10.244.1.2")) and first.type == 0x0806
    arp = first[ARP]
    assert (arp.op, arp.psrc, arp.pdst, arp.hwsrc, arp.hwdst) == (
        1, "10.244.1.2", "10.244.1.3", "0a:58:0a:f4:01:02", "00:00:00:00:00:00"
    )


def test_the_broadcast_floods_every_other_port_and_the_bridge_itself(ping_ab, node):
    flood = _hops(ping_ab, node.name, "cni0", "broadcast: floods to ")
    assert len(flood) == 1
    targets = flood[0].event.removeprefix("broadcast: floods to ").split(", ")
    assert targets == [_veth_of(node, "pod-b"), _veth_of(node, "pod-c"), "cni0"]
    assert _hops(ping_ab, "pod-b", "eth0", "receives ARP who-has 10.244.1.3")
    assert _hops(ping_ab, "pod-c", "eth0", "receives ARP who-has 10.244.1.3")
    assert _hops(ping_ab, "pod-c", "eth0", "ARP who-has 10.244.1.3: not an address of pod-c, no reply")
    assert _hops(ping_ab, node.name, "cni0", "ARP who-has 10.244.1.3: not an address of node-1, no reply")
    assert not _hops(ping_ab, "pod-a", "eth0", "receives ARP who-has"), "never back out of the port it came in"


def test_the_arp_reply_is_unicast_and_reaches_only_the_asker(ping_ab, node):
    from scapy.layers.l2 import ARP

    replies = [f for f in ping_ab.frames() if f.haslayer(ARP) and f[ARP].op == 2]
    assert replies and all(f.dst == "0a:58:0a:f4:01:02" and f.src == "0a:58:0a:f4:01:03" for f in replies)
    assert {(h.namespace, h.device) for h in _hops(ping_ab, starts="receives ARP 10.244.1.3 is-at")} == {
        (node.name, _veth_of(node, "pod-b")), ("pod-a", "eth0")
    }
    assert ping_ab.frames("pod-c", "eth0") and all(
        f[ARP].op == 1 for f in ping_ab.frames("pod-c", "eth0")
    ), "pod-c sees the broadcast only"


def test_the_bridge_learns_both_macs_on_the_right_ports(ping_ab, node):
    learned = {(e.mac, e.port) for e in ping_ab.node_after.host.learned_fdb()}
    assert learned == {
        ("0a:58:0a:f4:01:02", _veth_of(node, "pod-a")),
        ("0a:58:0a:f4:01:03", _veth_of(node, "pod-b")),
    }
    assert not node.host.fdb, "the walk ran on a copy: the node itself is unchanged"


def test_echo_request_and_reply_cross_the_bridge_unchanged(ping_ab):
    from scapy.layers.inet import ICMP, IP

    at_b = [f for f in ping_ab.frames("pod-b", "eth0") if f.haslayer(ICMP) and f[ICMP].type == 8]
    at_a = [f for f in ping_ab.frames("pod-a", "eth0") if f.haslayer(ICMP) and f[ICMP].type == 0]
    assert len(at_b) == 1 and len(at_a) == 1
    request, reply = at_b[0], at_a[0]
    # A bridge is layer 2: no TTL decrement, no address rewrite (the notes' "without NAT").
    assert (request[IP].src, request[IP].dst, request[IP].ttl) == ("10.244.1.2", "10.244.1.3", 64)
    assert (reply[IP].src, reply[IP].dst) == ("10.244.1.3", "10.244.1.2")
    # `ping` sends 56 data bytes, 84 bytes of IP ("PING … 56(84) bytes of data").
    assert len(bytes(request[IP])) == 84
    assert bytes(reply[ICMP].payload) == bytes(request[ICMP].payload)
    assert (reply[ICMP].id, reply[ICMP].seq) == (request[ICMP].id, request[ICMP].seq)
    assert request.dst == "0a:58:0a:f4:01:03" and reply.dst == "0a:58:0a:f4:01:02"


def test_neighbour_tables_right_after_the_ping_are_the_kernels(ping_ab, node):
    # `ip neigh` right after `ping -c1 10.244.1.3` in the kernel build (trailing space removed):
    # the asker has the answer REACHABLE; the answerer learned the asker from the request (STALE) and
    # using that entry for the reply moved it to DELAY. Nobody else learns anything (arp_accept=0).
    after = ping_ab.node_after
    assert after.namespace("pod-a").ip_neigh() == "10.244.1.3 dev eth0 lladdr 0a:58:0a:f4:01:03 REACHABLE"
    assert after.namespace("pod-b").ip_neigh() == "10.244.1.2 dev eth0 lladdr 0a:58:0a:f4:01:02 DELAY"
    assert after.namespace("pod-c").ip_neigh() == ""
    assert after.host.ip_neigh() == ""
    assert node.namespace("pod-a").ip_neigh() == ""


def test_a_second_ping_needs_no_arp(ping_ab):
    again = walk(ping_ab.node_after, "pod-a", "pod-b")
    assert again.delivered and again.replied
    assert not _hops(again, starts="no neighbour entry")
    assert _hops(again, "pod-a", "eth0", "neighbour table: 10.244.1.3 is at 0a:58:0a:f4:01:03 (REACHABLE)")
    assert not _hops(again, "pod-c"), "known MACs: the bridge forwards to one port only"


REQUIRED_FIELDS = {
    "Ethernet": {"dst", "src", "type"},
    "ARP": {"op", "hwsrc", "psrc", "hwdst", "pdst"},
    "IP": {"src", "dst", "ttl"},
    "ICMP": {"type", "id", "seq"},
    "UDP": {"sport", "dport"},
}


def _assert_explicit(frame) -> None:
    layer = frame
    while layer is not None and layer.name != "Raw" and layer.name != "NoPayload":
        missing = REQUIRED_FIELDS.get(layer.name, set()) - set(layer.fields)
        assert not missing, f"{layer.name} left {missing} to scapy's defaults"
        layer = layer.payload if layer.payload else None


def test_every_frame_sets_its_address_fields_and_scapy_says_nothing(node, caplog, capsys):
    walks = [walk(node, "pod-a", "pod-b"), walk(node, "pod-a", "8.8.8.8"), walk(node, "pod-a", "pod-c", "udp", 53),
             walk(aws_vpc_cni_node(), "pod-a", "pod-b")]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with caplog.at_level(logging.DEBUG, logger="scapy"):
            for w in walks:
                for frame in w.frames():
                    _assert_explicit(frame)
                    raw = bytes(frame)
                    assert len(raw) >= 42
                    frame.summary()
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    out, err = capsys.readouterr()
    assert out == "" and err == ""


def test_write_pcap_reads_back_the_same_frames(ping_ab, tmp_path):
    from scapy.layers.l2 import Ether
    from scapy.utils import rdpcap

    path = ping_ab.write_pcap(str(tmp_path / "ping.pcap"))
    back = rdpcap(path)
    frames = ping_ab.frames()
    assert len(back) == len(frames) == len([h for h in ping_ab.hops if h.frame is not None])
    for read, written in zip(back, frames):
        assert isinstance(read, Ether)
        assert bytes(read) == bytes(written)
        assert float(read.time) == pytest.approx(float(written.time), abs=1e-6)
    times = [float(f.time) for f in back]
    assert times == sorted(times) and len(set(times)) == len(times)
    one_device = rdpcap(ping_ab.write_pcap(str(tmp_path / "b.pcap"), "pod-b", "eth0"))
    assert [bytes(f) for f in one_device] == [bytes(f) for f in ping_ab.frames("pod-b", "eth0")]


# --- other walks on the bridge node -------------------------------------------------------------------------


def test_pod_to_the_bridge_address(node):
    w = walk(node, "pod-a", "10.244.1.1")
    assert w.delivered and w.replied
    assert _hops(w, node.name, "cni0", "destination MAC is the bridge's own")
    assert _hops(w, node.name, "cni0", "ICMP echo request from 10.244.1.2 delivered")
    # the node learned pod-a from its ARP request (STALE) and used it to reply: DELAY, as for pod-b above
    assert w.node_after.host.ip_neigh() == "10.244.1.2 dev cni0 lladdr 0a:58:0a:f4:01:02 DELAY"
    assert w.node_after.namespace("pod-a").ip_neigh() == "10.244.1.1 dev eth0 lladdr 0a:58:0a:f4:01:01 REACHABLE"


def test_pod_to_the_nodes_own_uplink_address(node):
    from scapy.layers.inet import IP

    w = walk(node, "pod-a", "192.168.56.10")
    assert w.delivered and w.replied
    assert _hops(w, "pod-a", "eth0", "route lookup for 192.168.56.10")[0].event.endswith(
        "default via 10.244.1.1 dev eth0"
    )
    reply = [f for f in w.frames("pod-a", "eth0") if f.haslayer(IP) and f[IP].dst == "10.244.1.2"]
    assert reply and reply[0][IP].src == "192.168.56.10"


def test_node_to_pod(node):
    from scapy.layers.l2 import ARP

    w = walk(node, node.name, "pod-c")
    assert w.delivered and w.replied
    request = w.frames()[0]
    assert request.dst == BROADCAST and request[ARP].psrc == "10.244.1.1" and request[ARP].pdst == "10.244.1.4"
    flood = _hops(w, node.name, "cni0", "broadcast: floods to ")[0].event
    assert flood.removeprefix("broadcast: floods to ").split(", ") == [_veth_of(node, p) for p in node.pods]
    assert w.node_after.host.ip_neigh() == "10.244.1.4 dev cni0 lladdr 0a:58:0a:f4:01:04 REACHABLE"
    assert w.node_after.namespace("pod-c").ip_neigh() == "10.244.1.1 dev eth0 lladdr 0a:58:0a:f4:01:01 DELAY"
    assert {(e.mac, e.port) for e in w.node_after.host.learned_fdb()} == {("0a:58:0a:f4:01:04", _veth_of(node, "pod-c"))}


def test_pod_to_outside_leaves_on_the_uplink(node):
    from scapy.layers.l2 import ARP

    w = walk(node, "pod-a", "8.8.8.8")
    assert not w.delivered and not w.replied
    forwarded = _hops(w, node.name, "eth0", "forwards (ttl 63)")
    assert forwarded and "default via 192.168.56.1 dev eth0" in forwarded[0].event
    last = w.hops[-1]
    assert (last.namespace, last.device) == (node.name, "eth0") and "leaves the node on its uplink" in last.event
    # a forwarded packet's source is not the node's, so the ARP asks with the uplink's own address
    assert (last.frame[ARP].pdst, last.frame[ARP].psrc) == ("192.168.56.1", "192.168.56.10")


def test_pod_to_itself_stays_on_loopback(node):
    for destination in ("pod-a", "10.244.1.2", "127.0.0.1"):
        w = walk(node, "pod-a", destination)
        assert w.delivered and w.replied, destination
        assert w.frames() == [], "nothing crosses eth0"
        assert {h.namespace for h in w.hops} == {"pod-a"}
        assert _hops(w, "pod-a", "lo", "")


def test_udp_datagram(node):
    from scapy.layers.inet import UDP

    w = walk(node, "pod-a", "pod-b", proto="udp", port=53)
    assert w.delivered and not w.replied
    at_b = [f for f in w.frames("pod-b", "eth0") if f.haslayer(UDP)]
    assert len(at_b) == 1
    assert (at_b[0][UDP].sport, at_b[0][UDP].dport, bytes(at_b[0][UDP].payload)) == (40000, 53, b"hello")
    assert _hops(w, "pod-b", "eth0", "UDP from 10.244.1.2:40000 delivered to port 53")


def test_nobody_answers_an_unused_address(node):
    w = walk(node, "pod-a", "10.244.1.77")
    assert not w.delivered and not w.replied
    assert not _hops(w, starts="ARP who-has 10.244.1.77 is mine")


def test_a_detached_port_breaks_pod_to_pod(node):
    import copy

    broken = copy.deepcopy(node)
    broken.host.links[_veth_of(node, "pod-b")].master = None
    assert not walk(broken, "pod-a", "pod-b").delivered


def test_walk_table_numbers_every_hop(ping_ab):
    lines = ping_ab.table().splitlines()
    assert len(lines) == len(ping_ab.hops)
    assert lines[0].startswith(" 1. pod-a/eth0") and "route lookup for 10.244.1.3" in lines[0]


# --- the AWS node: routed, no bridge --------------------------------------------------------------------------


def test_aws_pod_to_pod_is_routed_by_the_node(aws):
    from scapy.layers.inet import IP
    from scapy.layers.l2 import ARP

    w = walk(aws, "pod-a", "pod-b")
    assert w.delivered and w.replied
    first = w.frames()[0]
    # the permanent entry for 169.254.1.1 is used: no ARP from the pod, straight to the host veth's MAC
    assert not first.haslayer(ARP) and first.dst == "2a:09:74:cd:c4:62" and first[IP].dst == "10.0.97.159"
    assert _hops(w, "pod-a", "eth0", "neighbour table: 169.254.1.1 is at 2a:09:74:cd:c4:62 (PERMANENT)")
    assert not _hops(w, starts="bridge learns") and not w.node_after.host.fdb
    forwarded = _hops(w, aws.name, "awsbcd978401eb", "forwards (ttl 63): rule 512")
    assert forwarded and "10.0.97.159 dev awsbcd978401eb scope link" in forwarded[0].event
    # the host ARPs for the pod from its own address (the veth has none): `who-has 10.0.97.159 tell 10.0.104.183`
    asks = [h.frame[ARP] for h in _hops(w, aws.name, starts="no neighbour entry")]
    assert [(a.pdst, a.psrc) for a in asks] == [("10.0.97.159", "10.0.104.183"), ("10.0.97.30", "10.0.104.183")]
    at_b = [f for f in w.frames("pod-b", "eth0") if f.haslayer(IP)]
    assert at_b[0][IP].ttl == 63 and at_b[0][IP].src == "10.0.97.30"


def test_aws_neighbours_after_a_ping_are_the_kernels(aws):
    # Kernel build, `ping -c1 10.0.97.159` from pod-a: the host holds both pods REACHABLE; each pod
    # learned the host's address from its ARP request, at the host veth's MAC, STALE (confirmed:
    # `10.0.104.183 dev eth0 lladdr 16:71:b9:a1:b1:81 STALE` in pod-b).
    after = walk(aws, "pod-a", "pod-b").node_after
    host_neigh = {line.split()[0]: line for line in after.host.ip_neigh().splitlines()}
    assert host_neigh["10.0.97.159"].endswith("REACHABLE") and host_neigh["10.0.97.30"].endswith("REACHABLE")
    pod_b_veth = aws.host.links["awsbcd978401eb"].mac
    assert after.namespace("pod-b").ip_neigh().splitlines() == [
        f"169.254.1.1 dev eth0 lladdr {pod_b_veth} PERMANENT",
        f"10.0.104.183 dev eth0 lladdr {pod_b_veth} STALE",
    ]


def test_aws_pod_to_vpc_leaves_by_eth1_and_to_internet_by_eth0(aws):
    from scapy.layers.l2 import ARP

    vpc = walk(aws, "pod-a", "10.0.50.7")
    assert _hops(vpc, aws.name, "eth1", "forwards (ttl 63): rule 1536")
    assert vpc.hops[-1].device == "eth1" and vpc.hops[-1].frame[ARP].psrc == "10.0.108.20"
    internet = walk(aws, "pod-a", "8.8.8.8")
    assert _hops(internet, aws.name, "eth0", "forwards (ttl 63): rule 1025")
    assert internet.hops[-1].device == "eth0" and internet.hops[-1].frame[ARP].psrc == "10.0.104.183"


def test_aws_node_to_pod_uses_the_to_pod_rule(aws):
    w = walk(aws, aws.name, "pod-a")
    assert w.delivered and w.replied
    assert "rule 512" in w.hops[0].event


# --- the three requirements and containers --------------------------------------------------------------------


def test_check_requirements_passes_on_the_bridge_node(node):
    checks = check_requirements(node)
    assert [c.requirement for c in checks] == list(REQUIREMENTS)
    assert all(c.passed for c in checks)
    assert checks[0].evidence.split("; ") == [
        f"{a}→{b} src kept" for a in node.pods for b in node.pods if a != b
    ]
    assert checks[1].evidence.split("; ") == [f"node-1→{p} src kept" for p in node.pods]
    assert checks[2].evidence.split("; ")[0] == "pod-a is 10.244.1.2, others see 10.244.1.2"
    assert str(checks[0]).startswith("[PASS] all pods can communicate with all other pods without NAT\n")


def test_check_requirements_passes_on_the_aws_node(aws):
    assert all(c.passed for c in check_requirements(aws))


def test_check_requirements_fails_when_pods_cannot_talk():
    broken = build_node(pods=2)
    broken.host.links[_veth_of(broken, "pod-b")].master = None  # pod-b's port taken off the bridge
    first = check_requirements(broken)[0]
    assert not first.passed
    assert first.evidence == "pod-a→pod-b FAILED; pod-b→pod-a FAILED"
    assert str(first).startswith("[FAIL] ")


def test_container_to_container_shares_one_namespace():
    node = build_node(pods=1, containers=("app", "sidecar"))
    text = container_to_container(node, "pod-a")
    assert text.splitlines() == [
        "containers of pod-a: app, sidecar — one network namespace, one eth0 (10.244.1.2), one lo",
        (
            "127.0.0.1 from any of them: rule 0 (from all lookup local) → table local: "
            "local 127.0.0.1 dev lo proto kernel scope host src 127.0.0.1"
        ),
    ]


# --- bad input: the one error, naming the field, the value and what is allowed --------------------------------


def _error(call) -> LabInputError:
    with pytest.raises(LabInputError) as excinfo:
        call()
    return excinfo.value


@pytest.mark.parametrize(
    "kwargs, field, allowed_has",
    [
        ({"pod_cidr": "192.168.0.0/16"}, "pod_cidr", "192.168.56.0/24"),  # overlaps the node's network
        ({"pod_cidr": "10.244.1.5/24"}, "pod_cidr", "10.244.1.0/24"),  # host bits set
        ({"pod_cidr": "10.244.1.0/30"}, "pod_cidr", "/29"),
        ({"pod_cidr": "224.1.0.0/24"}, "pod_cidr", "multicast"),
        ({"pod_cidr": "not-a-cidr"}, "pod_cidr", "network prefix"),
        ({"pods": 0}, "pods", "from 1 to 8"),
        ({"pods": 9}, "pods", "from 1 to 8"),
        ({"pods": "3"}, "pods", "whole number"),
        ({"pods": 6, "pod_cidr": "10.244.1.0/29"}, "pods", "at most 5 pods"),
        ({"bridge": "eth0"}, "bridge", "lo and eth0"),
        ({"bridge": "lo"}, "bridge", "lo and eth0"),
        ({"bridge": "my bridge"}, "bridge", "1-15 bytes"),
        ({"bridge": "a-very-long-bridge"}, "bridge", "1-15 bytes"),
        ({"node_ip": "192.168.56.10"}, "node_ip", "ADDRESS/PREFIXLEN"),
        ({"node_gateway": "10.9.9.9"}, "route.via", "Nexthop has invalid gateway"),
    ],
)
def test_build_node_bad_input(kwargs, field, allowed_has):
    err = _error(lambda: build_node(**kwargs))
    value = next(iter(kwargs.values())) if field != "route.via" else "10.9.9.9"
    if field == "pods" and "pod_cidr" in kwargs:
        value = kwargs["pods"]
    assert err.field == field
    assert repr(value) in str(err)
    assert allowed_has in err.allowed


def test_add_pod_bad_input(node):
    import copy

    work = copy.deepcopy(node)
    err = _error(lambda: work.add_pod("pod-x", "10.9.9.9/24", "vethx", bridge="cni0", gateway="10.244.1.1"))
    assert err.field == "pod.address" and "10.244.1.0/24" in err.allowed
    err = _error(lambda: work.add_pod("pod-a", "10.244.1.9/24", "vethx", bridge="cni0"))
    assert err.field == "pod.name"
    err = _error(lambda: work.add_pod("pod-x", "10.244.1.3/24", "vethx", bridge="cni0"))
    assert err.field == "pod.address" and "pod-b" in err.allowed
    err = _error(lambda: work.add_pod("pod-x", "10.244.1.9/24", "veth x", bridge="cni0"))
    assert err.field == "pod.host_veth"
    err = _error(lambda: work.add_pod("pod-x", "10.244.1.9/24", "vethx", bridge="br9"))
    assert err.field == "pod.bridge"
    assert work.pods == node.pods


@pytest.mark.parametrize(
    "args, kwargs, field",
    [
        (("pod-z", "pod-a"), {}, "source"),
        (("10.9.9.9", "pod-a"), {}, "source"),
        (("pod-a", "pod-z"), {}, "destination"),
        (("pod-a", "pod-b"), {"proto": "tcp"}, "proto"),
        (("pod-a", "pod-b"), {"proto": "udp", "port": 0}, "port"),
        (("pod-a", "pod-b"), {"proto": "udp", "port": 65536}, "port"),
        (("pod-a", "pod-b"), {"proto": "udp", "port": "http"}, "port"),
        (("pod-a", "pod-b"), {"proto": "udp", "port": None}, "port"),
    ],
)
def test_walk_bad_input(node, args, kwargs, field):
    err = _error(lambda: walk(node, *args, **kwargs))
    assert err.field == field
    bad = kwargs.get(field, args[0] if field == "source" else args[1] if field == "destination" else None)
    assert repr(bad) in str(err)


def test_unknown_pod_for_container_to_container(node):
    err = _error(lambda: container_to_container(node, "pod-z"))
    assert err.field == "pod" and "pod-a" in err.allowed


def test_a_loopback_pod_cidr_answers_itself():
    # Not a model bug but the kernel's rule: every 127/8 address is local in every namespace (`ip route
    # get 127.5.5.5` -> `local 127.5.5.5 dev lo`, confirmed), so the ping "to pod-b" never leaves pod-a.
    loop = build_node(pods=2, pod_cidr="127.1.0.0/24")
    w = walk(loop, "pod-a", "pod-b")
    assert w.delivered and w.replied
    assert w.frames() == [] and {h.namespace for h in w.hops} == {"pod-a"}


# --- any valid pod CIDR: every pod reaches every other ---------------------------------------------------------

NODE_NET = IPv4Network("192.168.56.0/24")
NOT_UNICAST = [IPv4Network("127.0.0.0/8"), IPv4Network("224.0.0.0/4"), IPv4Network("240.0.0.0/4")]


@st.composite
def pod_cidrs(draw):
    length = draw(st.integers(16, 28))
    cidr = IPv4Network((draw(st.integers(0, 2**32 - 1)), length), strict=False)
    if cidr.overlaps(NODE_NET) or any(cidr.overlaps(n) for n in NOT_UNICAST):
        cidr = IPv4Network((int(IPv4Address("10.0.0.0")) | (int(cidr.network_address) & 0x00FFFFFF), length),
                           strict=False)
    return cidr


@settings(max_examples=25, deadline=None)
@given(pod_cidrs(), st.integers(1, 3), st.sampled_from(["cni0", "docker0", "br-k8s"]))
def test_any_pod_cidr_builds_a_node_whose_pods_all_reach_each_other(cidr, pods, bridge):
    node = build_node(pods=pods, pod_cidr=str(cidr), bridge=bridge)
    hosts = cidr.hosts()
    bridge_ip = next(hosts)
    assert [a.ip for a in node.host.links[bridge].addresses] == [bridge_ip]
    assert [node.pod_ip(p) for p in node.pods] == [next(hosts) for _ in node.pods]
    for a in node.pods:
        for b in node.pods:
            if a != b:
                w = walk(node, a, b)
                assert w.delivered and w.replied, (a, b, w.table())
    assert walk(node, node.name, node.pods[-1]).replied


def test_the_largest_node_floods_every_port():
    big = build_node(pods=8)
    assert big.pods[-1] == "pod-h" and str(big.pod_ip("pod-h")) == "10.244.1.9"
    w = walk(big, "pod-a", "pod-h")
    assert w.delivered and w.replied
    flood = _hops(w, big.name, "cni0", "broadcast: floods to ")[0].event.removeprefix("broadcast: floods to ")
    assert flood.split(", ") == [_veth_of(big, p) for p in big.pods[1:]] + ["cni0"]
    assert walk(w.node_after, "pod-h", "pod-a").replied


# --- learning VTEPs on the engine (the forwarding is host.Namespace's, shared with overlay.Vtep) -----------


def learning_vteps() -> dict[str, Namespace]:
    """Two nodes on one underlay, each with a learning `vxlan0` (the kernel's default) and the all-zeros
    default entry to the other, as `ip link add vxlan0 type vxlan id 1 local NODE dev eth0 dstport 8472`
    and `bridge fdb append 00:00:00:00:00:00 dev vxlan0 dst OTHER` make them."""
    nodes = {}
    for n, other in ((1, 2), (2, 1)):
        ns = Namespace(f"node-{n}", role="node", forwarding=True)
        ns.add_link("eth0", "ether", stable_mac(ns.name, "eth0"))
        ns.add_address("eth0", f"192.168.56.1{n - 1}/24")
        ns.add_vxlan("vxlan0", vni=1, dstport=8472, mac=f"0a:00:00:00:00:0{n}", local=f"192.168.56.1{n - 1}", dev="eth0")
        ns.add_address("vxlan0", f"10.9.0.{n}/24")
        ns.add_fdb(ZERO_MAC, "vxlan0", f"192.168.56.1{other - 1}")
        nodes[ns.name] = ns
    return nodes


def ping_over_vxlan(nodes: dict[str, Namespace]) -> Engine:
    from scapy.layers.inet import ICMP, IP

    engine = Engine(nodes, (Segment("underlay", (("node-1", "eth0"), ("node-2", "eth0"))),))
    engine.send_ip("node-2", IP(src="10.9.0.2", dst="10.9.0.1", id=0) / ICMP(type=8, id=1, seq=1))
    engine.run()
    return engine


def test_a_learning_vtep_on_the_engine_learns_the_sender_first_in_its_fdb():
    nodes = learning_vteps()
    engine = ping_over_vxlan(nodes)
    assert any(h.event == "learns 0a:00:00:00:00:02 is behind VTEP 192.168.56.11" for h in engine.hops)
    assert nodes["node-1"].vxlan_fdb_show("vxlan0").splitlines() == [
        "0a:00:00:00:00:02 dst 192.168.56.11 self",
        "00:00:00:00:00:00 dst 192.168.56.11 self permanent",
    ]
    assert any(ns == "node-2" and p.src == "10.9.0.1" for ns, p in engine.delivered)  # the echo reply came back


def test_a_packet_from_another_vtep_leaves_a_permanent_entry_permanent_and_in_place():
    """Regression: Engine.decapsulate used to delete a permanent FDB entry and append a learned one. The
    kernel's vxlan_snoop never moves a static entry and drops the packet (checked on Linux 6.18)."""
    nodes = learning_vteps()
    nodes["node-1"].add_fdb("0a:00:00:00:00:02", "vxlan0", "192.168.56.99")
    nodes["node-1"].add_fdb("0a:00:00:00:00:03", "vxlan0", "192.168.56.13")
    before = list(nodes["node-1"].vxlan_fdb("vxlan0"))
    engine = ping_over_vxlan(nodes)
    assert nodes["node-1"].vxlan_fdb("vxlan0") == before
    assert [e.permanent for e in before] == [True, True, True]
    assert any(h.namespace == "node-1" and "permanent FDB entry" in h.event and h.event.endswith("dropped "
               "(a static entry is never moved)") for h in engine.hops)
    assert not any(ns == "node-1" for ns, _ in engine.delivered) and not engine.delivered
