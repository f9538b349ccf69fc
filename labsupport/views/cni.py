"""Figures and widgets of the CNI chapter: thin views over :mod:`labsupport.cni`.

The comparator shows one plugin in one mode on one of the course's clusters: each node's devices
and tables as iproute2 prints them, the kernel's refusals and what the model stands in for, and a
ping from pod-a at every hop. The cluster figure is SVG drawn by hand (nodes, devices, the underlay,
the ping's path and what wraps it on the wire); the capture is a `data:` link to a pcap, so all of
it works on the static site. Every combination is precomputed: a change of control is a switch in
the browser.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass

from labsupport import cni, packets, tunneling
from labsupport.errors import LabInputError
from labsupport.pod_network import Walk
from labsupport.views import svg
from labsupport.views.explorable import Choice, Html, Tabs, Text, explore
from labsupport.views.overlay import LAYER_COLOURS
from labsupport.views.pod_network import BRIDGE_COLOUR, NODE_COLOUR, PATH_COLOUR, POD_COLOUR, VETH_COLOUR

SOURCE = "pod-a"
#: The comparator's plugin control: every plugin and mode of the model, one option each.
PLUGIN_MODES = [(f"{plugin} · {mode}", (plugin, mode)) for plugin, modes in cni.PLUGINS.items() for mode in modes]
TOPOLOGY_CHOICES = [("two nodes, one subnet", "two-nodes"), ("three nodes, two subnets", "two-subnets")]
DESTINATION_CHOICES = [("pod-a → pod-b (on node-2)", "pod-b"), ("pod-a → pod-c (on node-3)", "pod-c")]

TUNNEL_COLOUR, UPLINK_COLOUR, ROUTER_COLOUR = LAYER_COLOURS["VXLAN"], "#d9d9d9", "#ece4f5"
DEVICE_COLOURS = {"bridge": BRIDGE_COLOUR, "vxlan": TUNNEL_COLOUR, "ipip": TUNNEL_COLOUR, "veth": "#ffffff",
                  "ether": UPLINK_COLOUR}
HOP_TABLE_CSS = (
    ".lab-hops{border-collapse:collapse;font-family:var(--jp-code-font-family,monospace);font-size:0.8em}"
    ".lab-hops th,.lab-hops td{padding:2px 6px;border-bottom:1px solid #ddd;text-align:left;white-space:nowrap}"
    ".lab-hops tr.underlay{background:#fff4d6}"  # the rows on the underlay
)
_BOX_STYLE = "padding:6px 10px;margin:4px 0;white-space:pre-wrap;font-family:inherit;"
REFUSED_STYLE = "border-left:4px solid #c62828;background:#fdecea;color:#7f1d1d;" + _BOX_STYLE
MODELLED_STYLE = "border-left:4px solid #7a7a7a;background:#f4f4f4;color:#333;" + _BOX_STYLE


# --- the request on the wire, as a capture shows it --------------------------------------------------


@dataclass(frozen=True)
class WireView:
    """One frame of the request as a capture on a device shows it (:func:`labsupport.cni.unwrap` read it):
    the outer Ethernet and IP headers, what carries the pod's packet (an encapsulation, or nothing), and the
    pod's own packet."""

    ether: str
    ip: str
    carried: str  # "VXLAN vni 1 · UDP 40123 → 8472", "IPIP (protocol 4)", "weave sleeve · UDP 6783 → 6783", "–"
    pod_packet: str  # the inner IP packet (the same as ip when nothing wraps it)
    length: int
    overhead: int  # bytes of encapsulation in front of the pod's IP packet (0: routed as it is)


def _ip_text(packet) -> str:
    return f"{packet.src} → {packet.dst} ttl {packet.ttl}"


def wire_view(frame) -> WireView:
    """A frame as `tcpdump -nn -e -v` prints it: outer headers, encapsulation, the pod's packet, as
    :func:`labsupport.cni.unwrap` reads them."""
    read = cni.unwrap(frame)
    if read.encapsulation == "vxlan":
        carried = f"VXLAN vni {read.vni} · UDP {read.ports[0]} → {read.ports[1]}"
    elif read.encapsulation == "sleeve":
        carried = f"weave sleeve · UDP {read.ports[0]} → {read.ports[1]}"
    elif read.encapsulation == "ipip":
        carried = f"IPIP (protocol {tunneling.IPPROTO_IPIP})"
    else:
        carried = "–"
    return WireView(f"{frame.src} → {frame.dst}", _ip_text(read.outer), carried, _ip_text(read.pod_packet),
                    len(bytes(frame)), read.overhead)


