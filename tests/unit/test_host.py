"""labsupport.host: a network namespace built with iproute2's verbs and printed with its views.

The expected text below is what a real kernel printed for the same configuration: Linux 6.18
with iproute2 6.1 (Debian 12), in scratch namespaces built with the same `ip` commands and MACs.
Only two things are normalised, and only in that capture: iproute2 ends some lines with a space
(the model does not), and it names the peer namespace of a veth by its real name (the model by
the model's name). tests/kernel/test_kernel_formats.py repeats these comparisons on the live kernel.
These tests themselves need no root.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface

import pytest

from labsupport.errors import LabInputError
from labsupport.host import FdbEntry, Namespace, namespace_from_ip_json


def pod_a() -> Namespace:
    """pod-a as the bridge CNI plugin leaves it (`ip netns add pod-a`, veth, address, default route)."""
    ns = Namespace("pod-a")
    eth0 = ns.add_link("eth0", "veth", "0a:58:0a:f4:01:02")
    eth0.peer, eth0.peer_index = ("node-1", "veth5d21d917"), 4
    ns.add_address("eth0", "10.244.1.2/24")
    ns.add_route("default", via="10.244.1.1", dev="eth0")
    return ns


def node_1() -> Namespace:
    """The node side: eth0, the cni0 bridge holding the pods' gateway, two veths enslaved to it."""
    ns = Namespace("node-1", role="node", forwarding=True)
    ns.add_link("eth0", "ether", "1e:04:6f:68:ca:90")
    ns.add_address("eth0", "192.168.56.10/24")
    ns.add_route("default", via="192.168.56.1", dev="eth0")
    ns.add_link("cni0", "bridge", "0a:58:0a:f4:01:01")
    ns.add_address("cni0", "10.244.1.1/24")
    for name, mac, pod in (("veth5d21d917", "36:5b:e0:a0:96:c1", "pod-a"), ("vethf308993b", "d6:ba:28:4b:fc:3f", "pod-b")):
        veth = ns.add_link(name, "veth", mac, master="cni0")
        veth.peer, veth.peer_index = (pod, "eth0"), 2
    return ns


# Captured from the real kernel for the same pod (trailing spaces removed, link-netns renamed).
KERNEL_POD_A_IP_ADDR = """\
1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN group default qlen 1000
    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00
    inet 127.0.0.1/8 scope host lo
       valid_lft forever preferred_lft forever
    inet6 ::1/128 scope host
       valid_lft forever preferred_lft forever
2: eth0@if4: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP group default qlen 1000
    link/ether 0a:58:0a:f4:01:02 brd ff:ff:ff:ff:ff:ff link-netns node-1
    inet 10.244.1.2/24 brd 10.244.1.255 scope global eth0
       valid_lft forever preferred_lft forever
    inet6 fe80::858:aff:fef4:102/64 scope link
       valid_lft forever preferred_lft forever"""

# The node's cni0 and veth blocks of `ip addr`, same capture.
KERNEL_NODE_BRIDGE_AND_VETHS = """\
3: cni0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP group default qlen 1000
    link/ether 0a:58:0a:f4:01:01 brd ff:ff:ff:ff:ff:ff
    inet 10.244.1.1/24 brd 10.244.1.255 scope global cni0
       valid_lft forever preferred_lft forever
    inet6 fe80::858:aff:fef4:101/64 scope link
       valid_lft forever preferred_lft forever
4: veth5d21d917@if2: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue master cni0 state UP group default qlen 1000
    link/ether 36:5b:e0:a0:96:c1 brd ff:ff:ff:ff:ff:ff link-netns pod-a
    inet6 fe80::345b:e0ff:fea0:96c1/64 scope link
       valid_lft forever preferred_lft forever
5: vethf308993b@if2: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue master cni0 state UP group default qlen 1000
    link/ether d6:ba:28:4b:fc:3f brd ff:ff:ff:ff:ff:ff link-netns pod-b
    inet6 fe80::d4ba:28ff:fe4b:fc3f/64 scope link
       valid_lft forever preferred_lft forever"""

FRESH_LOCAL_TABLE = [
    "local 127.0.0.0/8 dev lo proto kernel scope host src 127.0.0.1",
    "local 127.0.0.1 dev lo proto kernel scope host src 127.0.0.1",
    "broadcast 127.255.255.255 dev lo proto kernel scope link src 127.0.0.1",
]


# --- a fresh namespace --------------------------------------------------------------------------------


