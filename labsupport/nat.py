"""NAT as the notes describe it, on the netfilter engine of :mod:`labsupport.netfilter`.

The notes' router has an inside interface `eth0` on 192.168.1.0/24 and an outside interface
`eth1` with the public address 123.123.123.123. Each :class:`Scenario` is one of the notes' NAT
recipes — masquerading the private network, SNAT to a fixed address, DNAT to an inside web server,
REDIRECT for a transparent proxy — as an `iptables-save` ruleset and the packets of one connection:
the first packet (which the nat table decides), the reply (which conntrack un-NATs without
consulting the nat table), and a later packet (which takes the binding the first one chose).
"""

from __future__ import annotations

from dataclasses import dataclass

from labsupport import netfilter as nf
from labsupport.errors import LabInputError
from labsupport.host import Namespace

INSIDE, OUTSIDE = "eth0", "eth1"
ROUTER_INSIDE, ROUTER_PUBLIC, ISP_GATEWAY = "192.168.1.1", "123.123.123.123", "123.123.123.1"
INSIDE_HOST = "192.168.1.2"  # the notes' inside machine (client, or web server for DNAT)
INTERNET_HOST = "93.184.216.34"  # a web server on the internet


def notes_router() -> Namespace:
    """The notes' NAT router: `eth0` 192.168.1.1/24 inside, `eth1` 123.123.123.123/24 outside,
    `default via 123.123.123.1 dev eth1`, and `net.ipv4.ip_forward=1`."""
    router = Namespace("router", role="node", forwarding=True)
    router.add_link(INSIDE, "ether", "02:00:c0:a8:01:01")
    router.add_address(INSIDE, f"{ROUTER_INSIDE}/24")
    router.add_link(OUTSIDE, "ether", "02:00:7b:7b:7b:7b")
    router.add_address(OUTSIDE, f"{ROUTER_PUBLIC}/24")
    router.add_route("default", via=ISP_GATEWAY, dev=OUTSIDE)
    return router


def nat_table(*rules: str) -> str:
    """An `iptables-save` dump of a nat table holding the given `-A …` lines (the notes' commands
    without their leading `iptables -t nat`)."""
    lines = ["*nat", ":PREROUTING ACCEPT [0:0]", ":INPUT ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]",
             ":POSTROUTING ACCEPT [0:0]", *rules, "COMMIT", ""]
    return "\n".join(lines)


@dataclass(frozen=True)
class Scenario:
    """One NAT recipe of the notes: its rules, and the packets of one connection through the router."""

    name: str
    command: str  # the notes' iptables command
    rules: str  # the same as an iptables-save dump
    packets: tuple[tuple[str, str], ...]  # (what, packet spec) in order
    explanation: str


