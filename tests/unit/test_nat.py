"""The notes' NAT recipes on the notes' router: each does what the notes say, once per connection."""

from __future__ import annotations

import pytest

from labsupport import nat
from labsupport import netfilter as nf
from labsupport.errors import LabInputError


def addresses(result) -> tuple[str, int, str, int]:
    packet = result.packet_after
    return packet.src, packet.sport, packet.dst, packet.dport


def nat_rule_hits(run) -> list[tuple[str, str, int]]:
    return [m for r in run.results for m in r.matched if m[0] == "nat"]


def test_the_router_is_the_notes_router() -> None:
    router = nat.notes_router()
    assert router.forwarding
    assert router.ip_route() == (
        "default via 123.123.123.1 dev eth1\n"
        "123.123.123.0/24 dev eth1 proto kernel scope link src 123.123.123.123\n"
        "192.168.1.0/24 dev eth0 proto kernel scope link src 192.168.1.1"
    )


def test_every_recipe_is_the_notes_command_as_iptables_save_prints_it() -> None:
    # The notes write `iptables -t nat -A …`; the dump holds the same rule as iptables-save prints it.
    for scenario in nat.SCENARIOS.values():
        ruleset = nf.parse_iptables_save(scenario.rules)
        assert ruleset.to_iptables_save() == scenario.rules
        assert scenario.command.startswith("iptables -t nat -A ")


def test_masquerade_rewrites_the_source_and_conntrack_undoes_it_for_the_reply() -> None:
    run = nat.run("masquerade")
    first, reply, later = run.results
    assert (first.verdict, first.oif) == ("forward", "eth1")
    assert addresses(first) == ("123.123.123.123", 40000, "93.184.216.34", 80)
    assert addresses(reply) == ("93.184.216.34", 80, "192.168.1.2", 40000) and reply.oif == "eth0"
    assert addresses(later) == addresses(first)
    assert [r.ctstate for r in run.results] == ["NEW", "ESTABLISHED", "ESTABLISHED"]
    assert nat_rule_hits(run) == [("nat", "POSTROUTING", 1)]  # the nat table decides once
    assert "src=192.168.1.2 dst=93.184.216.34 sport=40000 dport=80 src=93.184.216.34 dst=123.123.123.123" in (
        run.conntrack.show()
    )


def test_snat_writes_the_fixed_address() -> None:
    first, reply, _ = nat.run("snat").results
    assert addresses(first)[0] == "123.123.123.123"
    assert addresses(reply)[2] == "192.168.1.2"


def test_dnat_publishes_the_inside_server_and_replies_leave_from_the_public_address() -> None:
    run = nat.run("dnat")
    first, reply, later = run.results
    assert (first.verdict, first.oif) == ("forward", "eth0")
    assert addresses(first) == ("93.184.216.34", 51000, "192.168.1.2", 80)
    assert addresses(reply) == ("123.123.123.123", 80, "93.184.216.34", 51000) and reply.oif == "eth1"
    assert addresses(later) == addresses(first)
    assert nat_rule_hits(run) == [("nat", "PREROUTING", 1)]


def test_redirect_delivers_to_the_proxy_port_and_the_proxy_answers_as_the_server() -> None:
    first, answer, later = nat.run("redirect").results
    assert first.verdict == "deliver" and addresses(first) == ("192.168.1.2", 40002, "192.168.1.1", 8080)
    assert answer.verdict == "output" and addresses(answer) == ("93.184.216.34", 80, "192.168.1.2", 40002)
    assert later.verdict == "deliver" and addresses(later)[2:] == ("192.168.1.1", 8080)


def test_a_port_clash_gets_another_source_port_and_both_replies_find_their_host() -> None:
    clash = nat.port_clash()
    one, two = (r.packet_after for r in clash.results)
    assert (one.src, one.sport) == ("123.123.123.123", 40000)
    assert two.src == "123.123.123.123" and two.sport != 40000
    for packet, host in ((one, "192.168.1.2"), (two, "192.168.1.3")):
        spec = f"tcp 93.184.216.34:80 > 123.123.123.123:{packet.sport} iif eth1 flags SA"
        reply = nf.trace(clash.ruleset, nat.notes_router(), spec, clash.conntrack)
        assert addresses(reply)[2:] == (host, 40000)


def test_unknown_recipe_is_the_one_clear_error() -> None:
    with pytest.raises(LabInputError) as error:
        nat.run("hairpin")
    assert error.value.field == "scenario" and "masquerade" in str(error.value)
