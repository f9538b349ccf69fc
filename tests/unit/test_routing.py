"""labsupport.routing: routes and rules in iproute2's words, longest-prefix match, policy routing.

Expected text is what a real kernel printed for the same configuration (Linux 6.18, iproute2 6.1,
in scratch network namespaces; tests/kernel/test_kernel_formats.py repeats the comparisons live)
or what the study notes printed. Lookup semantics come from their definitions: longest prefix
first, then the lowest metric (fib_table_lookup); rules by priority, a table with no match
falling through to the next rule (fib_rules_lookup continues on -EAGAIN).
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labsupport.errors import LabInputError
from labsupport.routing import (
    DEFAULT_ROUTE,
    LOCAL_TABLE,
    MAIN_TABLE,
    Route,
    RoutingTable,
    Rule,
    default_rules,
    resolve,
)


def net(text: str) -> IPv4Network:
    return IPv4Network(text)


def ip(text: str) -> IPv4Address:
    return IPv4Address(text)


# --- a route as one line of `ip route` ----------------------------------------------------------------


@pytest.mark.parametrize(
    "route, line",
    [
        (Route(DEFAULT_ROUTE, "eth0", via=ip("10.0.96.1")), "default via 10.0.96.1 dev eth0"),
        (
            Route(net("10.0.96.0/19"), "eth0", proto="kernel", scope="link", src=ip("10.0.104.183")),
            "10.0.96.0/19 dev eth0 proto kernel scope link src 10.0.104.183",
        ),
        # A /32 prints as a bare address (the notes' node: `10.0.97.30 dev aws8db0408c9a8  scope link`).
        (Route(net("10.0.97.30/32"), "aws8db0408c9a8", scope="link"), "10.0.97.30 dev aws8db0408c9a8 scope link"),
        (Route(net("10.60.0.0/16"), "eth0", scope="link", metric=50), "10.60.0.0/16 dev eth0 scope link metric 50"),
        # Metric 0 is never printed: the kernel leaves RTA_PRIORITY 0 out of the dump (confirmed).
        (Route(net("10.62.0.0/16"), "eth0", scope="link", metric=0), "10.62.0.0/16 dev eth0 scope link"),
        (
            Route(net("127.0.0.0/8"), "lo", proto="kernel", scope="host", src=ip("127.0.0.1"), kind="local"),
            "local 127.0.0.0/8 dev lo proto kernel scope host src 127.0.0.1",
        ),
        (
            Route(net("127.255.255.255/32"), "lo", proto="kernel", scope="link", src=ip("127.0.0.1"), kind="broadcast"),
            "broadcast 127.255.255.255 dev lo proto kernel scope link src 127.0.0.1",
        ),
    ],
)
def test_route_prints_like_ip_route(route, line):
    assert str(route) == line


def test_route_json_uses_ip_j_field_names():
    # `ip -j route` printed these objects for the same routes (confirmed with iproute2 6.1).
    assert Route(DEFAULT_ROUTE, "eth0", via=ip("192.168.56.1")).to_json() == {
        "dst": "default", "gateway": "192.168.56.1", "dev": "eth0", "flags": [],
    }
    assert Route(
        net("10.244.1.0/24"), "cni0", proto="kernel", scope="link", src=ip("10.244.1.1")
    ).to_json() == {
        "dst": "10.244.1.0/24", "dev": "cni0", "protocol": "kernel", "scope": "link",
        "prefsrc": "10.244.1.1", "flags": [],
    }
    assert Route(net("10.60.0.0/16"), "eth0", scope="link", metric=50).to_json() == {
        "dst": "10.60.0.0/16", "dev": "eth0", "scope": "link", "metric": 50, "flags": [],
    }
    assert Route(
        net("10.244.1.1/32"), "cni0", proto="kernel", scope="host", src=ip("10.244.1.1"), kind="local"
    ).to_json() == {
        "type": "local", "dst": "10.244.1.1", "dev": "cni0", "protocol": "kernel", "scope": "host",
        "prefsrc": "10.244.1.1", "flags": [],
    }


# --- a table: kernel order, EEXIST, longest-prefix match --------------------------------------------


def test_table_shows_routes_in_the_kernels_dump_order():
    # Confirmed with iproute2 6.1: the dump walks the trie by address, and at one prefix the lower
    # metric first, whatever order the routes were added in.
    table = RoutingTable(MAIN_TABLE)
    table.add(Route(net("10.244.1.0/24"), "eth0", proto="kernel", scope="link", src=ip("10.244.1.2")))
    table.add(Route(net("10.60.0.0/16"), "eth0", scope="link", metric=100))
    table.add(Route(net("10.60.0.0/16"), "eth0", scope="link", metric=50))
    table.add(Route(net("10.0.0.1/32"), "eth0"))
    table.add(Route(DEFAULT_ROUTE, "eth0", via=ip("10.244.1.1")))
    assert table.show().splitlines() == [
        "default via 10.244.1.1 dev eth0",
        "10.0.0.1 dev eth0",
        "10.60.0.0/16 dev eth0 scope link metric 50",
        "10.60.0.0/16 dev eth0 scope link metric 100",
        "10.244.1.0/24 dev eth0 proto kernel scope link src 10.244.1.2",
    ]
    assert [r["dst"] for r in table.to_json()] == ["default", "10.0.0.1", "10.60.0.0/16", "10.60.0.0/16", "10.244.1.0/24"]


def test_table_refuses_the_same_destination_and_metric_twice():
    table = RoutingTable(MAIN_TABLE)
    table.add(Route(net("10.60.0.0/16"), "eth0", metric=50))
    with pytest.raises(LabInputError) as excinfo:
        table.add(Route(net("10.60.0.0/16"), "eth1", metric=50))
    assert excinfo.value.field == "route.dst"
    assert "10.60.0.0/16" in str(excinfo.value) and "already has a route" in str(excinfo.value)
    table.add(Route(net("10.60.0.0/16"), "eth1", metric=100))  # another metric is another route


def test_no_metric_is_metric_zero():
    # `ip route add 10.61.0.0/16 dev eth0` then the same with `metric 0`: 'RTNETLINK answers: File exists'.
    table = RoutingTable(MAIN_TABLE)
    table.add(Route(net("10.61.0.0/16"), "eth0"))
    with pytest.raises(LabInputError):
        table.add(Route(net("10.61.0.0/16"), "eth0", metric=0))


def test_longest_prefix_wins():
    table = RoutingTable(MAIN_TABLE)
    default = table.add(Route(DEFAULT_ROUTE, "eth0", via=ip("10.0.96.1")))
    vpc = table.add(Route(net("10.0.0.0/16"), "eth1"))
    subnet = table.add(Route(net("10.0.96.0/19"), "eth0", proto="kernel", scope="link"))
    pod = table.add(Route(net("10.0.97.30/32"), "aws8db0408c9a8", scope="link"))
    assert table.lookup(ip("10.0.97.30")) is pod
    assert table.lookup(ip("10.0.97.31")) is subnet
    assert table.lookup(ip("10.0.50.7")) is vpc
    assert table.lookup(ip("8.8.8.8")) is default


def test_at_one_prefix_the_lowest_metric_wins():
    table = RoutingTable(MAIN_TABLE)
    table.add(Route(net("10.60.0.0/16"), "eth1", metric=100))
    best = table.add(Route(net("10.60.0.0/16"), "eth0", metric=50))
    assert table.lookup(ip("10.60.1.1")) is best  # `ip route get 10.60.1.1` chose metric 50 (confirmed)
    no_metric = table.add(Route(net("10.60.0.0/16"), "eth2"))  # metric 0 beats 50
    assert table.lookup(ip("10.60.1.1")) is no_metric


def test_a_longer_prefix_beats_a_lower_metric():
    table = RoutingTable(MAIN_TABLE)
    table.add(Route(net("10.0.0.0/8"), "eth0", metric=0))
    longer = table.add(Route(net("10.1.0.0/16"), "eth1", metric=1000))
    assert table.lookup(ip("10.1.2.3")) is longer


def test_no_match_is_none_and_default_matches_everything():
    table = RoutingTable(MAIN_TABLE)
    table.add(Route(net("10.0.0.0/8"), "eth0"))
    assert table.lookup(ip("192.0.2.1")) is None
    default = table.add(Route(DEFAULT_ROUTE, "eth0", via=ip("10.0.0.1")))
    for address in ("0.0.0.0", "192.0.2.1", "255.255.255.255"):
        assert table.lookup(ip(address)) is default


def test_table_labels():
    assert RoutingTable(MAIN_TABLE).label == "main"
    assert RoutingTable(LOCAL_TABLE).label == "local"
    assert RoutingTable(2, "eni-1").label == "eni-1"
    assert RoutingTable(100).label == "100"


ROUTES = st.lists(
    st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 32), st.sampled_from([None, 0, 10, 100])),
    max_size=12,
)


def _reference_lookup(routes: list[Route], dst: IPv4Address) -> Route | None:
    """Brute force the other way round: try each prefix length from /32 down to /0, mask the
    destination, take the routes for exactly that prefix, the lowest metric first."""
    for length in range(32, -1, -1):
        prefix = IPv4Network((int(dst) >> (32 - length) << (32 - length) if length else 0, length))
        here = [r for r in routes if r.dst == prefix]
        if here:
            return min(here, key=lambda r: r.metric or 0)
    return None


@settings(max_examples=200, deadline=None)
@given(ROUTES, st.integers(0, 2**32 - 1), st.lists(st.integers(0, 2**32 - 1), max_size=4))
def test_lpm_agrees_with_a_brute_force_reference(specs, probe, near):
    table = RoutingTable(MAIN_TABLE)
    for i, (address, length, metric) in enumerate(specs):
        dst = IPv4Network((address, length), strict=False)
        try:
            table.add(Route(dst, f"eth{i}", metric=metric))
        except LabInputError:
            continue  # same prefix and metric: the kernel refuses it too (EEXIST)
    # probe a random address, and addresses inside the routes' own prefixes
    probes = [IPv4Address(probe)] + [IPv4Address(int(r.dst.network_address) | (n & int(r.dst.hostmask)))
                                     for r, n in zip(table.routes, near)]
    for dst in probes:
        assert table.lookup(dst) == _reference_lookup(table.routes, dst)


# --- rules as `ip rule list` prints them --------------------------------------------------------------


def test_default_rules_of_a_fresh_namespace():
    # `ip rule` in a new namespace (confirmed with iproute2 6.1): a tab after the colon, no trailing space.
    assert [str(r) for r in default_rules()] == [
        "0:\tfrom all lookup local",
        "32766:\tfrom all lookup main",
        "32767:\tfrom all lookup default",
    ]


@pytest.mark.parametrize(
    "rule, line",
    [
        # the notes' "On the Node" (`ip rule list`), with the notes' double spaces and trailing blanks removed
        (Rule(512, "main", dst=net("10.0.97.30/32")), "512:\tfrom all to 10.0.97.30 lookup main"),
        (Rule(1025, "main", dst=net("10.0.0.0/16"), invert=True), "1025:\tnot from all to 10.0.0.0/16 lookup main"),
        (Rule(1536, "eni-1", src=net("10.0.97.30/32")), "1536:\tfrom 10.0.97.30 lookup eni-1"),
        # iproute2 6.1 prints `iif` after `to` and before `lookup` (confirmed)
        (Rule(1600, "2", src=net("10.1.0.0/16"), iif="eth0"), "1600:\tfrom 10.1.0.0/16 iif eth0 lookup 2"),
    ],
)
def test_rule_prints_like_ip_rule(rule, line):
    assert str(rule) == line


def test_rule_json_uses_ip_j_rule_field_names():
    # `ip -j rule` for the same rules, table 2 unnamed (confirmed with iproute2 6.1).
    ids = {"main": 254, "local": 255, "default": 253, "eni-1": 2}
    got = [
        Rule(0, "local").to_json(ids),
        Rule(512, "main", dst=net("10.0.97.30/32")).to_json(ids),
        Rule(1025, "main", dst=net("10.0.0.0/16"), invert=True).to_json(ids),
        Rule(1536, "eni-1", src=net("10.0.97.30/32")).to_json(ids),
        Rule(1600, "eni-1", src=net("10.1.0.0/16"), iif="eth0").to_json(ids),
    ]
    assert got == [
        {"priority": 0, "src": "all", "table": "local"},
        {"priority": 512, "src": "all", "dst": "10.0.97.30", "table": "main"},
        {"priority": 1025, "not": None, "src": "all", "dst": "10.0.0.0", "dstlen": 16, "table": "main"},
        {"priority": 1536, "src": "10.0.97.30", "table": "2"},
        {"priority": 1600, "src": "10.1.0.0", "srclen": 16, "iif": "eth0", "table": "2"},
    ]


def test_rule_matching():
    to_pod = Rule(512, "main", dst=net("10.0.97.30/32"))
    assert to_pod.matches(ip("10.0.97.30"), None, None)
    assert not to_pod.matches(ip("10.0.97.31"), None, None)
    from_pod = Rule(1536, "eni-1", src=net("10.0.97.30/32"))
    assert from_pod.matches(ip("10.0.50.7"), ip("10.0.97.30"), "aws8db0408c9a8")
    assert not from_pod.matches(ip("10.0.50.7"), None, None), "no source yet: a `from` rule cannot match"
    not_vpc = Rule(1025, "main", dst=net("10.0.0.0/16"), invert=True)
    assert not_vpc.matches(ip("8.8.8.8"), None, None)
    assert not not_vpc.matches(ip("10.0.50.7"), None, None)
    by_iif = Rule(100, "main", iif="eth0")
    assert by_iif.matches(ip("1.1.1.1"), None, "eth0") and not by_iif.matches(ip("1.1.1.1"), None, "eth1")


# --- policy routing ------------------------------------------------------------------------------------


def aws_like_tables() -> tuple[list[Rule], dict[str, RoutingTable]]:
    """The notes' node: main (to pods, default via eth0) and eni-1 (default via eth1), four rules."""
    main = RoutingTable(MAIN_TABLE)
    main.add(Route(DEFAULT_ROUTE, "eth0", via=ip("10.0.96.1")))
    main.add(Route(net("10.0.96.0/19"), "eth0", proto="kernel", scope="link", src=ip("10.0.104.183")))
    main.add(Route(net("10.0.97.30/32"), "aws8db0408c9a8", scope="link"))
    eni = RoutingTable(2, "eni-1")
    eni.add(Route(DEFAULT_ROUTE, "eth1", via=ip("10.0.96.1")))
    eni.add(Route(net("10.0.96.1/32"), "eth1", scope="link"))
    local = RoutingTable(LOCAL_TABLE)
    local.add(Route(net("10.0.104.183/32"), "eth0", kind="local", scope="host"))
    rules = default_rules() + [
        Rule(1536, "eni-1", src=net("10.0.97.30/32")),  # listed out of order on purpose
        Rule(512, "main", dst=net("10.0.97.30/32")),
        Rule(1025, "main", dst=net("10.0.0.0/16"), invert=True),
    ]
    tables = {"local": local, "main": main, "eni-1": eni, "default": RoutingTable(253)}
    return rules, tables