def test_fresh_namespace_has_lo_and_three_rules():
    ns = Namespace("scratch")
    assert list(ns.links) == ["lo"]
    assert ns.links["lo"].addresses == [IPv4Interface("127.0.0.1/8")]
    assert ns.ip_rule().splitlines() == ["0:\tfrom all lookup local", "32766:\tfrom all lookup main",
                                         "32767:\tfrom all lookup default"]
    assert ns.ip_route() == ""


def test_fresh_local_table_holds_127_0_0_0_8_and_its_broadcast():
    # `ip route show table local` after `ip link set lo up` in a new namespace (confirmed).
    assert Namespace("scratch").ip_route("local").splitlines() == FRESH_LOCAL_TABLE


def test_127_anything_is_local():
    # `ip route get 127.5.5.5` -> 'local 127.5.5.5 dev lo … src 127.0.0.1' (confirmed; the kernel adds
    # `table local` once the namespace has a rule of its own: until then local and main share one trie).
    ns = Namespace("scratch")
    decision = ns.route_get("127.5.5.5")
    assert (decision.rule.priority, decision.table.label, decision.route.kind) == (0, "local", "local")
    assert str(decision.route) == "local 127.0.0.0/8 dev lo proto kernel scope host src 127.0.0.1"
    assert ns.owns(IPv4Address("127.5.5.5"))


def test_route_get_without_a_route_is_network_unreachable():
    # `ip route get 8.8.8.8` with only lo: 'RTNETLINK answers: Network is unreachable' (confirmed).
    with pytest.raises(LabInputError) as excinfo:
        Namespace("scratch").route_get("8.8.8.8")
    assert excinfo.value.field == "dst"
    assert "'8.8.8.8'" in str(excinfo.value) and "Network is unreachable" in str(excinfo.value)


# --- a pod's namespace, compared with the kernel ------------------------------------------------------


def test_pod_ip_addr_is_what_the_kernel_prints():
    assert pod_a().ip_addr() == KERNEL_POD_A_IP_ADDR


def test_pod_routes_main_and_local():
    ns = pod_a()
    assert ns.ip_route().splitlines() == [
        "default via 10.244.1.1 dev eth0",
        "10.244.1.0/24 dev eth0 proto kernel scope link src 10.244.1.2",
    ]
    assert ns.ip_route("local").splitlines() == [
        "local 10.244.1.2 dev eth0 proto kernel scope host src 10.244.1.2",
        "broadcast 10.244.1.255 dev eth0 proto kernel scope link src 10.244.1.2",
        *FRESH_LOCAL_TABLE,
    ]


def test_node_bridge_and_veth_blocks_are_what_the_kernel_prints():
    lines = node_1().ip_addr().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("3: cni0:"))
    assert "\n".join(lines[start:]) == KERNEL_NODE_BRIDGE_AND_VETHS


def test_node_routes_in_kernel_order():
    ns = node_1()
    assert ns.ip_route().splitlines() == [
        "default via 192.168.56.1 dev eth0",
        "10.244.1.0/24 dev cni0 proto kernel scope link src 10.244.1.1",
        "192.168.56.0/24 dev eth0 proto kernel scope link src 192.168.56.10",
    ]
    assert ns.ip_route("local").splitlines() == [
        "local 10.244.1.1 dev cni0 proto kernel scope host src 10.244.1.1",
        "broadcast 10.244.1.255 dev cni0 proto kernel scope link src 10.244.1.1",
        *FRESH_LOCAL_TABLE,
        "local 192.168.56.10 dev eth0 proto kernel scope host src 192.168.56.10",
        "broadcast 192.168.56.255 dev eth0 proto kernel scope link src 192.168.56.10",
    ]


def test_ip_json_routes_and_rules_match_ip_j():
    # `ip -j route` and `ip -j rule` in the node namespace (confirmed with iproute2 6.1).
    js = node_1().ip_json()
    assert js["route"]["main"] == [
        {"dst": "default", "gateway": "192.168.56.1", "dev": "eth0", "flags": []},
        {"dst": "10.244.1.0/24", "dev": "cni0", "protocol": "kernel", "scope": "link", "prefsrc": "10.244.1.1",
         "flags": []},
        {"dst": "192.168.56.0/24", "dev": "eth0", "protocol": "kernel", "scope": "link",
         "prefsrc": "192.168.56.10", "flags": []},
    ]
    assert js["rule"] == [
        {"priority": 0, "src": "all", "table": "local"},
        {"priority": 32766, "src": "all", "table": "main"},
        {"priority": 32767, "src": "all", "table": "default"},
    ]
    assert js["addr"]["cni0"] == {"mac": "0a:58:0a:f4:01:01", "mtu": 1500, "master": None,
                                  "inet": ["10.244.1.1/24"], "inet6": ["fe80::858:aff:fef4:101/64"]}
    assert js["addr"]["veth5d21d917"]["master"] == "cni0"


