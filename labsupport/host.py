"""A Linux network namespace as iproute2 sees it: links, addresses, routes, rules, neighbours, bridge FDB.

A :class:`Namespace` is a value object built with the same verbs as iproute2
(`add_link`, `add_address`, `add_route`, `add_rule`, `add_neighbour`) and printed
with the same views (`ip addr`, `ip route`, `ip rule`, `ip neigh`, `arp -a`,
`bridge fdb`, `ip route get`). Each verb checks its input like the kernel does and
raises :class:`~labsupport.errors.LabInputError` naming the field.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from labsupport.addressing import (
    ZERO_MAC,
    check_ifname,
    ipv6_link_local,
    parse_ipv4_address,
    parse_ipv4_interface,
    parse_ipv4_network,
    parse_mac,
)
from labsupport.errors import LabInputError
from labsupport.overlay import check_range, check_vni
from labsupport.routing import (
    DEFAULT_TABLE,
    LOCAL_TABLE,
    MAIN_TABLE,
    Decision,
    Route,
    RoutingTable,
    Rule,
    default_rules,
    resolve,
)

LINK_KINDS = ("loopback", "ether", "veth", "bridge", "vxlan", "ipip")


@dataclass(frozen=True)
class Vxlan:
    """A vxlan device's settings (`ip link add NAME type vxlan id VNI local IP dev DEV dstport PORT [nolearning]`).

    external is `external` (collect metadata): no VNI or remote of its own, the sender (an eBPF
    program) gives both per packet, as Cilium's `cilium_vxlan` does.
    """

    vni: int
    dstport: int
    local: IPv4Address | None = None
    dev: str | None = None
    learning: bool = True
    external: bool = False

    def details(self) -> str:
        """The kind line of `ip -d link show` for this device, up to its checksum flags."""
        words = ["vxlan"] + (["external"] if self.external else []) + ["id", str(self.vni)]
        if self.local is not None:
            words += ["local", str(self.local)]
        if self.dev is not None:
            words += ["dev", self.dev]
        words += ["srcport", "0", "0", "dstport", str(self.dstport)]
        if not self.learning:
            words.append("nolearning")
        words += ["ttl", "auto", "ageing", "300", "udpcsum", "noudp6zerocsumtx", "noudp6zerocsumrx"]
        return " ".join(words)

    def __deepcopy__(self, memo: dict) -> Vxlan:
        return self  # immutable


@dataclass
class Link:
    """A network device (`ip link`): loopback, a physical-like ether, one end of a veth pair, a bridge,
    a vxlan device (a VTEP) or the ipip fallback tunnel `tunl0`."""

    index: int
    name: str
    kind: str
    mac: str
    mtu: int = 1500
    master: str | None = None
    peer: tuple[str, str] | None = None  # (namespace, ifname) of the other veth end
    peer_index: int | None = None
    addresses: list[IPv4Interface] = field(default_factory=list)
    broadcast: bool = True  # addresses carry `brd` (as CNI sets them)
    vxlan: Vxlan | None = None  # a vxlan device's settings
    proxy_arp: bool = False  # net.ipv4.conf.DEV.proxy_arp: answers ARP for addresses routed elsewhere

    def flags(self) -> str:
        """The <…> flags `ip addr` shows for an up device."""
        if self.kind == "loopback":
            return "LOOPBACK,UP,LOWER_UP"
        return "NOARP,UP,LOWER_UP" if self.kind == "ipip" else "BROADCAST,MULTICAST,UP,LOWER_UP"

    def state(self) -> str:
        """The operational state `ip link` prints: devices without a carrier of their own say UNKNOWN."""
        return "UNKNOWN" if self.kind in ("loopback", "vxlan", "ipip") else "UP"

    def link_line(self, namespace: str) -> str:
        """The `link/…` line of `ip addr` and `ip link` in namespace (without its leading spaces)."""
        if self.kind == "loopback":
            return "link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00"
        if self.kind == "ipip":
            return "link/ipip 0.0.0.0 brd 0.0.0.0"  # the fallback tunl0: any local, any remote
        netns = f" link-netns {self.peer[0]}" if self.peer and self.peer[0] != namespace else ""
        return f"link/ether {self.mac} brd ff:ff:ff:ff:ff:ff{netns}"

    def __deepcopy__(self, memo: dict) -> Link:
        twin = copy.copy(self)  # every field is immutable but the list of (immutable) addresses
        twin.addresses = list(self.addresses)
        return twin

    def primary(self, iface: IPv4Interface) -> IPv4Interface:
        """The primary address of iface's prefix on this device: iface itself, unless an earlier address
        has the same prefix, which makes iface a secondary (`ip addr` says `secondary`)."""
        return next((a for a in self.addresses if a.network == iface.network), iface)


@dataclass(frozen=True)
class Neighbour:
    """One entry of the neighbour (ARP) table (`ip neigh`)."""

    ip: IPv4Address
    mac: str
    dev: str
    state: str = "REACHABLE"  # REACHABLE, STALE, DELAY, PERMANENT

    def line(self, with_dev: bool = True) -> str:
        """The line `ip neigh show` prints; with_dev=False: as `ip neigh show dev DEV` prints it, without
        the device. (iproute2 ends it with a space, which the model leaves out, as in all its views.)"""
        dev = f" dev {self.dev}" if with_dev else ""
        return f"{self.ip}{dev} lladdr {self.mac} {self.state}"

    def __str__(self) -> str:
        return self.line()

    def __deepcopy__(self, memo: dict) -> Neighbour:
        return self  # immutable


@dataclass(frozen=True)
class FdbEntry:
    """One entry of a forwarding database (`bridge fdb show`): a bridge's (MAC behind a port), or a
    vxlan device's own (`self`) entry saying which remote VTEP (dst) a MAC is behind."""

    mac: str
    port: str
    bridge: str | None
    permanent: bool = False
    dst: IPv4Address | None = None  # a vxlan device's entry: the remote VTEP's address

    def line(self, with_dev: bool = True) -> str:
        """The line `bridge fdb show` prints; with_dev=False: as `bridge fdb show dev DEV` prints it,
        without the device. A learned entry has no state word (iproute2 leaves a space where it would
        be, which the model leaves out, as in all its views)."""
        dev = f" dev {self.port}" if with_dev else ""
        where = f"dst {self.dst} self" if self.dst is not None else f"master {self.bridge}"
        return f"{self.mac}{dev} {where}" + (" permanent" if self.permanent else "")

    def __str__(self) -> str:
        return self.line()

    def __deepcopy__(self, memo: dict) -> FdbEntry:
        return self  # immutable