def test_to_pod_traffic_uses_rule_512_and_main():
    rules, tables = aws_like_tables()
    decision = resolve(rules, tables, ip("10.0.97.30"), ip("10.0.97.159"), "awsbcd978401eb")
    assert decision.rule.priority == 512
    assert decision.table.label == "main"
    assert str(decision.route) == "10.0.97.30 dev aws8db0408c9a8 scope link"


def test_pod_to_vpc_uses_rule_1536_and_eni_1():
    rules, tables = aws_like_tables()
    decision = resolve(rules, tables, ip("10.0.50.7"), ip("10.0.97.30"), "aws8db0408c9a8")
    assert (decision.rule.priority, decision.table.label, decision.route.dev) == (1536, "eni-1", "eth1")
    assert str(decision.route) == "default via 10.0.96.1 dev eth1"


def test_pod_to_internet_uses_rule_1025_and_main_before_1536():
    rules, tables = aws_like_tables()
    decision = resolve(rules, tables, ip("8.8.8.8"), ip("10.0.97.30"), "aws8db0408c9a8")
    assert (decision.rule.priority, decision.table.label, decision.route.dev) == (1025, "main", "eth0")


def test_local_rule_comes_first():
    rules, tables = aws_like_tables()
    decision = resolve(rules, tables, ip("10.0.104.183"), ip("10.0.97.30"), "aws8db0408c9a8")
    assert (decision.rule.priority, decision.table.label, decision.route.kind) == (0, "local", "local")


