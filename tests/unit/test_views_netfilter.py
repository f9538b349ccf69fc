"""The netfilter and nat labs' figures and widgets: drawn from the engine, bad rules shown in place."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from labsupport import nat
from labsupport import netfilter as nf
from labsupport.views import netfilter as views

SVG = "{http://www.w3.org/2000/svg}"


def texts(figure) -> list[str]:
    return [t.text for t in ET.fromstring(figure.markup).iter(f"{SVG}text")]


def test_matrix_is_the_engine_s_table_chains() -> None:
    shown = texts(views.draw_matrix())
    marks = shown[1 + len(nf.HOOKS):]
    rows = [marks[i * 6: i * 6 + 6] for i in range(5)]
    for row in rows:
        table, cells = row[0], row[1:]
        assert [h for h, c in zip(nf.HOOKS, cells, strict=True) if c == "✓"] == list(nf.TABLE_CHAINS[table])


def test_path_of_each_verdict() -> None:
    rules = nf.parse_iptables_save(views.workshop_rules("-A INPUT -i eth1 -p tcp --dport 22 -j DROP", ""))
    router = nat.notes_router()
    cases = {
        "tcp 192.168.1.2:40000 > 93.184.216.34:80 iif eth0": ["PREROUTING", "FORWARD", "POSTROUTING"],
        "tcp 192.168.1.2:40000 > 192.168.1.1:80 iif eth0": ["PREROUTING", "INPUT"],
        "icmp 123.123.123.123 > 93.184.216.34 local": ["OUTPUT", "POSTROUTING"],
        "tcp 93.184.216.34:50000 > 123.123.123.123:22 iif eth1": ["PREROUTING", "INPUT"],
    }
    for spec, path in cases.items():
        assert views.path_hooks(nf.trace(rules, router, spec)) == path, spec


def test_hook_figure_marks_the_rule_that_matched() -> None:
    rules = nf.parse_iptables_save(views.workshop_rules("-A INPUT -i eth1 -p tcp --dport 22 -j DROP", ""))
    result = nf.trace(rules, nat.notes_router(), "tcp 93.184.216.34:50000 > 123.123.123.123:22 iif eth1")
    shown = texts(views.draw_hooks(result))
    assert "filter: rule 1" in shown
    assert shown[-1] == result.outcome()


def test_workshop_shows_trace_counters_and_conntrack_and_bad_rules_in_place() -> None:
    ui = views.rule_workshop()
    assert ui.n_states == len(views.WORKSHOP_RULESETS) * len(views.WORKSHOP_PACKETS)
    ui.set(ruleset="no rules (every policy ACCEPT)", packet="web request from inside to the internet")
    shown = "\n".join(ui.visible())
    assert "forwarded out of eth1: tcp 123.123.123.123:40000 > 93.184.216.34:80" in shown
    assert "[1:40] -A POSTROUTING -o eth1 -j MASQUERADE" in shown  # iptables-save -c: 1 packet, 20+20 bytes
    assert "src=192.168.1.2 dst=93.184.216.34" in shown  # conntrack -L
    before = ui.visible()
    ui.set(commands="iptables -t nat -A POSTROUTING -j SNAT")
    assert ui.error == (
        "iptables command: 'iptables -t nat -A POSTROUTING -j SNAT' is not allowed; rule: SNAT: --to-source ADDRESS[:PORT]"
    )
    assert ui.visible()[: len(before)] == before
    ui.set(commands="iptables -t mangle -A PREROUTING -i eth0 -j MARK --set-mark 1; iptables -A FORWARD -m mark "
                    "--mark 1 -j DROP")
    assert ui.error is None
    shown = "\n".join(ui.visible())
    assert "dropped: tcp 192.168.1.2:40000 > 93.184.216.34:80 (DROP in filter FORWARD)" in shown
    assert "-A PREROUTING -i eth0 -j MARK --set-xmark 0x1/0xffffffff" in shown


def test_nat_scenarios_one_state_per_recipe() -> None:
    ui = views.nat_scenarios()
    assert ui.n_states == len(nat.SCENARIOS)
    ui.set(name="dnat")
    shown = "\n".join(ui.visible())
    assert nat.SCENARIOS["dnat"].command in shown
    assert "<Tab conntrack -L>" in shown
