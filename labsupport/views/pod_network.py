"""Figures and widgets of the pod-network chapter: thin views over :mod:`labsupport.pod_network`.

The walk's ladder is a matplotlib ``Figure`` made without pyplot (no global state, nothing shown
until a caller displays them); the node's topology is SVG drawn by hand, cheap enough to redraw live. Widgets are :func:`~labsupport.views.explorable.explore` explorables,
so they work on the static site as well as in a live kernel.
"""

from __future__ import annotations

from labsupport import pod_network as pn
from labsupport.host import Namespace
from labsupport.views import svg
from labsupport.views.explorable import Choice, Figure, Free, Html, Tabs, Text, explore

NODE_COLOUR, POD_COLOUR, BRIDGE_COLOUR, VETH_COLOUR = "#dbe9f6", "#e8f4e0", "#f6d6a8", "#7a7a7a"
PATH_COLOUR = "#c0392b"


def _new_figure(width: float, height: float):
    from matplotlib.figure import Figure as MplFigure

    fig = MplFigure(figsize=(width, height))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    return fig, ax


def draw_node(node: pn.Node, source: str | None = None, destination: str | None = None) -> svg.Svg:
    """The node as boxes: pods with their eth0, veth pairs, the bridge, the node's uplink.

    Pods named as source or destination have their veth drawn in red. Drawn as SVG by hand rather
    than with matplotlib: the figure is redrawn live when a learner types a pod CIDR, and
    rasterising text with matplotlib took about 150 ms, three times the widget budget.
    """
    pods = node.pods
    width = max(720, 210 * len(pods) + 100)
    host = node.host
    bridge = next((lk for lk in host.links.values() if lk.kind == "bridge"), None)
    uplink = host.links["eth0"]
    parts = [
        svg.rect(15, 205, width - 30, 175, NODE_COLOUR, "#4a6fa5"),
        svg.text(30, 368, f"{node.name} (root namespace, ip_forward=1)", 11, "start", "#2c3e50"),
        svg.text(width - 30, 368, f"eth0 {uplink.addresses[0].with_prefixlen}", 11, "end", "#2c3e50"),
    ]
    if bridge is not None:
        parts += [
            svg.rect(60, 295, width - 120, 40, BRIDGE_COLOUR, "#b9770e"),
            svg.text(width / 2, 320, f"bridge {bridge.name} · {bridge.addresses[0].with_prefixlen} · {bridge.mac}", 11),
        ]
    slot = (width - 40) / max(1, len(pods))
    for i, pod in enumerate(pods):
        x = 20 + slot * i + slot / 2
        eth0 = node.namespaces[pod].links["eth0"]
        on_path = pod in (source, destination)
        colour = PATH_COLOUR if on_path else VETH_COLOUR
        bottom = 295 if bridge is not None else 205
        parts += [
            svg.rect(x - 90, 20, 180, 115, POD_COLOUR, "#3d8b37"),
            svg.text(x, 45, pod, 13, bold=True),
            svg.text(x, 72, f"eth0 {eth0.addresses[0].with_prefixlen}", 11),
            svg.text(x, 92, eth0.mac, 10, colour="#555"),
            svg.text(x, 112, "lo 127.0.0.1", 10, colour="#555"),
            svg.line(x, 135, x, bottom, colour, 3 if on_path else 2),
            svg.text(x + 6, 240, eth0.peer[1], 10, "start", colour),
            svg.text(x + 6, 254, "veth pair", 10, "start", colour),
        ]
    return svg.document(width, 390, parts, f"{node.name}: {len(pods)} pods joined by veth pairs")


