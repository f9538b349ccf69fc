"""Kernel tier for the pod-network chapter: the real kernel agrees with the models.

Every test here needs root and network namespaces: tests/conftest.py marks everything under
tests/kernel with `requires_root_netns`, which skips with the reason elsewhere and fails under CI=true.

Each scenario builds its twin once (module-scoped fixture), runs the traffic, keeps what the
kernel said, and tears the twin down; the tests then compare that record with the model.
"""

from __future__ import annotations

import copy
import signal
import subprocess
import sys
from dataclasses import dataclass, field

import pytest
from twin_safety import left_behind, root_snapshot

from labsupport import kernel
from labsupport.kernel import (
    Twin,
    TwinError,
    UdpResult,
    compare,
    compare_frames,
    compare_route_get,
    model_frames_on,
    run_twin,
)
from labsupport.pod_network import Node, aws_vpc_cni_node, build_node, walk

pytestmark = pytest.mark.usefixtures("requires_root_netns")

BRIDGE_SCENARIOS = [(2, "cni0"), (3, "cni0"), (2, "docker0"), (3, "docker0")]


def tables_of(node: Node, name: str) -> list[str]:
    """The model tables `ip route show table …` is compared on: every table with routes, and local."""
    ns = node.namespaces[name]
    return [t for t, table in ns.tables.items() if table.routes] + ["local"]


def node_ip(node: Node) -> str:
    return str(node.host.links["eth0"].addresses[0].ip)


@dataclass
class Record:
    """What the kernel said during one scenario."""

    node: Node
    before: dict = field(default_factory=dict)
    route_text: dict = field(default_factory=dict)
    frames: list = field(default_factory=list)
    pinged: dict = field(default_factory=dict)
    after: dict = field(default_factory=dict)
    udp: UdpResult | None = None
    udp_frames: list = field(default_factory=list)
    route_get: dict = field(default_factory=dict)


# --- the bridge node: build_node(pods, bridge) ---------------------------------------------------------


@pytest.fixture(scope="module", params=BRIDGE_SCENARIOS, ids=lambda p: f"{p[0]}pods-{p[1]}")
def bridge_run(request, requires_root_netns) -> Record:
    pods, bridge = request.param
    node = build_node(pods, bridge)
    record = Record(node)
    with Twin(node) as twin:
        record.before = {name: twin.read(name) for name in node.namespaces}
        record.route_text = {
            (name, table): twin.route_text(name, table)
            for name in node.namespaces
            for table in tables_of(node, name)
        }
        pod_b_ip = str(node.pod_ip("pod-b"))
        record.frames = twin.capture(
            "pod-a", "eth0", lambda: record.pinged.__setitem__("pod-b", twin.ping("pod-a", pod_b_ip))
        )
        record.pinged["node"] = twin.ping("pod-a", node_ip(node))
        record.after = {name: twin.read(name) for name in node.namespaces}
        record.udp_frames = twin.capture(
            "pod-a", "eth0", lambda: setattr(record, "udp", twin.udp("pod-a", "pod-b", pod_b_ip, 8080))
        )
    return record


def test_read_equals_model_before_traffic(bridge_run: Record) -> None:
    node = bridge_run.node
    for name, ns in node.namespaces.items():
        real = bridge_run.before[name]
        assert compare(ns, real) == [], name
        assert real == ns.ip_json(), name


def test_ip_route_text_equals_model(bridge_run: Record) -> None:
    # iproute2 6.1 ends every line with a space; Twin.route_text strips it, as the model prints.
    node = bridge_run.node
    for (name, table), text in bridge_run.route_text.items():
        assert text == node.namespaces[name].ip_route(table), f"{name} table {table}"


def test_pings_reply_as_in_model(bridge_run: Record) -> None:
    node = bridge_run.node
    assert bridge_run.pinged == {"pod-b": True, "node": True}
    assert walk(node, "pod-a", "pod-b").replied and walk(node, "pod-a", node.name).replied


def test_learned_neighbours_and_fdb_after_pings(bridge_run: Record) -> None:
    # Neighbours are compared as (ip, dev, mac) and FDB entries as (mac, port) sets, never their NUD
    # states: REACHABLE / STALE / DELAY move on with time on a real kernel (DELAY → probe after 5 s).
    node = bridge_run.node
    after = walk(walk(node, "pod-a", "pod-b").node_after, "pod-a", node.name).node_after
    for name, ns in after.namespaces.items():
        want, real = ns.ip_json(), bridge_run.after[name]
        assert set(real["neigh"]) == set(want["neigh"]), name
        assert set(real["fdb"]) == set(want["fdb"]), name
        assert compare(ns, real) == [], name  # addresses, routes and rules did not move either
    # what the exchange taught, spelled out for the two pods and the node
    pod_a, pod_b = str(node.pod_ip("pod-a")), str(node.pod_ip("pod-b"))
    assert (pod_b, "eth0", node.namespaces["pod-b"].links["eth0"].mac) in bridge_run.after["pod-a"]["neigh"]
    assert any(ip == pod_a for ip, _, _ in bridge_run.after[node.name]["neigh"])
    assert {mac for mac, _ in bridge_run.after[node.name]["fdb"]} == {
        node.namespaces["pod-a"].links["eth0"].mac,
        node.namespaces["pod-b"].links["eth0"].mac,
    }


