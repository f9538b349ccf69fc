"""The overlay twins' host-safety check that needs no kernel: a tunnel kind whose module could be loaded
but is not is never probed, since loading ipip, ip_gre or sit adds fallback devices to the host's namespace."""

from __future__ import annotations

import os

from labsupport.kernel_overlay import TUNNEL_KINDS, module_not_loaded


def _tree(tmp_path, loaded=(), loadable=()):
    for name in loaded:
        (tmp_path / "sys/module" / name).mkdir(parents=True)
    dep = tmp_path / "lib/modules" / os.uname().release / "modules.dep"
    dep.parent.mkdir(parents=True)
    dep.write_text("".join(f"kernel/net/ipv4/{name}.ko.xz: kernel/net/ipv4/ip_tunnel.ko.xz\n" for name in loadable))
    return tmp_path


def test_a_loadable_module_that_is_not_loaded_is_not_probed(tmp_path) -> None:
    root = _tree(tmp_path, loaded=("vxlan",), loadable=("ipip", "ip_gre"))
    assert module_not_loaded("vxlan", root) is None  # loaded (or built in): probing changes nothing
    for kind in ("ipip", "gre", "gretap"):
        why = module_not_loaded(kind, root)
        assert why is not None and "modprobe" in why and "host" in why, kind
    assert module_not_loaded("sit", root) is None  # not loadable at all: the probe just fails


def test_without_any_modules_every_kind_may_be_probed(tmp_path) -> None:
    assert [module_not_loaded(kind, tmp_path) for kind in TUNNEL_KINDS] == [None] * len(TUNNEL_KINDS)
