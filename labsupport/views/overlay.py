"""Figures and widgets of the overlay chapter, and the packet builder the tunneling chapter shares.

Thin views over :mod:`labsupport.tunneling` (the builder) and :mod:`labsupport.packets` (the byte
annotation): the packet as nested boxes and a header's format are SVG drawn by hand from the
annotated bytes, the hexdump is HTML coloured by layer, and the pcap is offered as a `data:` link,
so all of it works on the static site and redraws live well within the widget budget.
"""

from __future__ import annotations

import base64
import html

from labsupport import packets, tunneling
from labsupport.views import svg
from labsupport.views.explorable import Choice, Free, Html, Tabs, Text, explore

#: One colour per kind of layer; outer and inner copies of a layer share it (the label says which).
LAYER_COLOURS = {
    "Ethernet": "#dbe9f6", "802.1Q": "#c9dcef", "IPv4": "#fde2c4", "IPv6": "#fbd0a8", "UDP": "#e3f1d4",
    "TCP": "#d5ecc2", "VXLAN": "#f7c6c7", "GRE": "#e9d3f2", "Geneve": "#f4cfe0", "ICMP": "#fff2b3",
    "ICMPv6": "#fff2b3", "payload": "#eeeeee", "padding": "#f7f7f7",
}
OTHER_COLOUR = "#e8e8e8"
UNDERLAYS = {
    "ipv4": ("192.168.56.10", "192.168.56.11"),  # node-1 and node-2 of the course's two-node cluster
    "ipv6": ("fd00:56::10", "fd00:56::11"),
}
PODS = {4: ("10.244.1.2", "10.244.2.2"), 6: ("fd00:10:244:1::2", "fd00:10:244:2::2")}
PAYLOADS = [("ping (ICMP)", "icmp"), ("UDP to 8080", "udp:8080"), ("TCP SYN to 443", "tcp:443")]


def colour(layer_label: str) -> str:
    """The colour of a layer label such as "outer IPv4" or "Geneve option 1"."""
    words = layer_label.split()
    for word in (words[-1], *words):
        if word in LAYER_COLOURS:
            return LAYER_COLOURS[word]
    return OTHER_COLOUR


def layer_sizes(frame) -> list[tuple[str, int, str]]:
    """Each layer's label, size in bytes (:func:`labsupport.packets.layer_sizes`) and one-line
    description (:func:`labsupport.packets.layered_summary`), outermost first."""
    described = packets.layered_summary(frame).splitlines()
    return [(name, size, line.strip().removeprefix(name).strip())
            for (name, size), line in zip(packets.layer_sizes(frame), described, strict=True)]


def draw_nested(frame, title: str) -> svg.Svg:
    """The packet as nested boxes: each header holds the next, with its size and key fields.

    Drawn from the annotated bytes, so what is inside what is exactly what the model built.
    """
    layers = layer_sizes(frame)
    step_x, step_y, width = 12, 34, 760
    height = (step_y + 4) * len(layers) + 16
    total = len(bytes(frame))
    parts = []
    for depth, (name, size, detail) in enumerate(layers):
        x, y = 8 + depth * step_x, 8 + depth * step_y
        inside = total - sum(s for _, s, _ in layers[:depth])
        parts += [
            svg.rect(x, y, width - 2 * x, height - 8 - 4 * depth - y, colour(name), "#666"),
            svg.text(x + 8, y + 15, f"{name} · {size} bytes", 12, "start", bold=True),
            svg.text(width - x - 8, y + 15, f"{inside} bytes from here", 10, "end", "#555"),
            svg.text(x + 8, y + 29, _shorten(detail, 110 - depth * 2), 10, "start", "#333"),
        ]
    return svg.document(width, height, parts, title)


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


#: Shorter names for bit fields in header figures (the RFCs' letters for GRE's flag bits).
FIELD_SHORT = {"chksum_present": "C", "routing_present": "R", "key_present": "K", "seqnum_present": "S",
               "strict_route_source": "s", "recursion_control": "Recur", "sequence_number": "sequence number"}


