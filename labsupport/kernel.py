"""Kernel twins: a model's node built for real in Linux network namespaces, read back and compared.

A twin takes a :class:`~labsupport.pod_network.Node` (every :class:`~labsupport.host.Namespace` of it)
and builds the same thing with iproute2: one network namespace per model namespace, veth pairs,
bridges, the model's MACs, MTUs, addresses, routes, rules and permanent neighbours. It then asks the
kernel what it has (`ip -j addr/route/rule/neigh`, `bridge -j fdb`), sends packets between its own
namespaces (`ping`, one UDP datagram), captures frames (`tcpdump`), and compares all of it with the
model.

Safety (see the course's "Safety of the kernel twins"):

- every namespace is named `<prefix>-<model name>`, the prefix unique to the run
  (`k8s101-<pid>-<4 hex>`), and every command runs inside one of them: `ip -n NS`, `bridge -n NS`,
  `ip netns exec NS`. A guard refuses any other target, so the root namespace is never touched;
- a node's uplink (`eth0`, `eth1`) is a veth to a twin-owned "uplink" namespace that holds the
  gateway address and forwards nothing: no packet leaves the twin;
- namespaces of earlier runs whose process is gone are swept at start; everything is removed on
  exit, on error, on SIGINT/SIGTERM and at interpreter exit.

The netfilter chapter's twin (:class:`NetfilterTwin`) is a Twin of :func:`netfilter_topology`: a client,
a router and a server. It loads a filter + nat ruleset into the router (`ip netns exec ROUTER
iptables-restore`), sends probes from the client (or replies from whoever got them), and reads what
happened: which rules counted them (`iptables-save -c`), whether they were delivered, forwarded (with
their addresses after NAT) or rejected (with REJECT's answer), and `conntrack -L`. :func:`random_ruleset`
is a seeded grammar of valid rules; :func:`model_case` runs the same case through
`labsupport.netfilter`, :func:`compare_case` says where they differ, :func:`run_netfilter_twin` is the
one call a lab makes. The safety above holds as is: the observers are processes of the twin, every
iptables and conntrack command runs inside the twin's router.

No IPython import; needs root, iproute2, iputils `ping` and (for captures) tcpdump; the netfilter twin
also iptables (iptables-restore, iptables-save) and conntrack.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import secrets
import selectors
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface
from typing import Self

from labsupport.host import Namespace
from labsupport.pod_network import Node
from labsupport.routing import DEFAULT_TABLE, LOCAL_TABLE, MAIN_TABLE, Decision, default_rules

PREFIX_ROOT = "k8s101"
UPLINK = "uplink"  # the twin-owned namespace standing in for the node's network (gateway, VPC)
UPLINK_BRIDGE = "lan0"
COMMAND_TIMEOUT = 20
_STALE_RE = re.compile(rf"^{PREFIX_ROOT}-(\d+)-[0-9a-f]{{4}}(?:-|$)")
_PREFIX_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,39}$")
_FIXED_TABLES = {LOCAL_TABLE: "local", MAIN_TABLE: "main", DEFAULT_TABLE: "default"}

# Per-namespace sysctls set before any device exists, so every device inherits them (`default`).
# IPv6 stays on (the model shows each device's fe80:: address) but is made quiet and immediate: no DAD
# (no "tentative" addresses), no router solicitations, MLD reports sent at once rather than spread
# over seconds. IGMP reports too (a bridge joins 224.0.0.106 for multicast router discovery, and
# would otherwise repeat its report up to a second later, in the middle of a capture).
# Reverse-path filtering is off, as in the model, whatever the host's defaults are.
_QUIET_SYSCTLS = (
    "net.ipv6.conf.all.disable_ipv6=0",
    "net.ipv6.conf.default.disable_ipv6=0",
    "net.ipv6.conf.all.accept_dad=0",
    "net.ipv6.conf.default.accept_dad=0",
    "net.ipv6.conf.all.accept_ra=0",
    "net.ipv6.conf.default.accept_ra=0",
    "net.ipv6.conf.default.router_solicitations=0",
    "net.ipv6.conf.default.mldv1_unsolicited_report_interval=1",
    "net.ipv6.conf.default.mldv2_unsolicited_report_interval=1",
    "net.ipv4.conf.default.igmpv2_unsolicited_report_interval=1",
    "net.ipv4.conf.default.igmpv3_unsolicited_report_interval=1",
    "net.ipv4.conf.all.rp_filter=0",
    "net.ipv4.conf.default.rp_filter=0",
)


class TwinError(RuntimeError):
    """The twin could not do something: names the command (if any) and what the kernel answered."""

    def __init__(self, message: str, command: list[str] | None = None) -> None:
        self.command = command
        text = message.strip() or "no message"
        self.detail = text  # what the kernel (or the twin) said, without the command
        super().__init__(f"`{shlex.join(command)}` failed: {text}" if command else text)


# --- can a twin run here? ------------------------------------------------------------------------------


def available() -> tuple[bool, str]:
    """Whether a twin can run here, and why not: root, iproute2, `ip netns add`/`delete` of a probe.

    Runs `ip netns add k8s101-<pid>-<hex>-probe` and `ip netns delete` of the same name.
    """
    if not sys.platform.startswith("linux"):
        return False, f"needs Linux network namespaces; this is {sys.platform}"
    if os.geteuid() != 0:
        return False, "needs root (or CAP_NET_ADMIN and CAP_SYS_ADMIN) to create network namespaces"
    for tool, package in (("ip", "iproute2"), ("bridge", "iproute2"), ("ping", "iputils-ping")):
        if shutil.which(tool) is None:
            return False, f"needs the `{tool}` command (Debian package {package})"
    probe = f"{new_prefix()}-probe"
    try:
        add = subprocess.run(
            ["ip", "netns", "add", probe],
            check=False,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"`ip netns add` could not run: {exc}"
    if add.returncode != 0:
        return False, f"`ip netns add` failed: {add.stderr.strip() or add.returncode} (needs CAP_SYS_ADMIN)"
    delete = subprocess.run(
        ["ip", "netns", "delete", probe], check=False, capture_output=True, text=True, timeout=COMMAND_TIMEOUT
    )
    if delete.returncode != 0:
        return False, f"`ip netns delete {probe}` failed: {delete.stderr.strip()}"
    return True, "root with network namespaces"


def new_prefix() -> str:
    """A prefix unique to this run: `k8s101-<pid>-<4 random hex digits>`."""
    return f"{PREFIX_ROOT}-{os.getpid()}-{secrets.token_hex(2)}"


def netns_list() -> list[str]:
    """The names `ip netns list` shows (the files in /run/netns)."""
    out = subprocess.run(
        ["ip", "netns", "list"], check=False, capture_output=True, text=True, timeout=COMMAND_TIMEOUT
    )
    return [line.split()[0] for line in out.stdout.splitlines() if line.strip()]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale() -> list[str]:
    """Delete namespaces `k8s101-<pid>-…` left by runs whose process is gone (`ip netns delete NAME`).

    Namespaces of live processes (this one included) are left alone. Returns the names deleted.
    """
    removed = []
    for name in netns_list():
        match = _STALE_RE.match(name)
        if match and not _pid_alive(int(match.group(1))):
            subprocess.run(
                ["ip", "netns", "delete", name], check=False, capture_output=True, timeout=COMMAND_TIMEOUT
            )
            removed.append(name)
    return removed


# --- reading a namespace back, in the shape of Namespace.ip_json() ------------------------------------


def parse_ip_json(
    addr: list[dict],
    routes: list[dict],
    rules: list[dict],
    neigh: list[dict],
    fdb: list[dict],
    table_names: dict[int, str] | None = None,
) -> dict:
    """Turn real `ip -j` / `bridge -j` dumps into the comparable core of :meth:`Namespace.ip_json`.

    - addr: per device its MAC, MTU, master, IPv4 `a/len` and IPv6 link-local (scope link) addresses;
    - route: per table (named as the model names it, via `table_names` id → name) the IPv4 routes the
      model has: the kernel's `local`/`broadcast`/`multicast` entries and the local table are dropped;
    - rule: `ip -j rule` as it is; neigh: (ip, dev, mac) of IPv4 entries with a MAC (not FAILED or
      INCOMPLETE); fdb: (mac, port) of learned entries only (not `self`, not `permanent`/`static`).
    """
    names = {**_FIXED_TABLES, **(table_names or {})}
    by_label = {"main": MAIN_TABLE, "local": LOCAL_TABLE, "default": DEFAULT_TABLE}
    out_addr = {}
    for link in addr:
        infos = link.get("addr_info", [])
        out_addr[link["ifname"]] = {
            "mac": link.get("address"),
            "mtu": link.get("mtu"),
            "master": link.get("master"),
            "inet": sorted(f"{a['local']}/{a['prefixlen']}" for a in infos if a.get("family") == "inet"),
            "inet6": sorted(
                f"{a['local']}/{a['prefixlen']}"
                for a in infos
                if a.get("family") == "inet6" and a.get("scope") == "link"
            ),
        }
    out_route: dict[str, list[dict]] = {}
    for route in routes:
        if ":" in route.get("dst", "") or route.get("type", "unicast") in ("local", "broadcast", "multicast"):
            continue
        label = str(route.get("table", "main"))
        table_id = int(label) if label.isdigit() else by_label.get(label)
        if table_id == LOCAL_TABLE:
            continue
        name = names.get(table_id, label) if table_id is not None else label
        entry = {k: v for k, v in route.items() if k != "table"}
        out_route.setdefault(name, []).append(entry)
    out_neigh = sorted(
        (n["dst"], n["dev"], n["lladdr"])
        for n in neigh
        if ":" not in n.get("dst", ":")
        and n.get("lladdr")
        and not {"FAILED", "INCOMPLETE"} & set(n.get("state", []))
    )
    out_fdb = sorted(
        (e["mac"], e["ifname"])
        for e in fdb
        if e.get("master") and "self" not in e.get("flags", []) and e.get("state", "") in ("", "stale")
    )
    return {"addr": out_addr, "route": out_route, "rule": list(rules), "neigh": out_neigh, "fdb": out_fdb}


def _route_text(route: dict) -> str:
    """One `ip -j route` object in `ip route` words (for readable differences)."""
    words = [route["type"]] if route.get("type", "unicast") != "unicast" else []
    words.append(route.get("dst", "?"))
    for key, word in (
        ("gateway", "via"),
        ("dev", "dev"),
        ("protocol", "proto"),
        ("scope", "scope"),
        ("prefsrc", "src"),
        ("metric", "metric"),
    ):
        if key in route:
            words += [word, str(route[key])]
    words += [str(f) for f in route.get("flags", [])]
    return " ".join(words)


def _rule_text(rule: dict) -> str:
    """One `ip -j rule` object in `ip rule` words."""
    words = ["not"] if "not" in rule else []
    src = rule.get("src", "all")
    words += ["from", src + (f"/{rule['srclen']}" if "srclen" in rule else "")]
    if "dst" in rule:
        words += ["to", rule["dst"] + (f"/{rule['dstlen']}" if "dstlen" in rule else "")]
    extra = {
        k: v
        for k, v in rule.items()
        if k not in {"priority", "not", "src", "srclen", "dst", "dstlen", "table"}
    }
    words += [f"{k} {v}" for k, v in extra.items()]
    words += ["lookup", str(rule.get("table"))]
    return f"{rule.get('priority')}: " + " ".join(words)


def compare(
    model_ns: Namespace, real: dict, parts: tuple[str, ...] = ("addr", "route", "rule", "neigh", "fdb")
) -> list[str]:
    """Differences between a model namespace and what the kernel reported (`Twin.read`); [] when they agree.

    Neighbours are compared as (ip, dev, mac) and FDB entries as (mac, port): NUD states such as
    REACHABLE, STALE or DELAY change with time on a real kernel, so they are not compared.
    """
    want = model_ns.ip_json()
    diffs: list[str] = []
    if "addr" in parts:
        for dev in sorted(set(want["addr"]) | set(real["addr"])):
            if dev not in real["addr"]:
                diffs.append(f"addr: model has device {dev}, kernel does not")
            elif dev not in want["addr"]:
                diffs.append(f"addr: kernel has device {dev}, model does not")
            else:
                for key, value in want["addr"][dev].items():
                    got = real["addr"][dev].get(key)
                    if got != value:
                        diffs.append(f"addr {dev} {key}: model {value}, kernel {got}")
    if "route" in parts:
        for table in sorted(set(want["route"]) | set(real["route"])):
            model_lines = [_route_text(r) for r in want["route"].get(table, [])]
            real_lines = [_route_text(r) for r in real["route"].get(table, [])]
            only_model = [line for line in model_lines if line not in real_lines]
            only_kernel = [line for line in real_lines if line not in model_lines]
            diffs += [f"route table {table}: only in model: {line}" for line in only_model]
            diffs += [f"route table {table}: only in kernel: {line}" for line in only_kernel]
            if not only_model and not only_kernel:
                if model_lines != real_lines:
                    diffs.append(f"route table {table}: same routes in another order: kernel {real_lines}")
                elif want["route"].get(table) != real["route"].get(table):
                    diffs.append(
                        f"route table {table}: fields differ: model {want['route'].get(table)}, "
                        f"kernel {real['route'].get(table)}"
                    )
    if "rule" in parts:
        model_lines = [_rule_text(r) for r in want["rule"]]
        real_lines = [_rule_text(r) for r in real["rule"]]
        diffs += [f"rule: only in model: {line}" for line in model_lines if line not in real_lines]
        diffs += [f"rule: only in kernel: {line}" for line in real_lines if line not in model_lines]
    for part, what in (("neigh", "neighbour (ip, dev, mac)"), ("fdb", "learned FDB entry (mac, port)")):
        if part in parts:
            model_set, real_set = {tuple(x) for x in want[part]}, {tuple(x) for x in real[part]}
            diffs += [f"{part}: only in model: {what} {x}" for x in sorted(model_set - real_set)]
            diffs += [f"{part}: only in kernel: {what} {x}" for x in sorted(real_set - model_set)]
    return diffs


# --- frames -------------------------------------------------------------------------------------------------


def frame_fields(frame) -> dict:
    """The fields of a frame that a model and a kernel must agree on: Ethernet, ARP, IPv4, ICMP, UDP.

    Left out: the IP id and every checksum (the kernel chooses or computes them), and the first 16
    bytes of a ping's payload (its `struct timeval` timestamp).
    """
    from scapy.layers.inet import ICMP, IP, UDP
    from scapy.layers.l2 import ARP, Ether

    out: dict = {}
    if frame.haslayer(Ether):
        frame = Ether(bytes(frame))  # rebuilt: a model frame gets its lengths and defaults filled in
        eth = frame[Ether]
        out.update(eth_src=eth.src, eth_dst=eth.dst, eth_type=eth.type)
    if frame.haslayer(ARP):
        arp = frame[ARP]
        for name in ("hwtype", "ptype", "hwlen", "plen", "op", "hwsrc", "psrc", "hwdst", "pdst"):
            out[f"arp_{name}"] = getattr(arp, name)
    if frame.haslayer(IP):
        ip = frame[IP]
        for name in ("version", "ihl", "tos", "len", "frag", "ttl", "proto", "src", "dst"):
            out[f"ip_{name}"] = getattr(ip, name)
        out["ip_flags"] = str(ip.flags)
        if ip.haslayer(ICMP):
            icmp = ip[ICMP]
            out.update(icmp_type=icmp.type, icmp_code=icmp.code, icmp_id=icmp.id, icmp_seq=icmp.seq)
            out["icmp_payload_after_timestamp"] = bytes(icmp.payload)[16:].hex()
        if ip.haslayer(UDP):
            udp = ip[UDP]
            out.update(
                udp_sport=udp.sport,
                udp_dport=udp.dport,
                udp_len=udp.len,
                udp_payload=bytes(udp.payload).hex(),
            )
    return out


def compare_frames(model_frames: list, real_frames: list, fields=None) -> list[str]:
    """Differences between the model's frames and captured ones, in order, field by field ([] if equal).
    `fields` reads a frame's fields (default :func:`frame_fields`; the overlay twins read inner ones too)."""
    fields = fields or frame_fields
    diffs = []
    if len(model_frames) != len(real_frames):
        diffs.append(
            f"{len(model_frames)} frames in the model, {len(real_frames)} captured: "
            f"model {[f.summary() for f in model_frames]}, kernel {[f.summary() for f in real_frames]}"
        )
    for i, (m, r) in enumerate(zip(model_frames, real_frames), 1):
        mf, rf = fields(m), fields(r)
        for key in sorted(set(mf) | set(rf)):
            if mf.get(key) != rf.get(key):
                diffs.append(
                    f"frame {i} ({m.summary()}) {key}: model {mf.get(key)!r}, kernel {rf.get(key)!r}"
                )
    return diffs


