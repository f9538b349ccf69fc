"""Figures and widgets of the netfilter and nat chapters: thin views over :mod:`labsupport.netfilter`
and :mod:`labsupport.nat`.

The hook diagram and the table × chain matrix are hand-written SVG drawn from the engine's own
constants (`HOOK_ORDER`, `TABLE_CHAINS`) and from a trace's TRACE lines, so they redraw in
milliseconds when a learner types a rule.
"""

from __future__ import annotations

from labsupport import nat
from labsupport import netfilter as nf
from labsupport.errors import LabInputError
from labsupport.views import svg
from labsupport.views.explorable import Choice, Free, Html, Tabs, Text, explore

HOOK_COLOUR, VISITED_COLOUR, MATCH_COLOUR, PATH_COLOUR = "#eef2f7", "#fdebd0", "#c0392b", "#c0392b"
# Where each hook's box sits (x, y): packets come in on the left, local processes are at the top.
HOOK_PLACES = {
    "PREROUTING": (20, 150), "INPUT": (300, 20), "FORWARD": (300, 150), "OUTPUT": (300, 280),
    "POSTROUTING": (580, 150),
}
BOX_W = 170


def visited(result: nf.TraceResult) -> dict[str, dict[str, str]]:
    """For each hook the packet passed, the tables whose chains it went through and how each ended
    ("rule N" when a rule there matched with a verdict, "policy" or "return"), read from the TRACE lines."""
    seen: dict[str, dict[str, str]] = {}
    for line in result.lines:
        head = line.split()[1] if line.startswith("TRACE:") else ""
        parts = head.split(":")
        if len(parts) < 4 or parts[1] not in nf.HOOKS:
            continue
        table, chain, kind, number = parts[0], parts[1], parts[2], parts[3]
        seen.setdefault(chain, {})[table] = f"rule {number}" if kind == "rule" else kind
    for table, chain, number in result.matched:
        if chain in nf.HOOKS:
            seen.setdefault(chain, {})[table] = f"rule {number}"
    return seen


def path_hooks(result: nf.TraceResult) -> list[str]:
    """The hooks a packet passed, in order: from its verdict (the path a delivered, forwarded or sent
    packet takes), or, for a dropped one, up to the last hook its TRACE lines reach."""
    seen = visited(result)
    local = isinstance(result.source, nf.PacketSpec) and result.source.local
    full = {"deliver": ["PREROUTING", "INPUT"], "forward": ["PREROUTING", "FORWARD", "POSTROUTING"],
            "output": ["OUTPUT", "POSTROUTING"]}.get(result.verdict)
    if full is not None:
        return full
    order = ["OUTPUT", "POSTROUTING"] if local else ["PREROUTING", "INPUT", "FORWARD", "POSTROUTING"]
    reached = [hook for hook in order if hook in seen]
    return reached or order[:1]


def draw_hooks(result: nf.TraceResult | None = None) -> svg.Svg:
    """The five netfilter hooks with their tables in priority order; with a trace, the hooks the packet
    went through are filled, the arrows it took drawn in red, and the tables where it matched a rule marked."""
    seen = visited(result) if result is not None else {}
    path = path_hooks(result) if result is not None else []
    body = [svg.ARROW_MARKER]
    arrows = [
        (None, "PREROUTING", (0, 190), (20, 190)), ("PREROUTING", "INPUT", (190, 175), (300, 70)),
        ("PREROUTING", "FORWARD", (190, 190), (300, 190)), ("FORWARD", "POSTROUTING", (470, 190), (580, 190)),
        ("OUTPUT", "POSTROUTING", (470, 320), (580, 215)), ("POSTROUTING", None, (750, 190), (790, 190)),
    ]
    for start_hook, end_hook, start, end in arrows:
        taken = (start_hook in path or start_hook is None) and (end_hook in path or end_hook is None) and path
        taken = taken and not (start_hook is None and "PREROUTING" not in path)
        taken = taken and not (end_hook is None and result.verdict not in ("forward", "output"))
        body.append(svg.line(*start, *end, PATH_COLOUR if taken else "#7a7a7a", 2 if taken else 1.4, arrow=True))
    body.append(svg.text(245, 105, "routing", 10, colour="#555"))
    body.append(svg.text(245, 205, "decision", 10, colour="#555"))
    body.append(svg.text(385, 15, "↑ local process", 10, colour="#555"))
    body.append(svg.text(385, 395, "local process ↑", 10, colour="#555"))
    for hook, (x, y) in HOOK_PLACES.items():
        tables = [t for t in nf.HOOK_ORDER[hook] if t in nf.TABLE_CHAINS and hook in nf.TABLE_CHAINS[t]]
        height = 34 + 17 * len(tables)
        body.append(svg.rect(x, y, BOX_W, height, VISITED_COLOUR if hook in path else HOOK_COLOUR,
                             PATH_COLOUR if hook in path else "#4a6fa5"))
        body.append(svg.text(x + BOX_W / 2, y + 18, hook, 12, bold=True))
        for i, table in enumerate(tables):
            outcome = seen.get(hook, {}).get(table)
            label = f"{table}: {outcome}" if outcome else table
            matched = outcome is not None and outcome.startswith("rule")
            body.append(svg.text(x + 12, y + 38 + 17 * i, label, 10.5, "start",
                                 MATCH_COLOUR if matched else "#222" if outcome else "#888", bold=matched))
    if result is not None:
        body.append(svg.text(20, 420, f"{result.outcome()}", 11, "start",
                             "#2e7d32" if result.verdict in ("deliver", "forward", "output") else MATCH_COLOUR,
                             bold=True))
    return svg.document(800, 430, body, "netfilter hooks and tables")


