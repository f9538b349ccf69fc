"""Safety checks shared by the kernel tier: what the root namespace looks like, and what a twin left behind.

Every kernel test snapshots the machine's own namespace before and after a twin runs and compares; these
helpers only read (`ip -j …`, `iptables-save`, `ip netns list`), never change anything.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

from labsupport.kernel import netns_list

_COUNTERS = re.compile(r"\[\d+:\d+\]")
_TIMES = {"valid_life_time", "preferred_life_time", "expires"}


def _drop_times(value):
    if isinstance(value, dict):
        return {k: _drop_times(v) for k, v in value.items() if k not in _TIMES}
    if isinstance(value, list):
        return [_drop_times(v) for v in value]
    return value


def root_snapshot() -> dict:
    """The root namespace as `ip -j link/addr/route/rule`, `iptables-save` and `ip netns list` show it
    (lifetimes, expiry timers and packet counters left out: they move on their own)."""

    def run(*cmd: str) -> str:
        return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=30).stdout

    snap = {
        "link": _drop_times(json.loads(run("ip", "-j", "link"))),
        "addr": _drop_times(json.loads(run("ip", "-j", "addr"))),
        "route": _drop_times(json.loads(run("ip", "-j", "route", "show", "table", "all"))),
        "rule": json.loads(run("ip", "-j", "rule")),
        # Only this test process's twins: other runs (other processes) may add namespaces meanwhile.
        # Each test also checks that no namespace of the twin it ran (its own prefix) is left.
        "netns": sorted(n for n in netns_list() if n.startswith(f"k8s101-{os.getpid()}-")),
    }
    if shutil.which("iptables-save"):
        text = run("iptables-save")
        snap["iptables"] = [_COUNTERS.sub("", line) for line in text.splitlines() if not line.startswith("#")]
    return snap


def left_behind(prefix: str) -> list[str]:
    return [n for n in netns_list() if n.startswith(prefix)]