def model_frames_on(walk, namespace: str, device: str) -> list:
    """The frames a model walk shows on one device (what `tcpdump -i DEVICE` there would capture)."""
    return [
        h.frame for h in walk.hops if h.namespace == namespace and h.device == device and h.frame is not None
    ]


# --- route get -------------------------------------------------------------------------------------------


def compare_route_get(decision: Decision, real: dict) -> list[str]:
    """Differences between the model's `ip route get` decision and the kernel's `ip -j route get` object.

    Compares the route type, the device, the gateway and the table; iproute2 prints `table` only when
    it is not main. For a local address the kernel answers `dev lo`: the local table's entry names the
    address's device, but a packet to a local address is delivered through the loopback device.
    """
    diffs = []
    route = decision.route
    model = {
        "type": route.kind,
        "dev": "lo" if route.kind == "local" else route.dev,
        "gateway": str(route.via) if route.via is not None else None,
        "table": decision.table.id,
    }
    label = str(real.get("table", "main"))
    kernel = {
        "type": real.get("type", "unicast"),
        "dev": real.get("dev"),
        "gateway": real.get("gateway"),
        "table": int(label)
        if label.isdigit()
        else {"main": MAIN_TABLE, "local": LOCAL_TABLE, "default": DEFAULT_TABLE}.get(label, label),
    }
    for key, value in model.items():
        if value != kernel[key]:
            diffs.append(f"route get {key}: model {value}, kernel {kernel[key]}")
    return diffs


# --- the twin ----------------------------------------------------------------------------------------


@dataclass
class UdpResult:
    """One datagram sent by `Twin.udp`: whether it arrived, and the source the receiver saw."""

    arrived: bool
    source: str | None = None
    sport: int | None = None
    payload: bytes = b""


_RECEIVER = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.settimeout(float(sys.argv[2]))
print("ready", flush=True)
try:
    data, (host, port) = s.recvfrom(65535)
    print(host, port, data.hex(), flush=True)
except socket.timeout:
    print("timeout", flush=True)
"""

_SENDER = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
if int(sys.argv[3]):
    s.bind(("0.0.0.0", int(sys.argv[3])))
s.sendto(bytes.fromhex(sys.argv[4]), (sys.argv[1], int(sys.argv[2])))
"""


