"""Packets as bytes: every byte range labelled with its header and field, layered summaries, pcaps.

Shared by the overlay, tunneling and CNI labs. Generic over scapy layers: :func:`annotate` walks a
frame's layers and each layer's fields (scapy's `fields_desc`), so VXLAN, GRE, Geneve, IPv6 or any
other header scapy knows is labelled the same way, and encapsulated headers get their nesting in
the label ("outer IPv4", "inner IPv4").
"""

from __future__ import annotations

from typing import NamedTuple

from labsupport.errors import LabInputError


def layers(packet) -> list:
    """The layers of a scapy packet, outermost first (each a scapy Packet whose payload is the next).

    Anything but a scapy packet is the one error (field "frame"): every view of this module starts here.
    """
    from scapy.packet import NoPayload, Packet

    if not isinstance(packet, Packet):
        raise LabInputError("frame", type(packet).__name__, "a scapy packet or frame, such as Ether() / IP() / ICMP()")
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

    stack = layers(packet)
    if all(layer.raw_packet_cache is not None for layer in stack):
        return packet  # dissected from bytes and not changed since: already what a receiver sees
    classes = [type(layer) for layer in stack]
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


LAYER_NAMES = {
    "Ether": "Ethernet", "Dot1Q": "802.1Q", "IP": "IPv4", "IPv6": "IPv6", "GENEVE": "Geneve",
    "GeneveOptions": "Geneve option", "Raw": "payload", "Padding": "padding", "ICMPv6EchoRequest": "ICMPv6",
    "ICMPv6EchoReply": "ICMPv6",
}
LINK_AND_NETWORK = {"Ether", "Dot1Q", "IP", "IPv6", "ARP"}
TUNNEL_HEADERS = {"VXLAN", "GRE", "GENEVE"}
MAX_VALUE = 48


class ByteRange(NamedTuple):
    """Bytes [start, end) of a frame: which layer ("outer IPv4"), which field(s) ("ttl"), the value ("64")."""

    start: int
    end: int
    layer: str
    field: str
    value: str

    @property
    def label(self) -> str:
        """"outer IPv4 · ttl = 64"."""
        return f"{self.layer} · {self.field} = {self.value}"


def layer_labels(packet) -> list[str]:
    """Names for the layers, with the nesting made explicit: "outer IPv4", "UDP", "VXLAN", "inner Ethernet".

    A frame is split at its first tunnel: a VXLAN, GRE or Geneve header, or an IP header whose
    payload is IP again (IPIP, SIT). Ethernet, 802.1Q and IP headers before it are "outer", after it
    "inner"; other layers get the prefix only when the same kind appears on both sides.
    """
    stack = layers(packet)
    kinds = [type(layer).__name__ for layer in stack]
    boundary = next(
        (i for i, kind in enumerate(kinds)
         if kind in TUNNEL_HEADERS or (kind in ("IP", "IPv6") and i + 1 < len(kinds) and kinds[i + 1] in ("IP", "IPv6"))),
        None,
    )
    names = [LAYER_NAMES.get(kind, layer.name) for kind, layer in zip(kinds, stack, strict=True)]
    if boundary is None:
        return names
    split = boundary + 1 if kinds[boundary] in ("IP", "IPv6") else boundary
    before, after = set(kinds[:split]), set(kinds[split:])
    labels = []
    for i, (kind, name) in enumerate(zip(kinds, names, strict=True)):
        if kind in LINK_AND_NETWORK or (kind in before and kind in after):
            labels.append(("outer " if i < split else "inner ") + name)
        else:
            labels.append(name)
    return labels


def _resolve(field, layer):
    """The field as it applies to this packet: a ConditionalField's inner field (None if its condition
    is false), a MultipleTypeField's chosen field."""
    from scapy.fields import ConditionalField, MultipleTypeField

    if isinstance(field, ConditionalField):
        return field.fld if field._evalcond(layer) else None
    if isinstance(field, MultipleTypeField):
        return field._find_fld_pkt(layer)
    return field