# --- addresses: /32, /31, no brd, secondaries ---------------------------------------------------------


def test_a_32_has_no_brd_and_no_prefix_route():
    # `ip addr add 10.71.0.1/32 brd + dev eth0` prints `inet 10.71.0.1/32 scope global eth0`, and
    # only a local route appears (confirmed): a /32 has no other host and no broadcast address.
    ns = Namespace("p")
    ns.add_link("eth0", "veth", "02:00:00:00:00:01")
    ns.add_address("eth0", "10.71.0.1/32")
    assert "    inet 10.71.0.1/32 scope global eth0" in ns.ip_addr().splitlines()
    assert ns.ip_route() == ""
    assert ns.ip_route("local").splitlines()[0] == "local 10.71.0.1 dev eth0 proto kernel scope host src 10.71.0.1"
    assert not any(line.startswith("broadcast 10.71") for line in ns.ip_route("local").splitlines())


def test_a_31_has_a_prefix_route_but_no_broadcast():
    # RFC 3021 point-to-point: `inet 10.72.0.1/31 scope global eth0`, route 10.72.0.0/31 (confirmed).
    ns = Namespace("p")
    ns.add_link("eth0", "veth", "02:00:00:00:00:01")
    ns.add_address("eth0", "10.72.0.1/31")
    assert "    inet 10.72.0.1/31 scope global eth0" in ns.ip_addr().splitlines()
    assert ns.ip_route() == "10.72.0.0/31 dev eth0 proto kernel scope link src 10.72.0.1"
    assert not any(line.startswith("broadcast 10.72") for line in ns.ip_route("local").splitlines())


def test_without_brd_ip_addr_shows_none_but_the_kernel_still_adds_the_broadcast_route():
    # `ip addr add 10.70.0.1/24 dev eth0` (no `brd +`): `inet 10.70.0.1/24 scope global eth0`, yet the
    # local table gets `broadcast 10.70.0.255` (fib_add_ifaddr adds it for any primary shorter than /31).
    ns = Namespace("p")
    ns.add_link("eth0", "veth", "02:00:00:00:00:01")
    ns.add_address("eth0", "10.70.0.1/24", broadcast=False)
    assert "    inet 10.70.0.1/24 scope global eth0" in ns.ip_addr().splitlines()
    assert "broadcast 10.70.0.255 dev eth0 proto kernel scope link src 10.70.0.1" in ns.ip_route("local").splitlines()


def test_a_second_address_in_the_same_prefix_is_a_secondary():
    # Confirmed: `inet 10.244.1.50/24 brd 10.244.1.255 scope global secondary eth0`; no second prefix
    # route; its local route takes the primary's address as src; one broadcast route for the prefix.
    ns = pod_a()
    ns.add_address("eth0", "10.244.1.50/24")
    assert "    inet 10.244.1.50/24 brd 10.244.1.255 scope global secondary eth0" in ns.ip_addr().splitlines()
    assert [r for r in ns.ip_route().splitlines() if r.startswith("10.244.1.0/24")] == [
        "10.244.1.0/24 dev eth0 proto kernel scope link src 10.244.1.2"
    ]
    local = ns.ip_route("local").splitlines()
    assert "local 10.244.1.50 dev eth0 proto kernel scope host src 10.244.1.2" in local
    assert sum(line.startswith("broadcast 10.244.1.255") for line in local) == 1
    assert ns.owns(IPv4Address("10.244.1.50"))


def test_the_same_address_twice_is_refused():
    ns = pod_a()
    with pytest.raises(LabInputError) as excinfo:
        ns.add_address("eth0", "10.244.1.2/24")
    assert excinfo.value.field == "address"
    assert "10.244.1.2" in str(excinfo.value)


def test_address_on_a_missing_device():
    with pytest.raises(LabInputError) as excinfo:
        Namespace("p").add_address("eth9", "10.0.0.1/24")
    assert excinfo.value.field == "address.dev"
    assert "'eth9'" in str(excinfo.value) and "lo" in excinfo.value.allowed


@pytest.mark.parametrize("bad", ["10.0.0.1", "10.0.0.1/33", "nonsense"])
def test_bad_address_text(bad):
    ns = Namespace("p")
    ns.add_link("eth0", "veth", "02:00:00:00:00:01")
    with pytest.raises(LabInputError) as excinfo:
        ns.add_address("eth0", bad)
    assert excinfo.value.field == "address"
    assert repr(bad) in str(excinfo.value)