@dataclass
class Namespace:
    """One network namespace: a node's root namespace or a pod's (all its containers share it)."""

    name: str
    role: str = "pod"  # "node" or "pod"
    forwarding: bool = False  # net.ipv4.ip_forward
    containers: tuple[str, ...] = ()
    links: dict[str, Link] = field(default_factory=dict)
    tables: dict[str, RoutingTable] = field(default_factory=dict)
    rules: list[Rule] = field(default_factory=default_rules)
    neighbours: list[Neighbour] = field(default_factory=list)
    fdb: list[FdbEntry] = field(default_factory=list)

    def __post_init__(self) -> None:
        for table_id, label in ((MAIN_TABLE, "main"), (DEFAULT_TABLE, "default")):
            self.tables.setdefault(label, RoutingTable(table_id))
        if "lo" not in self.links:
            lo = self.add_link("lo", "loopback", mac="00:00:00:00:00:00", mtu=65536)
            lo.addresses.append(IPv4Interface("127.0.0.1/8"))

    # --- building, with iproute2's verbs -------------------------------------------------------

    def add_link(
        self, name: str, kind: str, mac: str, mtu: int = 1500, master: str | None = None, index: int | None = None
    ) -> Link:
        """`ip link add NAME type KIND` then `ip link set NAME address MAC mtu MTU [master BR] up`.

        A vxlan device needs its settings: :meth:`add_vxlan` makes one."""
        plain = [k for k in LINK_KINDS if k != "vxlan"]
        if kind not in plain:
            raise LabInputError("link.kind", kind, f"one of {', '.join(plain)} (a vxlan device: add_vxlan)")
        return self._add_link(name, kind, mac, mtu, master, index)

    def _add_link(self, name: str, kind: str, mac: str, mtu: int, master: str | None, index: int | None) -> Link:
        check_ifname(name, "link.name")
        if name in self.links:
            raise LabInputError("link.name", name, f"namespace {self.name} already has a device of that name")
        max_mtu = 65536 if kind == "loopback" else 65535  # veth and bridge devices stop at ETH_MAX_MTU
        if _whole(mtu) is None or not 68 <= _whole(mtu) <= max_mtu:
            raise LabInputError("link.mtu", mtu, f"an MTU between 68 and {max_mtu}")
        if master is not None:
            bridge = self.links.get(master)
            if bridge is None or bridge.kind != "bridge":
                raise LabInputError("link.master", master, f"the name of a bridge in namespace {self.name}")
        link = Link(
            index=index if index is not None else max((lk.index for lk in self.links.values()), default=0) + 1,
            name=name,
            kind=kind,
            mac=parse_mac(mac, "link.mac"),
            mtu=_whole(mtu),
            master=master,
        )
        self.links[name] = link
        return link

    def add_vxlan(
        self,
        name: str,
        vni: int,
        dstport: int,
        mac: str,
        local: str | None = None,
        dev: str | None = None,
        learning: bool = True,
        mtu: int = 1500,
        master: str | None = None,
        external: bool = False,
    ) -> Link:
        """`ip link add NAME type vxlan id VNI [local IP] [dev DEV] dstport PORT [nolearning] [external]`,
        then `ip link set NAME address MAC mtu MTU [master BR] up`: a VTEP. Its forwarding is
        :meth:`vxlan_lookup` (sending) and :meth:`vxlan_learn` (receiving); :class:`labsupport.overlay.Vtep`
        is a VTEP on a namespace of its own."""
        vni_value = check_vni(vni, "vxlan.vni")
        port = check_range(dstport, "vxlan.dstport", 1, 65535)
        if dev is not None:
            self.link(dev, "vxlan.dev")
        settings = Vxlan(
            vni_value,
            port,
            local=parse_ipv4_address(local, "vxlan.local") if local is not None else None,
            dev=dev,
            learning=learning,
            external=external,
        )
        link = self._add_link(name, "vxlan", mac, mtu, master, None)
        link.vxlan = settings
        return link

    def add_fdb(self, mac: str, dev: str, dst: str, permanent: bool = True, append: bool = True) -> FdbEntry:
        """`bridge fdb append MAC dev VXLAN_DEV dst REMOTE_IP self permanent` (append=False: `bridge fdb add`):
        frames for MAC go to that VTEP.

        The all-zeros MAC is the default entry: unknown and broadcast destinations are sent to every
        one of its destinations (head-end replication). As Linux 6.18 does it: a MAC's first entry is
        listed first (newest first); `append` adds another destination, after the MAC's others, only to
        the all-zeros or a multicast MAC, and leaves a unicast MAC that has one as it is; `add` refuses a
        MAC that already has an entry ("File exists")."""
        link = self.link(dev, "fdb.dev")
        if link.kind != "vxlan":
            raise LabInputError("fdb.dev", dev, f"a vxlan device of {self.name} (a `dst` entry belongs to a VTEP)")
        entry = FdbEntry(parse_mac(mac, "fdb.mac"), dev, None, permanent=permanent, dst=parse_ipv4_address(dst, "fdb.dst"))
        same = [i for i, e in enumerate(self.fdb) if e.port == dev and e.dst is not None and e.mac == entry.mac]
        if not same:
            self.fdb.insert(0, entry)
            return entry
        if not append:
            raise LabInputError("fdb.mac", mac, f"a MAC without an FDB entry on {dev} (File exists; "
                                                "append adds another destination to the all-zeros entry)")
        existing = [self.fdb[i] for i in same]
        group = entry.mac == ZERO_MAC or int(entry.mac[:2], 16) & 1
        if not group or entry.dst in {e.dst for e in existing}:
            return next((e for e in existing if e.dst == entry.dst), existing[0])
        self.fdb.insert(same[-1] + 1, entry)
        return entry

    def add_address(self, dev: str, address: str | IPv4Interface, broadcast: bool = True) -> IPv4Interface:
        """`ip addr add ADDRESS/LEN [brd +] dev DEV`: also adds the connected route, as the kernel does."""
        link = self.link(dev, "address.dev")
        iface = parse_ipv4_interface(address, "address")
        for other in self.links.values():
            for existing in other.addresses:
                if existing.ip == iface.ip:
                    raise LabInputError("address", str(iface), f"{iface.ip} is already on {other.name}")
        secondary = link.primary(iface) != iface
        link.addresses.append(iface)
        link.broadcast = broadcast
        if iface.network.prefixlen < 32 and link.kind != "loopback" and not secondary:
            self.tables["main"].add(
                Route(iface.network, dev, proto="kernel", scope="link", src=iface.ip)
            )
        return iface

    def add_table(self, name: str, table_id: int) -> RoutingTable:
        """Name a routing table, as a line of /etc/iproute2/rt_tables does (`2 eni-1`)."""
        if name in self.tables:
            raise LabInputError("table.name", name, f"namespace {self.name} already has that table")
        self.tables[name] = RoutingTable(table_id, name)
        return self.tables[name]

    def add_route(
        self,
        dst: str,
        dev: str | None = None,
        via: str | None = None,
        table: str = "main",
        scope: str | None = None,
        proto: str | None = None,
        src: str | None = None,
        metric: int | None = None,
        onlink: bool = False,
        kind: str = "unicast",
    ) -> Route:
        """`ip route add [blackhole] DST [via GW] [dev DEV] [table T] [scope S] [proto P] [src SRC] [onlink]`.

        As in the kernel, a gateway must be reachable directly: on a connected prefix of DEV
        or covered by a link-scope route in the same table ("Nexthop has invalid gateway"),
        unless `onlink` says to take it as on the link regardless (what VXLAN and IPIP overlays do).
        A blackhole route has no device: what it matches is dropped.
        """
        network = parse_ipv4_network("0.0.0.0/0" if dst == "default" else _as_prefix(dst), "route.dst")
        rt = self.tables.get(table)
        if rt is None:
            raise LabInputError("route.table", table, f"one of the tables of {self.name}: {', '.join(self.tables)}")
        if kind == "blackhole":
            return rt.add(Route(network, "", proto=proto, metric=metric, kind="blackhole"))
        if kind != "unicast":
            raise LabInputError("route.type", kind, "unicast or blackhole")
        gateway = parse_ipv4_address(via, "route.via") if via is not None else None
        if dev is None:
            if gateway is None:
                raise LabInputError("route.dev", dev, "a device, or a gateway to find one by")
            dev = self._device_for_gateway(gateway, rt, "route.via")
        link = self.link(dev, "route.dev")
        if onlink and gateway is None:
            raise LabInputError("route.onlink", onlink, "onlink only with a gateway (via)")
        if gateway is not None and not onlink and not self._gateway_on_link(gateway, link.name, rt):
            raise LabInputError(
                "route.via",
                str(gateway),
                f"a gateway on a prefix reachable directly on {link.name} (Nexthop has invalid gateway)",
            )
        if scope is None and gateway is None:
            scope = "link"
        return rt.add(
            Route(
                network,
                link.name,
                via=gateway,
                proto=proto,
                scope=scope,
                src=parse_ipv4_address(src, "route.src") if src is not None else None,
                metric=metric,
                onlink=onlink,
            )
        )

    def add_rule(
        self,
        priority: int,
        table: str,
        src: str | None = None,
        dst: str | None = None,
        iif: str | None = None,
        invert: bool = False,
    ) -> Rule:
        """`ip rule add [not] [from SRC] [to DST] [iif DEV] lookup TABLE priority N`."""
        if table not in self.tables and table != "local":
            raise LabInputError("rule.table", table, f"one of the tables of {self.name}: {', '.join(self.tables)}")
        if _whole(priority) is None or not 0 <= _whole(priority) <= 0xFFFFFFFF:
            raise LabInputError("rule.priority", priority, "a priority from 0 to 4294967295")
        rule = Rule(
            int(priority),
            table,
            src=parse_ipv4_network(_as_prefix(src), "rule.from") if src is not None else None,
            dst=parse_ipv4_network(_as_prefix(dst), "rule.to") if dst is not None else None,
            iif=iif,
            invert=invert,
        )
        self.rules.append(rule)
        self.rules.sort(key=lambda r: r.priority)
        return rule

    def add_neighbour(self, ip: str, mac: str, dev: str, state: str = "PERMANENT") -> Neighbour:
        """`ip neigh replace IP lladdr MAC dev DEV nud permanent` (the kernel learns the others by ARP)."""
        self.link(dev, "neighbour.dev")
        entry = Neighbour(parse_ipv4_address(ip, "neighbour.ip"), parse_mac(mac, "neighbour.mac"), dev, state)
        self.neighbours = [n for n in self.neighbours if (n.ip, n.dev) != (entry.ip, entry.dev)] + [entry]
        return entry

    # --- reading -------------------------------------------------------------------------------

    def link(self, name: str, fieldname: str = "dev") -> Link:
        """The device called name, or the one clear error."""
        try:
            return self.links[name]
        except KeyError:
            raise LabInputError(fieldname, name, f"a device of {self.name}: {', '.join(self.links)}") from None

    def local_addresses(self) -> list[IPv4Address]:
        """Every address this namespace owns (its local table's `local` routes)."""
        return [a.ip for lk in self.links.values() for a in lk.addresses]

    def owns(self, ip: IPv4Address) -> bool:
        """Whether ip is local here: 127.0.0.0/8 or an address on any device."""
        return ip in IPv4Network("127.0.0.0/8") or ip in self.local_addresses()

    def local_table(self) -> RoutingTable:
        """The local table the kernel maintains from the addresses (`ip route show table local`)."""
        table = RoutingTable(LOCAL_TABLE)
        for link in self.links.values():
            for iface in link.addresses:
                # A secondary address's routes take the primary's address as src; only a primary adds the
                # prefix's broadcast route, with or without `brd` (fib_add_ifaddr).
                primary = link.primary(iface)
                if link.kind == "loopback" and primary == iface:
                    table.routes.append(Route(iface.network, "lo", proto="kernel", scope="host", src=iface.ip, kind="local"))
                table.routes.append(
                    Route(IPv4Network((int(iface.ip), 32)), link.name, proto="kernel", scope="host", src=primary.ip, kind="local")
                )
                if iface.network.prefixlen < 31 and primary == iface:
                    table.routes.append(
                        Route(
                            IPv4Network((int(iface.network.broadcast_address), 32)),
                            link.name, proto="kernel", scope="link", src=iface.ip, kind="broadcast",
                        )
                    )
        return table

    def all_tables(self) -> dict[str, RoutingTable]:
        """Every table by the name `ip rule` uses, the derived local table included."""
        return {"local": self.local_table(), **self.tables}

    def route_get(self, dst: str | IPv4Address, src: str | None = None, iif: str | None = None) -> Decision:
        """`ip route get DST [from SRC] [iif DEV]`: which rule, table and route the kernel uses."""
        address = parse_ipv4_address(dst, "dst")
        source = parse_ipv4_address(src, "src") if src is not None else None
        decision = resolve(self.rules, self.all_tables(), address, source, iif)
        if decision is None:
            raise LabInputError("dst", str(address), f"a destination {self.name} has a route to (Network is unreachable)")
        return decision

    def source_for(self, route: Route) -> IPv4Address:
        """The source address the kernel picks for a route: its `src`, else the device's first address,
        else any global address (inet_select_addr)."""
        if route.src is not None:
            return route.src
        link = self.links[route.dev]
        if link.addresses:
            return link.addresses[0].ip
        for other in self.links.values():
            if other.kind != "loopback" and other.addresses:
                return other.addresses[0].ip
        raise LabInputError("route.src", None, f"an address on some device of {self.name} to send from")

    def neighbour(self, ip: IPv4Address, dev: str) -> Neighbour | None:
        """The neighbour entry for ip on dev, if the table has one."""
        return next((n for n in self.neighbours if n.ip == ip and n.dev == dev), None)

    def bridge_ports(self, bridge: str) -> list[Link]:
        """The devices enslaved to a bridge (`bridge link`)."""
        return [lk for lk in self.links.values() if lk.master == bridge]

    # --- views in iproute2's words -------------------------------------------------------------

    def ip_addr(self) -> str:
        """`ip addr show` as iproute2 6.x prints it (IPv6 link-local included, lifetimes forever)."""
        lines = []
        for link in sorted(self.links.values(), key=lambda lk: lk.index):
            name = link.name
            if link.kind == "veth" and link.peer_index is not None:
                name += f"@if{link.peer_index}"
            master = f" master {link.master}" if link.master else ""
            lines.append(
                f"{link.index}: {name}: <{link.flags()}> mtu {link.mtu} qdisc noqueue{master} state {link.state()}"
                " group default qlen 1000"
            )
            lines.append(f"    {link.link_line(self.name)}")
            for iface in link.addresses:
                brd = ""
                if link.broadcast and link.kind not in ("loopback", "ipip") and iface.network.prefixlen < 31:
                    brd = f" brd {iface.network.broadcast_address}"
                scope = "host" if link.kind == "loopback" else "global"
                if link.primary(iface) != iface:
                    scope += " secondary"
                lines.append(f"    inet {iface.with_prefixlen}{brd} scope {scope} {link.name}")
                lines.append("       valid_lft forever preferred_lft forever")
            if link.kind == "loopback":
                lines.append("    inet6 ::1/128 scope host")
            elif link.kind == "ipip":
                continue  # an ipip device has no MAC to derive a link-local address from
            else:
                lines.append(f"    inet6 {ipv6_link_local(link.mac).with_prefixlen} scope link")
            lines.append("       valid_lft forever preferred_lft forever")
        return "\n".join(lines)

    def ip_link_details(self) -> str:
        """`ip -d link show`, trimmed to what tells devices apart: the header line, the `link/…` line
        and the kind line (`veth`, `bridge`, `vxlan id 1 local … dstport 8472 nolearning …`, `ipip …`),
        with the generic per-device limits and counters iproute2 appends (promiscuity, minmtu,
        maxmtu, addrgenmode, queue counts, gso/gro sizes) and the bridge's timers left out."""
        lines = []
        for link in sorted(self.links.values(), key=lambda lk: lk.index):
            name = link.name
            if link.kind == "veth" and link.peer_index is not None:
                name += f"@if{link.peer_index}"
            elif link.kind == "ipip":
                name += "@NONE"
            master = f" master {link.master}" if link.master else ""
            lines.append(
                f"{link.index}: {name}: <{link.flags()}> mtu {link.mtu} qdisc noqueue{master} state {link.state()}"
                " mode DEFAULT group default qlen 1000"
            )
            lines.append(f"    {link.link_line(self.name)}")
            if link.kind == "vxlan" and link.vxlan is not None:
                lines.append(f"    {link.vxlan.details()}")
            elif link.kind == "ipip":
                lines.append("    ipip any remote any local any ttl inherit nopmtudisc")
            elif link.kind in ("veth", "bridge"):
                lines.append(f"    {link.kind}")
            if link.master is not None:
                lines.append("    bridge_slave state forwarding")
        return "\n".join(lines)

    def ip_route(self, table: str = "main") -> str:
        """`ip route show [table T]`."""
        tables = self.all_tables()
        if table not in tables:
            raise LabInputError("table", table, f"one of {', '.join(tables)}")
        return tables[table].show()

    def ip_rule(self) -> str:
        """`ip rule list`."""
        return "\n".join(str(r) for r in sorted(self.rules, key=lambda r: r.priority))

    def ip_neigh(self, dev: str | None = None) -> str:
        """`ip neigh show [dev DEV]` (entry states are the ones right after the modelled traffic). The
        entries come in the order they were made; the kernel lists them in its hash table's order."""
        if dev is None:
            return "\n".join(n.line() for n in self.neighbours)
        self.link(dev)
        return "\n".join(n.line(with_dev=False) for n in self.neighbours if n.dev == dev)

    def arp_a(self) -> str:
        """`arp -a` from net-tools, the older view of the same neighbour table."""
        lines = []
        for n in self.neighbours:
            perm = " PERM" if n.state == "PERMANENT" else ""
            lines.append(f"? ({n.ip}) at {n.mac} [ether]{perm} on {n.dev}")
        return "\n".join(lines)

    def bridge_fdb(self) -> str:
        """`bridge fdb show` restricted to what a learner reads: each port's own MAC (permanent),
        the MACs the bridge learned, and each vxlan device's `dst` entries (which VTEP a MAC is
        behind), in device order. The kernel also lists multicast `self permanent` entries."""
        lines = []
        for link in sorted(self.links.values(), key=lambda lk: lk.index):
            if link.kind == "vxlan" and link.master is None:
                lines += [str(e) for e in self.vxlan_fdb(link.name)]
            if link.kind != "bridge":
                continue
            lines.append(str(FdbEntry(link.mac, link.name, link.name, permanent=True)))
            for port in self.bridge_ports(link.name):
                lines += [str(e) for e in self.fdb if e.port == port.name and e.dst is None and not e.permanent]
                lines.append(str(FdbEntry(port.mac, port.name, link.name, permanent=True)))
                lines += [str(e) for e in self.fdb if e.port == port.name and e.dst is not None]
        return "\n".join(lines)

    def vxlan_fdb(self, dev: str) -> list[FdbEntry]:
        """A vxlan device's own entries (`bridge fdb show dev DEV`'s `dst` lines), in the kernel's order."""
        return [e for e in self.fdb if e.port == dev and e.dst is not None]

    def vxlan_fdb_show(self, dev: str) -> str:
        """`bridge fdb show dev DEV` for a vxlan device: its `dst` entries, newest MAC first."""
        return "\n".join(e.line(with_dev=False) for e in self.vxlan_fdb(dev))

    def vxlan_lookup(self, dev: str, mac: str) -> list[FdbEntry]:
        """The FDB entries vxlan device dev sends a frame for the inner destination mac by (vxlan_xmit):
        the MAC's own, else the all-zeros default entries (the frame goes to each of their VTEPs, as a
        broadcast does), else none (the frame is dropped)."""
        wanted = parse_mac(mac, "inner_dst_mac")
        entries = self.vxlan_fdb(dev)
        return [e for e in entries if e.mac == wanted] or [e for e in entries if e.mac == ZERO_MAC]

    def vxlan_learn(self, dev: str, inner_src: str, outer_src: str) -> str:
        """What a VXLAN packet received on vxlan device dev teaches it: inner source MAC → the VTEP it came
        from (outer source address), as the kernel's vxlan_snoop does. Returns what happened:

        - "off": the device has `nolearning` (flannel's): nothing learned, the packet goes on;
        - "known": the MAC's entry already names that VTEP;
        - "learned": a new entry, not permanent (it ages out), listed first;
        - "migrated": a learned entry named another VTEP; it now names this one, in place;
        - "static": a permanent entry names another VTEP. The kernel never moves a static entry: it
          leaves it as it is and drops the packet (checked on Linux 6.18).
        """
        settings = self.link(dev).vxlan
        if settings is None:
            raise LabInputError("dev", dev, f"a vxlan device of {self.name}")
        if not settings.learning:
            return "off"
        mac = parse_mac(inner_src, "inner_src_mac")
        src = parse_ipv4_address(outer_src, "outer_src")
        index = next((i for i, e in enumerate(self.fdb) if e.port == dev and e.dst is not None and e.mac == mac), None)
        if index is None:
            self.fdb.insert(0, FdbEntry(mac, dev, None, permanent=False, dst=src))
            return "learned"
        entry = self.fdb[index]
        if entry.dst == src:
            return "known"
        if entry.permanent:
            return "static"
        self.fdb[index] = FdbEntry(mac, dev, None, permanent=False, dst=src)
        return "migrated"

    def learned_fdb(self) -> list[FdbEntry]:
        """Only the learned (non-permanent) bridge FDB entries: what traffic taught the bridge."""
        return [e for e in self.fdb if not e.permanent and e.dst is None]

    def ip_json(self) -> dict:
        """The comparable core of `ip -j addr`, `ip -j route`, `ip -j rule`, `ip -j neigh`:
        what a kernel twin checks against the real kernel."""
        table_ids = {name: t.id for name, t in self.all_tables().items()}
        return {
            "addr": {
                lk.name: {
                    "mac": lk.mac,
                    "mtu": lk.mtu,
                    "master": lk.master,
                    "inet": sorted(a.with_prefixlen for a in lk.addresses),
                    "inet6": [] if lk.kind in ("loopback", "ipip") else [ipv6_link_local(lk.mac).with_prefixlen],
                }
                for lk in self.links.values()
            },
            "route": {name: t.to_json() for name, t in self.tables.items() if t.routes},
            "rule": [r.to_json(table_ids) for r in sorted(self.rules, key=lambda r: r.priority)],
            "neigh": sorted((str(n.ip), n.dev, n.mac) for n in self.neighbours),
            "fdb": sorted((e.mac, e.port) for e in self.learned_fdb()),
        }

    # --- helpers -------------------------------------------------------------------------------

    def _gateway_on_link(self, gateway: IPv4Address, dev: str, table: RoutingTable) -> bool:
        link = self.links[dev]
        if any(gateway in a.network for a in link.addresses):
            return True
        return any(r.dev == dev and r.via is None and gateway in r.dst and r.scope == "link" for r in table.routes)

    def _device_for_gateway(self, gateway: IPv4Address, table: RoutingTable, fieldname: str) -> str:
        for link in self.links.values():
            if self._gateway_on_link(gateway, link.name, table):
                return link.name
        raise LabInputError(fieldname, str(gateway), f"a gateway on a prefix connected to {self.name}")