def draw_walk(result: pn.Walk, node: pn.Node):
    """A ladder diagram of a walk: one lane per namespace, one arrow per frame that crossed a link."""
    lanes = [*node.pods[:1], node.name, *node.pods[1:]]  # the node between the first pod and the others
    arrows = []
    for hop in result.hops:
        if hop.frame is None or not hop.event.startswith("receives"):
            continue
        peer = node.namespaces[hop.namespace].links[hop.device].peer
        arrows.append((peer[0] if peer else "?", hop.namespace, hop.event.removeprefix("receives ")))
    height = 0.45 + 0.42 * max(1, len(arrows))
    fig, ax = _new_figure(7.5, height)
    ax.set_xlim(-0.6, len(lanes) - 0.4)
    ax.set_ylim(height - 0.1, -0.6)
    for i, lane in enumerate(lanes):
        ax.plot([i, i], [0, height], color="#95a5a6", lw=1)
        ax.text(i, -0.35, lane, ha="center", fontsize=8, weight="bold")
    for row, (sender, receiver, label) in enumerate(arrows, 1):
        y = 0.42 * row
        if sender not in lanes or receiver not in lanes:
            continue
        x0, x1 = lanes.index(sender), lanes.index(receiver)
        ax.annotate("", xy=(x1, y), xytext=(x0, y), arrowprops={"arrowstyle": "->", "color": PATH_COLOUR, "lw": 1.2})
        ax.text((x0 + x1) / 2, y - 0.06, label, ha="center", fontsize=7)
    return fig


def namespace_views(ns: Namespace) -> str:
    """What a learner would type and see in one namespace: ip addr, ip route, ip neigh, bridge fdb."""
    sections = [("ip addr", ns.ip_addr()), ("ip route", ns.ip_route())]
    if ns.role == "node" and any(lk.kind == "bridge" for lk in ns.links.values()):
        sections.append(("bridge fdb show (learned and port entries)", ns.bridge_fdb()))
    if ns.neighbours:
        sections.append(("ip neigh", ns.ip_neigh()))
    return "\n\n".join(f"$ {cmd}\n{out}" for cmd, out in sections)


def render_node(pods: int, bridge: str, pod_cidr: str) -> list:
    """The 'build a node' lab view: the topology and each namespace's iproute2 views."""
    node = pn.build_node(pods=pods, bridge=bridge, pod_cidr=pod_cidr)
    return [
        Html(draw_node(node).markup),
        Tabs({name: Text(namespace_views(ns)) for name, ns in node.namespaces.items()}),
    ]


def build_a_node():
    """The lab's 'build a node' widget: number of pods, bridge name and pod CIDR."""
    return explore(
        render_node,
        title="Build a node",
        pods=Choice([2, 3, 4], label="pods", default=3),
        bridge=Choice(["cni0", "docker0"], label="bridge"),
        pod_cidr=Free("10.244.1.0/24", label="pod CIDR"),
    )


WALK_NODE = {"pods": 3, "bridge": "cni0", "pod_cidr": "10.244.1.0/24"}


def render_walk(source: str, destination: str) -> list:
    """The 'a packet's way' lab view: the ladder diagram, the hops, and each frame on the wire."""
    node = pn.build_node(**WALK_NODE)
    result = pn.walk(node, source, destination)
    frames = "\n".join(f"{i:>2}. {f.summary()}" for i, f in enumerate(result.frames(), 1))
    after = result.node_after
    state = "\n\n".join(
        f"[{name}]\n$ ip neigh\n{ns.ip_neigh() or '(empty)'}"
        + (f"\n$ bridge fdb show\n{ns.bridge_fdb()}" if ns.role == "node" else "")
        for name, ns in after.namespaces.items()
    )
    verdict = (
        f"{source}: ping {destination}: " + ("reply received" if result.replied else "no reply")
        + f" — {len(result.hops)} steps, {len(result.frames())} frames seen on devices"
    )
    return [
        Text(verdict),
        Html(draw_node(node, source, destination).markup),
        Figure(draw_walk(result, node), width=640),
        Tabs({"hops": Text(result.table()), "frames": Text(frames), "tables after": Text(state)}),
    ]


def packet_way():
    """The lab's 'a packet's way' widget: which pod (or the node) pings which."""
    node = pn.build_node(**WALK_NODE)
    endpoints = [*node.pods, node.name]
    targets = [*((p, p) for p in node.pods), (f"{node.name} (eth0)", "192.168.56.10"), ("outside (8.8.8.8)", "8.8.8.8")]
    return explore(
        render_walk,
        title="A packet's way",
        source=Choice(endpoints, label="from"),
        destination=Choice(targets, label="to", default="pod-b"),
    )