# --- links --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["eth0", "lo"])
def test_add_link_refuses_a_name_already_there(name):
    # `ip link add eth0 type veth …` / `ip link add lo type bridge` when it exists: 'File exists'.
    ns = pod_a()
    with pytest.raises(LabInputError) as excinfo:
        ns.add_link(name, "bridge", "02:00:00:00:00:09")
    assert excinfo.value.field == "link.name"
    assert repr(name) in str(excinfo.value) and "already has a device" in str(excinfo.value)


@pytest.mark.parametrize("mtu", [67, 65536, -1, "big", None, 1e9])
def test_add_link_refuses_an_mtu_out_of_the_devices_range(mtu):
    # veth and bridge: `ip -d link` shows `minmtu 68 maxmtu 65535`; `mtu 67` -> 'mtu less than device
    # minimum', `mtu 65536` -> 'mtu greater than device maximum' (confirmed).
    with pytest.raises(LabInputError) as excinfo:
        Namespace("p").add_link("eth0", "veth", "02:00:00:00:00:01", mtu=mtu)
    assert excinfo.value.field == "link.mtu"
    assert repr(mtu) in str(excinfo.value) and "68 and 65535" in excinfo.value.allowed


@pytest.mark.parametrize("mtu", [68, 1500, 9001, 65535])
def test_add_link_accepts_mtus_in_range(mtu):
    assert Namespace("p").add_link("eth0", "veth", "02:00:00:00:00:01", mtu=mtu).mtu == mtu


def test_loopback_keeps_65536():
    assert Namespace("p").links["lo"].mtu == 65536


def test_add_link_checks_kind_mac_name_and_master():
    ns = Namespace("p")
    for kwargs, field in (
        ({"name": "x0", "kind": "vxlan", "mac": "02:00:00:00:00:01"}, "link.kind"),
        ({"name": "x0", "kind": "veth", "mac": "02:00:00:00:00"}, "link.mac"),
        ({"name": "x 0", "kind": "veth", "mac": "02:00:00:00:00:01"}, "link.name"),
        ({"name": "x0", "kind": "veth", "mac": "02:00:00:00:00:01", "master": "lo"}, "link.master"),
        ({"name": "x0", "kind": "veth", "mac": "02:00:00:00:00:01", "master": "br9"}, "link.master"),
    ):
        with pytest.raises(LabInputError) as excinfo:
            ns.add_link(**kwargs)
        assert excinfo.value.field == field
    assert list(ns.links) == ["lo"]


def test_link_indexes_count_up_like_the_kernels():
    ns = node_1()
    assert [(lk.name, lk.index) for lk in ns.links.values()] == [
        ("lo", 1), ("eth0", 2), ("cni0", 3), ("veth5d21d917", 4), ("vethf308993b", 5)
    ]
    assert [lk.name for lk in ns.bridge_ports("cni0")] == ["veth5d21d917", "vethf308993b"]


# --- routes -------------------------------------------------------------------------------------------


def test_a_gateway_must_be_on_link():
    # `ip route add 10.50.0.0/16 via 10.9.9.9 dev eth0` -> 'Error: Nexthop has invalid gateway.' (confirmed)
    ns = pod_a()
    with pytest.raises(LabInputError) as excinfo:
        ns.add_route("10.50.0.0/16", via="10.9.9.9", dev="eth0")
    err = excinfo.value
    assert err.field == "route.via"
    assert "'10.9.9.9'" in str(err) and "Nexthop has invalid gateway" in err.allowed
    with pytest.raises(LabInputError) as excinfo:
        ns.add_route("10.50.0.0/16", via="10.9.9.9")  # without dev: no device has it on link either
    assert excinfo.value.field == "route.via"


def test_a_gateway_behind_a_scope_global_route_is_not_on_link():
    # The kernel looks the gateway up with scope link: a route of scope global does not make it
    # reachable. Confirmed: `ip route add 10.0.0.1 dev eth0 scope global` then
    # `ip route add 10.51.0.0/16 via 10.0.0.1 dev eth0` -> 'Nexthop has invalid gateway'.
    ns = pod_a()
    ns.add_route("10.0.0.1", dev="eth0", scope="global")
    assert "10.0.0.1 dev eth0 scope global" in ns.ip_route().splitlines()
    with pytest.raises(LabInputError):
        ns.add_route("10.51.0.0/16", via="10.0.0.1", dev="eth0")