# --- the figure ------------------------------------------------------------------------------------

COLUMN, ROUTER_WIDTH, GAP, MARGIN = 240, 150, 14, 12
MAIN, SIDE = 146, 68  # widths of the path column and the side column inside a node
BOX, STEP = 32, 42  # device box height, and the distance between stacked boxes
POD_TOP, NODE_TOP = 28, 104


def _device_box(x: float, y: float, width: float, link, on_path: bool) -> list[str]:
    """A device as a box: its name and kind, then its first address and MTU (what fits the width)."""
    stroke = PATH_COLOUR if on_path else "#666"
    external = link.vxlan is not None and link.vxlan.external
    address = link.addresses[0].with_prefixlen if link.addresses else ("external" if external else "no address")
    if width >= MAIN:
        title, detail = f"{link.name} ({link.kind})", f"{address} · mtu {link.mtu}"
    else:
        title, detail = link.name, address
    parts = [svg.rect(x, y, width, BOX, DEVICE_COLOURS.get(link.kind, "#ffffff"), stroke)]
    if on_path:
        parts.append(svg.rect(x + 1, y + 1, width - 2, BOX - 2, "none", stroke))
    small = width < MAIN
    parts += [svg.text(x + width / 2, y + 13, title, 9 if small else 10.5, colour="#222", bold=on_path or not small),
              svg.text(x + width / 2, y + 26, detail, 9, colour="#444")]
    return parts


def _arrow(x1: float, y1: float, x2: float, y2: float) -> str:
    return svg.line(x1, y1, x2, y2, PATH_COLOUR, 2, arrow=True)


def _label(x: float, y: float, value: str, size: float, colour: str, width: float, bold: bool = False) -> str:
    """A line of text starting at x, moved left when it would run off the figure (about 0.6 em a character,
    0.66 in bold)."""
    if x + (0.66 if bold else 0.6) * size * len(value) > width - 4:
        return svg.text(width - 4, y, value, size, "end", colour, bold)
    return svg.text(x, y, value, size, "start", colour, bold)