def test_udp_pod_to_pod_keeps_the_pods_source(bridge_run: Record) -> None:
    # Requirement 3: the address a pod sees itself as is the address others see it as.
    node = bridge_run.node
    assert bridge_run.udp.arrived
    assert bridge_run.udp.source == str(node.pod_ip("pod-a"))
    assert bridge_run.udp.payload == b"hello"
    model = walk(node, "pod-a", "pod-b", proto="udp", port=8080)
    assert model.delivered
    arrived = [h.frame for h in model.hops if h.namespace == "pod-b" and h.event.startswith("receives")]
    assert arrived and all(f["IP"].src == bridge_run.udp.source for f in arrived if f.haslayer("IP"))
    # the datagram on the wire, field by field (pod-a already knows pod-b's MAC from the ping: no ARP)
    learned = walk(walk(node, "pod-a", "pod-b").node_after, "pod-a", node.name).node_after
    model_frames = model_frames_on(walk(learned, "pod-a", "pod-b", proto="udp", port=8080), "pod-a", "eth0")
    assert len(bridge_run.udp_frames) == 1
    assert compare_frames(model_frames, bridge_run.udp_frames) == []


def test_frames_on_pod_a_eth0_equal_the_models(bridge_run: Record) -> None:
    node = bridge_run.node
    model = model_frames_on(walk(node, "pod-a", "pod-b"), "pod-a", "eth0")
    kinds = [
        ("ARP", f["ARP"].op)
        if f.haslayer("ARP")
        else ("ICMP", f["ICMP"].type)
        if f.haslayer("ICMP")
        else f.summary()
        for f in bridge_run.frames
    ]
    # who-has, is-at, echo request, echo reply
    assert kinds == [("ARP", 1), ("ARP", 2), ("ICMP", 8), ("ICMP", 0)], [
        f.summary() for f in bridge_run.frames
    ]
    assert compare_frames(model, bridge_run.frames) == []


def test_compare_reports_a_wrong_model(bridge_run: Record) -> None:
    # The comparison is not vacuous: a model that differs from the kernel is reported, field by field.
    node = copy.deepcopy(bridge_run.node)
    pod = node.namespaces["pod-a"]
    pod.links["eth0"].mac = "02:00:00:00:00:01"
    gateway = next(r.via for r in pod.tables["main"].routes if r.via is not None)
    pod.add_route("10.99.0.0/16", via=str(gateway), dev="eth0")
    diffs = compare(pod, bridge_run.before["pod-a"])
    assert any("addr eth0 mac" in d for d in diffs)
    assert any("only in model: 10.99.0.0/16" in d for d in diffs)


# --- the AWS VPC CNI node: policy routing -----------------------------------------------------------------

# (destination, from, iif) as the node's kernel sees forwarded packets; and two from the node itself
ROUTE_GET_CASES = [
    ("10.0.97.159", "10.0.97.30", "aws8db0408c9a8"),  # pod to pod: rule 512, main, the pod's veth
    ("8.8.8.8", "10.0.97.30", "aws8db0408c9a8"),  # out of the VPC: rule 1025, main, eth0
    ("10.0.50.5", "10.0.97.30", "aws8db0408c9a8"),  # inside the VPC from a secondary-ENI pod: 1536, eni-1
    ("10.0.100.7", "10.0.97.30", "aws8db0408c9a8"),  # same subnet as the ENIs: still eni-1, via the gateway
    ("10.0.50.5", "10.0.97.159", "awsbcd978401eb"),  # a primary-ENI pod: main, eth0
    ("10.0.97.30", "10.0.50.5", "eth0"),  # from the VPC to a pod: rule 512
    ("10.0.97.30", None, None),
    ("10.0.100.7", None, None),
    ("10.0.108.20", None, None),  # the secondary ENI's own address: local table, delivered over lo
    ("10.0.104.183", "10.0.97.30", "aws8db0408c9a8"),  # a pod to the node: local
    ("10.0.127.255", None, None),  # the ENIs' subnet broadcast: local table, broadcast
]


@pytest.fixture(scope="module")
def aws_run(requires_root_netns) -> Record:
    node = aws_vpc_cni_node()
    record = Record(node)
    with Twin(node) as twin:
        record.before = {name: twin.read(name) for name in node.namespaces}
        record.route_text = {
            (name, table): twin.route_text(name, table)
            for name in node.namespaces
            for table in tables_of(node, name)
        }
        record.route_get = {case: twin.route_get(node.name, *case) for case in ROUTE_GET_CASES}
        record.frames = twin.capture(
            "pod-a",
            "eth0",
            lambda: record.pinged.__setitem__("pod-b", twin.ping("pod-a", str(node.pod_ip("pod-b")))),
        )
        record.after = {name: twin.read(name) for name in node.namespaces}
    return record


