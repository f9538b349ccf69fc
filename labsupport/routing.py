"""Routing as the Linux kernel does it: tables, longest-prefix match, and policy routing (`ip rule`).

Routes print as `ip route` prints them and rules as `ip rule` prints them (iproute2 6.x,
without its trailing spaces). `ip -j` JSON forms are produced too, so a kernel twin can
compare the model with a real kernel field by field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

from labsupport.errors import LabInputError

LOCAL_TABLE, MAIN_TABLE, DEFAULT_TABLE = 255, 254, 253
_TABLE_NAMES = {LOCAL_TABLE: "local", MAIN_TABLE: "main", DEFAULT_TABLE: "default"}
DEFAULT_ROUTE = IPv4Network("0.0.0.0/0")


@dataclass(frozen=True)
class Route:
    """One route, as one line of `ip route show table …`."""

    dst: IPv4Network
    dev: str
    via: IPv4Address | None = None
    proto: str | None = None
    scope: str | None = None
    src: IPv4Address | None = None
    metric: int | None = None
    kind: str = "unicast"  # unicast, local, broadcast or blackhole, as `ip route` prints the type
    onlink: bool = False  # RTNH_F_ONLINK: the gateway is taken as directly reachable on dev, unchecked

    def dst_text(self) -> str:
        """The destination as iproute2 writes it: 'default', a bare address for /32, else a prefix."""
        if self.dst == DEFAULT_ROUTE:
            return "default"
        if self.dst.prefixlen == 32:
            return str(self.dst.network_address)
        return str(self.dst)

    def __str__(self) -> str:
        words = [] if self.kind == "unicast" else [self.kind]
        words.append(self.dst_text())
        if self.via is not None:
            words += ["via", str(self.via)]
        if self.dev:  # a blackhole route has no device
            words += ["dev", self.dev]
        if self.proto:
            words += ["proto", self.proto]
        if self.scope:
            words += ["scope", self.scope]
        if self.src is not None:
            words += ["src", str(self.src)]
        if self.metric:  # the kernel leaves metric 0 out of its dump, so iproute2 never prints it
            words += ["metric", str(self.metric)]
        if self.onlink:
            words.append("onlink")
        return " ".join(words)

    def to_json(self) -> dict:
        """This route as one object of `ip -j route show` prints it."""
        out: dict = {}
        if self.kind != "unicast":
            out["type"] = self.kind
        out["dst"] = self.dst_text()
        if self.via is not None:
            out["gateway"] = str(self.via)
        if self.dev:
            out["dev"] = self.dev
        if self.proto:
            out["protocol"] = self.proto
        if self.scope:
            out["scope"] = self.scope
        if self.src is not None:
            out["prefsrc"] = str(self.src)
        if self.metric:
            out["metric"] = self.metric
        out["flags"] = ["onlink"] if self.onlink else []
        return out

    def __deepcopy__(self, memo: dict) -> Route:
        return self  # immutable: a copied namespace can share it


@dataclass
class RoutingTable:
    """A routing table (`ip route show table ID`): longest prefix wins, then the lowest metric."""

    id: int
    name: str | None = None
    routes: list[Route] = field(default_factory=list)

    @property
    def label(self) -> str:
        """How `ip rule` names the table: its name if it has one, else its number."""
        return self.name or _TABLE_NAMES.get(self.id, str(self.id))

    def add(self, route: Route) -> Route:
        """Add a route like `ip route add`; an identical destination, metric and type is refused (EEXIST).
        No metric is metric 0, as in the kernel."""
        for existing in self.routes:
            if (existing.dst, existing.metric or 0, existing.kind) == (route.dst, route.metric or 0, route.kind):
                raise LabInputError(
                    "route.dst", route.dst_text(), f"table {self.label} already has a route to it ({existing})"
                )
        self.routes.append(route)
        return route

    def __deepcopy__(self, memo: dict) -> RoutingTable:
        return RoutingTable(self.id, self.name, list(self.routes))  # the routes are immutable

    def lookup(self, dst: IPv4Address) -> Route | None:
        """The route the kernel picks for dst in this table, or None when none matches."""
        best: Route | None = None
        for route in self.routes:
            if dst not in route.dst:
                continue
            if best is None or _better(route, best):
                best = route
        return best

    def show(self) -> str:
        """The table as `ip route show table …` prints it, in the kernel's order."""
        return "\n".join(str(r) for r in sorted(self.routes, key=_kernel_order))

    def to_json(self) -> list[dict]:
        """The table as `ip -j route show table …` prints it."""
        return [r.to_json() for r in sorted(self.routes, key=_kernel_order)]


