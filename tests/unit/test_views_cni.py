"""The cni lab's views: the comparator shows what the models say for every plugin, mode, cluster and pod,
bad choices in place; the figure names each plugin's devices and draws the ping's way; the capture decodes
back to the walk's frames."""

from __future__ import annotations

import base64
import html
import io
import re
import xml.etree.ElementTree as ET

import pytest

from labsupport import cni
from labsupport.views import cni as views
from labsupport.views.explorable import DEFAULT_MAX_STATES

SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def ui():
    return views.comparator()


def walk_of(plugin: str, mode: str, topology: str, destination: str):
    network = cni.cluster(plugin, mode, topology)
    return network, cni.walk(network, views.SOURCE, destination)


def test_comparator_renders_every_state_from_the_models(ui) -> None:
    assert ui.n_states == len(views.PLUGIN_MODES) * 2 * 2 <= DEFAULT_MAX_STATES
    for label, (plugin, mode) in views.PLUGIN_MODES:
        for topology in cni.TOPOLOGIES:
            for destination in ("pod-b", "pod-c"):
                ui.set(plugin=label, topology=topology, destination=destination)
                if topology == "two-nodes" and destination == "pod-c":
                    assert ui.error is not None and ui.visible() == []
                    continue
                assert ui.error is None
                shown = "\n".join(ui.visible())
                network, result = walk_of(plugin, mode, topology, destination)
                assert shown.startswith(views.summary_line(network, result))
                assert [f"<Tab {name}>" for name in network.nodes] == re.findall(r"<Tab node-\d>", shown)
                for name in network.nodes:
                    assert cni.routes_text(plugin, mode, name, topology) in shown
                    assert network.node(name).ip_link_details() in shown
                assert views.hop_table(network, result) in shown
                assert "<Tab pcap>" in shown


def test_a_pod_the_cluster_does_not_have_is_refused_in_place(ui) -> None:
    ui.set(plugin="flannel · vxlan", topology="two-nodes", destination="pod-c")
    assert ui.error == (
        "destination: 'pod-c' is not allowed; a pod of this cluster (pod-a, pod-b): pod-c runs on node-3, "
        "which only the three-node, two-subnet cluster has"
    )
    ui.set(topology="two-subnets")
    assert ui.error is None and "pod-a (10.244.1.2) → pod-c (10.244.3.2): reply received." in ui.visible()[0]


def test_host_gw_across_subnets_shows_the_kernels_refusals(ui) -> None:
    ui.set(plugin="flannel · host-gw", topology="two-subnets", destination="pod-c")
    shown = "\n".join(ui.visible())
    # The kernel's own words, checked on a real kernel: a gateway off the device's subnet is refused with
    # "Error: Nexthop has invalid gateway."
    refused = re.findall(r"<li>(node-\d): `ip route add (\S+) via (\S+) dev eth0` → Error: Nexthop has invalid gateway\.",
                         shown)
    assert refused == [("node-1", "10.244.3.0/24", "192.168.57.10"), ("node-2", "10.244.3.0/24", "192.168.57.10"),
                       ("node-3", "10.244.1.0/24", "192.168.56.10"), ("node-3", "10.244.2.0/24", "192.168.56.11")]
    assert "pod-a (10.244.1.2) → pod-c (10.244.3.2): not delivered." in shown
    assert "✗ router: no route to 10.244.3.2: dropped" in shown


@pytest.mark.parametrize("plugin", ["cilium · vxlan", "weave · fastdp", "weave · sleeve"])
def test_what_the_model_stands_in_for_is_said(ui, plugin) -> None:
    ui.set(plugin=plugin, topology="two-nodes", destination="pod-b")
    shown = "\n".join(ui.visible())
    network = cni.cluster(*dict(views.PLUGIN_MODES)[plugin])
    assert "What the model stands in for:" in shown
    for note in network.modelled:
        assert html.escape(note) in shown