def test_a_gateway_behind_a_link_scope_host_route_is_on_link():
    # What the AWS VPC CNI does in every pod: `169.254.1.1 dev eth0 scope link`, then the default via it.
    ns = Namespace("p")
    ns.add_link("eth0", "veth", "02:00:00:00:00:01")
    ns.add_address("eth0", "10.0.97.30/32")
    ns.add_route("169.254.1.1", dev="eth0", scope="link")
    ns.add_route("default", via="169.254.1.1", dev="eth0")
    assert ns.ip_route().splitlines() == ["default via 169.254.1.1 dev eth0", "169.254.1.1 dev eth0 scope link"]


def test_route_without_gateway_gets_scope_link_like_iproute2():
    # `ip route add 10.60.0.0/16 dev eth0` prints `10.60.0.0/16 dev eth0 scope link` (confirmed).
    ns = pod_a()
    ns.add_route("10.60.0.0/16", dev="eth0", metric=100)
    ns.add_route("10.60.0.0/16", dev="eth0", metric=50)
    lines = ns.ip_route().splitlines()
    assert lines.index("10.60.0.0/16 dev eth0 scope link metric 50") < lines.index(
        "10.60.0.0/16 dev eth0 scope link metric 100"
    )
    decision = ns.route_get("10.60.1.1")
    assert decision.route.metric == 50


def test_route_input_errors():
    ns = pod_a()
    cases = [
        ({"dst": "10.244.1.5/24", "dev": "eth0"}, "route.dst"),  # host bits ('Invalid prefix for given prefix length')
        ({"dst": "10.99.0.0/16", "dev": "eth7"}, "route.dev"),
        ({"dst": "10.99.0.0/16"}, "route.dev"),
        ({"dst": "10.99.0.0/16", "dev": "eth0", "table": "eni-9"}, "route.table"),
        ({"dst": "10.99.0.0/16", "via": "ten", "dev": "eth0"}, "route.via"),
        ({"dst": "10.99.0.0/16", "dev": "eth0", "src": "x"}, "route.src"),
        ({"dst": "10.244.1.0/24", "dev": "eth0"}, "route.dst"),  # the connected route is already there
    ]
    for kwargs, field in cases:
        with pytest.raises(LabInputError) as excinfo:
            ns.add_route(**kwargs)
        assert excinfo.value.field == field, kwargs
    assert ns.ip_route().count("\n") == 1  # nothing was added


def test_route_in_a_named_table():
    ns = Namespace("node")
    ns.add_link("eth1", "ether", "02:4f:1a:3c:9e:02")
    ns.add_table("eni-1", 2)
    ns.add_route("10.0.96.1", dev="eth1", table="eni-1", scope="link")
    ns.add_route("default", via="10.0.96.1", dev="eth1", table="eni-1")
    # the notes' `ip route show table eni-1`
    assert ns.ip_route("eni-1").splitlines() == ["default via 10.0.96.1 dev eth1", "10.0.96.1 dev eth1 scope link"]
    with pytest.raises(LabInputError) as excinfo:
        ns.add_table("eni-1", 3)
    assert excinfo.value.field == "table.name"
    with pytest.raises(LabInputError) as excinfo:
        ns.ip_route("eni-7")
    assert excinfo.value.field == "table"


# --- rules --------------------------------------------------------------------------------------------


def test_rules_sort_by_priority_and_keep_insertion_order_at_one_priority():
    # The kernel inserts a rule after the last one of the same priority (fib_nl_newrule); confirmed
    # with four `ip rule add to POD lookup main pref 512`.
    ns = Namespace("node")
    ns.add_rule(1025, "main", dst="10.0.0.0/16", invert=True)
    for pod in ("10.0.97.30", "10.0.97.159", "10.0.97.226"):
        ns.add_rule(512, "main", dst=pod)
    assert ns.ip_rule().splitlines() == [
        "0:\tfrom all lookup local",
        "512:\tfrom all to 10.0.97.30 lookup main",
        "512:\tfrom all to 10.0.97.159 lookup main",
        "512:\tfrom all to 10.0.97.226 lookup main",
        "1025:\tnot from all to 10.0.0.0/16 lookup main",
        "32766:\tfrom all lookup main",
        "32767:\tfrom all lookup default",
    ]


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"priority": "high", "table": "main"}, "rule.priority"),
        ({"priority": -1, "table": "main"}, "rule.priority"),
        ({"priority": 2**32, "table": "main"}, "rule.priority"),
        ({"priority": 100, "table": "eni-9"}, "rule.table"),
        ({"priority": 100, "table": "main", "src": "10.0.97.30/24"}, "rule.from"),
        ({"priority": 100, "table": "main", "dst": "nowhere"}, "rule.to"),
    ],
)
def test_rule_input_errors(kwargs, field):
    ns = Namespace("node")
    with pytest.raises(LabInputError) as excinfo:
        ns.add_rule(**kwargs)
    assert excinfo.value.field == field
    assert len(ns.rules) == 3


