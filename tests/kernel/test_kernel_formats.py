"""Kernel tier: the text the models print is the text iproute2 prints for the same configuration.

The unit tests (tests/unit/test_host.py, test_routing.py, test_pod_network.py, test_addressing.py)
compare the models with outputs captured once from a real kernel. This file re-does every such
capture live: it builds the models' namespaces with plain `ip` commands (same names, MACs and
addresses), reads `ip addr`, `ip route`, `ip rule`, `ip neigh`, `bridge fdb`, `arp -an` and the
`ip -j` forms, and compares them with the models' views, text against text.

Normalised, and only this: the trailing space iproute2 leaves on some lines, ` tentative` on an
IPv6 address still in DAD (DAD is turned off in these namespaces anyway), and the scratch
namespaces' real names, which stand where the model has its own names (`link-netns …`).

Needs root and network namespaces (tests/conftest.py: skipped with the reason elsewhere, failed
under CI=true). Everything happens inside namespaces named `k8s101ut-<pid>-<hex>-…`, created
here and deleted at the end, on error too; the root namespace is only read, never changed.
"""

from __future__ import annotations

import json
import os
import random
import re
import secrets
import subprocess
from ipaddress import IPv4Address, IPv4Network

import pytest

from labsupport.addressing import check_ifname, ipv6_link_local
from labsupport.errors import LabInputError
from labsupport.host import Namespace
from labsupport.pod_network import Node, aws_vpc_cni_node, build_node, walk
from labsupport.routing import Route, RoutingTable, Rule, default_rules, resolve

pytestmark = pytest.mark.usefixtures("requires_root_netns")

ROOT_PREFIX = "k8s101ut"


def _sweep_stale() -> None:
    """Delete namespaces a killed earlier run of this file left (its pid is gone)."""
    listing = subprocess.run(["ip", "netns", "list"], check=False, capture_output=True, text=True).stdout
    for line in listing.splitlines():
        name = line.split()[0] if line.split() else ""
        match = re.match(rf"^{ROOT_PREFIX}-(\d+)-[0-9a-f]{{4}}-", name)
        if match and not os.path.exists(f"/proc/{match.group(1)}"):
            subprocess.run(["ip", "netns", "delete", name], check=False, capture_output=True)