def draw_cluster(network: cni.Cluster, result: Walk) -> svg.Svg:
    """The cluster as boxes: each node with its pod above it, its devices (those the ping went through
    stacked in the order it went, the others to the side, the uplinks at the bottom), the router, and the
    underlay subnets. With a walk, the request's way is drawn in red, and each trip across the underlay
    is labelled with what carried the pod's packet there, the bytes it added and the outer addresses."""
    hops = cni.request_hops(result)
    path = list(dict.fromkeys((h.namespace, h.device) for h in hops if h.device not in ("-", "lo")))
    ports = cni.uplinks(network)
    source_node = network.node_of(SOURCE)
    destination_node = network.node_of(result.destination)
    names = list(network.nodes)
    order = names[:2] + ["router"] + names[2:] if len(network.segments) > 1 else [*names, "router"]
    x_of: dict[str, float] = {}
    x = MARGIN
    for name in order:
        x_of[name] = x
        x += (ROUTER_WIDTH if name == "router" else COLUMN) + GAP
    width = x - GAP + MARGIN

    stacks: dict[str, tuple[list, list, list]] = {}
    for name in names:
        host = network.node(name)
        pod_veths = [network.nodes[name].namespaces[p].links["eth0"].peer[1] for p in network.nodes[name].pods]
        own = [u for ns, u in sorted(ports) if ns == name]
        visited = [dev for ns, dev in path if ns == name and dev not in own and dev not in pod_veths]
        if name == destination_node and name != source_node:
            visited.reverse()  # the packet climbs from the uplink to the pod
        others = [lk for lk in sorted(host.links.values(), key=lambda lk: lk.index)
                  if lk.kind != "loopback" and lk.name not in own + pod_veths + visited]
        stacks[name] = ([host.links[d] for d in pod_veths + visited], others, [host.links[u] for u in own])
    rows = max(max(len(main), len(side)) for main, side, _ in stacks.values())
    uplink_y = NODE_TOP + 24 + rows * STEP + 6
    underlay_y = uplink_y + BOX + 26
    height = underlay_y + 70

    verdict = "delivered, reply received" if result.replied else ("delivered" if result.delivered else "not delivered")
    body = [svg.ARROW_MARKER, svg.text(MARGIN, 16, f"{network.plugin} {network.mode} · ping {result.source} → "
                                       f"{result.destination}: {verdict}", 12, "start", bold=True)]
    port_x: dict[tuple[str, str], float] = {}
    for name in names:
        left = x_of[name]
        node = network.nodes[name]
        main, side, own = stacks[name]
        mx = left + COLUMN - 10 - MAIN  # the path column, on the right; the side column on the left
        centre = mx + MAIN / 2
        down = name != destination_node or name == source_node
        body += [svg.rect(left, NODE_TOP, COLUMN, uplink_y + BOX + 10 - NODE_TOP, NODE_COLOUR, "#4a6fa5"),
                 svg.text(left + 8, NODE_TOP + 15, name, 11, "start", "#2c3e50", bold=True)]
        for pod in node.pods:
            eth0 = node.namespaces[pod].links["eth0"]
            end = pod in (SOURCE, result.destination)
            role = (" (source)" if pod == SOURCE else " (destination)") if end else ""
            body += [svg.rect(mx, POD_TOP, MAIN, 56, POD_COLOUR, PATH_COLOUR if end else "#3d8b37"),
                     svg.text(centre, POD_TOP + 16, pod + role, 11, bold=True),
                     svg.text(centre, POD_TOP + 32, f"eth0 {eth0.addresses[0].with_prefixlen}", 9.5),
                     svg.text(centre, POD_TOP + 46, f"mtu {eth0.mtu}", 9, colour="#555")]
            if end and (pod == SOURCE or result.delivered):
                body.append(_arrow(centre, POD_TOP + 56, centre, NODE_TOP + 24) if pod == SOURCE
                            else _arrow(centre, NODE_TOP + 24, centre, POD_TOP + 56))
            else:
                body.append(svg.line(centre, POD_TOP + 56, centre, NODE_TOP + 24, VETH_COLOUR))
        ends = [SOURCE] + ([result.destination] if result.delivered else [])
        on_path = {dev for ns, dev in path if ns == name} | {
            node.namespaces[pod].links["eth0"].peer[1] for pod in node.pods if pod in ends}  # the veth a pod ends in
        for i, link in enumerate(main):
            y = NODE_TOP + 24 + i * STEP
            body += _device_box(mx, y, MAIN, link, link.name in on_path)
            if i + 1 < len(main) and link.name in on_path and main[i + 1].name in on_path:
                body.append(_arrow(centre, y + BOX, centre, y + STEP) if down else _arrow(centre, y + STEP, centre, y + BOX))
        for i, link in enumerate(side):
            body += _device_box(left + 10, NODE_TOP + 24 + i * STEP, SIDE, link, False)
        slot = MAIN if len(own) == 1 else (COLUMN - 20 - 6 * (len(own) - 1)) / len(own)
        for i, link in enumerate(own):
            ux = mx if len(own) == 1 else left + 10 + i * (slot + 6)
            body += _device_box(ux, uplink_y, slot, link, link.name in on_path)
            port_x[(name, link.name)] = ux + slot / 2
            body.append(svg.line(ux + slot / 2, uplink_y + BOX, ux + slot / 2, underlay_y, "#555", 2))
        out = next((lk for lk in own if lk.name in on_path), None)
        if main and main[-1].name in on_path and out is not None:
            y, ox = NODE_TOP + 24 + (len(main) - 1) * STEP + BOX, port_x[(name, out.name)]
            body.append(_arrow(centre, y, ox, uplink_y) if down else _arrow(ox, uplink_y, centre, y))
    body += _draw_router(network, x_of["router"], uplink_y, underlay_y, port_x, path)
    for segment in network.segments:
        xs = [port_x[p] for p in segment.ports if p in port_x]
        body += [svg.line(min(xs) - 8, underlay_y, max(xs) + 8, underlay_y, "#555", 3),
                 svg.text(min(xs) - 8, height - 6, f"underlay {segment.name.removeprefix('underlay ')} · "
                          f"mtu {cni.UNDERLAY_MTU}", 10, "start", "#555")]
    segment_of = {port: segment.name for segment in network.segments for port in segment.ports}
    trips: dict[str, int] = {}  # crossings drawn so far per segment: a second one is drawn lower
    for sent, received in cni.crossings(network, hops):
        x1, x2 = port_x[(sent.namespace, sent.device)], port_x[(received.namespace, received.device)]
        segment = segment_of[(sent.namespace, sent.device)]
        y = underlay_y + 8 * trips.get(segment, 0)
        trips[segment] = trips.get(segment, 0) + 1
        view = wire_view(sent.frame)
        carried = "no encapsulation" if view.carried == "–" else view.carried
        lo = min(x1, x2)
        body += [svg.line(x1, y, x2 + (-4 if x2 > x1 else 4), y, PATH_COLOUR, 2.5, arrow=True),
                 _label(lo + 4, y + 16, f"{carried} · +{view.overhead} bytes", 10, PATH_COLOUR, width, True),
                 _label(lo + 4, y + 30, f"{'IP' if view.carried == '–' else 'outer IP'} "
                        f"{view.ip.rsplit(' ttl', 1)[0]}", 9.5, "#444", width)]
    if not result.delivered and hops:
        end = hops[-1]
        column = "router" if end.namespace == cni.ROUTER else end.namespace
        body.append(_label(x_of.get(column, MARGIN) + 4, underlay_y + 46, f"✗ {end.namespace}: {end.event}", 10,
                           PATH_COLOUR, width, True))
    return svg.document(width, height, body, f"{network.plugin} {network.mode} on {network.topology}: "
                                             f"{result.source} → {result.destination}")