def namespace_from_ip_json(name: str, addrs: list[dict], routes: list[dict], rules: list[dict] | None = None) -> Namespace:
    """A namespace read from a real host's `ip -j -d addr`, `ip -4 -j route show table all` and `ip -j rule`.

    Links, addresses, every table's unicast routes and the rules come from the dumps; the local
    table is derived again from the addresses, as the kernel derives it. Without `-d` the kind of a
    link is guessed: `loopback` by its link type, a bridge when another link names it as master.
    With `-d`, a vxlan device keeps its VNI, local address, underlay device, port and learning flag.
    """
    if not isinstance(addrs, list) or not isinstance(routes, list):
        raise LabInputError("ip -j output", type(addrs).__name__, "the JSON lists `ip -j addr` and `ip -j route` print")
    ns = Namespace(name, role="node")
    ns.links.clear()
    masters = {a.get("master") for a in addrs if a.get("master")}
    for entry in sorted(addrs, key=lambda a: a.get("ifindex", 0)):
        try:
            ifname, index = entry["ifname"], int(entry["ifindex"])
        except (KeyError, TypeError, ValueError):
            raise LabInputError("ip -j addr", str(entry)[:80], "objects with ifindex and ifname") from None
        kind = (entry.get("linkinfo") or {}).get("info_kind")
        if entry.get("link_type") == "loopback":
            kind = "loopback"
        elif kind not in LINK_KINDS:
            kind = "bridge" if ifname in masters else "ether"
        link = Link(index, ifname, kind, entry.get("address", "00:00:00:00:00:00"), int(entry.get("mtu", 1500)))
        if kind == "vxlan":
            data = (entry.get("linkinfo") or {}).get("info_data") or {}
            link.vxlan = Vxlan(
                int(data.get("id", 0)),
                int(data.get("port", 8472)),
                local=parse_ipv4_address(data["local"], f"{ifname}.local") if "local" in data else None,
                dev=data.get("link"),
                learning=bool(data.get("learning", True)),
                external=bool(data.get("external", False)),
            )
        ns.links[ifname] = link
        for info in entry.get("addr_info", []):
            if info.get("family") == "inet":
                link.addresses.append(parse_ipv4_interface(f"{info['local']}/{info['prefixlen']}", f"{ifname}.addr_info"))
    for entry in addrs:
        if entry.get("master") in ns.links:
            ns.links[entry["ifname"]].master = entry["master"]
    for entry in routes:
        if entry.get("type", "unicast") != "unicast":
            continue
        table = str(entry.get("table", "main"))
        if table == "local":
            continue
        if table not in ns.tables:
            ns.tables[table] = RoutingTable(int(table) if table.isdigit() else len(ns.tables) + 1000, None if table.isdigit() else table)
        dst = entry.get("dst", "")
        ns.tables[table].routes.append(
            Route(
                parse_ipv4_network("0.0.0.0/0" if dst == "default" else _as_prefix(dst), "route.dst"),
                entry.get("dev", ""),
                via=parse_ipv4_address(entry["gateway"], "route.gateway") if "gateway" in entry else None,
                proto=entry.get("protocol"),
                scope=entry.get("scope"),
                src=parse_ipv4_address(entry["prefsrc"], "route.prefsrc") if "prefsrc" in entry else None,
                metric=entry.get("metric"),
                onlink="onlink" in entry.get("flags", []),
            )
        )
    if rules is not None:
        ns.rules = []
        for entry in rules:
            src = None if entry.get("src", "all") == "all" else f"{entry['src']}/{entry.get('srclen', 32)}"
            dst = f"{entry['dst']}/{entry.get('dstlen', 32)}" if "dst" in entry else None
            ns.rules.append(
                Rule(
                    int(entry["priority"]),
                    str(entry.get("table", "main")),
                    src=parse_ipv4_network(src, "rule.src") if src else None,
                    dst=parse_ipv4_network(dst, "rule.dst") if dst else None,
                    iif=entry.get("iif"),
                    invert="not" in entry,
                )
            )
    return ns


def _whole(value: object) -> int | None:
    """value as a whole number (an int, or text such as "1500"), else None."""
    if isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return None


def _as_prefix(value: str) -> str:
    text = str(value).strip()
    return text if "/" in text else f"{text}/32"