def test_a_table_without_a_match_falls_through_to_the_next_rule():
    # fib_rules_lookup: a table lookup that finds nothing returns -EAGAIN and the next rule is tried.
    # Confirmed: `ip rule add lookup 100 pref 100` with table 100 holding only 10.80.0.0/16, then
    # `ip route get 8.8.8.8` answers from main.
    t100 = RoutingTable(100)
    t100.add(Route(net("10.80.0.0/16"), "eth0", via=ip("10.244.1.1")))
    main = RoutingTable(MAIN_TABLE)
    main.add(Route(DEFAULT_ROUTE, "eth0", via=ip("10.244.1.1")))
    rules = default_rules() + [Rule(100, "100")]
    tables = {"local": RoutingTable(LOCAL_TABLE), "main": main, "100": t100, "default": RoutingTable(253)}
    assert resolve(rules, tables, ip("10.80.1.1")).rule.priority == 100
    fell = resolve(rules, tables, ip("8.8.8.8"))
    assert (fell.rule.priority, fell.table.label) == (32766, "main")


def test_a_rule_for_a_table_that_does_not_exist_falls_through():
    rules, tables = aws_like_tables()
    rules = rules + [Rule(10, "eni-9")]
    assert resolve(rules, tables, ip("8.8.8.8"), ip("10.0.97.30")).rule.priority == 1025