class Lab:
    """Scratch namespaces with a prefix unique to this run; everything created is deleted by close()."""

    def __init__(self) -> None:
        self.prefix = f"{ROOT_PREFIX}-{os.getpid()}-{secrets.token_hex(2)}"
        self.made: list[str] = []
        self.model_name: dict[str, str] = {}

    def netns(self, name: str) -> str:
        real = f"{self.prefix}-{name}"
        subprocess.run(["ip", "netns", "add", real], check=True, capture_output=True)
        self.made.append(real)
        self.model_name[real] = name
        for key in ("all", "default"):  # no DAD: link-local addresses are final at once
            self.run(real, "sysctl", "-qw", f"net.ipv6.conf.{key}.accept_dad=0")
        self.ip(real, "link", "set", "lo", "up")
        return real

    def run(self, ns: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        assert ns in self.made, f"refusing to touch a namespace this lab did not create: {ns}"
        return subprocess.run(["ip", "netns", "exec", ns, *cmd], check=check, capture_output=True, text=True)

    def ip(self, ns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        assert ns in self.made, f"refusing to touch a namespace this lab did not create: {ns}"
        return subprocess.run(["ip", "-n", ns, *args], check=check, capture_output=True, text=True)

    def text(self, ns: str, *args: str, tool: str = "ip") -> str:
        """What `ip -n NS ARGS` (or bridge) prints, normalised as the module docstring says."""
        assert ns in self.made
        out = subprocess.run([tool, "-n", ns, *args], check=True, capture_output=True, text=True).stdout
        lines = [line.rstrip().replace(" tentative", "") for line in out.splitlines()]
        text = "\n".join(line for line in lines if line)
        for real, model in sorted(self.model_name.items(), key=lambda kv: -len(kv[0])):
            text = text.replace(f"link-netns {real}", f"link-netns {model}")
        return text

    def json(self, ns: str, *args: str):
        return json.loads(self.ip(ns, "-j", *args).stdout or "[]")

    def close(self) -> None:
        for real in reversed(self.made):
            subprocess.run(["ip", "netns", "delete", real], check=False, capture_output=True)
        self.made.clear()


def materialise(lab: Lab, node: Node) -> dict[str, str]:
    """Build node's namespaces with `ip`, in the model's order, so ifindexes come out the same.

    A link of kind `ether` (the node's uplink) becomes a veth to a stub namespace, so that it has
    carrier and never reaches the real uplink. Returns model name -> real namespace name.
    """
    real = {name: lab.netns(name) for name in node.namespaces}
    stub = lab.netns(f"{node.name}-uplink")
    host = node.host
    for ns_name, ns in node.namespaces.items():
        if ns.forwarding:
            lab.run(real[ns_name], "sysctl", "-qw", "net.ipv4.ip_forward=1")
    uplinks = 0
    for link in sorted(host.links.values(), key=lambda lk: lk.index):
        if link.kind == "loopback":
            continue
        if link.kind == "ether":
            uplinks += 1
            peer = f"up{uplinks}"
            lab.ip(real[node.name], "link", "add", link.name, "type", "veth", "peer", "name", peer, "netns", stub)
            lab.ip(stub, "link", "set", peer, "up")
        elif link.kind == "bridge":
            lab.ip(real[node.name], "link", "add", link.name, "type", "bridge")
        elif link.kind == "veth":
            pod, pod_dev = link.peer
            lab.ip(real[node.name], "link", "add", link.name, "type", "veth", "peer", "name", pod_dev,
                   "netns", real[pod])
        lab.ip(real[node.name], "link", "set", link.name, "address", link.mac, "mtu", str(link.mtu))
    for ns_name, ns in node.namespaces.items():
        for link in sorted(ns.links.values(), key=lambda lk: lk.index):
            if link.kind == "loopback":
                continue
            if ns_name != node.name:
                lab.ip(real[ns_name], "link", "set", link.name, "address", link.mac, "mtu", str(link.mtu))
            if link.master:
                lab.ip(real[ns_name], "link", "set", link.name, "master", link.master)
            lab.ip(real[ns_name], "link", "set", link.name, "up")
    for ns_name, ns in node.namespaces.items():
        r = real[ns_name]
        for link in ns.links.values():
            for iface in link.addresses if link.kind != "loopback" else []:
                args = ["addr", "add", iface.with_prefixlen]
                if link.broadcast and iface.network.prefixlen < 31:
                    args += ["brd", "+"]
                connected = any(rt.dst == iface.network and rt.dev == link.name and rt.proto == "kernel"
                                for rt in ns.tables["main"].routes)
                if iface.network.prefixlen < 32 and not connected:
                    args.append("noprefixroute")  # the AWS node's eth1: its prefix is routed only in eni-1
                lab.ip(r, *args, "dev", link.name)
        for table in ns.tables.values():
            for route in sorted(table.routes, key=lambda rt: rt.via is not None):
                if route.proto == "kernel":
                    continue
                args = ["route", "add", route.dst_text()]
                if route.via is not None:
                    args += ["via", str(route.via)]
                args += ["dev", route.dev]
                if route.scope and route.via is None:
                    args += ["scope", route.scope]
                if route.metric:
                    args += ["metric", str(route.metric)]
                lab.ip(r, *args, "table", str(table.id))
        for rule in ns.rules:
            if rule in default_rules():
                continue
            lab.ip(r, "rule", "add", *_rule_args(rule, ns), "pref", str(rule.priority))
        for n in ns.neighbours:
            lab.ip(r, "neigh", "replace", str(n.ip), "lladdr", n.mac, "dev", n.dev, "nud", "permanent")
    return real


def _rule_args(rule: Rule, ns: Namespace) -> list[str]:
    return [*rule.selector_args(), "lookup", str(ns.tables[rule.table].id if rule.table in ns.tables else rule.table)]


def numbered_tables(text: str, ns: Namespace) -> str:
    """The model's text with named tables by number: /etc/iproute2/rt_tables here has no `eni-1`,
    and this test does not edit it."""
    for name, table in ns.tables.items():
        if table.name:
            text = re.sub(rf"\blookup {re.escape(name)}\b", f"lookup {table.id}", text)
    return text


def ping(lab: Lab, ns: str, address: str) -> bool:
    return lab.run(ns, "ping", "-c1", "-W2", address, check=False).returncode == 0


def ip4_neigh(lab: Lab, ns: str) -> set[str]:
    return set(lab.text(ns, "-4", "neigh").splitlines())


# --- the bridge node ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bridge(requires_root_netns):
    _sweep_stale()
    node, lab = build_node(pods=3), Lab()
    try:
        real = materialise(lab, node)
        yield node, lab, real
    finally:
        lab.close()


def test_pod_ip_addr_is_the_models(bridge):
    node, lab, real = bridge
    for pod in node.pods:
        assert lab.text(real[pod], "addr") == node.namespace(pod).ip_addr(), pod


def test_node_ip_addr_is_the_models(bridge):
    node, lab, real = bridge
    got = lab.text(real[node.name], "addr")
    # the uplink is a veth to a stub namespace here: its `@ifN` and `link-netns` are this test's doing
    got = re.sub(r"^(\d+: eth0)@if\d+:", r"\1:", got, flags=re.MULTILINE)
    got = re.sub(r" link-netns \S+-uplink$", "", got, flags=re.MULTILINE)
    assert got == node.host.ip_addr()


def test_routes_and_rules_are_the_models(bridge):
    node, lab, real = bridge
    for name, ns in node.namespaces.items():
        assert lab.text(real[name], "route") == ns.ip_route(), name
        assert lab.text(real[name], "route", "show", "table", "local") == ns.ip_route("local"), name
        assert lab.text(real[name], "rule") == ns.ip_rule(), name


def test_ip_j_field_names_and_values_are_the_models(bridge):
    node, lab, real = bridge
    for name, ns in node.namespaces.items():
        assert lab.json(real[name], "route") == ns.tables["main"].to_json(), name
        assert lab.json(real[name], "route", "show", "table", "local") == ns.local_table().to_json(), name
        ids = {n: t.id for n, t in ns.all_tables().items()}
        assert lab.json(real[name], "rule") == [r.to_json(ids) for r in ns.rules], name


def test_a_ping_leaves_the_neighbour_states_and_fdb_the_model_shows(bridge):
    node, lab, real = bridge
    assert all(ip4_neigh(lab, real[n]) == set() for n in node.namespaces), "fresh namespaces"
    model = walk(node, "pod-a", "pod-b").node_after
    assert ping(lab, real["pod-a"], str(node.pod_ip("pod-b")))
    for name in node.namespaces:
        assert ip4_neigh(lab, real[name]) == set(model.namespaces[name].ip_neigh().splitlines()) - {""}, name
    fdb = [line for line in lab.text(real[node.name], "fdb", "show", "br", "cni0", tool="bridge").splitlines()
           if " self " not in line]  # the multicast `self permanent` entries the model leaves out
    permanent = [line for line in fdb if line.endswith(" permanent")]
    assert permanent == [line for line in model.host.bridge_fdb().splitlines() if line.endswith(" permanent")]
    learned = {line for line in fdb if not line.endswith(" permanent")}
    # The real bridge may also have learned MACs from the pods' IPv6 start-up chatter (router and
    # neighbour solicitations): what the model learned from the ping must be there, on the right ports.
    assert set(model.host.bridge_fdb().splitlines()) - set(permanent) <= learned
    pod_port = {node.namespace(p).links["eth0"].mac: node.namespace(p).links["eth0"].peer[1] for p in node.pods}
    for line in learned:
        mac, _, port = line.split()[:3]
        assert pod_port[mac] == port, line


# --- the notes' AWS node -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def aws(requires_root_netns):
    node, lab = aws_vpc_cni_node(), Lab()
    try:
        real = materialise(lab, node)
        yield node, lab, real
    finally:
        lab.close()


def test_aws_node_tables_rules_and_local_table(aws):
    node, lab, real = aws
    host, r = node.host, real[node.name]
    assert lab.text(r, "route") == host.ip_route()
    assert lab.text(r, "route", "show", "table", "2") == host.ip_route("eni-1")
    assert lab.text(r, "rule") == numbered_tables(host.ip_rule(), host)
    assert lab.text(r, "route", "show", "table", "local") == host.ip_route("local")


def test_aws_pod_addr_routes_and_static_arp(aws, requires_tools):
    node, lab, real = aws
    pod, r = node.namespace("pod-a"), real["pod-a"]
    # The model numbers the pod's eth0 3, as the notes' pod does; a namespace holding only lo gives 2.
    assert lab.text(r, "addr") == pod.ip_addr().replace("\n3: eth0@", "\n2: eth0@")
    assert lab.text(r, "route") == pod.ip_route()
    assert lab.text(r, "neigh") == pod.ip_neigh()
    requires_tools(("arp", "net-tools"))
    assert lab.run(r, "arp", "-an").stdout.strip() == pod.arp_a()


@pytest.mark.parametrize(
    "dst, src, iif, dev, table",
    [
        ("10.0.50.7", "10.0.97.30", "aws8db0408c9a8", "eth1", "eni-1"),
        ("8.8.8.8", "10.0.97.30", "aws8db0408c9a8", "eth0", "main"),
        ("10.0.97.159", "10.0.97.30", "aws8db0408c9a8", "awsbcd978401eb", "main"),
        ("10.0.50.7", "10.0.97.159", "awsbcd978401eb", "eth0", "main"),
    ],
)
def test_aws_route_get_agrees(aws, dst, src, iif, dev, table):
    node, lab, real = aws
    got = lab.json(real[node.name], "route", "get", dst, "from", src, "iif", iif)[0]
    assert got["dev"] == dev and got.get("table", "main") == str(node.host.tables[table].id if table != "main"
                                                                   else "main")
    decision = node.host.route_get(dst, src=src, iif=iif)
    assert (decision.route.dev, decision.table.label) == (dev, table)


def test_aws_ping_leaves_the_neighbour_states_the_model_shows(aws):
    node, lab, real = aws
    model = walk(node, "pod-a", "pod-b").node_after
    assert ping(lab, real["pod-a"], "10.0.97.159")
    for name in node.namespaces:
        assert ip4_neigh(lab, real[name]) == set(model.namespaces[name].ip_neigh().splitlines()) - {""}, name


# --- single formats, in one scratch namespace -----------------------------------------------------------------


@pytest.fixture(scope="module")
def scratch(requires_root_netns):
    """A namespace with a veth pair v0/v1 (both ends here) and the matching model."""
    lab = Lab()
    try:
        r = lab.netns("scratch")
        lab.ip(r, "link", "add", "v0", "type", "veth", "peer", "name", "v1")
        lab.ip(r, "link", "set", "v0", "address", "02:00:00:00:00:01", "up")
        lab.ip(r, "link", "set", "v1", "address", "02:00:00:00:00:02", "up")
        yield lab, r
    finally:
        lab.close()


def model_v0() -> Namespace:
    ns = Namespace("scratch")
    ns.add_link("v0", "veth", "02:00:00:00:00:01")
    return ns


def inet_lines(text: str, dev: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("    inet ") and line.endswith(f" {dev}")]


def test_address_forms_32_31_no_brd_and_secondary(scratch):
    lab, r = scratch
    model = model_v0()
    for address, brd in (("10.71.0.1/32", True), ("10.72.0.1/31", True), ("10.70.0.1/24", False),
                         ("10.70.0.50/24", False), ("10.70.0.51/24", True)):
        lab.ip(r, "addr", "add", address, *(["brd", "+"] if brd else []), "dev", "v0")
        model.links["v0"].broadcast = brd
        model.add_address("v0", address, broadcast=brd)
        got = [line for line in inet_lines(lab.text(r, "addr", "show", "v0"), "v0") if address.split("/")[0] in line]
        want = [line for line in inet_lines(model.ip_addr(), "v0") if address.split("/")[0] in line]
        assert got == want, address
    local = [line for line in lab.text(r, "route", "show", "table", "local").splitlines() if " v0 " in line]
    assert local == [line for line in model.ip_route("local").splitlines() if " v0 " in line]
    main = [line for line in lab.text(r, "route").splitlines() if " v0 " in line]
    assert main == [line for line in model.ip_route().splitlines() if " v0 " in line]
    for address in ("10.71.0.1/32", "10.72.0.1/31", "10.70.0.51/24", "10.70.0.50/24", "10.70.0.1/24"):
        lab.ip(r, "addr", "del", address, "dev", "v0")


def test_metric_order_metric_zero_and_file_exists(scratch):
    lab, r = scratch
    model = model_v0()
    for metric in ("100", "50"):
        lab.ip(r, "route", "add", "10.60.0.0/16", "dev", "v0", "metric", metric)
        model.add_route("10.60.0.0/16", dev="v0", metric=int(metric))
    lab.ip(r, "route", "add", "10.61.0.0/16", "dev", "v0")
    model.add_route("10.61.0.0/16", dev="v0")
    lab.ip(r, "route", "add", "10.62.0.0/16", "dev", "v0", "metric", "0")
    model.add_route("10.62.0.0/16", dev="v0", metric=0)
    assert lab.text(r, "route") == model.ip_route()
    assert lab.json(r, "route") == model.tables["main"].to_json()
    again = lab.ip(r, "route", "add", "10.61.0.0/16", "dev", "v0", "metric", "0", check=False)
    assert again.returncode != 0 and "File exists" in again.stderr
    with pytest.raises(LabInputError):
        model.add_route("10.61.0.0/16", dev="v0", metric=0)
    assert lab.json(r, "route", "get", "10.60.1.1")[0]["dev"] == "v0"
    assert model.route_get("10.60.1.1").route.metric == 50
    lab.ip(r, "route", "flush", "dev", "v0")


def test_gateway_errors_are_the_kernels(scratch):
    lab, r = scratch
    try:
        _gateway_errors(lab, r)
    finally:
        lab.ip(r, "addr", "flush", "dev", "v0", check=False)
        lab.ip(r, "route", "flush", "dev", "v0", check=False)


def _gateway_errors(lab: Lab, r: str) -> None:
    model = model_v0()
    lab.ip(r, "addr", "add", "10.244.1.2/24", "dev", "v0")
    model.add_address("v0", "10.244.1.2/24")
    lab.ip(r, "route", "add", "10.0.0.1", "dev", "v0", "scope", "global")
    model.add_route("10.0.0.1", dev="v0", scope="global")
    for via in ("10.9.9.9", "10.0.0.1"):  # off-link; behind a scope-global route only
        result = lab.ip(r, "route", "add", "10.50.0.0/16", "via", via, "dev", "v0", check=False)
        assert result.returncode != 0 and "Nexthop has invalid gateway" in result.stderr
        with pytest.raises(LabInputError, match="Nexthop has invalid gateway"):
            model.add_route("10.50.0.0/16", via=via, dev="v0")
    host_bits = lab.ip(r, "route", "add", "10.244.1.5/24", "dev", "v0", check=False)
    assert host_bits.returncode != 0 and "Invalid prefix for given prefix length" in host_bits.stderr
    with pytest.raises(LabInputError, match="host bits must be zero"):
        model.add_route("10.244.1.5/24", dev="v0")


def test_mtu_bounds_and_duplicate_names_are_the_kernels(scratch):
    lab, r = scratch
    for mtu, ok in (("67", False), ("68", True), ("65535", True), ("65536", False)):
        result = lab.ip(r, "link", "set", "v0", "mtu", mtu, check=False)
        assert (result.returncode == 0) == ok, (mtu, result.stderr)
        if ok:
            assert Namespace("m").add_link("x0", "veth", "02:00:00:00:00:09", mtu=int(mtu)).mtu == int(mtu)
        else:
            with pytest.raises(LabInputError):
                Namespace("m").add_link("x0", "veth", "02:00:00:00:00:09", mtu=int(mtu))
    lab.ip(r, "link", "set", "v0", "mtu", "1500")
    for name, kind in (("v0", "veth"), ("lo", "bridge")):
        result = lab.ip(r, "link", "add", name, "type", kind, check=False)
        assert result.returncode != 0 and "File exists" in result.stderr
        with pytest.raises(LabInputError):
            model_v0().add_link(name, "bridge", "02:00:00:00:00:09")


@pytest.mark.parametrize("name", ["x" * 15, "x" * 16, "é" * 7, "é" * 9, "a:b", "a b", "."])
def test_interface_names_the_kernel_takes_are_the_ones_check_ifname_takes(scratch, name):
    lab, r = scratch
    result = lab.ip(r, "link", "add", name, "type", "bridge", check=False)
    try:
        check_ifname(name, "link.name")
        accepted = True
    except LabInputError:
        accepted = False
    assert (result.returncode == 0) == accepted, (name, result.stderr)
    if result.returncode == 0:
        lab.ip(r, "link", "del", name)


def test_rule_text_and_json_for_not_to_from_and_iif(scratch):
    lab, r = scratch
    model = Namespace("scratch")
    model.add_table("t2", 2)
    model.tables["t2"].name = None  # unnamed here, printed by number like the kernel
    rules = [(512, {"dst": "10.0.97.30"}), (1025, {"dst": "10.0.0.0/16", "invert": True}),
             (1536, {"src": "10.0.97.30"}), (1600, {"src": "10.1.0.0/16", "iif": "v0"})]
    for priority, kwargs in rules:
        table = "main" if priority < 1100 else "t2"
        rule = model.add_rule(priority, table, **kwargs)
        lab.ip(r, "rule", "add", *_rule_args(rule, model), "pref", str(priority))
    want = numbered_tables(model.ip_rule(), model).replace("lookup t2", "lookup 2")
    assert lab.text(r, "rule") == want
    ids = {n: t.id for n, t in model.all_tables().items()}
    assert lab.json(r, "rule") == [rule.to_json(ids) for rule in model.rules]
    for priority, _ in rules:
        lab.ip(r, "rule", "del", "pref", str(priority))


def test_a_table_without_a_match_falls_through(scratch):
    lab, r = scratch
    lab.ip(r, "addr", "add", "10.244.1.2/24", "dev", "v0")
    lab.ip(r, "route", "add", "default", "via", "10.244.1.1", "dev", "v0")
    lab.ip(r, "route", "add", "10.80.0.0/16", "via", "10.244.1.1", "dev", "v0", "table", "100")
    lab.ip(r, "rule", "add", "lookup", "100", "pref", "100")
    try:
        assert lab.json(r, "route", "get", "10.80.1.1")[0].get("table") == "100"
        assert "table" not in lab.json(r, "route", "get", "8.8.8.8")[0]  # main: fell through rule 100
        t100, main = RoutingTable(100), RoutingTable(254)
        t100.add(Route(IPv4Network("10.80.0.0/16"), "v0", via=IPv4Address("10.244.1.1")))
        main.add(Route(IPv4Network("0.0.0.0/0"), "v0", via=IPv4Address("10.244.1.1")))
        tables = {"local": RoutingTable(255), "main": main, "100": t100, "default": RoutingTable(253)}
        rules = default_rules() + [Rule(100, "100")]
        assert resolve(rules, tables, IPv4Address("10.80.1.1")).table.label == "100"
        assert resolve(rules, tables, IPv4Address("8.8.8.8")).table.label == "main"
    finally:
        lab.ip(r, "rule", "del", "pref", "100")
        lab.ip(r, "route", "flush", "table", "100")
        lab.ip(r, "addr", "del", "10.244.1.2/24", "dev", "v0")


def test_network_unreachable_and_127_is_local(requires_root_netns):
    lab = Lab()
    try:
        r = lab.netns("empty")
        result = lab.ip(r, "route", "get", "8.8.8.8", check=False)
        assert result.returncode != 0 and "Network is unreachable" in result.stderr
        with pytest.raises(LabInputError, match="Network is unreachable"):
            Namespace("empty").route_get("8.8.8.8")
        assert lab.text(r, "rule") == Namespace("empty").ip_rule()
        assert lab.text(r, "route", "show", "table", "local") == Namespace("empty").ip_route("local")
        got = lab.json(r, "route", "get", "127.5.5.5")[0]
        assert (got["type"], got["dev"]) == ("local", "lo")
        assert Namespace("empty").route_get("127.5.5.5").table.label == "local"
        # With only the default rules the kernel keeps local and main merged in one trie, so
        # `ip route get` names no table; from the first rule added on (fib_unmerge) it says `local`.
        lab.ip(r, "rule", "add", "lookup", "main", "pref", "100")
        assert lab.json(r, "route", "get", "127.5.5.5")[0]["table"] == "local"
    finally:
        lab.close()


def test_eui64_link_local_for_random_macs(scratch):
    lab, r = scratch
    rng = random.Random(101)
    for _ in range(6):
        octets = [rng.randrange(256) for _ in range(6)]
        octets[0] &= 0xFE  # a unicast MAC: the kernel refuses a multicast one
        mac = ":".join(f"{b:02x}" for b in octets)
        lab.ip(r, "link", "set", "v0", "down")
        lab.ip(r, "link", "set", "v0", "address", mac, "up")
        infos = [a for entry in lab.json(r, "-6", "addr", "show", "dev", "v0", "scope", "link")
                 for a in entry.get("addr_info", [])]
        assert [f"{a['local']}/{a['prefixlen']}" for a in infos] == [ipv6_link_local(mac).with_prefixlen], mac
    lab.ip(r, "link", "set", "v0", "down")
    lab.ip(r, "link", "set", "v0", "address", "02:00:00:00:00:01", "up")