def scrollable(figure: svg.Svg) -> str:
    """The figure at its own size in a box that scrolls sideways when the page is narrower (a three-node
    cluster shrunk to a narrow page would have unreadable text)."""
    width = re.search(r'width="(\d+)"', figure.markup).group(1)
    return f'<div style="overflow-x:auto"><div style="min-width:{width}px">{figure.markup}</div></div>'


def _draw_router(network: cni.Cluster, left: float, uplink_y: float, underlay_y: float,
                 port_x: dict[tuple[str, str], float], path: list[tuple[str, str]]) -> list[str]:
    """The router: one port per subnet, forwarding, with no route to any pod network."""
    links = [lk for lk in sorted(network.router.links.values(), key=lambda lk: lk.index) if lk.kind == "ether"]
    top = uplink_y - 52
    parts = [svg.rect(left, top, ROUTER_WIDTH, uplink_y + BOX + 10 - top, ROUTER_COLOUR, "#6a4c93"),
             svg.text(left + ROUTER_WIDTH / 2, top + 16, "router", 11, bold=True),
             svg.text(left + ROUTER_WIDTH / 2, top + 32, "forwards; no pod routes", 9, colour="#555")]
    slot = (ROUTER_WIDTH - 16 - 6 * (len(links) - 1)) / len(links)
    for i, link in enumerate(links):
        x = left + 8 + i * (slot + 6)
        on_path = (cni.ROUTER, link.name) in path
        parts += [svg.rect(x, uplink_y, slot, BOX, UPLINK_COLOUR, PATH_COLOUR if on_path else "#666"),
                  svg.text(x + slot / 2, uplink_y + 13, link.name, 10, bold=True),
                  svg.text(x + slot / 2, uplink_y + 26, str(link.addresses[0].ip), 8.5, colour="#444"),
                  svg.line(x + slot / 2, uplink_y + BOX, x + slot / 2, underlay_y, "#555", 2)]
        port_x[(cni.ROUTER, link.name)] = x + slot / 2
    if len(links) == 2 and (cni.ROUTER, links[0].name) in path and (cni.ROUTER, links[1].name) in path:
        parts.append(_arrow(port_x[(cni.ROUTER, links[0].name)] + 4, uplink_y - 8,
                            port_x[(cni.ROUTER, links[1].name)] - 4, uplink_y - 8))
    return parts


# --- the comparator's parts ---------------------------------------------------------------------------