def on_path_titles(markup: str) -> list[str]:
    """The device names inside the boxes outlined as on the ping's way (the inner red outline)."""
    root = ET.fromstring(markup)
    boxes = [r for r in root.iter(f"{SVG}rect") if r.get("fill") == "none" and r.get("stroke") == views.PATH_COLOUR]
    titles = []
    for box in boxes:
        x, y, w, h = (float(box.get(k)) for k in ("x", "y", "width", "height"))
        inside = [t.text for t in root.iter(f"{SVG}text")
                  if x <= float(t.get("x")) <= x + w and y <= float(t.get("y")) <= y + h]
        titles.append(inside[0])
    return titles


@pytest.mark.parametrize(
    ("plugin", "mode", "topology", "destination", "way", "wrapped"),
    [
        ("flannel", "vxlan", "two-nodes", "pod-b",
         ["veth-pod-a (veth)", "cni0 (bridge)", "flannel.1 (vxlan)", "eth0 (ether)",
          "veth-pod-b (veth)", "cni0 (bridge)", "flannel.1 (vxlan)", "eth0 (ether)"],
         "VXLAN vni 1 · UDP {sport} → 8472 · +50 bytes"),
        ("calico", "ipip", "two-subnets", "pod-c",
         [f"{cni.calico_veth_name('pod-a')} (veth)", "tunl0 (ipip)", "eth0 (ether)",
          f"{cni.calico_veth_name('pod-c')} (veth)", "tunl0 (ipip)", "eth0 (ether)"],
         "IPIP (protocol 4) · +20 bytes"),
        ("calico", "vxlan", "two-nodes", "pod-b",
         [f"{cni.calico_veth_name('pod-a')} (veth)", "vxlan.calico (vxlan)", "eth0 (ether)",
          f"{cni.calico_veth_name('pod-b')} (veth)", "vxlan.calico (vxlan)", "eth0 (ether)"],
         "VXLAN vni 4096 · UDP {sport} → 4789 · +50 bytes"),
        ("cilium", "vxlan", "two-nodes", "pod-b",
         [f"{cni.cilium_veth_name('pod-a')} (veth)", "cilium_vxlan (vxlan)", "eth0 (ether)",
          f"{cni.cilium_veth_name('pod-b')} (veth)", "cilium_vxlan (vxlan)", "eth0 (ether)"],
         "VXLAN vni 256 · UDP {sport} → 8472 · +50 bytes"),
        ("aws-vpc-cni", "eni", "two-nodes", "pod-b",
         [f"{cni.aws_veth_name('pod-a')} (veth)", "eth1", f"{cni.aws_veth_name('pod-b')} (veth)", "eth1"],
         "no encapsulation · +0 bytes"),
        ("flannel", "host-gw", "two-subnets", "pod-c",
         ["veth-pod-a (veth)", "cni0 (bridge)", "eth0 (ether)"], "no encapsulation · +0 bytes"),
    ],
)
def test_figure_names_each_plugins_devices_and_draws_the_way(plugin, mode, topology, destination, way, wrapped) -> None:
    network, result = walk_of(plugin, mode, topology, destination)
    markup = views.draw_cluster(network, result).markup
    texts = [t.text for t in ET.fromstring(markup).iter(f"{SVG}text")]
    for node in network.nodes.values():  # every device of every node is named, loopback aside
        for link in node.host.links.values():
            if link.kind != "loopback":
                assert link.name in texts or f"{link.name} ({link.kind})" in texts, link.name
    assert on_path_titles(markup) == way
    sent = cni.crossings(network, cni.request_hops(result))[0][0].frame
    from scapy.layers.inet import UDP

    sport = sent[UDP].sport if sent.haslayer(UDP) else None
    assert wrapped.format(sport=sport) in texts
    assert markup == views.draw_cluster(network, result).markup  # deterministic