def _better(candidate: Route, best: Route) -> bool:
    if candidate.dst.prefixlen != best.dst.prefixlen:
        return candidate.dst.prefixlen > best.dst.prefixlen
    return (candidate.metric or 0) < (best.metric or 0)


def _kernel_order(route: Route) -> tuple:
    # The kernel's FIB dump walks the trie in address order; at one address a leaf keeps its routes
    # longest prefix first (`0.0.0.0/1` before `default`, `10.244.1.0/26` before `10.244.1.0/24`).
    return (int(route.dst.network_address), -route.dst.prefixlen, route.metric or 0)


@dataclass(frozen=True)
class Rule:
    """One policy-routing rule, as one line of `ip rule list`."""

    priority: int
    table: str
    src: IPv4Network | None = None
    dst: IPv4Network | None = None
    iif: str | None = None
    invert: bool = False

    def matches(self, dst: IPv4Address, src: IPv4Address | None, iif: str | None) -> bool:
        """Whether a packet with these fields selects this rule (before `not` is applied, then applied)."""
        hit = True
        if self.src is not None:
            hit = hit and src is not None and src in self.src
        if self.dst is not None:
            hit = hit and dst in self.dst
        if self.iif is not None:
            hit = hit and iif == self.iif
        return hit != self.invert

    def selector_args(self) -> list[str]:
        """The selector as `ip rule add` takes it: `[not] [from SRC] [to DST] [iif DEV]`."""
        args = ["not"] if self.invert else []
        if self.src is not None:
            args += ["from", str(self.src)]
        if self.dst is not None:
            args += ["to", str(self.dst)]
        if self.iif is not None:
            args += ["iif", self.iif]
        return args

    def __str__(self) -> str:
        words = ["not"] if self.invert else []
        words += ["from", _prefix_text(self.src) if self.src is not None else "all"]
        if self.dst is not None:
            words += ["to", _prefix_text(self.dst)]
        if self.iif is not None:
            words += ["iif", self.iif]
        words += ["lookup", self.table]
        return f"{self.priority}:\t" + " ".join(words)

    def __deepcopy__(self, memo: dict) -> Rule:
        return self  # immutable: a copied namespace can share it

    def to_json(self, table_ids: dict[str, int]) -> dict:
        """The rule as `ip -j rule list` prints it (tables without a known name by number)."""
        out: dict = {"priority": self.priority}
        if self.invert:
            out["not"] = None
        if self.src is None:
            out["src"] = "all"
        else:
            out["src"] = str(self.src.network_address)
            if self.src.prefixlen != 32:
                out["srclen"] = self.src.prefixlen
        if self.dst is not None:
            out["dst"] = str(self.dst.network_address)
            if self.dst.prefixlen != 32:
                out["dstlen"] = self.dst.prefixlen
        if self.iif is not None:
            out["iif"] = self.iif
        table_id = table_ids.get(self.table)
        out["table"] = _TABLE_NAMES.get(table_id, str(table_id)) if table_id is not None else self.table
        return out


def _prefix_text(net: IPv4Network) -> str:
    return str(net.network_address) if net.prefixlen == 32 else str(net)


def default_rules() -> list[Rule]:
    """The three rules every network namespace starts with (`ip rule` on a fresh namespace)."""
    return [Rule(0, "local"), Rule(32766, "main"), Rule(32767, "default")]


@dataclass(frozen=True)
class Decision:
    """What the kernel decided for one packet: which rule, which table, which route."""

    rule: Rule
    table: RoutingTable
    route: Route

    def explain(self) -> str:
        """One line a learner can check against `ip route get`: rule, table and route."""
        selector = str(self.rule).split("\t", 1)[1]
        return f"rule {self.rule.priority} ({selector}) → table {self.table.label}: {self.route}"


def resolve(
    rules: list[Rule],
    tables: dict[str, RoutingTable],
    dst: IPv4Address,
    src: IPv4Address | None = None,
    iif: str | None = None,
) -> Decision | None:
    """Policy routing as `fib_rules_lookup` walks it: rules by priority; a table with no match
    falls through to the next rule. Returns None when nothing matches ("Network is unreachable")."""
    for rule in sorted(rules, key=lambda r: r.priority):
        if not rule.matches(dst, src, iif):
            continue
        table = tables.get(rule.table)
        if table is None:
            continue
        route = table.lookup(dst)
        if route is not None:
            return Decision(rule, table, route)
    return None