SCENARIOS = {
    "masquerade": Scenario(
        "Masquerading a private network",
        "iptables -t nat -A POSTROUTING -o eth1 -j MASQUERADE",
        nat_table("-A POSTROUTING -o eth1 -j MASQUERADE"),
        (
            ("first packet, inside → internet", f"tcp {INSIDE_HOST}:40000 > {INTERNET_HOST}:80 iif {INSIDE}"),
            ("reply from the internet", f"tcp {INTERNET_HOST}:80 > {ROUTER_PUBLIC}:40000 iif {OUTSIDE} flags SA"),
            ("later packet, same connection", f"tcp {INSIDE_HOST}:40000 > {INTERNET_HOST}:80 iif {INSIDE} flags A"),
        ),
        "Packets leaving by eth1 take the address of eth1 as their source; the reply comes back to that "
        "address and conntrack restores the inside address.",
    ),
    "snat": Scenario(
        "SNAT to a fixed address",
        "iptables -t nat -A POSTROUTING -p tcp -s 192.168.1.2 -o eth1 -j SNAT --to-source 123.123.123.123",
        nat_table("-A POSTROUTING -s 192.168.1.2/32 -o eth1 -p tcp -j SNAT --to-source 123.123.123.123"),
        (
            ("first packet, inside → internet", f"tcp {INSIDE_HOST}:40001 > {INTERNET_HOST}:443 iif {INSIDE}"),
            ("reply from the internet", f"tcp {INTERNET_HOST}:443 > {ROUTER_PUBLIC}:40001 iif {OUTSIDE} flags SA"),
            ("later packet, same connection", f"tcp {INSIDE_HOST}:40001 > {INTERNET_HOST}:443 iif {INSIDE} flags A"),
        ),
        "Like MASQUERADE, but with an address written in the rule: right for a router whose public address "
        "never changes.",
    ),
    "dnat": Scenario(
        "DNAT to an inside web server",
        "iptables -t nat -A PREROUTING -p tcp -i eth1 --dport 80 -j DNAT --to 192.168.1.2",
        nat_table("-A PREROUTING -i eth1 -p tcp -m tcp --dport 80 -j DNAT --to-destination 192.168.1.2"),
        (
            ("first packet, internet → router:80", f"tcp {INTERNET_HOST}:51000 > {ROUTER_PUBLIC}:80 iif {OUTSIDE}"),
            ("reply from the inside server", f"tcp {INSIDE_HOST}:80 > {INTERNET_HOST}:51000 iif {INSIDE} flags SA"),
            ("later packet, same connection", f"tcp {INTERNET_HOST}:51000 > {ROUTER_PUBLIC}:80 iif {OUTSIDE} flags A"),
        ),
        "A connection to the router's public port 80 is sent on to the inside server; its replies leave "
        "with the router's public address as their source again.",
    ),
    "redirect": Scenario(
        "REDIRECT for a transparent proxy",
        "iptables -t nat -A PREROUTING -i eth0 -p tcp --dport 80 -j REDIRECT --to-ports 8080",
        nat_table("-A PREROUTING -i eth0 -p tcp -m tcp --dport 80 -j REDIRECT --to-ports 8080"),
        (
            ("first packet, inside → internet:80", f"tcp {INSIDE_HOST}:40002 > {INTERNET_HOST}:80 iif {INSIDE}"),
            ("the proxy answers", f"tcp {ROUTER_INSIDE}:8080 > {INSIDE_HOST}:40002 local flags SA"),
            ("later packet, same connection", f"tcp {INSIDE_HOST}:40002 > {INTERNET_HOST}:80 iif {INSIDE} flags A"),
        ),
        "Web traffic from the inside is delivered to a proxy listening on the router's port 8080, without "
        "the clients knowing: the destination becomes the router's own inside address.",
    ),
}


@dataclass(frozen=True)
class ScenarioRun:
    """A scenario traced: each packet's result, and the conntrack table afterwards."""

    scenario: Scenario
    results: tuple
    conntrack: nf.Conntrack
    ruleset: nf.Ruleset


def run(name: str) -> ScenarioRun:
    """Trace a scenario's packets in order through one conntrack table, as the router's kernel would
    see them (`conntrack -L` afterwards shows the binding that made the reply work)."""
    if name not in SCENARIOS:
        raise LabInputError("scenario", name, f"one of {', '.join(SCENARIOS)}")
    scenario = SCENARIOS[name]
    ruleset = nf.parse_iptables_save(scenario.rules)
    conntrack, results = nf.replay(ruleset, notes_router(), [spec for _, spec in scenario.packets])
    return ScenarioRun(scenario, tuple(results), conntrack, ruleset)


def port_clash(rules: str | None = None) -> ScenarioRun:
    """Two inside hosts open connections from the same source port to the same server: after
    MASQUERADE both would leave as 123.123.123.123:40000, so the second gets another source port
    (nf_nat's unique-tuple search), and each reply still finds its way back."""
    scenario = Scenario(
        "Two inside hosts, one source port",
        SCENARIOS["masquerade"].command,
        rules or SCENARIOS["masquerade"].rules,
        (
            ("first host", f"tcp 192.168.1.2:40000 > {INTERNET_HOST}:80 iif {INSIDE}"),
            ("second host, same port", f"tcp 192.168.1.3:40000 > {INTERNET_HOST}:80 iif {INSIDE}"),
        ),
        "The second connection's source port is changed: two connections may not share one tuple.",
    )
    ruleset = nf.parse_iptables_save(scenario.rules)
    conntrack, results = nf.replay(ruleset, notes_router(), [spec for _, spec in scenario.packets])
    return ScenarioRun(scenario, tuple(results), conntrack, ruleset)
