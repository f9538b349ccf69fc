"""Safety of the overlay twins: this machine's own namespace is untouched, and nothing is left behind.

The same checks as the pod-network twin's (tests/kernel/test_kernel_pod_network.py), for VxlanTwin,
IpipTwin's Calico build (with tunl0 stood in by a veth where the kernel has no ipip), IpipTwin's failure
on a kernel without ipip, and tunnel_support's scratch namespace: `root_snapshot()`
(links, addresses, routes, rules, iptables, this process's namespaces) before and after, equal; no
namespace of the twin's prefix after it; every command inside the twin's own namespaces.
"""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest
from test_kernel_overlay import TunlStandIn
from twin_safety import left_behind, root_snapshot

from labsupport.kernel import TwinError
from labsupport.kernel_overlay import VXLAN_DEVICE, IpipTwin, VxlanTwin, scratch_namespace, tunnel_support

pytestmark = pytest.mark.usefixtures("requires_root_netns")

INSIDE = ("ip -n ", "bridge -n ", "ip netns ")  # every command a twin runs starts so: inside its namespaces


def test_root_namespace_untouched_by_a_vxlan_run() -> None:
    before = root_snapshot()
    with VxlanTwin() as twin:
        prefix = twin.prefix
        assert sorted(left_behind(prefix)) == sorted(twin.names.values())  # the four, no other
        assert twin.ping("pod-a", "10.244.2.2")
        assert twin.read_vxlan("node-1")["vxlan"]["local"] == "192.168.56.10"
        assert all(cmd.startswith(INSIDE) for cmd in twin.commands), [
            c for c in twin.commands if not c.startswith(INSIDE)
        ]
        # while it runs too: the vxlan devices, bridges and the underlay exist only inside the twin
        during = root_snapshot()
        assert (during["link"], during["addr"], during["route"]) == (
            before["link"],
            before["addr"],
            before["route"],
        )
    assert left_behind(prefix) == []
    assert root_snapshot() == before


def test_error_inside_the_with_block_cleans_up() -> None:
    before = root_snapshot()
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    with pytest.raises(RuntimeError, match="boom"), VxlanTwin() as twin:
        prefix = twin.prefix
        assert left_behind(prefix)
        raise RuntimeError("boom")
    assert left_behind(prefix) == []
    assert root_snapshot() == before
    assert {sig: signal.getsignal(sig) for sig in handlers} == handlers


class _FailingTwin(VxlanTwin):
    """A VxlanTwin whose build fails half-way, as a kernel refusing a command would make it."""

    def _remote(self, spec, remote) -> None:
        self.ip(
            spec.name, "route", "add", remote.pod_cidr, "via", "10.99.0.1", "dev", VXLAN_DEVICE
        )  # no onlink


def test_error_during_the_build_cleans_up() -> None:
    before = root_snapshot()
    twin = _FailingTwin()
    with pytest.raises(TwinError, match="Nexthop has invalid gateway"), twin:
        pass
    assert left_behind(twin.prefix) == []
    assert root_snapshot() == before


def test_ipip_twin_where_the_kernel_lacks_ipip_cleans_up() -> None:
    before = root_snapshot()
    twin = IpipTwin()
    if tunnel_support(("ipip",))["ipip"][0]:
        with twin:
            assert twin.ping("pod-a", "10.244.2.2")
    else:
        with pytest.raises(TwinError, match="Unknown device type"), twin:
            pass
        assert twin.commands[-1].endswith("link add tunl0 type ipip")  # Felix's step, refused
    assert all(cmd.startswith(INSIDE) for cmd in twin.commands), twin.commands
    assert left_behind(twin.prefix) == []
    assert root_snapshot() == before


def test_root_namespace_untouched_by_a_calico_build() -> None:
    before = root_snapshot()
    with TunlStandIn() as twin:
        prefix = twin.prefix
        assert sorted(left_behind(prefix)) == sorted(twin.names.values())
        assert twin.ping("pod-a", "192.168.56.10")  # through the proxy-ARP gateway 169.254.1.1
        assert any("sysctl -w net.ipv4.conf.cali" in cmd for cmd in twin.commands)
        assert all(cmd.startswith(INSIDE) for cmd in twin.commands), [
            c for c in twin.commands if not c.startswith(INSIDE)
        ]
        during = root_snapshot()
        assert (during["link"], during["addr"], during["route"]) == (
            before["link"],
            before["addr"],
            before["route"],
        )
    assert left_behind(prefix) == []
    assert root_snapshot() == before


def test_tunnel_probes_stay_in_their_scratch_namespace() -> None:
    before = root_snapshot()
    with scratch_namespace() as twin:
        prefix = twin.prefix
        assert left_behind(prefix) == [f"{prefix}-scratch"]
    tunnel_support()
    assert left_behind(prefix) == []
    assert root_snapshot() == before


CHILD = """
import time
from labsupport.kernel_overlay import VxlanTwin
with VxlanTwin() as twin:
    print(twin.prefix, flush=True)
    time.sleep(60)
"""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupt_cleans_up(signum: int) -> None:
    before = root_snapshot()
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    prefix = child.stdout.readline().strip()
    assert prefix.startswith("k8s101-"), child.stderr.read() if child.poll() is not None else prefix
    assert len(left_behind(prefix)) == 4  # node-1, node-2, pod-a, pod-b
    child.send_signal(signum)
    child.communicate(timeout=30)
    assert child.returncode != 0  # interrupted, not finished
    assert left_behind(prefix) == []
    assert root_snapshot() == before