# --- neighbours and the bridge FDB --------------------------------------------------------------------


def test_neighbour_views_ip_neigh_and_arp_a():
    ns = Namespace("p")
    ns.add_link("eth0", "veth", "56:41:95:26:17:41")
    ns.add_neighbour("169.254.1.1", "2a:09:74:cd:c4:62", "eth0")
    ns.add_neighbour("10.0.104.183", "2A:09:74:CD:C4:62", "eth0", "STALE")
    # `ip neigh` (iproute2 6.1, trailing space removed) and net-tools `arp -an`, both confirmed;
    # the PERM line is also the notes' "Inside Pod" `arp -a` line, character for character.
    assert ns.ip_neigh().splitlines() == [
        "169.254.1.1 dev eth0 lladdr 2a:09:74:cd:c4:62 PERMANENT",
        "10.0.104.183 dev eth0 lladdr 2a:09:74:cd:c4:62 STALE",
    ]
    assert ns.arp_a().splitlines() == [
        "? (169.254.1.1) at 2a:09:74:cd:c4:62 [ether] PERM on eth0",
        "? (10.0.104.183) at 2a:09:74:cd:c4:62 [ether] on eth0",
    ]


def test_neighbour_replace_keeps_one_entry_per_address_and_device():
    ns = Namespace("p")
    ns.add_link("eth0", "veth", "02:00:00:00:00:01")
    ns.add_neighbour("10.0.0.1", "02:00:00:00:00:02", "eth0", "STALE")
    ns.add_neighbour("10.0.0.1", "02:00:00:00:00:02", "eth0", "DELAY")
    assert ns.ip_neigh() == "10.0.0.1 dev eth0 lladdr 02:00:00:00:00:02 DELAY"
    assert ns.neighbour(IPv4Address("10.0.0.1"), "eth0").state == "DELAY"
    assert ns.neighbour(IPv4Address("10.0.0.1"), "lo") is None


@pytest.mark.parametrize(
    "args, field",
    [
        (("10.0.0.1", "02:00:00:00:00:02", "eth9"), "neighbour.dev"),
        (("10.0.0", "02:00:00:00:00:02", "eth0"), "neighbour.ip"),
        (("10.0.0.1", "02:00:00:00:00", "eth0"), "neighbour.mac"),
    ],
)
def test_neighbour_input_errors(args, field):
    ns = Namespace("p")
    ns.add_link("eth0", "veth", "02:00:00:00:00:01")
    with pytest.raises(LabInputError) as excinfo:
        ns.add_neighbour(*args)
    assert excinfo.value.field == field


def test_bridge_fdb_prints_like_bridge_fdb_show():
    # `bridge fdb show br cni0` after pod-a pinged pod-b, without the multicast `self permanent`
    # entries the kernel also lists (33:33:…, 01:00:5e:…); same order, trailing spaces removed.
    ns = node_1()
    ns.fdb = [FdbEntry("0a:58:0a:f4:01:02", "veth5d21d917", "cni0"), FdbEntry("0a:58:0a:f4:01:03", "vethf308993b", "cni0")]
    assert ns.bridge_fdb().splitlines() == [
        "0a:58:0a:f4:01:01 dev cni0 master cni0 permanent",
        "0a:58:0a:f4:01:02 dev veth5d21d917 master cni0",
        "36:5b:e0:a0:96:c1 dev veth5d21d917 master cni0 permanent",
        "0a:58:0a:f4:01:03 dev vethf308993b master cni0",
        "d6:ba:28:4b:fc:3f dev vethf308993b master cni0 permanent",
    ]
    assert ns.ip_json()["fdb"] == [("0a:58:0a:f4:01:02", "veth5d21d917"), ("0a:58:0a:f4:01:03", "vethf308993b")]


# --- source address selection ----------------------------------------------------------------------------


def test_source_for_a_route():
    ns = node_1()
    assert ns.source_for(ns.route_get("10.244.1.3").route) == IPv4Address("10.244.1.1")  # the route's src
    assert ns.source_for(ns.route_get("8.8.8.8").route) == IPv4Address("192.168.56.10")  # eth0's address
    # a device without an address (a veth on the node): the kernel picks another global address
    veth_route = ns.add_route("10.0.97.30", dev="veth5d21d917")
    assert ns.source_for(veth_route) == IPv4Address("192.168.56.10")



# --- vxlan devices, their FDB, onlink and blackhole routes (checked on Linux 6.18, iproute2 6.1) -----


