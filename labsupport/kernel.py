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

No IPython import; needs root, iproute2, iputils `ping` and (for captures) tcpdump.
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
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Interface
from typing import Self

from labsupport.host import Namespace
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


def compare_frames(model_frames: list, real_frames: list) -> list[str]:
    """Differences between the model's frames and captured ones, in order, field by field ([] if equal)."""
    diffs = []
    if len(model_frames) != len(real_frames):
        diffs.append(
            f"{len(model_frames)} frames in the model, {len(real_frames)} captured: "
            f"model {[f.summary() for f in model_frames]}, kernel {[f.summary() for f in real_frames]}"
        )
    for i, (m, r) in enumerate(zip(model_frames, real_frames), 1):
        mf, rf = frame_fields(m), frame_fields(r)
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

    def _run(self, command: list[str], check: bool = True, timeout: float = COMMAND_TIMEOUT) -> str:
        self.commands.append(shlex.join(command))
        try:
            done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=timeout)
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

    def netns_exec(self, ns: str, *args: str, check: bool = True, timeout: float = COMMAND_TIMEOUT) -> str:
        """`ip netns exec NS ARGS…`."""
        return self._run(["ip", "netns", "exec", self._guard(ns), *args], check=check, timeout=timeout)

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
                ready = all(
                    "UP" in lk.get("flags", [])
                    and "LOWER_UP" in lk.get("flags", [])
                    and (
                        not ipv6
                        or lk["ifname"] == "lo"
                        or any(
                            a.get("family") == "inet6" and a.get("scope") == "link" and not a.get("tentative")
                            for a in lk.get("addr_info", [])
                        )
                    )
                    for lk in links
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
            stdin=subprocess.DEVNULL,
            text=True,
            **{"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, **kwargs},
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


__all__ = [
    "Twin",
    "TwinError",
    "TwinReport",
    "UdpResult",
    "available",
    "compare",
    "compare_frames",
    "compare_route_get",
    "frame_fields",
    "model_frames_on",
    "new_prefix",
    "parse_ip_json",
    "run_twin",
    "sweep_stale",
]