def test_aws_read_equals_model(aws_run: Record) -> None:
    for name, ns in aws_run.node.namespaces.items():
        assert compare(ns, aws_run.before[name]) == [], name
        assert aws_run.before[name] == ns.ip_json(), name
    # the pods' permanent ARP entry for 169.254.1.1 is the host veth's MAC
    host = aws_run.node.host
    assert ("169.254.1.1", "eth0", host.links["aws8db0408c9a8"].mac) in aws_run.before["pod-a"]["neigh"]


def test_aws_ip_route_and_rule_text(aws_run: Record) -> None:
    for (name, table), text in aws_run.route_text.items():
        assert text == aws_run.node.namespaces[name].ip_route(table), f"{name} table {table}"


def test_aws_route_get_decisions_agree(aws_run: Record) -> None:
    host = aws_run.node.host
    for case, real in aws_run.route_get.items():
        decision = host.route_get(*case)
        assert compare_route_get(decision, real) == [], f"ip route get {case}: {decision.explain()} vs {real}"
        # iproute2 prints "table" only for a table other than main
        assert ("table" in real) == (decision.table.label != "main"), case


def test_aws_ping_and_learned_state(aws_run: Record) -> None:
    node = aws_run.node
    model = walk(node, "pod-a", "pod-b")
    assert aws_run.pinged == {"pod-b": True} and model.replied
    assert compare_frames(model_frames_on(model, "pod-a", "eth0"), aws_run.frames) == []
    for name, ns in model.node_after.namespaces.items():
        assert compare(ns, aws_run.after[name], parts=("neigh", "fdb")) == [], name


# --- the one call a lab makes ------------------------------------------------------------------------------


def test_run_twin_agrees() -> None:
    report = run_twin(build_node(3), "pod-a", "pod-b")
    text = str(report)
    assert report.agrees, text
    assert text.count("agrees") == 4 and "frames on pod-a/eth0 (4 captured): agree" in text


def test_run_twin_says_why_it_is_skipped(monkeypatch) -> None:
    monkeypatch.setattr(kernel, "available", lambda: (False, "needs root (test)"))
    report = run_twin(build_node(2), "pod-a", "pod-b")
    text = str(report)
    assert report.skipped == "needs root (test)" and not report.agrees
    assert "skipped — needs root (test)" in text and "It would:" in text and "ping pod-a → pod-b" in text


# --- safety: the root namespace is never touched, nothing is left behind ----------------------------------

def test_root_namespace_untouched_by_a_run() -> None:
    before = root_snapshot()
    node = build_node(2)
    with Twin(node) as twin:
        prefix = twin.prefix
        assert sorted(left_behind(prefix)) == sorted([*twin.names.values(), twin.uplink])
        assert twin.ping("pod-a", str(node.pod_ip("pod-b")))
        assert all(cmd.startswith(("ip -n ", "bridge -n ", "ip netns ")) for cmd in twin.commands)
    assert left_behind(prefix) == []
    assert root_snapshot() == before


def test_error_inside_the_with_block_cleans_up() -> None:
    before = root_snapshot()
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    with pytest.raises(RuntimeError, match="boom"), Twin(build_node(2)) as twin:
        prefix = twin.prefix
        assert left_behind(prefix)
        raise RuntimeError("boom")
    assert left_behind(prefix) == []
    assert root_snapshot() == before
    assert {sig: signal.getsignal(sig) for sig in handlers} == handlers  # signal handlers restored


def test_twin_refuses_namespaces_it_does_not_own() -> None:
    with Twin(build_node(1)) as twin:
        with pytest.raises(TwinError, match="refusing"):
            twin.ip("k8s101-not-mine", "link", "show")
        with pytest.raises(TwinError, match="refusing"):
            twin.bridge("1", "fdb", "show")  # what `ip -n 1` would read as the netns of pid 1: never


CHILD = """
import sys, time
from labsupport.kernel import Twin
from labsupport.pod_network import build_node
with Twin(build_node(2)) as twin:
    print(twin.prefix, flush=True)
    time.sleep(60)
"""


def _start_child() -> tuple[subprocess.Popen, str]:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    prefix = child.stdout.readline().strip()
    assert prefix.startswith("k8s101-"), child.stderr.read() if child.poll() is not None else prefix
    assert left_behind(prefix), "the child's twin is not built"
    return child, prefix


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupt_cleans_up(signum: int) -> None:
    before = root_snapshot()
    child, prefix = _start_child()
    child.send_signal(signum)
    child.communicate(timeout=30)
    assert child.returncode != 0  # interrupted, not finished
    assert left_behind(prefix) == []
    assert root_snapshot() == before


def test_stale_sweep_removes_what_a_killed_run_left() -> None:
    child, prefix = _start_child()
    child.kill()  # SIGKILL: no handler can run, the namespaces stay behind
    child.communicate(timeout=30)
    stale = left_behind(prefix)
    assert stale
    with Twin(build_node(1)) as twin:
        assert set(stale) <= set(twin.swept)
        assert left_behind(prefix) == []