def hop_table(network: cni.Cluster, result: Walk) -> str:
    """The echo request at every device it crossed, as a capture there shows it: outer Ethernet and IP
    (with the TTL), what carries the pod's packet, the pod's packet itself, and the frame's length; rows
    on the underlay are shaded. The step numbers are those of the walk's full list of steps (`Walk.table()`)."""
    ports = cni.uplinks(network)
    number = {id(h): i for i, h in enumerate(result.hops, 1)}
    head = ("step", "where", "", "Ethernet", "IP (outer)", "carried in", "pod's packet", "bytes")
    rows = ["<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"]
    for hop in cni.request_hops(result):
        if hop.frame is None:
            continue
        view = wire_view(hop.frame)
        shade = ' class="underlay"' if (hop.namespace, hop.device) in ports else ""
        verb = "sends" if hop.event.startswith("transmits") else "gets"
        same = view.pod_packet == view.ip
        values = (number[id(hop)], f"{hop.namespace}/{hop.device}", verb, view.ether, view.ip, view.carried,
                  "(the same)" if same else view.pod_packet, view.length)
        rows.append(f"<tr{shade}>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in values) + "</tr>")
    return (f"<style>{HOP_TABLE_CSS}</style>"
            f'<div style="overflow-x:auto"><table class="lab-hops">{"".join(rows)}</table></div>')


def capture_port(network: cni.Cluster, result: Walk) -> tuple[str, str]:
    """Where to capture the walk on the underlay: the source node's uplink the request left by (`tcpdump -i
    eth0` on node-1; eth1 for the AWS VPC CNI, whose pods send through the secondary ENI)."""
    origin = network.node_of(result.source)
    own = sorted(dev for ns, dev in cni.uplinks(network) if ns == origin)
    used = [h.device for h in cni.request_hops(result) if h.namespace == origin and h.device in own]
    return origin, used[0] if used else own[0]


def pcap_download(network: cni.Cluster, result: Walk) -> str:
    """A link that saves every frame of the walk on the source node's uplink (:func:`capture_port`) as a pcap
    (a `data:` URL: works on the static site), and the tshark command that decodes its encapsulation."""
    from scapy.layers.inet import UDP
    from scapy.layers.vxlan import VXLAN

    node, dev = capture_port(network, result)
    frames = result.frames(node, dev)
    filename = f"{network.plugin}-{network.mode}-{network.topology}-{result.source}-{result.destination}-{node}-{dev}.pcap"
    data = base64.b64encode(packets.pcap_bytes(frames)).decode()
    vxlan_ports = sorted({f[UDP].dport for f in frames if f.haslayer(VXLAN)} - {4789})  # 4789: tshark's own
    decode = "".join(f" -d udp.port=={port},vxlan" for port in vxlan_ports)
    return (f'<div class="lab-downloads">Download: <a download="{html.escape(filename)}" '
            f'href="data:application/vnd.tcpdump.pcap;base64,{data}">{html.escape(filename)}</a> — '
            f"{len(frames)} frames, what <code>tcpdump -i {dev} -w {html.escape(filename)}</code> on {node} "
            f"records during the ping. Read it with <code>tshark -r {html.escape(filename)}{decode} -V</code>.</div>")


def node_views(network: cni.Cluster, node: str) -> str:
    """What a learner types on a node and sees: `ip -d link`, then `ip route` (with `ip rule` and the
    extra tables where the plugin uses them), `bridge fdb` and `ip neigh` as the plugin left them (first,
    any command the kernel refused), as :func:`labsupport.cni.routes_text` prints them."""
    host = network.node(node)
    routes = cni.routes_text(network.plugin, network.mode, node, network.topology)
    return f"$ ip -d link\n{host.ip_link_details()}\n{routes}"


def _notes(items: list[str], style: str, head: str) -> Html | None:
    if not items:
        return None
    lines = "".join(f"<li>{html.escape(i)}</li>" for i in items)
    return Html(f'<div style="{style}"><b>{html.escape(head)}</b><ul style="margin:2px 0">{lines}</ul></div>')


def summary_line(network: cni.Cluster, result: Walk) -> str:
    """One paragraph: the ping's outcome, what crossed the underlay and the bytes it cost, the pods' MTU."""
    src, dst = network.pod_ip(result.source), network.pod_ip(result.destination)
    outcome = "reply received" if result.replied else ("delivered" if result.delivered else "not delivered")
    lines = [f"{result.source} ({src}) → {result.destination} ({dst}): {outcome}."]
    for sent, received in cni.crossings(network, cni.request_hops(result)):
        view = wire_view(sent.frame)
        carried = "unwrapped (pod addresses on the wire)" if view.carried == "–" else f"in {view.carried}"
        lines.append(f"{sent.namespace}/{sent.device} → {received.namespace}/{received.device}: {carried}, "
                     f"{view.overhead} bytes added, {view.length} bytes on the wire.")
    added = cni.UNDERLAY_MTU - cni.pod_mtu_for(network.encapsulation)
    if network.plugin == "weave":
        lines.append(f"Pod MTU {network.pod_mtu}: Weave's default (WEAVE_MTU), below the "
                     f"{cni.UNDERLAY_MTU - added} that {network.encapsulation}'s {added} bytes would allow.")
    elif added:
        lines.append(f"Pod MTU {network.pod_mtu}: the {cni.UNDERLAY_MTU}-byte underlay minus the {added} bytes "
                     f"{network.encapsulation} adds.")
    else:
        lines.append(f"Pod MTU {network.pod_mtu}: nothing is added, so pods get the underlay's {cni.UNDERLAY_MTU}.")
    return "\n".join(lines)


def render_comparator(plugin: tuple[str, str], topology: str, destination: str) -> list:
    """The comparator's view of one plugin and mode on one cluster: the ping's outcome and cost, commands
    the kernel refused, what the model stands in for, the cluster with the ping's way, the request at every
    hop, per node `ip -d link`, `ip route`, `bridge fdb` and `ip neigh`, the request's layers on the source
    node's uplink and the capture there. (The walk's full list of steps, ARP and reply included, is
    `cni.walk(...).table()`: left out here, it would double what the page stores.)"""
    network = cni.cluster(*plugin, topology)
    if destination not in network.pods:
        raise LabInputError("destination", destination, f"a pod of this cluster ({', '.join(network.pods)}): "
                            f"{destination} runs on node-3, which only the three-node, two-subnet cluster has")
    result = cni.walk(network, SOURCE, destination)
    refused = _notes([str(r) for r in network.refused], REFUSED_STYLE, "The kernel refused:")
    modelled = _notes(network.modelled, MODELLED_STYLE, "What the model stands in for:")
    node, dev = capture_port(network, result)
    first = next((h.frame for h in cni.request_hops(result) if h.frame is not None and (h.namespace, h.device) == (node, dev)),
                 None)
    wire = Text(packets.layered_summary(first) if first is not None else f"the request never left {node}/{dev}")
    return [
        Text(summary_line(network, result)),
        refused,
        Html(scrollable(draw_cluster(network, result))),
        Html(hop_table(network, result)),
        Tabs({
            **{name: Text(node_views(network, name)) for name in network.nodes},
            f"request on {node}/{dev}": wire,
            "pcap": Html(pcap_download(network, result)),
        }),
        modelled,
    ]


def comparator():
    """The lab's comparator: plugin and mode, the cluster, and the pod pod-a pings; every combination
    precomputed (11 plugin modes x 2 clusters x 2 destinations = 44)."""
    return explore(
        render_comparator,
        title="Two nodes, one packet: compare the plugins",
        plugin=Choice(PLUGIN_MODES, label="plugin · mode"),
        topology=Choice(TOPOLOGY_CHOICES, label="cluster"),
        destination=Choice(DESTINATION_CHOICES, label="ping"),
    )


# --- tables of the lab ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Table:
    """A table the models write in Markdown, shown by a notebook as HTML (`_repr_html_`: the book renders
    Markdown outputs as CommonMark, which has no tables), with a short plain-text repr."""

    markdown: str
    label: str

    def _repr_html_(self) -> str:
        from markdown_it import MarkdownIt  # MyST's parser, installed with jupyter-book

        return MarkdownIt("commonmark", {"html": True}).enable("table").render(self.markdown)

    def __repr__(self) -> str:
        return f"<table: {self.label}>"


def comparison_table() -> Table:
    """The notes' L2 / Route / Overlay / Cloud table, as :func:`labsupport.cni.comparison_table` computes it."""
    return Table(cni.comparison_table(), "L2 / Route / Overlay / Cloud, from the models' walks")


def mtu_table() -> Table:
    """Per plugin and mode: what wraps pod packets, the bytes a ping gained crossing the underlay (measured
    on the walks, within one subnet and across the router), and the pods' MTU on a 1500-byte underlay."""
    head = ("plugin · mode", "encapsulation", "bytes added, same subnet", "bytes added, across the router",
            "pod MTU", "pod MTU + most bytes added")
    lines = ["| " + " | ".join(head) + " |", "| --- | --- |" + " ---: |" * 4]
    for p in cni.comparison()[1:]:
        across = "not delivered" if p.overhead_across is None else str(p.overhead_across)
        most = max(p.overhead, p.overhead_across or 0)
        wrap = cni.encapsulation_of(p.plugin, p.mode)
        lines.append(f"| {p.plugin} · {p.mode} | {wrap} | {p.overhead} | {across} | {p.pod_mtu} | "
                     f"{p.pod_mtu + most} |")
    return Table("\n".join(lines), "pod MTU per plugin and mode")