def _value_text(field, layer, value) -> str:
    from scapy.fields import FlagValue
    from scapy.packet import Packet

    if isinstance(value, (bytes, str)) and field.name in ("load", "data") or isinstance(value, bytes) and len(value) > 8:
        return f"{len(value)} bytes"
    if isinstance(value, list) and value and isinstance(value[0], Packet):
        return f"{len(value)} item{'s' * (len(value) > 1)}"
    text = str(field.i2repr(layer, value))
    if isinstance(value, FlagValue):
        digits = max(1, (abs(getattr(field, "size", 8)) + 3) // 4)
        return f"{int(value):#0{2 + digits}x}" + (f" ({text})" if text else "")
    if isinstance(value, int) and not isinstance(value, bool) and text not in (str(value),):
        size = getattr(field, "sz", 0) or 0
        hexish = type(field).__name__.startswith("X") or text.startswith("0x")
        number = f"{value:#0{2 + 2 * size}x}" if hexish and size else (f"{value:#x}" if hexish else str(value))
        return number if text.lower() == number or text == hex(value) else f"{number} ({text})"
    return text if len(text) <= MAX_VALUE else text[: MAX_VALUE - 1] + "…"


def _field_ranges(layer, start: int, label: str) -> list[ByteRange] | None:
    """The header bytes of one layer, field by field (bit fields sharing bytes grouped), or None if
    scapy's field encoding does not add up to the header (the caller then labels the header whole)."""
    from scapy.fields import PacketListField

    out: list[ByteRange] = []
    built: bytes | tuple = b""
    done = 0
    group: list[tuple] = []
    for declared in layer.fields_desc:
        field = _resolve(declared, layer)
        if field is None:
            continue
        value = layer.getfieldval(field.name)
        if isinstance(field, PacketListField) and value and isinstance(built, bytes):
            offset = start + len(built)
            for i, item in enumerate(value, 1):
                inner = _field_ranges(item, offset, f"{label} {field.name.rstrip('s')} {i}")
                if inner is None:
                    return None
                out += inner
                offset += len(bytes(item))
            built += b"".join(bytes(item) for item in value)
            done = len(built)
            continue
        built = field.addfield(layer, built, value)
        group.append((field, value))
        if isinstance(built, bytes):
            if len(built) > done:
                names = "/".join(f.name for f, _ in group)
                values = "/".join(_value_text(f, layer, v) for f, v in group)
                out.append(ByteRange(start + done, start + len(built), label, names, values))
            done, group = len(built), []
    header = len(bytes(layer)) - len(bytes(layer.payload))
    return out if isinstance(built, bytes) and done == header else None


def annotate(frame) -> list[ByteRange]:
    """Every byte of a frame (or packet) labelled with its layer and field, in order, no gaps.

    What Wireshark's packet-bytes pane shows when you click a field: works for any scapy layer
    (Ethernet, 802.1Q, IPv4, IPv6, UDP, TCP, ICMP, VXLAN, GRE, Geneve and its options, a payload).
    """
    packet = concrete(frame)
    key = (bytes(packet), tuple(type(layer) for layer in layers(packet)))
    if key not in _ANNOTATED:  # a widget shows one frame in several views: annotate it once
        if len(_ANNOTATED) >= 64:
            _ANNOTATED.pop(next(iter(_ANNOTATED)))
        _ANNOTATED[key] = _annotate(packet)
    return list(_ANNOTATED[key])


_ANNOTATED: dict[tuple, tuple[ByteRange, ...]] = {}


def _annotate(packet) -> tuple[ByteRange, ...]:
    from scapy.packet import Raw

    out: list[ByteRange] = []
    position = 0
    for layer, label in zip(layers(packet), layer_labels(packet), strict=True):
        length = len(bytes(layer)) - len(bytes(layer.payload))
        if length <= 0:
            continue
        ranges = None if isinstance(layer, Raw) else _field_ranges(layer, position, label)
        if ranges is None:
            field = layer.fields_desc[0].name if isinstance(layer, Raw) else "header"
            ranges = [ByteRange(position, position + length, label, field, f"{length} bytes")]
        out += ranges
        position += length
    return tuple(out)


def layer_sizes(frame) -> list[tuple[str, int]]:
    """Each layer's label and size in bytes, outermost first, a header's options counted with it:
    [("outer Ethernet", 14), ("outer IPv4", 20), ("UDP", 8), ("VXLAN", 8), ("inner Ethernet", 14), …]."""
    sizes: dict[str, int] = {}
    for item in annotate(frame):
        name = item.layer.split(" option ")[0]
        sizes[name] = sizes.get(name, 0) + item.end - item.start
    return list(sizes.items())


class HexRow(NamedTuple):
    """One line of the annotated hexdump: the field it shows (first line of a field) or continues."""

    field: ByteRange
    offset: int
    hex: str
    first: bool


def hexdump_rows(frame, width: int = 16) -> list[HexRow]:
    """The annotated hexdump as rows: each field's bytes, wrapped at `width` bytes a row."""
    data = bytes(concrete(frame))
    rows = []
    for item in annotate(frame):
        chunk = data[item.start:item.end]
        for i in range(0, len(chunk), width):
            rows.append(HexRow(item, item.start + i, " ".join(f"{b:02x}" for b in chunk[i:i + width]), i == 0))
    return rows


def hexdump(frame, width: int = 16) -> str:
    """An annotated hexdump: one line per field with its offset, its bytes (wrapped at `width`) and
    its label ("outer IPv4 · ttl = 64"): `tshark -x` and `tshark -V` side by side."""
    return "\n".join(
        f"{row.offset:04x}  {row.hex:<{3 * width - 1}}  {row.field.label if row.first else ''}".rstrip()
        for row in hexdump_rows(frame, width)
    )


def _describe(layer) -> str:
    kind = type(layer).__name__
    if kind == "Ether":
        return f"{layer.src} > {layer.dst}, ethertype {layer.type:#06x}, length {len(bytes(layer))}"
    if kind == "Dot1Q":
        return f"vlan {layer.vlan}, p {layer.prio}, ethertype {layer.type:#06x}"
    if kind == "IP":
        flags = f" [{layer.flags}]" if int(layer.flags) else ""
        return f"{layer.src} > {layer.dst}: proto {layer.proto}, ttl {layer.ttl}, id {layer.id}{flags}, length {layer.len}"
    if kind == "IPv6":
        return f"{layer.src} > {layer.dst}: next header {layer.nh}, hlim {layer.hlim}, payload length {layer.plen}"
    if kind in ("UDP", "TCP"):
        return f"{layer.sport} > {layer.dport}" + (f", length {layer.len}" if kind == "UDP" else f", flags [{layer.flags}]")
    if kind == "VXLAN":
        return f"flags {int(layer.flags):#04x}, vni {layer.vni}"
    if kind == "GRE":
        extras = [f"key {layer.key:#x}" if layer.key_present else "", f"seq {layer.sequence_number}" if layer.seqnum_present else "",
                  "checksum" if layer.chksum_present else ""]
        return ", ".join([f"proto {layer.proto:#06x}", *filter(None, extras)])
    if kind == "GENEVE":
        return f"vni {layer.vni}, proto {layer.proto:#06x}, options {layer.optionlen * 4} bytes"
    if kind == "ICMP":
        return f"{layer.sprintf('%ICMP.type%')}, id {layer.id}, seq {layer.seq}"
    if kind in ("Raw", "Padding"):
        return f"{len(bytes(layer))} bytes"
    if kind.startswith("ICMPv6Echo"):
        return f"{'echo-request' if kind.endswith('Request') else 'echo-reply'}, id {layer.id}, seq {layer.seq}"
    summary = layer.mysummary()
    return summary if isinstance(summary, str) else ""


def layered_summary(frame) -> str:
    """One indented line per layer, outermost first, in tcpdump-like words:
    `outer IPv4 192.168.56.10 > 192.168.56.11: proto 17, ttl 64 …` then `  UDP 47813 > 8472, length 114` …"""
    packet = concrete(frame)
    return "\n".join(
        f"{'  ' * depth}{label} {_describe(layer)}".rstrip()
        for depth, (layer, label) in enumerate(zip(layers(packet), layer_labels(packet), strict=True))
    )


def ethernet(packet, src: str, dst: str):
    """The packet as captured on the wire: an Ethernet header (src, dst MAC) in front, as the sending
    node's stack adds it after routing and ARP (`tcpdump -i eth0` sees this)."""
    from scapy.layers.l2 import Ether

    from labsupport.addressing import parse_mac

    return concrete(Ether(src=parse_mac(src, "src_mac"), dst=parse_mac(dst, "dst_mac")) / packet)


PCAP_EPOCH = 1_700_000_000


def pcap_bytes(frames, start: float = PCAP_EPOCH, step: float = 0.001) -> bytes:
    """Frames as the bytes of a pcap file Wireshark and tshark open, with deterministic timestamps
    (start, then `step` seconds apart), so the same frames always give the same file.

    All Ethernet frames (link type EN10MB, as tcpdump on eth0 writes) or all IP packets (link type
    RAW, as tcpdump on a tunnel device writes); not a mix.
    """
    import io

    from scapy.layers.inet import IP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether
    from scapy.utils import PcapWriter

    items = list(frames)
    if not items:
        raise LabInputError("frames", "[]", "at least one frame")
    if all(isinstance(f, Ether) for f in items):
        linktype = 1
    elif all(isinstance(f, (IP, IPv6)) for f in items):
        linktype = 101
    else:
        kinds = sorted({type(f).__name__ for f in items})
        raise LabInputError("frames", ", ".join(kinds), "all Ethernet frames, or all IP packets")
    buffer = io.BytesIO()
    writer = PcapWriter(buffer, linktype=linktype, sync=False)
    writer.write_header(None)
    for i, frame in enumerate(items):
        stamp = round((start + i * step) * 1_000_000)
        writer.write_packet(bytes(concrete(frame)), sec=stamp // 1_000_000, usec=stamp % 1_000_000)
    writer.flush()
    return buffer.getvalue()


def write_pcap(path, frames, start: float = PCAP_EPOCH, step: float = 0.001) -> str:
    """Write frames to a pcap file (see :func:`pcap_bytes`): the same bytes on every run."""
    from pathlib import Path

    Path(path).write_bytes(pcap_bytes(frames, start, step))
    return str(path)