class Twin:
    """A model node built in real network namespaces; a context manager that always cleans up.

        with Twin(build_node(3)) as twin:
            twin.ping("pod-a", "10.244.1.3")
            twin.read("node-1")          # == node.host.ip_json() when model and kernel agree

    Entering runs the stale sweep and builds (see :meth:`build`); leaving deletes every namespace it
    made (`ip netns delete`), also on an exception, on SIGINT/SIGTERM and at interpreter exit.
    `commands` lists every command run, as a learner would type it.
    """

    def __init__(self, node, prefix: str | None = None) -> None:
        self.node = node
        if prefix is not None and not _PREFIX_RE.match(prefix):
            raise TwinError(
                f"prefix {prefix!r}: letters, digits, '.', '_' and '-', at most 40, a letter first"
            )
        self.prefix = prefix or new_prefix()
        self.commands: list[str] = []
        self.names = {name: f"{self.prefix}-{name}" for name in node.namespaces}
        uplink = UPLINK
        while uplink in node.namespaces:
            uplink += "_"
        self.uplink = f"{self.prefix}-{uplink}"
        self._owned: list[str] = []  # namespaces created and not yet deleted
        self._procs: list[subprocess.Popen] = []
        self._previous: dict[int, object] = {}
        self._active = False
        self.swept: list[str] = []
        self.timings: dict[str, float] = {}

    # --- life cycle -------------------------------------------------------------------------------

    def __enter__(self) -> Self:
        self._install_handlers()
        atexit.register(self.cleanup)
        self._active = True
        try:
            self.swept = sweep_stale()
            self.build()
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.cleanup()

    def _install_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.getsignal(signum)
            signal.signal(signum, self._on_signal)

    def _restore_handlers(self) -> None:
        previous, self._previous = self._previous, {}
        for signum, handler in previous.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(signum, handler)

    def _on_signal(self, signum, frame) -> None:
        previous = self._previous.get(signum, signal.SIG_DFL)
        self.cleanup()  # restores the previous handlers too
        if callable(previous):
            previous(signum, frame)  # SIGINT's default raises KeyboardInterrupt
        elif previous == signal.SIG_DFL:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    def cleanup(self) -> None:
        """Stop the processes the twin started and delete its namespaces (`ip netns delete NAME`).

        Idempotent; also restores the signal handlers and drops the atexit hook.
        """
        for proc in list(self._procs):
            if proc.poll() is None:
                with contextlib.suppress(OSError):
                    proc.kill()
                with contextlib.suppress(Exception):
                    proc.wait(timeout=5)
            with contextlib.suppress(ValueError):
                self._procs.remove(proc)
        while self._owned:
            name = self._owned[-1]
            subprocess.run(
                ["ip", "netns", "delete", name], check=False, capture_output=True, timeout=COMMAND_TIMEOUT
            )
            with contextlib.suppress(ValueError):
                self._owned.remove(name)
        if self._active:
            self._active = False
            self._restore_handlers()
            atexit.unregister(self.cleanup)

    # --- running commands, only inside the twin's namespaces ------------------------------------------

    def _guard(self, ns: str) -> str:
        """The real name of one of the twin's live namespaces (given its model or real name), or refuse."""
        real = self.uplink if ns == UPLINK else self.names.get(ns, ns)
        if real not in self._owned:
            raise TwinError(
                f"{ns} is not a namespace of this twin: refusing to run a command outside the twin"
            )
        return real

    def _run(
        self,
        command: list[str],
        check: bool = True,
        timeout: float = COMMAND_TIMEOUT,
        input: str | None = None,
    ) -> str:
        self.commands.append(shlex.join(command))
        try:
            done = subprocess.run(
                command, check=False, capture_output=True, text=True, timeout=timeout, input=input
            )
        except subprocess.TimeoutExpired as exc:
            raise TwinError(f"timed out after {timeout} s", command) from exc
        if check and done.returncode != 0:
            raise TwinError(done.stderr or done.stdout, command)
        return done.stdout

    def ip(self, ns: str, *args: str, check: bool = True) -> str:
        """`ip -n NS ARGS…` in one of the twin's namespaces (named as in the model, or by its real name)."""
        return self._run(["ip", "-n", self._guard(ns), *args], check=check)

    def bridge(self, ns: str, *args: str) -> str:
        """`bridge -n NS ARGS…`."""
        return self._run(["bridge", "-n", self._guard(ns), *args])

    def netns_exec(
        self,
        ns: str,
        *args: str,
        check: bool = True,
        timeout: float = COMMAND_TIMEOUT,
        input: str | None = None,
    ) -> str:
        """`ip netns exec NS ARGS…` (with `input` on its standard input, if given)."""
        return self._run(
            ["ip", "netns", "exec", self._guard(ns), *args], check=check, timeout=timeout, input=input
        )

    def real(self, name: str) -> str:
        """The real namespace name of a model namespace (or of the uplink)."""
        if name in (UPLINK, self.uplink):
            return self.uplink
        try:
            return self.names[name]
        except KeyError:
            raise TwinError(
                f"{name!r} is not a namespace of the model: one of {', '.join(self.names)}"
            ) from None

    # --- building ---------------------------------------------------------------------------------

    def _add_namespace(self, real: str, forwarding: bool) -> None:
        self._run(["ip", "netns", "add", real])
        self._owned.append(real)
        sysctls = [*_QUIET_SYSCTLS, f"net.ipv4.ip_forward={int(forwarding)}"]
        if not os.path.isdir("/proc/sys/net/ipv6"):
            sysctls = [s for s in sysctls if not s.startswith("net.ipv6")]
        self.netns_exec(real, "sysctl", "-q", "-w", *sysctls)

    def build(self) -> None:
        """Build the model's namespaces. Runs, per model namespace (NS = `<prefix>-<name>`):

        - `ip netns add NS`; `ip netns exec NS sysctl -w net.ipv4.ip_forward=0|1` (the model's
          `forwarding`) plus quiet IPv6 (`accept_dad=0`, no router solicitations), MLD and IGMP reports
          at once, and `rp_filter=0`;
        - per device: `ip -n NS link add BR type bridge`;
          `ip -n NODE link add VETH type veth peer name eth0 netns POD`; a node's `eth0`/`eth1` as
          `ip -n NODE link add eth0 type veth peer name ul0-eth0 netns UPLINK` (the uplink namespace
          holds a bridge `lan0` with the gateway addresses);
          `ip -n NS link set dev D address MAC mtu MTU [master BR]`, `ip -n NS link set dev D up`;
        - `ip -n NS addr add A/LEN [brd +] dev D [noprefixroute]` (noprefixroute where the model has
          no connected route for the address); connected routes come from the kernel;
        - `ip -n NS route add DST [via GW] dev D [table ID] [proto P] [scope S] [src SRC] [metric M]`;
        - `ip -n NS rule add [not] [from SRC] [to DST] [iif D] lookup ID priority N`;
        - `ip -n NS neigh replace IP lladdr MAC dev D nud permanent`;
        - then waits for every device to be up, and removes what IPv6 start-up chatter taught the
          bridges (`bridge -n NS fdb del MAC dev PORT master`), so the FDB starts empty as in the model.
        """
        start = time.perf_counter()
        nodes = self.node.namespaces
        uplink_devs = [
            (name, link)
            for name, ns in nodes.items()
            for link in ns.links.values()
            if link.kind == "ether" or (link.kind == "veth" and link.peer is None)
        ]
        for name, ns in nodes.items():
            self._add_namespace(self.names[name], ns.forwarding)
        if uplink_devs:
            self._add_namespace(self.uplink, False)
            self.ip(self.uplink, "link", "add", UPLINK_BRIDGE, "type", "bridge")
        # devices
        created: set[tuple[str, str]] = set()
        uplink_peers: list[tuple[str, int]] = []
        for name, ns in nodes.items():
            real = self.names[name]
            for link in sorted(ns.links.values(), key=lambda lk: lk.index):
                if (name, link.name) in created or link.kind == "loopback":
                    continue
                created.add((name, link.name))
                if link.kind == "bridge":
                    self.ip(real, "link", "add", link.name, "type", "bridge")
                elif link.kind == "veth" and link.peer is not None:
                    peer_ns, peer_dev = link.peer
                    where = [] if peer_ns == name else ["netns", self.real(peer_ns)]
                    self.ip(real, "link", "add", link.name, "type", "veth", "peer", "name", peer_dev, *where)
                    created.add((peer_ns, peer_dev))
                else:
                    peer = f"ul{len(uplink_peers)}-{link.name}"[:15]
                    self.ip(
                        real,
                        "link",
                        "add",
                        link.name,
                        "type",
                        "veth",
                        "peer",
                        "name",
                        peer,
                        "netns",
                        self.uplink,
                    )
                    uplink_peers.append((peer, link.mtu))
        for name, ns in nodes.items():  # MACs and MTUs first, then masters, then up
            real = self.names[name]
            for link in ns.links.values():
                if link.kind != "loopback":
                    self.ip(real, "link", "set", "dev", link.name, "address", link.mac, "mtu", str(link.mtu))
        for name, ns in nodes.items():
            real = self.names[name]
            for link in ns.links.values():
                if link.master:
                    self.ip(real, "link", "set", "dev", link.name, "master", link.master)
        for peer, mtu in uplink_peers:
            self.ip(self.uplink, "link", "set", "dev", peer, "mtu", str(mtu), "master", UPLINK_BRIDGE, "up")
        if uplink_devs:
            self.ip(self.uplink, "link", "set", "dev", "lo", "up")
            self.ip(self.uplink, "link", "set", "dev", UPLINK_BRIDGE, "up")
            for gateway in self._uplink_gateways(uplink_devs):
                self.ip(self.uplink, "addr", "add", gateway.with_prefixlen, "brd", "+", "dev", UPLINK_BRIDGE)
        for name, ns in nodes.items():
            real = self.names[name]
            for link in sorted(ns.links.values(), key=lambda lk: lk.index):
                self.ip(real, "link", "set", "dev", link.name, "up")
        # addresses, routes, rules, neighbours
        for name, ns in nodes.items():
            self._configure(self.names[name], ns)
        self.timings["commands"] = time.perf_counter() - start
        self._settle()
        self.timings["build"] = time.perf_counter() - start

    def _uplink_gateways(self, uplink_devs) -> list[IPv4Interface]:
        """The addresses the uplink namespace holds: every gateway a route sends through an uplink device,
        with the prefix length of the device's address that covers it (else /32)."""
        out: list[IPv4Interface] = []
        owned = {ip for ns in self.node.namespaces.values() for ip in ns.local_addresses()}
        for name, link in uplink_devs:
            ns = self.node.namespaces[name]
            for table in ns.tables.values():
                for route in table.routes:
                    if route.dev != link.name or route.via is None or route.via in owned:
                        continue
                    cover = next((a for a in link.addresses if route.via in a.network), None)
                    iface = IPv4Interface(f"{route.via}/{cover.network.prefixlen if cover else 32}")
                    if iface.ip not in {i.ip for i in out}:
                        out.append(iface)
        return out

    def _configure(self, real: str, ns: Namespace) -> None:
        main = ns.tables["main"]
        for link in sorted(ns.links.values(), key=lambda lk: lk.index):
            for iface in link.addresses:
                if link.kind == "loopback" and iface == IPv4Interface("127.0.0.1/8"):
                    continue  # the kernel puts it on lo when lo comes up
                args = ["addr", "add", iface.with_prefixlen]
                if link.broadcast and link.kind != "loopback":
                    args += ["brd", "+"]
                args += ["dev", link.name]
                connected = any(
                    r.proto == "kernel" and r.dst == iface.network and r.dev == link.name for r in main.routes
                )
                if iface.network.prefixlen < 32 and link.kind != "loopback" and not connected:
                    args.append("noprefixroute")
                self.ip(real, *args)
        for table in ns.tables.values():
            # routes without a gateway first: a gateway must be reachable when its route is added
            for route in sorted(table.routes, key=lambda r: r.via is not None):
                if route.proto == "kernel" or route.kind != "unicast":
                    continue
                args = ["route", "add", route.dst_text()]
                if route.via is not None:
                    args += ["via", str(route.via)]
                args += ["dev", route.dev]
                if table.id != MAIN_TABLE:
                    args += ["table", str(table.id)]
                if route.proto:
                    args += ["proto", route.proto]
                if route.scope:
                    args += ["scope", route.scope]
                if route.src is not None:
                    args += ["src", str(route.src)]
                if route.metric is not None:
                    args += ["metric", str(route.metric)]
                self.ip(real, *args)
        ids = {name: t.id for name, t in ns.tables.items()} | {"local": LOCAL_TABLE}
        defaults = default_rules()
        for rule in defaults:
            if rule not in ns.rules:
                self.ip(real, "rule", "del", "priority", str(rule.priority), "lookup", str(ids[rule.table]))
        for rule in ns.rules:
            if rule in defaults:
                continue
            self.ip(
                real,
                "rule",
                "add",
                *rule.selector_args(),
                "lookup",
                str(ids[rule.table]),
                "priority",
                str(rule.priority),
            )
        for n in ns.neighbours:
            self.ip(
                real, "neigh", "replace", str(n.ip), "lladdr", n.mac, "dev", n.dev, "nud", n.state.lower()
            )

    def _settle(self, timeout: float = 5.0) -> None:
        """Wait until every device is up (and has its fe80:: address), let IPv6 start-up chatter end,
        then forget what that chatter taught the bridges."""
        deadline = time.monotonic() + timeout
        ipv6 = os.path.isdir("/proc/sys/net/ipv6")
        pending = dict(self.names)
        while pending:
            for name, real in list(pending.items()):
                links = json.loads(self.ip(real, "-j", "addr") or "[]")
                awaited = self._settle_devices(name)
                ready = all(
                    "UP" in lk.get("flags", [])
                    and "LOWER_UP" in lk.get("flags", [])
                    and (
                        not ipv6
                        or lk["ifname"] == "lo"
                        or lk.get("link_type", "ether") != "ether"  # IP tunnels (ipip, gre) get no fe80::
                        or any(
                            a.get("family") == "inet6" and a.get("scope") == "link" and not a.get("tentative")
                            for a in lk.get("addr_info", [])
                        )
                    )
                    for lk in links
                    if awaited is None or lk["ifname"] in awaited
                )
                if ready:
                    del pending[name]
            if pending and time.monotonic() > deadline:
                raise TwinError(
                    f"devices still not up (or without fe80:: address) after {timeout} s in "
                    f"{', '.join(pending)}"
                )
            if pending:
                time.sleep(0.01)
        time.sleep(0.05)  # MLD and IGMP reports go out at once (unsolicited interval 1 ms): let them pass
        for name, ns in self.node.namespaces.items():
            if any(lk.kind == "bridge" for lk in ns.links.values()):
                self.forget_learned(name)

    def _settle_devices(self, name: str) -> set[str] | None:
        """The devices of one model namespace that `_settle` waits for; None: every device it has.

        A subclass that builds devices of its own names them here, so devices the kernel adds by itself
        to every new namespace (the fallback `tunl0`, `gre0`, `sit0` … of loaded tunnel modules, which
        stay down) are not waited for."""
        return None

    def forget_learned(self, name: str) -> list[tuple[str, str]]:
        """Delete the learned FDB entries of a namespace's bridges: `bridge -n NS fdb del MAC dev PORT master`."""
        real = self.real(name)
        entries = json.loads(self.bridge(real, "-j", "fdb", "show") or "[]")
        learned = [
            (e["mac"], e["ifname"])
            for e in entries
            if e.get("master") and "self" not in e.get("flags", []) and e.get("state", "") in ("", "stale")
        ]
        for mac, port in learned:
            self.bridge(real, "fdb", "del", mac, "dev", port, "master")
        return learned

    # --- reading ----------------------------------------------------------------------------------

    def table_names(self, name: str) -> dict[int, str]:
        """Table id → the model's table name for one model namespace."""
        return {t.id: tname for tname, t in self.node.namespaces[name].tables.items()}

    def read(self, name: str) -> dict:
        """What the kernel has in one namespace, in the shape of `Namespace.ip_json()`. Runs
        `ip -j -n NS addr`, `ip -j -n NS route show table all`, `ip -j -n NS rule`, `ip -j -n NS neigh`
        and `bridge -j -n NS fdb show` (see :func:`parse_ip_json` for what is kept)."""
        real = self.real(name)

        def dump(*args: str) -> list:
            return json.loads(self.ip(real, "-j", *args) or "[]")

        fdb = json.loads(self._run(["bridge", "-j", "-n", self._guard(real), "fdb", "show"]) or "[]")
        return parse_ip_json(
            dump("addr"),
            dump("route", "show", "table", "all"),
            dump("rule"),
            dump("neigh"),
            fdb,
            table_names=self.table_names(name) if name in self.node.namespaces else None,
        )

    def route_text(self, name: str, table: str = "main") -> str:
        """`ip -n NS route show table ID` with iproute2's trailing spaces stripped (table named as in the model)."""
        ns = self.node.namespaces[name]
        table_id = LOCAL_TABLE if table == "local" else ns.tables[table].id
        text = self.ip(self.real(name), "route", "show", "table", str(table_id))
        return "\n".join(line.rstrip() for line in text.splitlines())

    def route_get(self, name: str, dst: str, src: str | None = None, iif: str | None = None) -> dict:
        """`ip -j -n NS route get DST [from SRC] [iif DEV]`: the kernel's decision, as one JSON object."""
        args = ["route", "get", str(dst)]
        if src is not None:
            args += ["from", str(src)]
        if iif is not None:
            args += ["iif", iif]
        return json.loads(self.ip(self.real(name), "-j", *args))[0]

    # --- traffic ----------------------------------------------------------------------------------

    def ping(self, src: str, dst_ip: str, ident: int = 1, timeout: int = 1) -> bool:
        """`ip netns exec SRC ping -c1 -W1 -n -q -e IDENT DST`: True if the echo reply came back.

        The identifier is fixed (the model's walk uses 1) so captured frames compare field by field."""
        out = self._run(
            [
                "ip",
                "netns",
                "exec",
                self._guard(self.real(src)),
                "ping",
                "-c1",
                f"-W{timeout}",
                "-n",
                "-q",
                "-e",
                str(ident),
                str(dst_ip),
            ],
            check=False,
            timeout=timeout + 10,
        )
        return " 1 received" in out

    def udp(
        self,
        src: str,
        dst: str,
        dst_ip: str,
        port: int = 8080,
        sport: int = 40000,
        payload: bytes = b"hello",
        timeout: float = 2.0,
    ) -> UdpResult:
        """Send one UDP datagram from namespace src to dst_ip:port, received in namespace dst.

        Runs `ip netns exec DST python3 -c <receiver> PORT` (bound to 0.0.0.0:PORT) and, once it is
        listening, `ip netns exec SRC python3 -c <sender>` (from port sport). Returns whether the
        datagram arrived and the source address and port the receiver saw.
        """
        receiver = self._spawn(
            [
                "ip",
                "netns",
                "exec",
                self._guard(self.real(dst)),
                sys.executable,
                "-I",
                "-S",
                "-c",
                _RECEIVER,
                str(port),
                str(timeout),
            ],
            stdout=subprocess.PIPE,
        )
        try:
            if _read_line(receiver.stdout, timeout + 5) != "ready":
                return UdpResult(False)
            self._run(
                [
                    "ip",
                    "netns",
                    "exec",
                    self._guard(self.real(src)),
                    sys.executable,
                    "-I",
                    "-S",
                    "-c",
                    _SENDER,
                    str(dst_ip),
                    str(port),
                    str(sport),
                    payload.hex(),
                ]
            )
            line = _read_line(receiver.stdout, timeout + 5)
        finally:
            self._reap(receiver)
        if not line or line == "timeout":
            return UdpResult(False)
        host, port_text, data = (line.split() + [""])[:3]
        return UdpResult(True, host, int(port_text), bytes.fromhex(data))

    def capture(self, name: str, dev: str, action: Callable[[], object], bpf: str = "not ip6") -> list:
        """Capture the frames on one device while `action()` runs; returns them as scapy packets.

        Runs `ip netns exec NS tcpdump -i DEV -w FILE -U --immediate-mode -n -Z root FILTER`, waits until tcpdump is
        listening, calls action, stops tcpdump and reads FILE (scapy's rdpcap). The default filter drops
        IPv6 (the model has none; the kernel's IPv6 neighbour discovery would otherwise show up).
        """
        import scapy.layers.inet
        import scapy.layers.l2  # noqa: F401  (registers Ether, ARP and IP, so rdpcap dissects them)
        from scapy.utils import rdpcap

        if shutil.which("tcpdump") is None:
            raise TwinError("capturing needs the tcpdump command (Debian package tcpdump)")
        fd, path = tempfile.mkstemp(prefix=f"{self.prefix}-", suffix=".pcap")
        os.close(fd)
        proc = self._spawn(
            [
                "ip",
                "netns",
                "exec",
                self._guard(self.real(name)),
                "tcpdump",
                "-i",
                dev,
                "-w",
                path,
                "-U",
                "--immediate-mode",
                "-n",
                "-Z",
                "root",
                *shlex.split(bpf),
            ],
            stderr=subprocess.PIPE,
        )
        try:
            line = _read_line(proc.stderr, 10, until="listening on")
            if line is None:
                raise TwinError(f"tcpdump did not start capturing on {name}/{dev}")
            action()
            time.sleep(0.02)
        finally:
            self._reap(proc, signal.SIGINT)
        try:
            return list(rdpcap(path))
        finally:
            os.unlink(path)

    def _spawn(self, command: list[str], **kwargs) -> subprocess.Popen:
        self.commands.append(shlex.join(command))
        proc = subprocess.Popen(
            command,
            text=True,
            **{
                "stdin": subprocess.DEVNULL,
                "stdout": subprocess.DEVNULL,
                "stderr": subprocess.DEVNULL,
                **kwargs,
            },
        )
        self._procs.append(proc)
        return proc

    def _reap(self, proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
        if proc.poll() is None:
            with contextlib.suppress(OSError):
                proc.send_signal(sig)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
        with contextlib.suppress(ValueError):
            self._procs.remove(proc)


def _read_line(stream, timeout: float, until: str | None = None) -> str | None:
    """One line from a child's pipe within timeout (the line containing `until`, if given)."""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(stream, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not sel.select(max(0.0, deadline - time.monotonic())):
                return None
            line = stream.readline()
            if not line:
                return None
            if until is None or until in line:
                return line.strip()
    return None


# --- the one call a lab makes --------------------------------------------------------------------------


@dataclass
class TwinReport:
    """What `run_twin` did and found; prints per namespace "agrees" or the differences."""

    node: str
    source: str
    destination: str
    skipped: str | None = None  # the reason, when the twin could not run
    plan: list[str] = field(default_factory=list)
    namespaces: dict[str, str] = field(default_factory=dict)
    before: dict[str, list[str]] = field(default_factory=dict)
    after: dict[str, list[str]] = field(default_factory=dict)
    frames: list[str] | None = None
    frame_count: int = 0
    kernel_replied: bool | None = None
    model_replied: bool | None = None
    timings: dict[str, float] = field(default_factory=dict)
    error: str | None = None

    @property
    def agrees(self) -> bool:
        """True when the twin ran and every comparison agreed."""
        return (
            self.skipped is None
            and self.error is None
            and self.kernel_replied == self.model_replied
            and not any(self.before.values())
            and not any(self.after.values())
            and not self.frames
        )

    def __str__(self) -> str:
        head = f"Kernel twin of {self.node}: ping {self.source} → {self.destination}"
        if self.skipped is not None:
            lines = [f"{head}: skipped — {self.skipped}.", "It would:"]
            lines += [f"  - {step}" for step in self.plan]
            return "\n".join(lines)
        lines = [head]
        if self.error:
            lines.append(f"  stopped by an error: {self.error}")
        if self.kernel_replied is not None:
            lines.append(
                f"  ping on the kernel: {'replied' if self.kernel_replied else 'no reply'}"
                f" (model: {'replied' if self.model_replied else 'no reply'})"
            )
        if self.frames is not None:
            verdict = "agree" if not self.frames else "differ:"
            lines.append(f"  frames on {self.source}/eth0 ({self.frame_count} captured): {verdict}")
            lines += [f"    {d}" for d in self.frames]
        for name in self.namespaces:
            diffs = self.before.get(name, []) + self.after.get(name, [])
            if name not in self.before:
                continue
            lines.append(f"  {name:<16} {'agrees' if not diffs else 'differs:'}")
            lines += [f"    {d}" for d in diffs]
        return "\n".join(lines)

    def timing(self) -> str:
        """How long each phase took (kept out of the report itself, so stored lab outputs stay stable)."""
        parts = ", ".join(f"{k} {v:.2f}" for k, v in self.timings.items() if k != "total")
        return f"took {self.timings.get('total', 0):.2f} s ({parts})"

    def _repr_pretty_(self, printer, cycle) -> None:  # IPython's pretty printer, without importing IPython
        printer.text(str(self))


def _plan(node, source: str, destination: str) -> list[str]:
    names = ", ".join(node.namespaces)
    return [
        f"create one network namespace per model namespace ({names}), named k8s101-<pid>-<random>-<name>",
        (
            "add the model's veth pairs, bridges, MACs, MTUs, addresses, routes, rules and permanent neighbours "
            "with `ip -n NS …` (never in this machine's own namespace)"
        ),
        f"ping {source} → {destination} with `ip netns exec … ping -c1`, capturing {source}'s eth0 with tcpdump",
        (
            "read back `ip -j addr/route/rule/neigh` and `bridge -j fdb` in every namespace and compare with the "
            "model (before the ping, and after it with the neighbours and FDB entries the ping taught)"
        ),
        "delete every namespace it created",
    ]


def run_twin(node, source: str, destination: str) -> TwinReport:
    """Build `node` on the real kernel, ping source → destination, and compare everything with the model.

    When a twin cannot run here (no root, no network namespaces) the report says what it would do and
    why it is skipped; no exception. Errors of the twin itself are reported too, not raised.
    """
    from labsupport.pod_network import _endpoint, walk

    model = walk(node, source, destination)  # bad input is the same clear error with or without a kernel
    _, dst_ip = _endpoint(node, destination, "destination")
    report = TwinReport(node.name, source, destination)
    ok, reason = available()
    if not ok:
        report.skipped = reason
        report.plan = _plan(node, source, destination)
        return report
    report.model_replied = model.replied
    start = time.perf_counter()
    try:
        with Twin(node) as twin:
            report.namespaces = dict(twin.names)
            report.timings["build"] = twin.timings["build"]
            t = time.perf_counter()
            for name, ns in node.namespaces.items():
                report.before[name] = compare(ns, twin.read(name))
            report.timings["read"] = time.perf_counter() - t
            t = time.perf_counter()
            replied: list[bool] = []
            src_dev = "eth0" if "eth0" in node.namespaces[source].links else None
            if src_dev is not None:
                frames = twin.capture(source, src_dev, lambda: replied.append(twin.ping(source, str(dst_ip))))
                want = model_frames_on(model, source, src_dev)
                report.frames = compare_frames(want, frames)
                report.frame_count = len(frames)
            else:
                replied.append(twin.ping(source, str(dst_ip)))
            report.kernel_replied = replied[0]
            report.timings["ping"] = time.perf_counter() - t
            t = time.perf_counter()
            for name, ns in model.node_after.namespaces.items():
                report.after[name] = compare(ns, twin.read(name), parts=("neigh", "fdb"))
            report.timings["read"] += time.perf_counter() - t
            t = time.perf_counter()
        report.timings["cleanup"] = time.perf_counter() - t
    except TwinError as exc:
        report.error = str(exc)
    report.timings["total"] = time.perf_counter() - start
    return report


# --- the netfilter twin: a router between a client and a server -----------------------------------------
#
# client (10.1.0.2, 10.1.0.3) ── eth0 [router] eth1 ── server (10.2.0.2, 10.2.0.3)
#                               10.1.0.1       10.2.0.1
#
# The router forwards; it also holds a "local service" (sockets on the ports of NF_PORTS) for the
# INPUT cases. It reaches 172.16.0.0/16 through the client and everything else (the "internet",
# 198.51.100.0/24) through the server, so every address a rule or a probe names leads somewhere.

NF_CLIENT, NF_ROUTER, NF_SERVER = "client", "router", "server"
NF_MACS = {
    (NF_CLIENT, "eth0"): "02:00:0a:01:00:02",
    (NF_ROUTER, "eth0"): "02:00:0a:01:00:01",
    (NF_ROUTER, "eth1"): "02:00:0a:02:00:01",
    (NF_SERVER, "eth0"): "02:00:0a:02:00:02",
}
NF_PORTS = (22, 53, 80, 443, 8080, 9000)  # destination ports of probes and of DNAT/REDIRECT targets
NF_SOURCES = ("10.1.0.2", "10.1.0.3", "172.16.1.5", "172.16.2.9")
NF_DESTINATIONS = ("10.2.0.2", "10.2.0.3", "10.1.0.1", "10.2.0.1", "198.51.100.7", "172.16.3.3")
NF_PAYLOAD = b"k8s101"

# The observers' silence, loaded once: the client and the server drop every IPv4 packet before their own
# stack sees it (their captures are taken before netfilter, so they still see it), and the router's own
# stack answers nothing: an echo reply or a TCP segment of its own (the RST of a closed port) is dropped
# in `raw` OUTPUT, before conntrack sees it. What passes is what REJECT sends: its TCP RST carries the
# rejected packet's conntrack entry (ctstate RELATED), its ICMP errors are of type 3. The router's UDP
# sockets on NF_PORTS keep its stack from answering "port unreachable".
_NF_QUIET_ENDS = "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A PREROUTING -j DROP\nCOMMIT\n"
_NF_QUIET_ROUTER = (
    "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
    "-A OUTPUT -p icmp -m icmp --icmp-type 0 -j DROP\n"
    "-A OUTPUT -p tcp -m conntrack ! --ctstate RELATED -j DROP\n"
    "COMMIT\n"
)
_NF_ROUTER_SYSCTLS = (
    "net.ipv4.icmp_ratelimit=0",  # REJECT's ICMP errors, one per probe, none held back
    "net.ipv4.icmp_ratemask=0",
    "net.ipv4.conf.all.send_redirects=0",  # a packet sent back out of eth0 makes no ICMP redirect
    "net.ipv4.conf.default.send_redirects=0",
    "net.ipv4.conf.eth0.send_redirects=0",
    "net.ipv4.conf.eth1.send_redirects=0",
)


def netfilter_topology() -> Node:
    """The netfilter twin's three namespaces, built with :class:`Namespace`'s verbs: client — router — server.

    The router has permanent neighbours for every next hop a probe can need, so no ARP exchange happens
    in the middle of a case. `Twin(netfilter_topology())` builds it; `Twin.read` equals the model.
    """
    node = Node(NF_ROUTER)
    client = Namespace(NF_CLIENT, role="pod")
    router = Namespace(NF_ROUTER, role="node", forwarding=True)
    server = Namespace(NF_SERVER, role="pod")
    node.namespaces.update({NF_CLIENT: client, NF_ROUTER: router, NF_SERVER: server})
    c0 = client.add_link("eth0", "veth", NF_MACS[NF_CLIENT, "eth0"])
    r0 = router.add_link("eth0", "veth", NF_MACS[NF_ROUTER, "eth0"])
    r1 = router.add_link("eth1", "veth", NF_MACS[NF_ROUTER, "eth1"])
    s0 = server.add_link("eth0", "veth", NF_MACS[NF_SERVER, "eth0"])
    c0.index = s0.index = 2  # a fresh namespace has lo as 1
    c0.peer, c0.peer_index, r0.peer, r0.peer_index = (NF_ROUTER, "eth0"), r0.index, (NF_CLIENT, "eth0"), 2
    s0.peer, s0.peer_index, r1.peer, r1.peer_index = (NF_ROUTER, "eth1"), r1.index, (NF_SERVER, "eth0"), 2
    for ip in ("10.1.0.2/24", "10.1.0.3/24"):
        client.add_address("eth0", ip)
    router.add_address("eth0", "10.1.0.1/24")
    router.add_address("eth1", "10.2.0.1/24")
    for ip in ("10.2.0.2/24", "10.2.0.3/24"):
        server.add_address("eth0", ip)
    client.add_route("default", via="10.1.0.1", dev="eth0")
    server.add_route("default", via="10.2.0.1", dev="eth0")
    router.add_route("172.16.0.0/16", via="10.1.0.2", dev="eth0")
    router.add_route("default", via="10.2.0.2", dev="eth1")
    for ip in ("10.1.0.2", "10.1.0.3"):
        router.add_neighbour(ip, c0.mac, "eth0")
    for ip in ("10.2.0.2", "10.2.0.3"):
        router.add_neighbour(ip, s0.mac, "eth1")
    client.add_neighbour("10.1.0.1", r0.mac, "eth0")
    server.add_neighbour("10.2.0.1", r1.mac, "eth0")
    return node


# --- probes ------------------------------------------------------------------------------------------------


_SENDERS = {"eth0": NF_CLIENT, "eth1": NF_SERVER}  # the router's device → the namespace behind it
_NF_ENDS = {
    NF_CLIENT: ("10.1.0.2", "10.1.0.1"),
    NF_SERVER: ("10.2.0.2", "10.2.0.1"),
}  # own and router's address


@dataclass(frozen=True)
class Probe:
    """One packet into the router: by default the client's, on the router's eth0 — a TCP SYN, a UDP
    datagram or an ICMP echo request. With `reply`, it is the answer to one: a TCP SYN-ACK, a UDP datagram
    or an ICMP echo reply, sent by whoever got the request (the server on eth1, or the client on eth0).

    With `quoted`, it is an ICMP port unreachable (type 3, code 3) about that packet, quoting it whole as
    its receiver got it (TTL 63, one router behind): a RELATED packet.

    For ICMP, `sport` is the echo identifier and `dport` is 0. Every field is fixed (IP id 1, TTL 64, TCP
    sequence 1000, a reply's 5000 acknowledging 1001), so the same probe is the same bytes on every run.
    """

    proto: str
    src: str
    dst: str
    sport: int
    dport: int = 0
    iif: str = "eth0"
    reply: bool = False
    quoted: Probe | None = None
    ttl: int = 64

    def packet(self):
        """The probe as a scapy IP packet (what enters the router)."""
        from scapy.layers.inet import ICMP, IP, TCP, UDP
        from scapy.packet import Raw

        ip = IP(src=self.src, dst=self.dst, ttl=self.ttl, id=1)
        if self.quoted is not None:
            return IP(bytes(ip / ICMP(type=3, code=3) / bytes(self.quoted.packet())))
        if self.proto == "tcp":
            seq, ack, flags = (5000, 1001, "SA") if self.reply else (1000, 0, "S")
            tcp = TCP(sport=self.sport, dport=self.dport, flags=flags, seq=seq, ack=ack, window=64240)
            return IP(bytes(ip / tcp))
        if self.proto == "udp":
            return IP(bytes(ip / UDP(sport=self.sport, dport=self.dport) / Raw(NF_PAYLOAD)))
        return IP(bytes(ip / ICMP(type=0 if self.reply else 8, id=self.sport, seq=1) / Raw(NF_PAYLOAD)))

    @property
    def sender(self) -> str:
        """The namespace that sends it: the client (router's eth0) or the server (router's eth1)."""
        return _SENDERS[self.iif]

    def frame(self) -> bytes:
        """The Ethernet frame the sender puts on its eth0, addressed to the router's device `iif`."""
        from scapy.layers.l2 import Ether

        src, dst = NF_MACS[self.sender, "eth0"], NF_MACS[NF_ROUTER, self.iif]
        return bytes(Ether(src=src, dst=dst) / self.packet())

    def __str__(self) -> str:
        who = f" (the {self.sender}'s reply)" if self.reply else ""
        if self.quoted is not None:
            return f"icmp port-unreachable {self.src} > {self.dst} about {self.quoted}{who}"
        if self.proto == "icmp":
            kind = "echo-reply" if self.reply else "echo-request"
            return f"icmp {kind} {self.src} > {self.dst} id {self.sport}{who}"
        flags = (" [SA]" if self.reply else " [S]") if self.proto == "tcp" else ""
        return f"{self.proto} {self.src}:{self.sport} > {self.dst}:{self.dport}{flags}{who}"

    def python(self) -> str:
        """The probe as Python that rebuilds it."""
        extra = f", {self.iif!r}" if self.iif != "eth0" or self.reply else ""
        extra += ", reply=True" if self.reply else ""
        extra += f", quoted={self.quoted.python()}" if self.quoted is not None else ""
        extra += f", ttl={self.ttl}" if self.ttl != 64 else ""
        return f"Probe({self.proto!r}, {self.src!r}, {self.dst!r}, {self.sport}, {self.dport}{extra})"


@dataclass(frozen=True)
class ReplyTo:
    """In a list of probes: the reply to probe number `index` (from 0), as its receiver would send it — built
    from the packet the kernel actually delivered behind the router (after NAT), so known only when run.
    With `error`, the reply is an ICMP port unreachable quoting it. A request the router did not forward
    gets no reply."""

    index: int
    error: bool = False


def reply_to(seen: NfObservation, error: bool = False) -> Probe | None:
    """The probe that answers what a forwarded probe became: addresses and ports turned around (or, with
    error, an ICMP port unreachable from its receiver quoting it), into the router on the device it left by.
    None unless the router forwarded it."""
    if seen.verdict != "forward" or seen.after is None or seen.probe.reply:
        return None
    f = packet_fields(seen.after)
    name = {1: "icmp", 6: "tcp", 17: "udp"}[f["proto"]]
    if error:
        got = Probe(
            name, f["src"], f["dst"], f.get("id", f.get("sport")), f.get("dport", 0), ttl=seen.after.ttl
        )
        if got.packet().payload.build() != seen.after.payload.build():
            return None  # only a packet the probe's fields rebuild exactly is quoted
        return Probe("icmp", f["dst"], f["src"], 0, 0, seen.oif, reply=True, quoted=got)
    if name == "icmp":
        return Probe("icmp", f["dst"], f["src"], f["id"], 0, seen.oif, reply=True)
    return Probe(name, f["dst"], f["src"], f["dport"], f["sport"], seen.oif, reply=True)


def packet_fields(packet) -> dict:
    """What a netfilter comparison looks at in a packet: addresses, protocol, ports (or ICMP type, code, id)."""
    from scapy.layers.inet import ICMP, IP, TCP, UDP, ICMPerror, IPerror, TCPerror, UDPerror

    if packet is None:
        return {}
    ip = packet[IP] if packet.haslayer(IP) else IP(bytes(packet))
    out = {"src": ip.src, "dst": ip.dst, "proto": ip.proto}
    if ip.haslayer(TCP):
        out.update(sport=ip[TCP].sport, dport=ip[TCP].dport, flags=str(ip[TCP].flags))
    elif ip.haslayer(UDP):
        out.update(sport=ip[UDP].sport, dport=ip[UDP].dport)
    elif ip.haslayer(ICMP):
        out.update(type=ip[ICMP].type, code=ip[ICMP].code)
        if ip[ICMP].type in (0, 8):
            out["id"] = ip[ICMP].id
        elif ip.haslayer(IPerror):  # an error quotes the packet it is about: compared too
            quoted = ip[IPerror]
            out["quoted"] = (quoted.src, quoted.dst, quoted.proto)
            for layer in (TCPerror, UDPerror):
                if quoted.haslayer(layer):
                    out["quoted"] += (quoted[layer].sport, quoted[layer].dport)
            if quoted.haslayer(ICMPerror):
                out["quoted"] += (quoted[ICMPerror].type, quoted[ICMPerror].id)
    return out


def describe_packet(packet) -> str:
    """One line for a packet in a report: `tcp 10.2.0.1:40000 > 10.2.0.3:8080 [S]`, `icmp 3/3 …`."""
    if packet is None:
        return "-"
    f = packet_fields(packet)
    if "sport" in f:
        name = {6: "tcp", 17: "udp"}[f["proto"]]
        flags = f" [{f['flags']}]" if "flags" in f else ""
        return f"{name} {f['src']}:{f['sport']} > {f['dst']}:{f['dport']}{flags}"
    if "type" in f:
        ident = f" id {f['id']}" if "id" in f else ""
        text = f"icmp {f['src']} > {f['dst']} type {f['type']} code {f['code']}{ident}"
        if "quoted" in f:
            src, dst, proto, *rest = f["quoted"]
            name = {1: "icmp", 6: "tcp", 17: "udp"}.get(proto, str(proto))
            if proto in (6, 17) and len(rest) == 2:
                src, dst = f"{src}:{rest[0]}", f"{dst}:{rest[1]}"
            text += f" quoting {name} {src} > {dst}"
        return text
    return f"proto {f['proto']} {f['src']} > {f['dst']}"


# --- a random ruleset, from a grammar -----------------------------------------------------------------------

NETFILTER_FEATURES = (
    "user-chains",  # -N CHAIN and -j CHAIN (a chain jumps only to chains after it: no loops)
    "goto",  # -g CHAIN
    "return",  # -j RETURN, in user chains and in built-in ones (there: the policy)
    "negation",  # ! before -s, -d, -i, -o, -p and before match options
    "addresses",  # -s / -d with CIDRs
    "protocols",  # -p tcp / udp / icmp
    "ports",  # --sport / --dport, single ports and ranges
    "multiport",  # -m multiport --sports / --dports / --ports
    "icmp-type",  # -p icmp --icmp-type
    "interfaces",  # -i / -o
    "iface-wildcard",  # -i eth+
    "mark-match",  # -m mark --mark V[/M]
    "mark-target",  # -j MARK --set-xmark (and, with "aliases", --set-mark / --or-mark / --and-mark / --xor-mark)
    "ctstate",  # -m conntrack --ctstate
    "statistic",  # -m statistic --mode nth --every N --packet P
    "comment",  # -m comment --comment, quoted and escaped as iptables-save writes it
    "log",  # -j LOG [--log-prefix] [--log-level]
    "no-target",  # a rule without -j: it only counts
    "reject",  # -j REJECT [--reject-with …], tcp-reset for -p tcp
    "output-reject",  # REJECT in filter OUTPUT (and chains it reaches): REJECT's own answers rejected in turn
    "drop",  # -j DROP and DROP policies in filter
    "dnat",  # nat PREROUTING: DNAT --to-destination
    "snat",  # nat POSTROUTING / INPUT: SNAT --to-source
    "masquerade",  # nat POSTROUTING: MASQUERADE
    "redirect",  # nat PREROUTING: REDIRECT
    "nat-ports",  # a port in DNAT --to-destination A:P and REDIRECT --to-ports P (with -p tcp/udp)
    "output-rules",  # rules in filter OUTPUT and nat OUTPUT (only REJECT's answers pass there)
    "aliases",  # spellings iptables-save rewrites: -m tcp left out, A for A/32, echo-request, --or-mark, …
    "repeat-flow",  # a probe that repeats an earlier probe of its case: same conntrack tuple
    "replies",  # the answer to a forwarded probe, from whoever got it: ESTABLISHED, NAT undone on the way back
    "related",  # an ICMP error about a forwarded probe, from whoever got it: RELATED, NAT undone inside it too
)

_HOOKS = {
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
}
_IN_HOOKS = {"PREROUTING", "INPUT", "FORWARD"}  # where -i is allowed
_OUT_HOOKS = {"FORWARD", "OUTPUT", "POSTROUTING"}  # where -o is allowed
_CIDRS = (
    "10.1.0.0/24", "10.1.0.0/25", "10.1.0.2/32", "10.1.0.3/32", "10.1.0.1/32", "10.2.0.0/24",
    "10.2.0.2/32", "10.2.0.3/32", "10.2.0.1/32", "10.2.0.0/16", "10.0.0.0/8", "172.16.0.0/12",
    "172.16.1.0/24", "198.51.100.0/24", "0.0.0.0/1",
)  # fmt: skip
_PORT_VALUES = ("22", "53", "80", "443", "8080", "9000", "1000", "40000", "40001")
_PORT_RANGES = ("1:1023", "1000:1023", "40000:40999", "80:443", "8000:9000", "1024:65535", "22:53")
_MULTIPORTS = ("22,80,443", "53,8080:9000", "1000:1023,40000:40003", "80,443,9000", "22:80", "40002,53")
_IFACES = ("eth0", "eth1", "eth+", "e+", "eth2")
_MARKS = ("0x1", "0x2", "0x5", "0xff", "0x10")
_MASKS = ("0xff", "0xf", "0x3", "0xf0")
_CTSTATES = ("INVALID", "NEW", "RELATED", "ESTABLISHED", "UNTRACKED", "SNAT", "DNAT")  # iptables-save's order
_COMMENTS = ("allow-web", "kube_proxy", "svc default/web:http", 'a "quoted" word', "to the server!")
_LOG_PREFIXES = ("fw: ", "NF", "drop-", "k8s [web] ")
_REJECT_WITH = (
    "icmp-net-unreachable", "icmp-host-unreachable", "icmp-port-unreachable", "icmp-proto-unreachable",
    "icmp-net-prohibited", "icmp-host-prohibited", "icmp-admin-prohibited",
)  # fmt: skip
_ICMP_TYPES = (
    ("8", "echo-request"),
    ("0", "echo-reply"),
    ("3", "destination-unreachable"),
    ("3/3", "port-unreachable"),
)
_DNAT_TO = ("10.2.0.3", "10.2.0.2", "10.1.0.1", "10.2.0.1", "172.16.3.3", "198.51.100.8")
_SNAT_TO = ("10.2.0.1", "10.2.0.100", "10.1.0.1", "192.0.2.1")
_USER_CHAINS = ("KUBE-SVC-WEB", "web", "LOG_AND_DROP", "Z-last", "chain_2", "SEP-1")


def save_string(value: str) -> str:
    """A string as iptables-save writes it: bare if only letters, digits, `_` and `-`; else double-quoted,
    with `"`, `\\` and `'` escaped by a backslash (libxtables `xtables_save_string`)."""
    if value and all(c.isascii() and (c.isalnum() or c in "_-") for c in value):
        return value
    return '"' + "".join("\\" + c if c in "\"\\'" else c for c in value) + '"'


@dataclass(frozen=True)
class GeneratedRuleset:
    """A random ruleset: `text` to load (iptables-restore input, with aliases if asked), `canonical` what
    `iptables-save` prints back for it (no counters, no comment lines), per table in filter, nat order."""

    seed: int
    text: str
    canonical: str
    features: frozenset[str]


class _RulesetGrammar:
    """One random ruleset. Each rule is built from parts in iptables-save's order; every part has the words
    to load (`inp`) and the words iptables-save prints (`out`)."""

    def __init__(self, seed: int, features) -> None:
        import random

        unknown = set(features) - set(NETFILTER_FEATURES)
        if unknown:
            raise TwinError(
                f"unknown ruleset features {sorted(unknown)}: known are {', '.join(NETFILTER_FEATURES)}"
            )
        self.r = random.Random(seed)
        self.f = frozenset(features)

    def on(self, feature: str, p: float = 1.0) -> bool:
        return feature in self.f and self.r.random() < p

    def match(self, feature: str, p: float) -> bool:
        """Whether this rule gets a match of the feature (rarer in a sparse rule, which more packets pass)."""
        return self.on(feature, p * self.density)

    def neg(self, p: float = 0.25) -> str:
        return "! " if self.on("negation", p) else ""

    # one rule ---------------------------------------------------------------------------------------

    def rule(self, table: str, chain: str, hooks: set[str], jumpable: list[str]) -> tuple[str, str]:
        r = self.r
        reject = "reject" in self.f and ("OUTPUT" not in hooks or "output-reject" in self.f)
        if table == "filter" and reject and "protocols" in self.f and r.random() < 0.06:
            # the short rule that answers TCP with a reset: few conditions, so probes do reach it
            port = f" -m tcp --dport {r.choice(NF_PORTS)}" if self.on("ports", 0.5) else ""
            rule = f"-A {chain} -p tcp{port} -j REJECT --reject-with tcp-reset"
            return rule, rule
        self.density = r.choice((0.3, 0.6, 1.0))
        inp: list[str] = []
        out: list[str] = []
        opts = []  # -s -d -i -o -p: iptables-save's order; the loaded text may shuffle them
        for flag in ("-s", "-d"):
            if self.match("addresses", 0.3):
                cidr, n = r.choice(_CIDRS), self.neg()
                opts.append((f"{n}{flag} {self._cidr_in(cidr)}", f"{n}{flag} {cidr}"))
        if self.match("interfaces", 0.25) and hooks <= _IN_HOOKS:
            opts.append(self._iface("-i"))
        if self.match("interfaces", 0.25) and hooks <= _OUT_HOOKS:
            opts.append(self._iface("-o"))
        proto = None
        proto_negated = False
        if self.match("protocols", 0.7):
            proto = r.choice(("tcp", "udp", "icmp"))
            proto_negated = self.on("negation", 0.1)
            opts.append((f"{'! ' if proto_negated else ''}-p {proto}",) * 2)
        shuffled = list(opts)
        if self.on("aliases", 0.3):
            r.shuffle(shuffled)
        inp += [i for i, _ in shuffled]
        out += [o for _, o in opts]
        matches: list[tuple[str, str]] = []
        if proto in ("tcp", "udp") and not proto_negated:
            m = self._ports(proto)
            if m:
                matches.append(m)
            if self.match("multiport", 0.2):
                kind = r.choice(("--sports", "--dports", "--ports", "--dports"))
                ports = r.choice(_MULTIPORTS)
                n = self.neg(0.2)
                matches.append((f"-m multiport {n}{kind} {ports}",) * 2)
        elif proto == "icmp" and not proto_negated and self.match("icmp-type", 0.5):
            number, name = r.choice(_ICMP_TYPES)
            n = self.neg(0.2)
            shown = name if self.on("aliases", 0.5) else number
            prefix = "" if self.on("aliases", 0.5) else "-m icmp "
            matches.append((f"{prefix}{n}--icmp-type {shown}", f"-m icmp {n}--icmp-type {number}"))
        extra = []
        if self.match("mark-match", 0.2):
            value = r.choice(_MARKS)
            mark = value if r.random() < 0.5 else f"{value}/{r.choice(_MASKS)}"
            extra.append((f"-m mark {self.neg()}--mark {mark}",) * 2)
        if self.match("ctstate", 0.2):
            states = [s for s in _CTSTATES if r.random() < 0.3] or [r.choice(_CTSTATES)]
            shown = list(states)
            if self.on("aliases", 0.5):
                r.shuffle(shown)
            n = self.neg()
            extra.append(
                (
                    f"-m conntrack {n}--ctstate {','.join(shown)}",
                    f"-m conntrack {n}--ctstate {','.join(states)}",
                )
            )
        if self.match("statistic", 0.15):
            every = r.randint(2, 4)
            extra.append((f"-m statistic --mode nth --every {every} --packet {r.randrange(every)}",) * 2)
        if self.match("comment", 0.15):
            text = save_string(r.choice(_COMMENTS))
            extra.append((f"-m comment --comment {text}",) * 2)
        r.shuffle(extra)
        matches += extra
        inp += [i for i, _ in matches]
        out += [o for _, o in matches]
        target = self._target(table, hooks, proto if not proto_negated else None, jumpable)
        if target is not None:
            inp.append(target[0])
            out.append(target[1])
        head = f"-A {chain}"
        return " ".join([head, *inp]), " ".join([head, *out])

    def _cidr_in(self, cidr: str) -> str:
        if cidr.endswith("/32") and self.on("aliases", 0.5):
            return cidr[:-3]
        return cidr

    def _iface(self, flag: str) -> tuple[str, str]:
        names = _IFACES if "iface-wildcard" in self.f else tuple(n for n in _IFACES if not n.endswith("+"))
        text = f"{self.neg()}{flag} {self.r.choice(names)}"
        return text, text

    def _ports(self, proto: str) -> tuple[str, str] | None:
        parts = []
        for flag in ("--sport", "--dport"):
            if self.match("ports", 0.35):
                value = self.r.choice(_PORT_RANGES) if self.r.random() < 0.4 else self.r.choice(_PORT_VALUES)
                parts.append(f"{self.neg(0.2)}{flag} {value}")
        if not parts:
            return None
        words = " ".join(parts)
        prefix = "" if self.on("aliases", 0.5) else f"-m {proto} "
        return f"{prefix}{words}", f"-m {proto} {words}"

    def _target(self, table: str, hooks: set[str], proto: str | None, jumpable: list[str]):
        r = self.r
        choices: list[tuple[str, float]] = [("ACCEPT", 1.0)]
        if "return" in self.f:
            choices.append(("RETURN", 0.6))
        if "log" in self.f:
            choices.append(("LOG", 0.6))
        if "no-target" in self.f:
            choices.append(("", 0.4))
        if "mark-target" in self.f:
            choices.append(("MARK", 0.7))
        if jumpable:
            choices.append(("jump", 1.5))
            if "goto" in self.f:
                choices.append(("goto", 0.7))
        if table == "filter":
            if "drop" in self.f:
                choices.append(("DROP", 1.0))
            if "reject" in self.f and ("OUTPUT" not in hooks or "output-reject" in self.f):
                choices.append(("REJECT", 2.5 if proto == "tcp" else 1.0))
        else:
            if "dnat" in self.f and hooks <= {"PREROUTING", "OUTPUT"}:
                choices.append(("DNAT", 2.0))
            if "redirect" in self.f and hooks <= {"PREROUTING", "OUTPUT"}:
                choices.append(("REDIRECT", 1.0))
            if "snat" in self.f and hooks <= {"POSTROUTING", "INPUT"}:
                choices.append(("SNAT", 2.0))
            if "masquerade" in self.f and hooks <= {"POSTROUTING"}:
                choices.append(("MASQUERADE", 1.5))
        name = r.choices([c for c, _ in choices], weights=[w for _, w in choices])[0]
        if name == "":
            return None
        if name in ("jump", "goto"):
            chain = r.choice(jumpable)
            flag = "-j" if name == "jump" else "-g"
            return (f"{flag} {chain}",) * 2
        if name == "LOG":
            words = "-j LOG"
            if r.random() < 0.6:
                words += f" --log-prefix {save_string(r.choice(_LOG_PREFIXES))}"
            if r.random() < 0.3:
                words += f" --log-level {r.choice((6, 7))}"
            return words, words
        if name == "MARK":
            return self._mark_target()
        if name == "REJECT":
            options = list(_REJECT_WITH) + (["tcp-reset"] * 14 if proto == "tcp" else [])
            how = r.choice(options)
            out = f"-j REJECT --reject-with {how}"
            if how == "icmp-port-unreachable" and self.on("aliases", 0.5):
                return "-j REJECT", out
            return out, out
        ported = proto in ("tcp", "udp") and "nat-ports" in self.f and r.random() < 0.5
        port = r.choice(NF_PORTS)
        if name == "DNAT":
            to = r.choice(_DNAT_TO) + (f":{port}" if ported else "")
            return (f"-j DNAT --to-destination {to}",) * 2
        if name == "SNAT":
            return (f"-j SNAT --to-source {r.choice(_SNAT_TO)}",) * 2
        if name == "REDIRECT":
            return (f"-j REDIRECT --to-ports {port}" if ported else "-j REDIRECT",) * 2
        if name == "MASQUERADE":
            return ("-j MASQUERADE",) * 2
        return (f"-j {name}",) * 2  # ACCEPT, DROP, RETURN

    def _mark_target(self) -> tuple[str, str]:
        r = self.r
        value = int(r.choice(_MARKS), 16)
        # the mask covers the value: iptables-nft stores --set-xmark V/M as M|V (and prints that back)
        mask = int(r.choice(_MASKS), 16) | value
        if self.on("aliases", 0.6):
            kind = r.choice(("--set-mark", "--set-mark-mask", "--or-mark", "--and-mark", "--xor-mark"))
            if kind == "--set-mark":
                return f"-j MARK --set-mark {value:#x}", f"-j MARK --set-xmark {value:#x}/0xffffffff"
            if kind == "--set-mark-mask":
                return f"-j MARK --set-mark {value:#x}/{mask:#x}", f"-j MARK --set-xmark {value:#x}/{mask:#x}"
            if kind == "--or-mark":
                return f"-j MARK --or-mark {value:#x}", f"-j MARK --set-xmark {value:#x}/{value:#x}"
            if kind == "--and-mark":
                return f"-j MARK --and-mark {value:#x}", f"-j MARK --set-xmark 0x0/{~value & 0xFFFFFFFF:#x}"
            return f"-j MARK --xor-mark {value:#x}", f"-j MARK --set-xmark {value:#x}/0x0"
        return (f"-j MARK --set-xmark {value:#x}/{mask:#x}",) * 2

    # the whole ruleset ----------------------------------------------------------------------------------

    def table(self, table: str) -> tuple[list[str], list[str]]:
        r = self.r
        builtins = list(_HOOKS[table])
        if "output-rules" not in self.f:
            builtins.remove("OUTPUT")
        users: list[tuple[str, set[str]]] = []
        if "user-chains" in self.f:
            names = r.sample(_USER_CHAINS, r.randint(0, 3))
            for name in names:
                if table == "nat":
                    hooks = {r.choice(builtins)}
                else:
                    hooks = {h for h in builtins if r.random() < 0.5} or {r.choice(builtins)}
                users.append((name, hooks))
        rules: dict[str, list[tuple[str, str]]] = {}
        for chain in builtins:
            jumpable = [name for name, hooks in users if chain in hooks]
            rules[chain] = [self.rule(table, chain, {chain}, jumpable) for _ in range(r.randint(0, 5))]
        for i, (name, hooks) in enumerate(users):
            jumpable = [n for n, h in users[i + 1 :] if hooks <= h]
            rules[name] = [self.rule(table, name, hooks, jumpable) for _ in range(r.randint(1, 4))]
        policies = {}
        for chain in _HOOKS[table]:
            drop = table == "filter" and chain != "OUTPUT" and self.on("drop", 0.25)
            policies[chain] = "DROP" if drop else "ACCEPT"
        order_in = [*_HOOKS[table], *(n for n, _ in users)]
        order_out = [*_HOOKS[table], *sorted((n for n, _ in users), key=_chain_sort_key)]
        head_in = [f":{c} {policies[c]} [0:0]" for c in _HOOKS[table]] + [f":{n} - [0:0]" for n, _ in users]
        head_out = [f":{c} {policies[c]} [0:0]" for c in _HOOKS[table]] + [
            f":{n} - [0:0]" for n in order_out[len(_HOOKS[table]) :]
        ]
        text_in = [f"*{table}", *head_in]
        text_out = [f"*{table}", *head_out]
        for chain in order_in:
            text_in += [i for i, _ in rules.get(chain, [])]
        for chain in order_out:
            text_out += [o for _, o in rules.get(chain, [])]
        return [*text_in, "COMMIT"], [*text_out, "COMMIT"]


def _chain_sort_key(name: str) -> bytes:
    return name.encode()  # iptables-save lists user chains in strcmp order


def random_ruleset(seed: int, features=NETFILTER_FEATURES) -> GeneratedRuleset:
    """A random, valid filter + nat ruleset, the same for the same seed and features.

    Rules only use what `features` lists (see NETFILTER_FEATURES), only where the kernel accepts them: NAT
    targets in their hooks (user chains of the nat table serve one hook), `-i` never in OUTPUT or
    POSTROUTING, `-o` never in PREROUTING or INPUT, tcp-reset only with `-p tcp`, ports only with `-p
    tcp/udp`, jumps only to later chains (no loops). `canonical` is what `iptables-save` prints for it.
    """
    grammar = _RulesetGrammar(seed, features)
    text, canonical = [], []
    for table in ("filter", "nat"):
        t, c = grammar.table(table)
        text += t
        canonical += c
    return GeneratedRuleset(seed, "\n".join(text) + "\n", "\n".join(canonical) + "\n", grammar.f)


def random_probes(seed: int, count: int = 4, features=NETFILTER_FEATURES) -> list:
    """`count` probes for one case, the same for the same seed: random protocol, source, destination and
    destination port (NF_PORTS); source ports and ICMP ids unique in the case (so NAT never has to choose
    another port). With "repeat-flow" a probe may repeat an earlier one exactly; with "replies" an item may
    be ReplyTo(k), the answer to request k (sent only if the router forwarded k); with "related",
    ReplyTo(k, error=True), an ICMP error about it."""
    import random

    r = random.Random(seed)
    probes: list = []
    used: set[int] = set()
    for _ in range(count):
        requests = [i for i, p in enumerate(probes) if isinstance(p, Probe)]
        if requests and "replies" in features and r.random() < 0.3:
            probes.append(ReplyTo(r.choice(requests)))
            continue
        if requests and "related" in features and r.random() < 0.15:
            probes.append(ReplyTo(r.choice(requests), error=True))
            continue
        if probes and "repeat-flow" in features and r.random() < 0.15:
            probes.append(r.choice(probes))
            continue
        proto = r.choice(("tcp", "udp", "icmp"))
        sport = r.choice((40000, 40001, 40002, 40003)) if r.random() < 0.5 else r.randint(1000, 1023)
        while sport in used:
            sport += 1
        used.add(sport)
        dport = 0 if proto == "icmp" else r.choice(NF_PORTS)
        probes.append(Probe(proto, r.choice(NF_SOURCES), r.choice(NF_DESTINATIONS), sport, dport))
    return probes


# --- the twin: loads a ruleset in the router, sends probes, reads what happened ---------------------------

# One observer per namespace, driven by JSON lines on its stdin, so a case costs no process start:
# - "wire DEV" (client, server): an AF_PACKET socket on DEV that sees every IPv4 frame arriving there (taken
#   before netfilter: the namespace's own `raw` DROP does not hide it). The client's also sends: the probe's
#   frame, then an ARP request to the router as a sentinel. Everything a probe causes happens in the
#   softirq of that send on the sender's CPU (veth hands frames to the peer's backlog on the same CPU, in
#   order), so when the ARP reply is back, the probe's copies and answers are in the observers' sockets.
# - "local PORTS" (router): raw IPv4 sockets for ICMP, TCP and UDP, which see a packet only once it has
#   passed INPUT (and is delivered, with its addresses after NAT), and UDP sockets on PORTS that keep the
#   router's stack from answering "port unreachable".
_NF_AGENT = r"""
import json, os, select, socket, sys, time
role = sys.argv[1]
socks, quiet = [], []
if role == "wire":
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
    s.bind((sys.argv[2], 0))
    s.setblocking(False)
    socks.append(s)
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
else:
    for proto in (1, 6, 17):
        r = socket.socket(socket.AF_INET, socket.SOCK_RAW, proto)
        r.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
        r.setblocking(False)
        socks.append(r)
    for port in sys.argv[2].split(","):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(("0.0.0.0", int(port)))
        u.setblocking(False)
        quiet.append(u)

def frames(s):
    while True:
        try:
            data, addr = s.recvfrom(65535)
        except BlockingIOError:
            return
        if role != "wire":
            yield data
        elif addr[2] != socket.PACKET_OUTGOING:
            yield data

def drain():
    got = [d.hex() for s in socks for d in frames(s) if role != "wire" or d[12:14] == b"\x08\x00"]
    for u in quiet:
        while True:
            try:
                u.recv(65535)
            except BlockingIOError:
                break
    return got

print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    cmd = json.loads(line)
    if cmd["op"] == "drain":
        print(json.dumps({"frames": drain()}), flush=True)
        continue
    stale = drain()
    s = socks[0]
    s.send(bytes.fromhex(cmd["frame"]))
    s.send(bytes.fromhex(cmd["sentinel"]))
    got, done = [], False
    deadline = time.monotonic() + cmd["timeout"]
    while not done and time.monotonic() < deadline:
        select.select([s], [], [], 0.05)
        for data in frames(s):
            if data[12:14] == b"\x08\x06" and data[20:22] == b"\x00\x02" and data[28:32] == bytes.fromhex(cmd["router"]):
                done = True
            elif data[12:14] == b"\x08\x00":
                got.append(data.hex())
    print(json.dumps({"frames": got, "sentinel": done, "stale": stale}), flush=True)
"""


@dataclass
class NfObservation:
    """What the kernel did with one probe.

    verdict: "deliver" (the router's sockets got it), "forward" (it left the router: `oif` says by which
    device), "reject" (the sender got REJECT's answer, in `answer`), or "drop" (nothing came out; also a
    REJECT whose answer something dropped). `after` is the probe as delivered or as it arrived behind the
    router (its addresses and ports after NAT). `counters` is `iptables-save -c` of filter and nat after it.
    """

    probe: Probe
    verdict: str
    oif: str | None = None
    after: object | None = None
    answer: object | None = None
    counters: str = ""
    extra: list = field(default_factory=list)  # anything else seen (never expected)

    def __str__(self) -> str:
        words = {"deliver": "delivered to the router", "drop": "dropped"}
        if self.verdict == "forward":
            text = f"forwarded out of {self.oif} as {describe_packet(self.after)}"
        elif self.verdict == "reject":
            text = f"rejected: the {self.probe.sender} got {describe_packet(self.answer)}"
        else:
            text = words.get(self.verdict, self.verdict)
            if self.after is not None:
                text += f" as {describe_packet(self.after)}"
        if self.extra:
            text += f" (and also: {', '.join(describe_packet(p) for p in self.extra)})"
        return text


def is_answer(packet) -> bool:
    """Whether a packet back at the sender is REJECT's answer (an ICMP error, a TCP RST) and not a probe."""
    from scapy.layers.inet import ICMP, TCP

    if packet.haslayer(TCP):
        return "R" in str(packet[TCP].flags)
    return packet.haslayer(ICMP) and packet[ICMP].type not in (0, 8)


class _Agent:
    """One observer process of `_NF_AGENT`, started with `ip netns exec NS python3 -c …` (see the twin)."""

    def __init__(self, twin: Twin, ns: str, *args: str) -> None:
        self.proc = twin._spawn(
            [
                "ip",
                "netns",
                "exec",
                twin._guard(twin.real(ns)),
                sys.executable,
                "-I",
                "-S",
                "-c",
                _NF_AGENT,
                *args,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.name = ns
        if self._read(10).get("ready") is not True:
            raise TwinError(
                f"the observer in {ns} did not start: {self.proc.stderr.read() if self.proc.poll() is not None else ''}"
            )

    def _read(self, timeout: float) -> dict:
        line = _read_line(self.proc.stdout, timeout)
        if line is None:
            err = self.proc.stderr.read() if self.proc.poll() is not None else "no answer"
            raise TwinError(f"the observer in {self.name} stopped: {err}")
        return json.loads(line)

    def ask(self, wait: float = 5.0, **command) -> dict:
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        return self._read(wait)


@dataclass
class NfKernelCase:
    """What the kernel did in one case: the ruleset as iptables-save prints it once loaded, each probe's fate,
    `iptables-save -c` after the last probe and `conntrack -L`."""

    loaded: str
    seen: list[NfObservation]
    counters: str
    conntrack: str
    probes: list[Probe] = field(default_factory=list)


class NetfilterTwin(Twin):
    """The netfilter chapter's kernel twin: client — router — server (:func:`netfilter_topology`) in network
    namespaces, a ruleset loaded into the router, probes sent from the client, what happened read back.

        with NetfilterTwin() as twin:
            twin.load(random_ruleset(7).text)       # iptables-restore in the router; conntrack -F
            seen = twin.send(Probe("tcp", "10.1.0.2", "10.2.0.2", 40000, 80))
            seen.verdict, seen.after, seen.counters  # "forward", the packet at the server, iptables-save -c
            twin.conntrack()                         # conntrack -L in the router

    Everything of `Twin` holds: unique prefix, stale sweep, cleanup on exit, error and signals, and every
    command inside the twin's own namespaces (`ip netns exec NS iptables-restore`, never in this machine's
    namespace). The observers (see `_NF_AGENT`) are processes of the twin, killed at cleanup.
    """

    def __init__(self, prefix: str | None = None) -> None:
        super().__init__(netfilter_topology(), prefix)
        self._agents: dict[str, _Agent] = {}

    def build(self) -> None:
        """Twin.build, then: the router's sysctls (`icmp_ratelimit=0`, no redirects), the observers' silence
        (`iptables-restore` of a `raw` table in client, server and router: see `_NF_QUIET_ROUTER`) and the
        three observer processes."""
        super().build()
        start = time.perf_counter()
        self.netns_exec(NF_ROUTER, "sysctl", "-q", "-w", *_NF_ROUTER_SYSCTLS)
        for name in (NF_CLIENT, NF_SERVER):
            self.netns_exec(name, "iptables-restore", input=_NF_QUIET_ENDS)
        self.netns_exec(NF_ROUTER, "iptables-restore", input=_NF_QUIET_ROUTER)
        self._agents = {
            NF_CLIENT: _Agent(self, NF_CLIENT, "wire", "eth0"),
            NF_SERVER: _Agent(self, NF_SERVER, "wire", "eth0"),
            NF_ROUTER: _Agent(self, NF_ROUTER, "local", ",".join(str(p) for p in NF_PORTS)),
        }
        self.timings["observers"] = time.perf_counter() - start

    def load(self, text: str, read: bool = True) -> str:
        """Load a filter + nat ruleset into the router and flush conntrack; return what `iptables-save` then
        prints for filter and nat (no counters, no comment lines), or "" when not asked to read it.

        Runs `iptables-restore` (each table the text names is replaced, its counters start at zero; a table
        it does not name is loaded empty, with ACCEPT policies) and `conntrack -F`. An invalid ruleset
        raises TwinError with iptables-restore's message.
        """
        self.netns_exec(NF_ROUTER, "iptables-restore", input=with_both_tables(text))
        self.netns_exec(NF_ROUTER, "conntrack", "-F", check=False)
        return strip_counters(self.counters()) if read else ""

    def run_case(self, text: str, probes: list, per_probe: bool = False) -> NfKernelCase:
        """One case: load the ruleset, send the probes in order, then read `iptables-save -c` (whose rules,
        counters aside, are what was loaded) and `conntrack -L`.

        A ReplyTo(k) among the probes becomes the reply to what probe k became (see :func:`reply_to`), or
        nothing when the router did not forward it; `probes` of the result are the probes really sent. With
        per_probe, each observation also carries the counters after its probe.
        """
        self.load(text, read=False)
        sent: list[Probe] = []
        seen: list[NfObservation] = []
        fate: list[NfObservation | None] = []  # per item of probes
        for item in probes:
            probe = item
            if isinstance(item, ReplyTo):
                earlier = fate[item.index] if 0 <= item.index < len(fate) else None
                probe = reply_to(earlier, item.error) if earlier is not None else None
            if probe is None:
                fate.append(None)
                continue
            sent.append(probe)
            seen.append(self.send(probe, counters=per_probe))
            fate.append(seen[-1])
        counters = self.counters()
        return NfKernelCase(strip_counters(counters), seen, counters, self.conntrack(), sent)

    def counters(self) -> str:
        """`iptables-save -c` of the router's filter and nat tables, in that order (comment lines left out)."""
        return select_tables(self.netns_exec(NF_ROUTER, "iptables-save", "-c"), ("filter", "nat"))

    def conntrack(self) -> str:
        """`conntrack -L` in the router (its table, one connection a line, in the kernel's order)."""
        return self.netns_exec(NF_ROUTER, "conntrack", "-L", check=False)

    def send(self, probe: Probe, counters: bool = True, timeout: float = 2.0) -> NfObservation:
        """Send one probe from its sender (the client, or the server for a reply on eth1) and say what became
        of it (see NfObservation); with counters, read `iptables-save -c` after it too (a run of many cases
        reads them once per case)."""
        from scapy.layers.inet import IP
        from scapy.layers.l2 import ARP, Ether

        sender, other = probe.sender, NF_SERVER if probe.sender == NF_CLIENT else NF_CLIENT
        toward = {NF_CLIENT: "eth0", NF_SERVER: "eth1"}  # the router's device toward each end
        mac, rmac = NF_MACS[sender, "eth0"], NF_MACS[NF_ROUTER, probe.iif]
        own, router_ip = _NF_ENDS[sender]
        sentinel = Ether(src=mac, dst=rmac) / ARP(op=1, hwsrc=mac, psrc=own, pdst=router_ip)
        sent = self._agents[sender].ask(
            wait=timeout + 5,
            op="send",
            frame=probe.frame().hex(),
            sentinel=bytes(sentinel).hex(),
            router=IPv4Address(router_ip).packed.hex(),
            timeout=timeout,
        )
        if not sent["sentinel"]:
            raise TwinError(
                f"the router did not answer the sentinel ARP request after {probe} within {timeout} s"
            )
        across = self._agents[other].ask(op="drain")["frames"]
        local = self._agents[NF_ROUTER].ask(op="drain")["frames"]
        back = [Ether(bytes.fromhex(h))[IP] for h in sent["frames"]]
        seen: list[tuple[str, str | None, object]] = (
            [("deliver", None, IP(bytes.fromhex(h))) for h in local]
            + [("forward", toward[other], Ether(bytes.fromhex(h))[IP]) for h in across]
            + [("forward", probe.iif, p) for p in back if probe.quoted is not None or not is_answer(p)]
            + [("reject", None, p) for p in back if probe.quoted is None and is_answer(p)]
        )
        counters = self.counters() if counters else ""
        if not seen:
            return NfObservation(probe, "drop", counters=counters)
        verdict, oif, packet = seen[0]
        obs = NfObservation(probe, verdict, oif=oif, counters=counters, extra=[p for _, _, p in seen[1:]])
        if verdict == "reject":
            obs.answer = packet
        else:
            obs.after = packet
        return obs


# --- iptables-save -c, as numbers ----------------------------------------------------------------------


def with_both_tables(text: str) -> str:
    """iptables-restore text with an empty filter and nat table (ACCEPT policies) added where it has none:
    what the twin loads, and what the model is given, so both have the same tables."""
    named = set(re.findall(r"^\*(\S+)", text, re.MULTILINE))
    empty = [
        f"*{table}\n" + "".join(f":{c} ACCEPT [0:0]\n" for c in _HOOKS[table]) + "COMMIT\n"
        for table in ("filter", "nat")
        if table not in named
    ]
    return text + "".join(empty)


def select_tables(text: str, tables: tuple[str, ...]) -> str:
    """The blocks of iptables-save text for the given tables, in the given order, comment lines left out."""
    blocks: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        if line.startswith("*"):
            current = blocks.setdefault(line[1:].strip(), [])
        if current is not None:
            current.append(line)
        if line == "COMMIT":
            current = None
    return "".join("\n".join(blocks[t]) + "\n" for t in tables if t in blocks)


_COUNTER_LINE = re.compile(r"^\[(\d+):(\d+)\] -A (\S+)")
_CHAIN_LINE = re.compile(r"^:(\S+) (\S+) \[(\d+):(\d+)\]")


def strip_counters(text: str) -> str:
    """iptables-save text without `[packets:bytes]` before rules, chain counters as `[0:0]`, no comment lines."""
    out = []
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        line = re.sub(r"^\[\d+:\d+\] ", "", line)
        line = re.sub(r"^(:\S+ \S+) \[\d+:\d+\]$", r"\1 [0:0]", line)
        out.append(line)
    return "\n".join(out) + "\n"


def parse_counters(text: str) -> dict[tuple[str, str], dict]:
    """The counters of `iptables-save -c` text, per (table, chain): {"policy": (packets, bytes) or None for a
    user chain, "rules": [(packets, bytes), … in rule order]}."""
    out: dict[tuple[str, str], dict] = {}
    table = None
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
        elif (m := _CHAIN_LINE.match(line)) and table:
            policy = None if m.group(2) == "-" else (int(m.group(3)), int(m.group(4)))
            out[(table, m.group(1))] = {"policy": policy, "rules": []}
        elif (m := _COUNTER_LINE.match(line)) and table:
            out.setdefault((table, m.group(3)), {"policy": None, "rules": []})["rules"].append(
                (int(m.group(1)), int(m.group(2)))
            )
    return out


def rule_texts(text: str) -> dict[tuple[str, str, int], str]:
    """Each rule of iptables-save text by (table, chain, number from 1): its `-A CHAIN …` line, no counters."""
    out: dict[tuple[str, str, int], str] = {}
    count: Counter = Counter()
    table = None
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
            continue
        line = re.sub(r"^\[\d+:\d+\] ", "", line)
        if line.startswith("-A ") and table:
            chain = line.split()[1]
            count[table, chain] += 1
            out[table, chain, count[table, chain]] = line
    return out


def counter_differences(kernel: str, model: str) -> list[str]:
    """Where two `iptables-save -c` texts count differently: `filter FORWARD rule 2: kernel [1:40], model [0:0]`."""
    k, m = parse_counters(kernel), parse_counters(model)
    diffs = []
    for key in sorted(set(k) | set(m)):
        table, chain = key
        if key not in k or key not in m:
            diffs.append(f"{table} {chain}: only in the {'model' if key not in k else 'kernel'}")
            continue
        kp, mp = k[key]["policy"], m[key]["policy"]
        if kp != mp:
            diffs.append(f"{table} {chain} policy: kernel {_pair(kp)}, model {_pair(mp)}")
        kr, mr = k[key]["rules"], m[key]["rules"]
        if len(kr) != len(mr):
            diffs.append(f"{table} {chain}: {len(kr)} rules in the kernel, {len(mr)} in the model")
        for i, (a, b) in enumerate(zip(kr, mr), 1):
            if a != b:
                diffs.append(f"{table} {chain} rule {i}: kernel {_pair(a)}, model {_pair(b)}")
    return diffs


def _pair(value) -> str:
    return "-" if value is None else f"[{value[0]}:{value[1]}]"


def matched_rules(before: str, after: str) -> list[tuple[str, str, int]]:
    """The rules whose packet counter grew from one `iptables-save -c` to the next: (table, chain, rule number)."""
    b, a = parse_counters(before), parse_counters(after)
    out = []
    for key, value in a.items():
        old = b.get(key, {"rules": []})["rules"]
        for i, (packets, _) in enumerate(value["rules"], 1):
            if packets > (old[i - 1][0] if i <= len(old) else 0):
                out.append((*key, i))
    return out


# --- kernel and model, side by side -----------------------------------------------------------------


@dataclass
class NfModelStep:
    """What the model said for one probe: the probe, its TraceResult, `iptables-save -c` of its ruleset after."""

    probe: Probe
    result: object
    counters: str


def model_case(text: str, probes: list):
    """Run a case through the model: `parse_iptables_save(text)`, then `trace(ruleset, router, probe,
    conntrack, iif=probe.iif)` for each probe in order, one Conntrack for the case (as the kernel's).

    A ReplyTo(k) is resolved from the model's own outcome of probe k (the kernel twin resolves it from the
    kernel's: give the model the kernel's `probes` to compare). Returns (ruleset, conntrack, [NfModelStep
    per probe sent]). The router is `netfilter_topology()`'s.
    """
    from labsupport.netfilter import Conntrack, parse_iptables_save, trace

    ruleset = parse_iptables_save(with_both_tables(text))
    conntrack = Conntrack()
    router = netfilter_topology().namespaces[NF_ROUTER]
    steps: list[NfModelStep] = []
    fate: list[NfModelStep | None] = []
    for item in probes:
        probe = item
        if isinstance(item, ReplyTo):
            earlier = fate[item.index] if 0 <= item.index < len(fate) else None
            probe = reply_to(_as_observation(earlier), item.error) if earlier is not None else None
        if probe is None:
            fate.append(None)
            continue
        result = trace(ruleset, router, probe.packet(), conntrack, iif=probe.iif)
        counters = select_tables(ruleset.to_iptables_save(counters=True), ("filter", "nat"))
        steps.append(NfModelStep(probe, result, counters))
        fate.append(steps[-1])
    return ruleset, conntrack, steps


def _as_observation(step: NfModelStep) -> NfObservation:
    verdict, oif, after, answer = model_expectation(step.result)
    return NfObservation(step.probe, verdict, oif=oif, after=after, answer=answer)


def model_expectation(result) -> tuple[str, str | None, object, object]:
    """What the kernel twin should observe when the model says `result`: (verdict, oif, after, answer).

    A packet the router forwards is seen behind it (oif eth1: the server; eth0: back at the client); one it
    delivers is seen by its sockets; REJECT is seen as its answer at the sender, and as nothing when the
    kernel sends no answer for that packet.
    """
    verdict = result.verdict
    if verdict == "reject":
        return (
            ("reject", None, None, result.reply) if result.reply is not None else ("drop", None, None, None)
        )
    if verdict in ("deliver", "forward"):
        return verdict, result.oif if verdict == "forward" else None, result.packet_after, None
    return verdict, None, None, None


def compare_probe(seen: NfObservation, step: NfModelStep) -> list[str]:
    """Differences between what the kernel did with a probe and what the model said ([] when they agree):
    verdict, device, the packet's addresses and ports after NAT, REJECT's answer, and every counter."""
    verdict, oif, after, answer = model_expectation(step.result)
    diffs = []
    if (seen.verdict, seen.oif) != (verdict, oif):
        where = lambda v, o: v + (f" out of {o}" if o else "")
        diffs.append(f"verdict: kernel {where(seen.verdict, seen.oif)}, model {where(verdict, oif)}")
    elif verdict in ("deliver", "forward") and packet_fields(seen.after) != packet_fields(after):
        diffs.append(f"packet after: kernel {describe_packet(seen.after)}, model {describe_packet(after)}")
    elif verdict == "reject":
        k, m = packet_fields(seen.answer), packet_fields(answer)
        if k != m:
            diffs.append(
                f"REJECT's answer: kernel {describe_packet(seen.answer)}, model {describe_packet(answer)}"
            )
    if seen.extra:
        diffs.append(f"the kernel also saw: {', '.join(describe_packet(p) for p in seen.extra)}")
    if seen.counters:
        diffs += [f"counters: {d}" for d in counter_differences(seen.counters, step.counters)]
    return diffs


def compare_case(case: NfKernelCase, steps: list[NfModelStep], model_conntrack: str) -> dict[str, list[str]]:
    """Kernel and model on a whole case: per probe (`probe N`), the counters after the last probe
    (`counters`) and `conntrack -L` (`conntrack`); only the keys with differences are present."""
    out: dict[str, list[str]] = {}
    for i, (seen, step) in enumerate(zip(case.seen, steps), 1):
        diffs = compare_probe(seen, step)
        if diffs:
            out[f"probe {i}"] = diffs
    if steps:
        diffs = counter_differences(case.counters, steps[-1].counters)
        if diffs:
            out["counters"] = diffs
    diffs = compare_conntrack(case.conntrack, model_conntrack)
    if diffs:
        out["conntrack"] = diffs
    return out


_CT_VOLATILE = re.compile(r"^(\S+\s+\d+)\s+\d+\s")  # the seconds left: they tick on a real kernel


def conntrack_lines(text: str) -> list[str]:
    """`conntrack -L` lines, comparable: the timeout column left out, sorted (the kernel lists by hash)."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("conntrack v"):
            continue
        out.append(" ".join(_CT_VOLATILE.sub(r"\1 ", line).split()))
    return sorted(out)


def compare_conntrack(kernel_text: str, model_text: str) -> list[str]:
    """Connections only the kernel or only the model lists (timeouts aside); [] when they agree."""
    k, m = conntrack_lines(kernel_text), conntrack_lines(model_text)
    diffs = [f"conntrack: only in the kernel: {line}" for line in k if line not in m]
    diffs += [f"conntrack: only in the model: {line}" for line in m if line not in k]
    return diffs


def reproducer(text: str, probes: list[Probe], title: str, details: list[str]) -> str:
    """One copy-pasteable block: what differs, then Python that replays the case on kernel and model."""
    body = "\n".join(f"# {line}" for line in details)
    probe_list = ",\n    ".join(p.python() for p in probes)
    return (
        f"# ----- netfilter twin: {title} -----\n"
        f"{body}\n"
        "from labsupport.kernel import Probe, run_netfilter_twin\n"
        f'RULESET = """\\\n{text}"""\n'
        f"PROBES = [\n    {probe_list},\n]\n"
        "print(run_netfilter_twin(RULESET, PROBES))  # as root; without root it shows the model's side\n"
        "# -----"
    )


@dataclass
class NetfilterReport:
    """What `run_netfilter_twin` found: per probe the kernel's and the model's outcome, and the differences."""

    ruleset: str
    probes: list[Probe]
    skipped: str | None = None
    kernel: NfKernelCase | None = None
    model: list[NfModelStep] = field(default_factory=list)
    diffs: dict[str, list[str]] = field(default_factory=dict)
    error: str | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def agrees(self) -> bool:
        """True when the twin ran and kernel and model agreed on every probe, every counter and conntrack."""
        return self.skipped is None and self.error is None and self.kernel is not None and not self.diffs

    def __str__(self) -> str:
        head = f"Netfilter twin: {len(self.probes)} probe(s) through the router's filter and nat tables"
        if self.skipped is not None:
            lines = [f"{head}: kernel side skipped — {self.skipped}. The model says:"]
            lines += [f"  {probe}: {step.result.outcome()}" for probe, step in zip(self.probes, self.model)]
            return "\n".join(lines)
        lines = [head]
        if self.error:
            lines.append(f"  stopped by an error: {self.error}")
        if self.kernel is None:
            return "\n".join(lines)
        for i, (probe, seen) in enumerate(zip(self.probes, self.kernel.seen), 1):
            diffs = self.diffs.get(f"probe {i}", [])
            lines.append(f"  {probe}: kernel: {seen}; model {'agrees' if not diffs else 'differs:'}")
            lines += [f"    {d}" for d in diffs]
        for key, title in (("counters", "iptables-save -c"), ("conntrack", "conntrack -L")):
            diffs = self.diffs.get(key, [])
            lines.append(f"  {title}: {'agrees' if not diffs else 'differs:'}")
            lines += [f"    {d}" for d in diffs]
        return "\n".join(lines)

    def _repr_pretty_(self, printer, cycle) -> None:
        printer.text(str(self))


def run_netfilter_twin(ruleset: str, probes: list[Probe]) -> NetfilterReport:
    """Load `ruleset` (iptables-save text) into a real router, send the probes from the client, and compare
    every probe (verdict, addresses after NAT, REJECT's answer, counters after it), `iptables-save -c` and
    `conntrack -L` with the model (:func:`model_case`).

    Without root, network namespaces, iptables or conntrack the report says why and shows the model's
    side; no exception. Errors of the twin are reported too, not raised.
    """
    report = NetfilterReport(ruleset, list(probes))
    _, model_ct, report.model = model_case(ruleset, report.probes)  # bad input: the model's clear error
    report.probes = [step.probe for step in report.model]
    ok, reason = available()
    for tool, package in (("iptables-restore", "iptables"), ("conntrack", "conntrack")):
        if ok and shutil.which(tool) is None:
            ok, reason = False, f"needs the `{tool}` command (Debian package {package})"
    if not ok:
        report.skipped = reason
        return report
    start = time.perf_counter()
    try:
        with NetfilterTwin() as twin:
            report.kernel = twin.run_case(ruleset, list(probes), per_probe=True)
        report.probes = report.kernel.probes
        _, model_ct, report.model = model_case(ruleset, report.probes)  # the replies the kernel's run sent
        report.diffs = compare_case(report.kernel, report.model, model_ct.show())
    except TwinError as exc:
        report.error = str(exc)
    report.timings["total"] = time.perf_counter() - start
    return report


__all__ = [
    "NETFILTER_FEATURES",
    "GeneratedRuleset",
    "NetfilterReport",
    "NetfilterTwin",
    "NfKernelCase",
    "NfModelStep",
    "NfObservation",
    "Probe",
    "ReplyTo",
    "Twin",
    "TwinError",
    "TwinReport",
    "UdpResult",
    "available",
    "compare",
    "compare_case",
    "compare_conntrack",
    "compare_frames",
    "compare_probe",
    "compare_route_get",
    "counter_differences",
    "frame_fields",
    "model_case",
    "model_frames_on",
    "netfilter_topology",
    "new_prefix",
    "parse_counters",
    "parse_ip_json",
    "random_probes",
    "random_ruleset",
    "reproducer",
    "run_netfilter_twin",
    "run_twin",
    "sweep_stale",
]