def test_nothing_matches_is_none():
    # `ip route get 8.8.8.8` in a namespace with only lo: 'RTNETLINK answers: Network is unreachable'.
    tables = {"local": RoutingTable(LOCAL_TABLE), "main": RoutingTable(MAIN_TABLE), "default": RoutingTable(253)}
    assert resolve(default_rules(), tables, ip("8.8.8.8")) is None


def test_decision_explains_rule_table_and_route():
    rules, tables = aws_like_tables()
    decision = resolve(rules, tables, ip("10.0.50.7"), ip("10.0.97.30"))
    assert decision.explain() == (
        "rule 1536 (from 10.0.97.30 lookup eni-1) → table eni-1: default via 10.0.96.1 dev eth1"
    )


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([None, "10.0.97.30", "10.0.97.159", "10.0.104.183"]))
def test_resolve_is_the_first_rule_whose_table_has_a_match(dst_int, src):
    # The definition, spelled out: walk rules by priority; skip rules that do not match; the first
    # whose table has a route decides, and that route is the table's own longest-prefix match.
    rules, tables = aws_like_tables()
    dst, source = IPv4Address(dst_int), (ip(src) if src else None)
    decision = resolve(rules, tables, dst, source)
    for rule in sorted(rules, key=lambda r: r.priority):
        if rule.matches(dst, source, None) and tables[rule.table].lookup(dst) is not None:
            assert decision is not None and decision.rule == rule
            assert decision.route == tables[rule.table].lookup(dst)
            break
    else:
        assert decision is None


