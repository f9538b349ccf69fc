"""Figures and widgets of the tunneling chapter: the overlay chapter's packet builder for IPIP, GRE,
gretap, SIT and Geneve, and the overheads of every encapsulation side by side.

Thin views over :mod:`labsupport.tunneling`; the builder and its drawings are
:mod:`labsupport.views.overlay`'s, shared rather than copied.
"""

from __future__ import annotations

from labsupport import tunneling
from labsupport.views import svg
from labsupport.views.explorable import Choice, Free, explore
from labsupport.views.overlay import PAYLOADS, PODS, UNDERLAYS, colour, draw_header, render_builder

#: The builder's tunnels, one precomputed state each: label → (builder kind, GRE options).
TUNNELS = {
    "ipip": ("ipip", {}),
    "gre": ("gre", {}),
    "gre key 42": ("gre", {"key": 42}),
    "gre key 42 + seq + csum": ("gre", {"key": 42, "seq": 1, "checksum": True}),
    "gretap": ("gretap", {}),
    "sit": ("sit", {}),
    "geneve": ("geneve", {}),
}

#: The comparison: (label, builder kind, options, underlay), each built once and measured.
COMPARED = [
    ("host-gw / BGP routes (no tunnel)", None, {}, "ipv4"),
    ("IPIP", "ipip", {}, "ipv4"),
    ("SIT (IPv6 in IPv4)", "sit", {}, "ipv4"),
    ("GRE", "gre", {}, "ipv4"),
    ("GRE with key", "gre", {"key": 42}, "ipv4"),
    ("GRE key + seq + csum", "gre", {"key": 42, "seq": 1, "checksum": True}, "ipv4"),
    ("gretap (Ethernet in GRE)", "gretap", {}, "ipv4"),
    ("VXLAN", "vxlan", {}, "ipv4"),
    ("Geneve (no options)", "geneve", {}, "ipv4"),
    ("VXLAN over IPv6", "vxlan", {}, "ipv6"),
]


def tunnel_builder():
    """The tunneling lab's builder: the tunnel and the payload precomputed; endpoints, pods, Geneve's
    VNI and the underlay MTU typed (live)."""

    def render(tunnel, payload, endpoints, pods, vni, underlay_mtu):
        kind, options = TUNNELS[tunnel]
        return render_builder(kind, "ipv4", payload, endpoints, pods, vni, underlay_mtu, options, name=tunnel)

    return explore(
        render,
        title="Build a tunnel packet",
        tunnel=Choice(list(TUNNELS), label="tunnel"),
        payload=Choice(PAYLOADS, label="pod sends"),
        endpoints=Free("", label="tunnel endpoints", placeholder="SRC > DST (empty: node-1 > node-2)"),
        pods=Free("", label="pods", placeholder="SRC > DST (empty: pod-a > pod-b; IPv6 pods for sit)"),
        vni=Free("1", label="VNI (Geneve)"),
        underlay_mtu=Free(1500, label="underlay MTU"),
    )


def compared_breakdowns(underlay_mtu: int = 1500) -> list[tuple[str, list[tuple[str, int]], int]]:
    """Per encapsulation of :data:`COMPARED`: its label, the bytes each header adds (measured on the
    packet the model builds for a ping from pod-a to pod-b), and the pod MTU it leaves."""
    rows = []
    for label, kind, options, underlay in COMPARED:
        if kind is None:
            rows.append((label, [], underlay_mtu))
            continue
        pods = PODS[6 if kind == "sit" else 4]
        built = tunneling.build(kind, *UNDERLAYS[underlay], *pods, underlay_mtu=underlay_mtu, **options)
        rows.append((label, built.breakdown(), built.pod_mtu))
    return rows


def draw_overheads(underlay_mtu: int = 1500) -> svg.Svg:
    """The bytes each encapsulation adds, one stacked bar per encapsulation, with the pod MTU left."""
    rows = compared_breakdowns(underlay_mtu)
    left, scale, bar, gap = 200, 6, 20, 8
    widest = max(sum(size for _, size in parts) for _, parts, _ in rows)
    width = left + widest * scale + 200
    parts_svg = [svg.text(left, 14, f"bytes added to each pod packet, and the pod MTU on a {underlay_mtu}-byte underlay",
                          12, "start", bold=True)]
    for i, (label, parts, mtu) in enumerate(rows):
        y = 28 + i * (bar + gap)
        parts_svg.append(svg.text(left - 8, y + 14, label, 11, "end"))
        x = left
        for name, size in parts:
            parts_svg.append(svg.rect(x, y, size * scale, bar, colour(name), "#555"))
            if size * scale >= 22:
                parts_svg.append(svg.text(x + size * scale / 2, y + 14, str(size), 10))
            x += size * scale
        total = sum(size for _, size in parts)
        parts_svg.append(svg.text(x + 8, y + 14, f"{total} bytes → pod MTU {mtu}", 11, "start", bold=not parts))
    names = list(dict.fromkeys(name for _, parts, _ in rows for name, _ in parts))
    legend_y = 28 + len(rows) * (bar + gap) + 6
    for j, name in enumerate(names):
        x = left + (j % 4) * 150
        y = legend_y + (j // 4) * 18
        parts_svg += [svg.rect(x, y, 12, 12, colour(name), "#555"), svg.text(x + 18, y + 10, name, 10, "start")]
    height = legend_y + ((len(names) + 3) // 4) * 18 + 6
    return svg.document(width, height, parts_svg, "overhead of each encapsulation")


def gre_format() -> svg.Svg:
    """The GRE header with every optional field (checksum, key, sequence number), from the model's bytes."""
    built = tunneling.build("gre", *UNDERLAYS["ipv4"], *PODS[4], key=42, seq=1, checksum=True)
    return draw_header(built.wire, "GRE", "GRE header with C, K and S set (16 bytes), key 42, sequence 1")
