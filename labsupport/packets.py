"""Packets as bytes: every byte range labelled with its header and field, layered summaries, pcaps.

Shared by the overlay, tunneling and CNI labs. Generic over scapy layers: :func:`annotate` walks a
frame's layers and each layer's fields (scapy's `fields_desc`), so VXLAN, GRE, Geneve, IPv6 or any
other header scapy knows is labelled the same way, and encapsulated headers get their nesting in
the label ("outer IPv4", "inner IPv4").
"""

from __future__ import annotations


def layers(packet) -> list:
    """The layers of a scapy packet, outermost first (each a scapy Packet whose payload is the next)."""
    from scapy.packet import NoPayload

    out = []
    layer = packet
    while layer is not None and not isinstance(layer, NoPayload):
        out.append(layer)
        layer = layer.payload
    return out


def concrete(packet):
    """The packet as a receiver dissects its bytes (checksums and lengths filled in), keeping the
    layer types it was built with, even where scapy would not guess them from a port number
    (VXLAN on a port other than 4789/8472, for example)."""
    from scapy.packet import NoPayload

    classes = [type(layer) for layer in layers(packet)]
    top = classes[0](bytes(packet))
    layer = top
    for cls in classes[1:]:
        below = layer.payload
        if isinstance(below, NoPayload):
            break
        if type(below) is not cls:
            raw = bytes(below)
            layer.remove_payload()
            layer.add_payload(cls(raw))
            below = layer.payload
        layer = below
    return top