def test_at_one_address_the_longer_prefix_is_dumped_first():
    # Confirmed with iproute2 6.1 on Linux 6.18: `0.0.0.0/1` printed before `default`, and
    # 10.244.5.0/25, /24, /24 metric 5 in that order, whatever order they were added in.
    table = RoutingTable(MAIN_TABLE)
    table.add(Route(DEFAULT_ROUTE, "eth0", via=ip("192.168.56.1")))
    table.add(Route(net("0.0.0.0/1"), "eth0", via=ip("192.168.56.1")))
    table.add(Route(net("10.244.5.0/24"), "eth0", scope="link", metric=5))
    table.add(Route(net("10.244.5.0/24"), "eth0", scope="link"))
    table.add(Route(net("10.244.5.0/25"), "eth0", scope="link"))
    assert table.show().splitlines() == [
        "0.0.0.0/1 via 192.168.56.1 dev eth0",
        "default via 192.168.56.1 dev eth0",
        "10.244.5.0/25 dev eth0 scope link",
        "10.244.5.0/24 dev eth0 scope link",
        "10.244.5.0/24 dev eth0 scope link metric 5",
    ]


def test_onlink_and_blackhole_routes_print_like_ip_route():
    # Printed by iproute2 6.1 (without its trailing space) and `ip -j route` for the same routes.
    onlink = Route(net("10.244.2.0/24"), "flannel.1", via=ip("10.244.2.0"), onlink=True)
    assert str(onlink) == "10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink"
    assert onlink.to_json() == {"dst": "10.244.2.0/24", "gateway": "10.244.2.0", "dev": "flannel.1", "flags": ["onlink"]}
    bird = Route(net("10.244.2.64/26"), "vxlan.calico", via=ip("192.168.56.11"), proto="bird", onlink=True)
    assert str(bird) == "10.244.2.64/26 via 192.168.56.11 dev vxlan.calico proto bird onlink"
    blackhole = Route(net("10.244.1.0/26"), "", proto="bird", kind="blackhole")
    assert str(blackhole) == "blackhole 10.244.1.0/26 proto bird"
    assert blackhole.to_json() == {"type": "blackhole", "dst": "10.244.1.0/26", "protocol": "bird", "flags": []}


def test_a_copied_table_is_a_new_table_sharing_its_routes():
    import copy

    table = RoutingTable(MAIN_TABLE)
    route = table.add(Route(DEFAULT_ROUTE, "eth0", via=ip("192.168.56.1")))
    twin = copy.deepcopy(table)
    twin.add(Route(net("10.0.0.0/8"), "eth0"))
    assert table.routes == [route] and twin.routes[0] is route