def draw_matrix() -> svg.Svg:
    """The notes' table × chain matrix, drawn from the engine's TABLE_CHAINS (the kernel's built-in chains)."""
    tables = ("raw", "mangle", "nat", "filter", "security")
    body = [svg.text(20, 24, "table", 11, "start", bold=True)]
    for j, hook in enumerate(nf.HOOKS):
        body.append(svg.text(150 + 120 * j, 24, hook, 11, bold=True))
    for i, table in enumerate(tables):
        y = 50 + 26 * i
        body.append(svg.text(20, y, table, 11, "start"))
        for j, hook in enumerate(nf.HOOKS):
            mark = "✓" if hook in nf.TABLE_CHAINS[table] else "·"
            body.append(svg.text(150 + 120 * j, y, mark, 13, colour="#2e7d32" if mark == "✓" else "#bbb"))
    return svg.document(760, 50 + 26 * len(tables), body, "iptables tables and their built-in chains")


# --- the rule-table workshop ----------------------------------------------------------------------

WORKSHOP_RULESETS = {
    "no rules (every policy ACCEPT)": "",
    "filter: drop SSH from outside": "-A INPUT -i eth1 -p tcp -m tcp --dport 22 -j DROP",
    "filter: forward only established replies inward": (
        "-A FORWARD -i eth1 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n"
        "-A FORWARD -i eth1 -j REJECT --reject-with icmp-port-unreachable"
    ),
}
WORKSHOP_PACKETS = {
    "SSH from the internet to the router": f"tcp {nat.INTERNET_HOST}:50000 > {nat.ROUTER_PUBLIC}:22 iif eth1",
    "web request from inside to the internet": f"tcp {nat.INSIDE_HOST}:40000 > {nat.INTERNET_HOST}:80 iif eth0",
    "web request from the internet to the router": f"tcp {nat.INTERNET_HOST}:51000 > {nat.ROUTER_PUBLIC}:80 iif eth1",
    "ping from the router to the internet": f"icmp {nat.ROUTER_PUBLIC} > {nat.INTERNET_HOST} local",
}


def workshop_rules(filter_rules: str, nat_rule: str) -> str:
    """The workshop's ruleset: its filter rules, and the learner's nat rule, as an iptables-save dump."""
    filter_lines = [line for line in filter_rules.splitlines() if line.strip()]
    dump = ["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]", *filter_lines,
            "COMMIT"]
    nat_lines = [line.strip().removeprefix("iptables -t nat ") for line in nat_rule.splitlines() if line.strip()]
    return "\n".join(dump) + "\n" + nat.nat_table(*nat_lines)


def workshop_ruleset(filter_rules: str, commands: str) -> nf.Ruleset:
    """A preset filter ruleset, then the learner's `iptables …` commands (any table, separated by `;`)
    applied in order, as a shell would run them."""
    rules = nf.parse_iptables_save(workshop_rules(filter_rules, ""))
    for command in (c.strip() for c in commands.split(";")):
        if not command:
            continue
        if not command.startswith("iptables "):
            raise LabInputError("iptables command", command,
                                "a command starting with iptables, such as iptables -t nat -A POSTROUTING -j MASQUERADE")
        try:
            nf.parse_iptables_command(command, rules)
        except LabInputError as error:
            raise LabInputError("iptables command", command, f"{error.field}: {error.allowed}") from None
    return rules


def render_workshop(ruleset: str, packet: str, commands: str) -> list:
    """The workshop's view: the hooks the packet passed, the TRACE lines, the counters, the conntrack entry."""
    rules = workshop_ruleset(WORKSHOP_RULESETS[ruleset], commands)
    conntrack = nf.Conntrack()
    result = nf.trace(rules, nat.notes_router(), WORKSHOP_PACKETS[packet], conntrack)
    return [
        Html(draw_hooks(result).markup),
        Tabs({
            "TRACE": Text(result.text()),
            "iptables-save -c": Text(rules.to_iptables_save(counters=True)),
            "conntrack -L": Text(conntrack.show() or "(no entries)"),
        }),
    ]


def rule_workshop():
    """The lab's rule-table workshop: a filter ruleset and a packet precomputed; iptables commands for any
    table typed (live)."""
    return explore(
        render_workshop,
        title="Rule-table workshop (the notes' router: eth0 inside, eth1 outside)",
        ruleset=Choice(list(WORKSHOP_RULESETS), label="filter rules"),
        packet=Choice(list(WORKSHOP_PACKETS), label="packet"),
        commands=Free("iptables -t nat -A POSTROUTING -o eth1 -j MASQUERADE", label="iptables commands"),
    )


# --- the NAT scenarios ----------------------------------------------------------------------------


def render_scenario(name: str) -> list:
    """One of the notes' NAT recipes: its command, each packet traced, and the conntrack entry."""
    run = nat.run(name)
    parts = [Text(f"$ {run.scenario.command}\n\n{run.scenario.explanation}")]
    tabs = {}
    for (what, _), result in zip(run.scenario.packets, run.results, strict=True):
        tabs[what] = [Html(draw_hooks(result).markup), Text(result.text())]
    tabs["conntrack -L"] = Text(run.conntrack.show())
    tabs["iptables-save -c"] = Text(run.ruleset.to_iptables_save(counters=True))
    return [*parts, Tabs(tabs)]


def nat_scenarios():
    """The nat lab's scenario explorer: one dropdown of the notes' recipes."""
    return explore(
        render_scenario,
        title="NAT recipes of the notes",
        name=Choice([(s.name, key) for key, s in nat.SCENARIOS.items()], label="recipe"),
    )