def vtep_node() -> Namespace:
    """node-1 with a flannel-style VTEP: `ip link add flannel.1 type vxlan id 1 local 192.168.56.10
    dev eth0 dstport 8472 nolearning`, its /32, one onlink route, one permanent neighbour, one FDB entry."""
    ns = Namespace("node-1", role="node", forwarding=True)
    ns.add_link("eth0", "ether", "02:00:00:00:01:01")
    ns.add_address("eth0", "192.168.56.10/24")
    ns.add_vxlan("flannel.1", vni=1, dstport=8472, mac="0e:00:00:00:01:00", local="192.168.56.10", dev="eth0",
                 learning=False, mtu=1450)
    ns.add_address("flannel.1", "10.244.1.0/32")
    ns.add_route("10.244.2.0/24", via="10.244.2.0", dev="flannel.1", onlink=True)
    ns.add_neighbour("10.244.2.0", "0e:00:00:00:02:00", "flannel.1")
    ns.add_fdb("0e:00:00:00:02:00", "flannel.1", dst="192.168.56.11")
    return ns


def test_vxlan_device_in_ip_d_link_and_ip_addr():
    ns = vtep_node()
    lines = ns.ip_link_details().splitlines()
    assert lines[4:7] == [
        "3: flannel.1: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1450 qdisc noqueue state UNKNOWN mode DEFAULT group default qlen 1000",
        "    link/ether 0e:00:00:00:01:00 brd ff:ff:ff:ff:ff:ff",
        ("    vxlan id 1 local 192.168.56.10 dev eth0 srcport 0 0 dstport 8472 nolearning ttl auto ageing 300 udpcsum"
        " noudp6zerocsumtx noudp6zerocsumrx"),
    ]
    addr = ns.ip_addr().splitlines()
    assert "3: flannel.1: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1450 qdisc noqueue state UNKNOWN group default qlen 1000" in addr
    assert "    inet 10.244.1.0/32 scope global flannel.1" in addr


def test_vxlan_tables_print_like_the_kernel():
    ns = vtep_node()
    assert ns.ip_route() == (
        "10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink\n"
        "192.168.56.0/24 dev eth0 proto kernel scope link src 192.168.56.10"
    )
    assert ns.ip_neigh() == "10.244.2.0 dev flannel.1 lladdr 0e:00:00:00:02:00 PERMANENT"
    assert ns.bridge_fdb() == "0e:00:00:00:02:00 dev flannel.1 dst 192.168.56.11 self permanent"


def test_external_and_learning_vxlan_kind_lines():
    ns = Namespace("n")
    ns.add_link("eth0", "ether", "02:00:00:00:01:01")
    ns.add_vxlan("cilium_vxlan", vni=0, dstport=8472, mac="02:00:00:00:01:02", learning=False, external=True)
    ns.add_vxlan("vxlan-6784", vni=42, dstport=6784, mac="02:00:00:00:01:03")
    assert ns.links["cilium_vxlan"].vxlan.details() == (
        "vxlan external id 0 srcport 0 0 dstport 8472 nolearning ttl auto ageing 300 udpcsum noudp6zerocsumtx noudp6zerocsumrx")
    assert ns.links["vxlan-6784"].vxlan.details() == (
        "vxlan id 42 srcport 0 0 dstport 6784 ttl auto ageing 300 udpcsum noudp6zerocsumtx noudp6zerocsumrx")


def test_a_gateway_off_the_link_needs_onlink():
    ns = vtep_node()
    with pytest.raises(LabInputError) as excinfo:
        ns.add_route("10.244.3.0/24", via="192.168.57.10", dev="eth0")
    assert excinfo.value.field == "route.via" and "Nexthop has invalid gateway" in excinfo.value.allowed
    ns.add_route("10.244.3.0/24", via="192.168.57.10", dev="eth0", onlink=True)
    with pytest.raises(LabInputError) as excinfo:
        ns.add_route("10.244.4.0/24", dev="eth0", onlink=True)
    assert excinfo.value.field == "route.onlink"


def test_blackhole_route_and_bad_route_type():
    ns = vtep_node()
    ns.add_route("10.244.1.0/26", kind="blackhole", proto="bird")
    assert ns.ip_route().splitlines()[0] == "blackhole 10.244.1.0/26 proto bird"
    assert ns.route_get("10.244.1.9").route.kind == "blackhole"
    with pytest.raises(LabInputError) as excinfo:
        ns.add_route("10.244.9.0/24", dev="eth0", kind="prohibit")
    assert excinfo.value.field == "route.type"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"vni": 2**24}, "vxlan.vni"),
        ({"vni": -1}, "vxlan.vni"),
        ({"dstport": 0}, "vxlan.dstport"),
        ({"dev": "eth9"}, "vxlan.dev"),
        ({"local": "192.168.56"}, "vxlan.local"),
    ],
)
def test_add_vxlan_bad_input(kwargs, field):
    ns = Namespace("n")
    ns.add_link("eth0", "ether", "02:00:00:00:01:01")
    args = {"name": "vx0", "vni": 1, "dstport": 4789, "mac": "02:00:00:00:01:02", **kwargs}
    with pytest.raises(LabInputError) as excinfo:
        ns.add_vxlan(**args)
    assert excinfo.value.field == field
    assert "vx0" not in ns.links