def draw_header(frame, layer: str, title: str) -> svg.Svg:
    """One header's format as a 32-bit-wide grid (as RFCs draw them), each field's box sized by its
    bytes and labelled with its name and the value the model put there."""
    fields = [r for r in packets.annotate(frame) if r.layer == layer or r.layer.startswith(f"{layer} option")]
    if not fields:
        raise ValueError(f"no {layer!r} layer in this frame")
    base = fields[0].start
    cell, row_h, left, top = 170, 44, 40, 34
    rows = (fields[-1].end - base + 3) // 4
    parts = [svg.text(left + 2 * cell, 14, title, 12, bold=True)]
    for i in range(5):
        parts.append(svg.text(left + i * cell, top - 6, str(i * 8), 9, "middle", "#777"))
    for item in fields:
        start, end = item.start - base, item.end - base
        while start < end:  # a field may wrap onto the next 4-byte row
            row, col = divmod(start, 4)
            span = min(end - start, 4 - col)
            x, y = left + col * cell, top + row * row_h
            parts += [
                svg.rect(x, y, span * cell, row_h, colour(item.layer), "#555"),
                svg.text(x + span * cell / 2, y + 18, _shorten(_short(item.field), span * 22), 11, bold=True),
                svg.text(x + span * cell / 2, y + 34, _shorten(item.value, span * 24), 10, colour="#333"),
            ]
            start += span
        if item.layer != layer:
            parts.append(svg.text(left - 4, top + ((item.start - base) // 4) * row_h + 26, "opt", 9, "end", "#777"))
    for row in range(rows):
        parts.append(svg.text(left - 6, top + row * row_h + 14, f"{4 * row}", 9, "end", "#777"))
    return svg.document(left + 4 * cell + 10, top + rows * row_h + 8, parts, title)


def _short(names: str) -> str:
    return "/".join(FIELD_SHORT.get(name, name) for name in names.split("/"))


def hexdump_html(frame) -> str:
    """The annotated hexdump, each field's lines coloured by its layer (hover shows the label)."""
    rows = []
    for row in packets.hexdump_rows(frame):
        label = html.escape(row.field.label)
        text = f"{row.offset:04x}  {row.hex:<47}  {label if row.first else ''}".rstrip()
        rows.append(f'<span style="background:{colour(row.field.layer)}" title="{label}">{text}</span>')
    style = ("margin:0;padding:4px 6px;white-space:pre;overflow-x:auto;line-height:1.3;"
             "font-family:var(--jp-code-font-family,monospace);font-size:0.8em")
    return f'<pre class="lab-hexdump" style="{style}">' + "\n".join(rows) + "</pre>"


def pcap_link(frame, filename: str) -> str:
    """A link that saves the frame as a pcap file from the page itself (a `data:` URL: works on the static site)."""
    data = base64.b64encode(packets.pcap_bytes([frame])).decode()
    return (f'<div class="lab-downloads">Download: <a download="{html.escape(filename)}" '
            f'href="data:application/vnd.tcpdump.pcap;base64,{data}">{html.escape(filename)}</a> '
            f"(open it in Wireshark; for port 8472 use Decode As… VXLAN, or "
            f"<code>tshark -r {html.escape(filename)} -d udp.port==8472,vxlan -V</code>)</div>")


def parse_pair(text: str, field: str, default: tuple[str, str]) -> tuple[str, str]:
    """Two typed addresses "SRC > DST" (empty: the preset)."""
    value = str(text).strip()
    if not value:
        return default
    src, sep, dst = value.partition(">")
    if not sep or not src.strip() or not dst.strip():
        from labsupport.errors import LabInputError

        raise LabInputError(field, text, "two addresses as SRC > DST, e.g. 192.168.56.10 > 192.168.56.11 (empty: the preset)")
    return src.strip(), dst.strip()


def render_builder(kind: str, underlay: str, payload: str, endpoints: str = "", pods: str = "", vni: str = "1",
                   underlay_mtu: int = 1500, options: dict | None = None, name: str | None = None) -> list:
    """The packet builder's view (overlay and tunneling labs): the nested boxes, the overhead and pod
    MTU, the coloured bytes, the layers, and the pcap. options: GRE's key, seq, checksum."""
    outer = parse_pair(endpoints, "tunnel endpoints", UNDERLAYS[underlay])
    inner = parse_pair(pods, "pods", PODS[6 if kind == "sit" else 4])
    vni_value = vni.strip() if kind in ("vxlan", "geneve") else None
    built = tunneling.build(kind, *outer, *inner, payload=payload, vni=vni_value, underlay_mtu=underlay_mtu,
                            **(options or {}))
    name = f"{(name or kind).replace(' ', '-').replace('+', '-')}-{payload.replace(':', '-')}.pcap"
    fits = (f"A pod may send packets of up to {built.pod_mtu} bytes: with the {built.overhead} bytes of {built.kind}\n"
            f"they make {built.underlay_mtu}-byte packets, which the underlay carries unfragmented.")
    return [
        Html(draw_nested(built.wire, f"{kind} packet as captured on the sending node's eth0").markup),
        Text(f"{built.overhead_line()}\n{fits}"),
        Tabs({
            "bytes": Html(hexdump_html(built.wire)),
            "layers": Text(packets.layered_summary(built.wire)),
            "pcap": Html(pcap_link(built.wire, name)),
        }),
    ]


def vxlan_builder():
    """The overlay lab's VXLAN packet builder: underlay and payload precomputed; endpoints, pods,
    VNI and underlay MTU typed (live)."""

    def render(underlay, payload, endpoints, pods, vni, underlay_mtu):
        return render_builder("vxlan", underlay, payload, endpoints, pods, vni, underlay_mtu)

    return explore(
        render,
        title="Build a VXLAN packet",
        underlay=Choice([("IPv4 underlay (node-1 → node-2)", "ipv4"), ("IPv6 underlay", "ipv6")], label="underlay"),
        payload=Choice(PAYLOADS, label="pod sends"),
        endpoints=Free("", label="tunnel endpoints", placeholder="SRC > DST (empty: the underlay's nodes)"),
        pods=Free("", label="pods", placeholder="SRC > DST (empty: pod-a > pod-b)"),
        vni=Free("1", label="VNI"),
        underlay_mtu=Free(1500, label="underlay MTU"),
    )


def vxlan_format() -> svg.Svg:
    """The VXLAN header as RFC 7348 draws it, from the bytes the model builds for VNI 1."""
    built = tunneling.build("vxlan", *UNDERLAYS["ipv4"], *PODS[4])
    return draw_header(built.wire, "VXLAN", "VXLAN header (8 bytes), as built for VNI 1")