def test_the_request_is_followed_hop_by_hop() -> None:
    network, result = walk_of("flannel", "vxlan", "two-nodes", "pod-b")
    hops = cni.request_hops(result)
    assert hops[-1].namespace == "pod-b" and "delivered" in hops[-1].event
    framed = [(f"{h.namespace}/{h.device}", views.wire_view(h.frame)) for h in hops if h.frame is not None]
    assert [where for where, _ in framed] == ["pod-a/eth0", "node-1/veth-pod-a", "node-1/flannel.1", "node-1/eth0",
                                              "node-2/eth0", "node-2/flannel.1", "node-2/cni0", "pod-b/eth0"]
    # The pod's packet loses one TTL per node that forwards it; ping's 84-byte packet in a 98-byte frame,
    # 148 bytes once VXLAN (RFC 7348: outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14) wraps it.
    assert [v.pod_packet.rsplit(" ", 1)[1] for _, v in framed] == ["64", "64", "63", "63", "63", "63", "62", "62"]
    assert [v.length for _, v in framed] == [98, 98, 98, 148, 148, 98, 98, 98]
    assert [v.overhead for _, v in framed] == [0, 0, 0, 50, 50, 0, 0, 0]
    table = views.hop_table(network, result)
    assert table.count('<tr class="underlay">') == 2 and table.count("<tr") == 1 + len(framed)


def test_sleeve_is_unwrapped_to_the_pods_packet() -> None:
    network, result = walk_of("weave", "sleeve", "two-nodes", "pod-b")
    sent, received = cni.crossings(network, cni.request_hops(result))[0]
    view = views.wire_view(sent.frame)
    assert (sent.namespace, received.namespace) == ("node-1", "node-2")
    assert view.carried == f"weave sleeve · UDP {cni.WEAVE_PORT} → {cni.WEAVE_PORT}"
    assert view.pod_packet == "10.244.1.2 → 10.244.2.2 ttl 64" and view.overhead == cni.SLEEVE_OVERHEAD


@pytest.mark.parametrize(("plugin", "mode", "device"), [("flannel", "vxlan", "eth0"), ("aws-vpc-cni", "eni", "eth1")])
def test_pcap_download_decodes_back_to_the_walks_frames(plugin, mode, device) -> None:
    from scapy.utils import rdpcap

    network, result = walk_of(plugin, mode, "two-subnets", "pod-c")
    link = views.pcap_download(network, result)
    data = base64.b64decode(re.search(r"base64,([A-Za-z0-9+/=]+)", link).group(1))
    decoded = rdpcap(io.BytesIO(data))
    want = result.frames("node-1", device)
    assert [bytes(f) for f in decoded] == [bytes(f) for f in want] and len(want) >= 4
    assert f'download="{plugin}-{mode}-two-subnets-pod-a-pod-c-node-1-{device}.pcap"' in link
    assert (" -d udp.port==8472,vxlan" in link) == (plugin == "flannel")


def test_mtu_table_leaves_room_for_what_each_mode_adds() -> None:
    rows = [line.split(" | ") for line in views.mtu_table().markdown.splitlines()[2:]]
    assert len(rows) == len(views.PLUGIN_MODES)
    for label, wrap, near, far, mtu, total in rows:
        added = max(int(near), int(far) if far.isdigit() else 0)
        assert int(mtu) + added == int(total.rstrip(" |")), label
        fits = int(total.rstrip(" |")) == cni.UNDERLAY_MTU  # the largest MTU that fits; Weave keeps 1376
        assert fits if "weave" not in label else int(mtu) == cni.WEAVE_MTU, label
        assert (added == 0) == (wrap == "none"), label


def test_tables_are_shown_as_html_tables() -> None:
    table = views.comparison_table()
    assert table.markdown == cni.comparison_table() and repr(table).startswith("<table: ")
    root = ET.fromstring(table._repr_html_().replace("<br>", "<br/>"))  # HTML's <br> is the one non-XML tag
    assert [th.text for th in root.iter("th")] == [None, *cni.APPROACHES]
    assert len(list(root.iter("tr"))) == len(cni.comparison_table().splitlines()) - 1  # the |---| line is no row
    assert root.find("tbody/tr/td/br") is not None  # the examples of one approach, one a line
    mtu = ET.fromstring(views.mtu_table()._repr_html_())
    assert [td.text for td in mtu.find("tbody/tr")] == ["flannel · vxlan", "vxlan", "50", "50", "1450", "1500"]