def test_one_vteps_entries_with_and_without_the_device_newest_mac_first():
    # Linux 6.18, iproute2 6.1: `bridge fdb show dev flannel.1` and `ip neigh show dev flannel.1` leave the
    # device out of each line; a MAC added later is listed first.
    ns = vtep_node()
    ns.add_fdb("0e:00:00:00:03:00", "flannel.1", dst="192.168.57.10")
    ns.add_neighbour("10.244.3.0", "0e:00:00:00:03:00", "flannel.1")
    assert ns.vxlan_fdb_show("flannel.1").splitlines() == [
        "0e:00:00:00:03:00 dst 192.168.57.10 self permanent",
        "0e:00:00:00:02:00 dst 192.168.56.11 self permanent",
    ]
    assert ns.bridge_fdb().splitlines()[0] == "0e:00:00:00:03:00 dev flannel.1 dst 192.168.57.10 self permanent"
    assert ns.ip_neigh(dev="flannel.1").splitlines() == [
        "10.244.2.0 lladdr 0e:00:00:00:02:00 PERMANENT",
        "10.244.3.0 lladdr 0e:00:00:00:03:00 PERMANENT",
    ]
    assert [e.dst for e in ns.vxlan_lookup("flannel.1", "0e:00:00:00:03:00")] == [IPv4Address("192.168.57.10")]
    assert ns.vxlan_lookup("flannel.1", "ff:ff:ff:ff:ff:ff") == []  # no default entry: dropped
    assert ns.vxlan_learn("flannel.1", "0e:00:00:00:04:00", "192.168.56.12") == "off"  # nolearning
    assert len(ns.vxlan_fdb("flannel.1")) == 2
    with pytest.raises(LabInputError) as excinfo:
        ns.vxlan_learn("eth0", "0e:00:00:00:04:00", "192.168.56.12")
    assert excinfo.value.field == "dev"
    with pytest.raises(LabInputError) as excinfo:
        ns.add_fdb("0e:00:00:00:03:00", "flannel.1", dst="192.168.57.11", append=False)
    assert excinfo.value.field == "fdb.mac" and "File exists" in excinfo.value.allowed


def test_add_fdb_needs_a_vxlan_device():
    ns = vtep_node()
    with pytest.raises(LabInputError) as excinfo:
        ns.add_fdb("0e:00:00:00:03:00", "eth0", dst="192.168.57.10")
    assert excinfo.value.field == "fdb.dev"


def test_proxy_arp_and_ipip_flags():
    ns = Namespace("n")
    tunl = ns.add_link("tunl0", "ipip", "00:00:00:00:00:00", mtu=1480)
    assert (tunl.flags(), tunl.state(), tunl.link_line("n")) == ("NOARP,UP,LOWER_UP", "UNKNOWN", "link/ipip 0.0.0.0 brd 0.0.0.0")
    assert ns.add_link("cali0", "veth", "ee:ee:ee:ee:ee:ee").proxy_arp is False


def test_namespace_from_ip_j_d_addr_keeps_vxlan_settings_and_onlink():
    addrs = [
        {"ifindex": 1, "ifname": "lo", "link_type": "loopback", "mtu": 65536, "address": "00:00:00:00:00:00"},
        {"ifindex": 3, "ifname": "flannel.1", "mtu": 1450, "address": "0e:00:00:00:01:00",
         "linkinfo": {"info_kind": "vxlan", "info_data": {"id": 1, "local": "192.168.56.10", "link": "eth0",
                                                           "port": 8472, "learning": False}},
         "addr_info": [{"family": "inet", "local": "10.244.1.0", "prefixlen": 32}]},
    ]
    routes = [{"dst": "10.244.2.0/24", "gateway": "10.244.2.0", "dev": "flannel.1", "flags": ["onlink"]}]
    ns = namespace_from_ip_json("node-1", addrs, routes)
    assert ns.links["flannel.1"].vxlan.details().startswith("vxlan id 1 local 192.168.56.10 dev eth0 srcport 0 0 dstport 8472 nolearning")
    assert ns.ip_route() == "10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink"
