"""The pod-network lab's widgets: they show what the models say, and bad input in place."""

from __future__ import annotations

import pytest

from labsupport import pod_network as pn
from labsupport.views import pod_network as views


@pytest.fixture(scope="module")
def node_ui():
    return views.build_a_node()


def test_build_a_node_precomputes_every_pods_and_bridge_choice(node_ui) -> None:
    assert node_ui.n_states == 6
    node_ui.set(pods=4, bridge="docker0")
    shown = "\n".join(node_ui.visible())
    node = pn.build_node(pods=4, bridge="docker0")
    assert node.host.ip_addr() in shown and node.namespaces["pod-d"].ip_route() in shown
    assert "<Tab pod-d>" in shown and "<Tab pod-e>" not in shown


def test_bad_pod_cidr_is_shown_in_place_and_loses_nothing(node_ui) -> None:
    node_ui.set(pods=2, bridge="cni0", pod_cidr="10.244.1.0/24")
    before = node_ui.visible()
    node_ui.set(pod_cidr="192.168.56.0/25")
    assert node_ui.error == (
        "pod_cidr: '192.168.56.0/25' is not allowed; "
        "a pod CIDR that does not overlap the node's network 192.168.56.0/24"
    )
    assert node_ui.visible()[: len(before)] == before  # the last good output stays
    assert node_ui.values()["pod_cidr"] == "192.168.56.0/25"  # and the typed text too
    node_ui.set(pod_cidr="10.32.0.0/16")
    assert node_ui.error is None
    assert "10.32.0.1/16" in "\n".join(node_ui.visible())


def test_packet_way_shows_the_walk_of_each_choice() -> None:
    ui = views.packet_way()
    assert ui.n_states == 4 * 5
    ui.set(source="pod-c", destination="192.168.56.10")
    shown = "\n".join(ui.visible())
    expected = pn.walk(pn.build_node(**views.WALK_NODE), "pod-c", "192.168.56.10")
    assert expected.table() in shown
    assert shown.startswith("pod-c: ping 192.168.56.10: reply received")


def test_walk_ladder_has_one_arrow_per_frame_received() -> None:
    node = pn.build_node(pods=2)
    result = pn.walk(node, "pod-a", "pod-b")
    from matplotlib.text import Annotation

    fig = views.draw_walk(result, node)
    arrows = [t for t in fig.axes[0].texts if isinstance(t, Annotation)]
    received = [h for h in result.hops if h.frame is not None and h.event.startswith("receives")]
    assert len(arrows) == len(received)


def test_topology_svg_names_every_device_and_address() -> None:
    import xml.etree.ElementTree as ET

    node = pn.build_node(pods=3, bridge="docker0", pod_cidr="172.17.0.0/16")
    svg = views.draw_node(node, "pod-a", "pod-c").markup
    root = ET.fromstring(svg)  # well-formed XML, as browsers and the book's image output need
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    for pod in node.pods:
        eth0 = node.namespaces[pod].links["eth0"]
        assert pod in texts and f"eth0 {eth0.addresses[0].with_prefixlen}" in texts and eth0.mac in texts
        assert eth0.peer[1] in texts
    assert "bridge docker0 · 172.17.0.1/16 · 0a:58:ac:11:00:01" in texts
    red = [ln for ln in root.iter("{http://www.w3.org/2000/svg}line") if ln.get("stroke") == views.PATH_COLOUR]
    assert len(red) == 2  # the veths of pod-a and pod-c, the two ends of the walk
    assert views.draw_node(node).markup == views.draw_node(node).markup  # deterministic
