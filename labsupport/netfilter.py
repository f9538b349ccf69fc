"""Netfilter as the Linux kernel runs it: iptables rule tables, the five hooks, conntrack and NAT.

The model speaks iptables' own language. :func:`parse_iptables_save` reads `iptables-save` text (or an
`iptables-restore` file: `-A`, `-I`, `-N`, `-P`, counters) and :meth:`Ruleset.to_iptables_save` prints
it back in the canonical form iptables-save (iptables 1.8.9, nf_tables back end) prints: `-m tcp`
inserted where `-p tcp --dport 80` loaded it implicitly, `/32` on host addresses, `--set-xmark` for
every MARK, probabilities as the kernel stores them, comments quoted only when they need it, user
chains sorted, tables in the order mangle, security, raw, filter, nat. A canonical dump comes back
byte for byte. :meth:`Ruleset.iptables` runs an `iptables …` command line and prints what iptables
prints (`-L`, `-S`); :meth:`Ruleset.list_rules` and :meth:`Ruleset.list_specs` are those views.
Bad lines raise :class:`~labsupport.errors.LabInputError` naming the line number.

:func:`trace` walks one packet (a scapy IP packet, a :class:`PacketSpec`, or its text
`tcp 10.0.0.5:34567 > 10.96.0.10:80 iif eth0`) through a host (:class:`labsupport.host.Namespace`) as
the kernel does: the hooks in order, the tables at each hook in priority order (raw, conntrack,
mangle, nat DNAT, filter, security, nat SNAT), the routing decision after PREROUTING (the host's
`route_get`), the reroute after OUTPUT's DNAT, the forwarding switch. It keeps the per-rule packet
and byte counters `iptables-save -c` shows, writes the kernel's TRACE lines, records every rewrite,
and updates a :class:`Conntrack` table that prints like `conntrack -L`: NEW, ESTABLISHED, RELATED
(ICMP errors, REJECT's answer), INVALID and UNTRACKED packets, the TCP state machine of
nf_conntrack_proto_tcp, NAT decided once per connection by the nat table and applied to every later
packet both ways, source ports reallocated when two connections would clash.

Rules are compiled when they are read (one generated function per rule shape), and long chains are
walked through an index by destination address: a trace through 10,000 kube-proxy rules takes about a
millisecond, one that must test every rule a few milliseconds.

Where the model knowingly differs from the kernel:
- TRACE lines are written for every packet, as if a raw-table TRACE rule had marked it at its first
  hook (TraceResult.traced says whether a TRACE rule did), and without the MAC= field;
- TCP sequence windows are not tracked (as with nf_conntrack_tcp_be_liberal=1); no helpers, zones or
  expectations;
- an address range in SNAT/DNAT picks its address with CRC32 where the kernel uses jhash; ports the
  kernel picks at random come from Conntrack's seeded generator;
- REJECT's ICMP error carries IP id 0 where the kernel's ip_select_ident picks one (its other fields,
  TOS 0xC0, TTL 64, no DF, the whole datagram quoted up to 548 bytes, were checked on the kernel);
- `iptables -L` without -n names only common ports and prints addresses as numbers (no DNS);
- iptables-restore refuses a chain named like a target extension it has already loaded (`-N MARK`
  after a `-j MARK` rule); the model refuses only the names of the standard verdicts.
"""

from __future__ import annotations

import random
import re
import zlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

from labsupport.errors import LabInputError

# --- tables, chains, hooks --------------------------------------------------------------------

HOOKS = ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING")

#: Built-in chains per table, in the order the kernel (and iptables-save) lists them.
TABLE_CHAINS: dict[str, tuple[str, ...]] = {
    "raw": ("PREROUTING", "OUTPUT"),
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "security": ("INPUT", "FORWARD", "OUTPUT"),
}

#: The order `iptables-save` (nf_tables back end) prints the tables in.
SAVE_ORDER = ("mangle", "security", "raw", "filter", "nat")

#: Hook priorities (include/uapi/linux/netfilter_ipv4.h); lower runs first.
PRIORITIES = {"raw": -300, "conntrack": -200, "mangle": -150, "nat-dst": -100, "filter": 0, "security": 50,
              "nat-src": 100, "confirm": 2**31 - 1}

#: What runs at each hook, in order: tables and the conntrack steps.
HOOK_ORDER: dict[str, tuple[str, ...]] = {
    "PREROUTING": ("raw", "conntrack", "mangle", "nat"),
    "INPUT": ("mangle", "filter", "security", "nat", "confirm"),
    "FORWARD": ("mangle", "filter", "security"),
    "OUTPUT": ("raw", "conntrack", "mangle", "nat", "filter", "security"),
    "POSTROUTING": ("mangle", "nat", "confirm"),
}

VERDICTS = ("ACCEPT", "DROP", "RETURN")
POLICIES = ("ACCEPT", "DROP")
MAX_CHAIN_NAME = 28  # XT_EXTENSION_MAXNAMELEN - 1
IFNAMSIZ = 16

# /etc/protocols (Debian netbase), which iptables consults first to name a protocol number.
PROTOCOLS: dict[int, str] = {
    0: "ip", 1: "icmp", 2: "igmp", 3: "ggp", 4: "ipencap", 5: "st", 6: "tcp", 8: "egp", 9: "igp", 12: "pup",
    17: "udp", 20: "hmp", 22: "xns-idp", 27: "rdp", 29: "iso-tp4", 33: "dccp", 36: "xtp", 37: "ddp",
    38: "idpr-cmtp", 41: "ipv6", 43: "ipv6-route", 44: "ipv6-frag", 45: "idrp", 46: "rsvp", 47: "gre",
    50: "esp", 51: "ah", 57: "skip", 58: "ipv6-icmp", 59: "ipv6-nonxt", 60: "ipv6-opts", 73: "rspf",
    81: "vmtp", 88: "eigrp", 89: "ospf", 93: "ax.25", 94: "ipip", 97: "etherip", 98: "encap", 103: "pim",
    108: "ipcomp", 112: "vrrp", 115: "l2tp", 124: "isis", 132: "sctp", 133: "fc", 135: "mobility-header",
    136: "udplite", 137: "mpls-in-ip", 138: "manet", 139: "hip", 140: "shim6", 141: "wesp", 142: "rohc",
    143: "ethernet",
}
_PROTO_ALIASES = {"ip-encap": 4, "ipsec-esp": 50, "ipsec-ah": 51, "ospfigp": 89, "icmpv6": 58, "mh": 135,
                  "hopopt": 0, "all": 0}
_PROTO_BY_NAME = {**{name: num for num, name in PROTOCOLS.items()}, **_PROTO_ALIASES}

# A few /etc/services names, for `--dport http` and `--dports http,https`.
SERVICES = {
    "ftp-data": 20, "ftp": 21, "ssh": 22, "telnet": 23, "smtp": 25, "domain": 53, "bootps": 67, "bootpc": 68,
    "tftp": 69, "http": 80, "www": 80, "kerberos": 88, "pop3": 110, "ntp": 123, "imap": 143, "snmp": 161,
    "ldap": 389, "https": 443, "syslog": 514, "ldaps": 636, "imaps": 993, "pop3s": 995, "mysql": 3306,
    "postgresql": 5432, "http-alt": 8080, "webcache": 8080,
}

# ICMP type names as iptables knows them (libxtables): name -> (type, code_min, code_max).
ICMP_TYPES: dict[str, tuple[int, int, int]] = {
    "any": (0xFF, 0, 0xFF),
    "echo-reply": (0, 0, 0xFF), "pong": (0, 0, 0xFF),
    "destination-unreachable": (3, 0, 0xFF),
    "network-unreachable": (3, 0, 0), "host-unreachable": (3, 1, 1), "protocol-unreachable": (3, 2, 2),
    "port-unreachable": (3, 3, 3), "fragmentation-needed": (3, 4, 4), "source-route-failed": (3, 5, 5),
    "network-unknown": (3, 6, 6), "host-unknown": (3, 7, 7), "network-prohibited": (3, 9, 9),
    "host-prohibited": (3, 10, 10), "TOS-network-unreachable": (3, 11, 11), "TOS-host-unreachable": (3, 12, 12),
    "communication-prohibited": (3, 13, 13), "host-precedence-violation": (3, 14, 14),
    "precedence-cutoff": (3, 15, 15),
    "source-quench": (4, 0, 0xFF),
    "redirect": (5, 0, 0xFF), "network-redirect": (5, 0, 0), "host-redirect": (5, 1, 1),
    "TOS-network-redirect": (5, 2, 2), "TOS-host-redirect": (5, 3, 3),
    "echo-request": (8, 0, 0xFF), "ping": (8, 0, 0xFF),
    "router-advertisement": (9, 0, 0xFF), "router-solicitation": (10, 0, 0xFF),
    "time-exceeded": (11, 0, 0xFF), "ttl-exceeded": (11, 0, 0xFF),
    "ttl-zero-during-transit": (11, 0, 0), "ttl-zero-during-reassembly": (11, 1, 1),
    "parameter-problem": (12, 0, 0xFF), "ip-header-bad": (12, 0, 0), "required-option-missing": (12, 1, 1),
    "timestamp-request": (13, 0, 0xFF), "timestamp-reply": (14, 0, 0xFF),
    "address-mask-request": (17, 0, 0xFF), "address-mask-reply": (18, 0, 0xFF),
}
ICMP_ERRORS = (3, 4, 5, 11, 12)
_ICMP_REPLY_TYPE = {8: 0, 13: 14, 15: 16, 17: 18}  # request -> reply (nf_conntrack_proto_icmp)

# REJECT --reject-with: canonical name -> ICMP code of type 3 (or "tcp-reset"); accepted aliases.
REJECT_WITH = {
    "icmp-net-unreachable": 0, "icmp-host-unreachable": 1, "icmp-proto-unreachable": 2,
    "icmp-port-unreachable": 3, "icmp-net-prohibited": 9, "icmp-host-prohibited": 10,
    "icmp-admin-prohibited": 13, "tcp-reset": None,
}
_REJECT_ALIASES = {"net-unreach": "icmp-net-unreachable", "host-unreach": "icmp-host-unreachable",
                   "proto-unreach": "icmp-proto-unreachable", "port-unreach": "icmp-port-unreachable",
                   "net-prohib": "icmp-net-prohibited", "host-prohib": "icmp-host-prohibited",
                   "admin-prohib": "icmp-admin-prohibited", "tcp-rst": "tcp-reset"}

LOG_LEVELS = {"emerg": 0, "alert": 1, "crit": 2, "error": 3, "err": 3, "warning": 4, "warn": 4, "notice": 5,
              "info": 6, "debug": 7, "panic": 0}

TCP_FLAG_BITS = {"FIN": 0x01, "SYN": 0x02, "RST": 0x04, "PSH": 0x08, "ACK": 0x10, "URG": 0x20}
_TCP_FLAG_ORDER = ("FIN", "SYN", "RST", "PSH", "ACK", "URG")

# Connection-tracking states of a packet (the bits xt_conntrack tests).
CT_INVALID, CT_NEW, CT_ESTABLISHED, CT_RELATED, CT_UNTRACKED, CT_SNAT, CT_DNAT = (1 << i for i in range(7))
CTSTATE_NAMES = {"INVALID": CT_INVALID, "NEW": CT_NEW, "RELATED": CT_RELATED, "ESTABLISHED": CT_ESTABLISHED,
                 "UNTRACKED": CT_UNTRACKED, "SNAT": CT_SNAT, "DNAT": CT_DNAT}
_CTSTATE_ORDER = ("INVALID", "NEW", "RELATED", "ESTABLISHED", "UNTRACKED", "SNAT", "DNAT")
_STATE_ORDER = ("INVALID", "NEW", "RELATED", "ESTABLISHED", "UNTRACKED")
CTSTATUS_NAMES = ("NONE", "EXPECTED", "SEEN_REPLY", "ASSURED", "CONFIRMED")

# rtn_type names, in their numeric order (addrtype prints them in this order).
ADDRTYPES = ("UNSPEC", "UNICAST", "LOCAL", "BROADCAST", "ANYCAST", "MULTICAST", "BLACKHOLE", "UNREACHABLE",
             "PROHIBIT", "THROW", "NAT", "XRESOLVE")


def _err(line: int | None, value: object, allowed: str, what: str | None = None) -> LabInputError:
    """The parse error: names the line (and what was being read)."""
    where = f"line {line}" if line is not None else "rule"
    return LabInputError(f"{where}: {what}" if what else where, value, allowed)


# --- words of an iptables line ------------------------------------------------------------------


_BLANKS = re.compile(r"[ \t\n]+")
_WORD = re.compile(r'[ \t\n]*([^ \t\n"]*)(?:"((?:[^"\\]|\\.)*)(\\?)("?))?', re.DOTALL)
_UNESCAPE = re.compile(r"\\(.)", re.DOTALL)


def split_words(text: str) -> list[str]:
    """Split a rule line into words as iptables-restore does (add_param_to_argv).

    Words are separated by blanks (space, tab, newline); a double quote opens a quoted part (blanks
    kept) that the next double quote closes, and inside it a backslash escapes the next character.
    A closing quote also ends the word. Single quotes are ordinary characters.
    """
    if '"' not in text:
        return [w for w in _BLANKS.split(text) if w]
    if "\\" not in text and text.count('"') == 2:  # one quoted part, no escapes: iptables-save's comments
        before, quoted, after = text.split('"')
        words = [w for w in _BLANKS.split(before) if w]
        if before and before[-1] not in " \t\n" and words:
            words[-1] += quoted  # a quote right after a word continues it
        else:
            words.append(quoted)
        return words + [w for w in _BLANKS.split(after) if w]
    words: list[str] = []
    pos, end = 0, len(text)
    while pos < end:
        m = _WORD.match(text, pos)
        plain, quoted = m.group(1), m.group(2)
        if m.end() == pos:
            break
        pos = m.end()
        if quoted is None:
            if plain:
                words.append(plain)
            continue
        words.append(plain + _UNESCAPE.sub(r"\1", quoted))
    return words


_NO_QUOTE = frozenset("_-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def quote(value: str) -> str:
    """A string argument as iptables-save prints it (xtables_save_string): bare when it is only
    letters, digits, `_` and `-`; else in double quotes with `"`, `\\` and `'` escaped."""
    if value and all(c in _NO_QUOTE for c in value):
        return value
    escaped = "".join("\\" + c if c in "\"\\'" else c for c in value)
    return f'"{escaped}"'


# --- numbers, addresses, ports ------------------------------------------------------------------


def _strtoul(text: str, base: int = 0) -> int | None:
    """strtoul(text, &end, base) that must consume the whole text, as xtables_strtoui uses it."""
    if text.isdigit() and text.isascii() and (text[0] != "0" or len(text) == 1):
        return int(text)
    s = text.removeprefix("+")
    if not s:
        return None
    try:
        if base == 0:
            if s[:2] in ("0x", "0X"):
                digits = s[2:]
                return int(digits, 16) if digits and all(c in "0123456789abcdefABCDEF" for c in digits) else None
            if s.startswith("0"):
                return int(s, 8) if all(c in "01234567" for c in s) else None
            return int(s, 10) if s.isdigit() and s.isascii() else None
        return int(s, base) if s.isascii() and s.isalnum() else None
    except ValueError:
        return None


def _uint(text: str, lo: int, hi: int, line: int | None, what: str, base: int = 0) -> int:
    value = _strtoul(text, base)
    if value is None or not lo <= value <= hi:
        raise _err(line, text, f"a whole number from {lo} to {hi}", what)
    return value


def ip_to_int(text: str) -> int:
    """Dotted IPv4 text to an int (strict dotted quad)."""
    parts = text.split(".")
    if len(parts) != 4 or not all(p.isdigit() and p.isascii() and len(p) <= 3 and int(p) < 256 for p in parts):
        raise LabInputError("address", text, "a dotted IPv4 address such as 10.0.0.5")
    a, b, c, d = (int(p) for p in parts)
    return (a << 24) | (b << 16) | (c << 8) | d


def int_to_ip(value: int) -> str:
    """An int to dotted IPv4 text."""
    return f"{value >> 24 & 255}.{value >> 16 & 255}.{value >> 8 & 255}.{value & 255}"


_DOTTED = re.compile(r"(?:0|[1-9][0-9]{0,2})(?:\.(?:0|[1-9][0-9]{0,2})){3}")


def _xt_ipaddr(text: str, is_mask: bool = False) -> int | None:
    """xtables_numeric_to_ipaddr: up to four dotted parts, each a C number (0x.. hex, 0.. octal);
    missing trailing parts of an address are zero (`10` is 10.0.0.0). None when not numeric."""
    parts = text.split(".")
    if len(parts) > 4 or (is_mask and len(parts) != 4):
        return None
    if len(parts) == 4 and _DOTTED.fullmatch(text):
        a, b, c, d = map(int, parts)
        if a < 256 and b < 256 and c < 256 and d < 256:
            return (a << 24) | (b << 16) | (c << 8) | d
        return None
    value = 0
    for i in range(4):
        byte = 0
        if i < len(parts):
            byte = _strtoul(parts[i])
            if byte is None or byte > 255:
                return None
        value = (value << 8) | byte
    return value


def _prefix_mask(bits: int) -> int:
    return (0xFFFFFFFF << (32 - bits)) & 0xFFFFFFFF if bits else 0


def _mask_bits(mask: int) -> int | None:
    """The prefix length of a contiguous mask, else None."""
    bits = mask.bit_count()
    return bits if _prefix_mask(bits) == mask else None


def parse_address(text: str, line: int | None = None, what: str = "-s") -> list[tuple[int, int]]:
    """`-s`/`-d` argument: ADDRESS[/MASK][,ADDRESS[/MASK]...] -> [(address, mask)], host bits cleared."""
    out = []
    for item in text.split(","):
        addr_text, _, mask_text = item.partition("/")
        if "/" in item:
            if "." in mask_text:
                mask = _xt_ipaddr(mask_text, is_mask=True)
                if mask is None:
                    raise _err(line, item, "a mask such as /24 or /255.255.255.0", what)
            else:
                bits = _strtoul(mask_text)
                if bits is None or bits > 32:
                    raise _err(line, item, "a prefix length from 0 to 32 after the /", what)
                mask = _prefix_mask(bits)
        else:
            mask = 0xFFFFFFFF
        addr = _xt_ipaddr(addr_text)
        if addr is None:
            raise _err(line, item, "a numeric IPv4 address such as 10.0.0.5 or 10.0.0.0/8 "
                                   "(the model does not resolve host names)", what)
        out.append((addr & mask, mask))
    return out


def format_address(addr: int, mask: int) -> str:
    """ADDRESS/LEN as iptables-save prints it (ADDRESS/DOTTED-MASK for a non-contiguous mask)."""
    bits = _mask_bits(mask)
    return f"{int_to_ip(addr)}/{bits if bits is not None else int_to_ip(mask)}"


def parse_port(text: str, line: int | None, what: str) -> int:
    """One port: a number (C syntax: 0x50 is 80) or a service name."""
    if text in SERVICES:
        return SERVICES[text]
    value = _strtoul(text)
    if value is None or value > 65535:
        raise _err(line, text, "a port from 0 to 65535 or a service name such as http", what)
    return value


def parse_port_range(text: str, line: int | None, what: str) -> tuple[int, int]:
    """tcp/udp `--sport`/`--dport`: PORT, FIRST:LAST, :LAST or FIRST: (the missing end is 0 or 65535)."""
    if ":" not in text:
        port = parse_port(text, line, what)
        return port, port
    first, _, last = text.partition(":")
    lo = parse_port(first, line, what) if first else 0
    hi = parse_port(last, line, what) if last else 65535
    if lo > hi:
        raise _err(line, text, "a range FIRST:LAST with FIRST <= LAST (invalid portrange (min > max))", what)
    return lo, hi


# The name getservbyport gives for a port (`iptables -L` without -n): Debian's /etc/services, common ports only.
PORT_NAMES = {20: "ftp-data", 21: "ftp", 22: "ssh", 23: "telnet", 25: "smtp", 53: "domain", 67: "bootps", 68: "bootpc",
              69: "tftp", 80: "http", 88: "kerberos", 110: "pop3", 123: "ntp", 143: "imap2", 161: "snmp", 389: "ldap",
              443: "https", 514: "syslog", 636: "ldaps", 993: "imaps", 995: "pop3s", 3306: "mysql", 5432: "postgresql",
              8080: "http-alt", 8081: "tproxy"}


def _port_name(port: int, numeric: bool) -> str:
    return str(port) if numeric else PORT_NAMES.get(port, str(port))


def _format_range(lo: int, hi: int) -> str:
    return str(lo) if lo == hi else f"{lo}:{hi}"


def parse_protocol(text: str, line: int | None = None) -> int:
    """`-p` argument: a name from /etc/protocols (any case), `all`, or a number 0-255."""
    value = _strtoul(text)
    if value is not None:
        if value > 255:
            raise _err(line, text, "a protocol number from 0 to 255 or a name such as tcp", "-p")
        return value
    num = _PROTO_BY_NAME.get(text.lower())
    if num is None:
        raise _err(line, text, "a protocol such as tcp, udp, icmp, all or a number 0-255", "-p")
    return num


def protocol_name(num: int) -> str:
    """How iptables-save names a protocol number (getprotobynumber, else the number)."""
    return PROTOCOLS.get(num, str(num))


def _iface_matcher(name: str):
    """A device-name test: `eth+` matches every name starting with `eth`."""
    if name.endswith("+"):
        prefix = name[:-1]
        return lambda dev: dev.startswith(prefix)
    return lambda dev: dev == name


def _check_ifname(text: str, line: int | None, what: str) -> str:
    if len(text) >= IFNAMSIZ:
        raise _err(line, text, f"a device name shorter than IFNAMSIZ ({IFNAMSIZ - 1} characters at most)", what)
    if not text or any(c.isspace() for c in text):
        raise _err(line, text, "a device name such as eth0, or a prefix with + such as veth+", what)
    return text


def _lround(x: float) -> int:
    return int(x + 0.5) if x >= 0 else -int(-x + 0.5)


def _parse_float01(text: str, line: int | None, what: str) -> float:
    if not re.fullmatch(r"[+]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", text):
        raise _err(line, text, "a probability from 0 to 1 such as 0.5", what)
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise _err(line, text, "a probability from 0 to 1 (out of range)", what)
    return value


def _parse_mark(text: str, line: int | None, what: str, allow_mask: bool = True) -> tuple[int, int | None]:
    value_text, slash, mask_text = text.partition("/")
    value = _strtoul(value_text)
    if value is None or value > 0xFFFFFFFF:
        raise _err(line, text, "a 32-bit value such as 0x4000 (bad integer value, or out of range)", what)
    if not slash:
        return value, None
    if not allow_mask:
        raise _err(line, text, "a value without a /mask", what)
    mask = _strtoul(mask_text)
    if mask is None or mask > 0xFFFFFFFF:
        raise _err(line, text, "VALUE/MASK with 32-bit numbers such as 0x4000/0x4000", what)
    return value, mask


# --- matches ------------------------------------------------------------------------------------


class Match(ABC):
    """One `-m NAME …` match of a rule: parses its options, prints them as iptables-save does, and
    compiles to a predicate on the packet being traced."""

    name = ""
    #: long option -> number of arguments; ALIASES maps other spellings to these names
    OPTIONS: ClassVar[dict[str, int]] = {}
    ALIASES: ClassVar[dict[str, str]] = {}
    INVERTIBLE: frozenset[str] = frozenset()
    #: options that may be given more than once
    REPEATABLE: frozenset[str] = frozenset()

    def __init__(self, line: int | None = None) -> None:
        self.line = line
        self.seen: set[str] = set()
        self.rule: Rule | None = None  # the rule being read (some options check what came before them)

    def option(self, opt: str, args: list[str], invert: bool) -> None:
        """Take one option (its canonical long name) with its arguments."""
        if invert and opt not in self.INVERTIBLE:
            raise _err(self.line, f"! --{opt}", f"--{opt} cannot be negated", self.name)
        if opt in self.seen and opt not in self.REPEATABLE:
            raise _err(self.line, f"--{opt}", f'option "--{opt}" can only be used once', self.name)
        self.seen.add(opt)
        self.parse(opt, args, invert)

    @abstractmethod
    def parse(self, opt: str, args: list[str], invert: bool) -> None:
        """Take one option of this match (already checked against OPTIONS) with its arguments."""

    def finish(self, rule: Rule) -> None:
        """Checks once the whole rule is read (e.g. `-m tcp` needs `-p tcp`)."""

    def save(self) -> str:
        """The options as iptables-save prints them, each preceded by a space."""
        return ""

    def predicate(self):
        """A function of the traced packet returning True when the match holds (None: always)."""
        return

    def inline(self, prefix: str) -> tuple[list[str], dict[str, object]]:
        """The match as expressions on `p` for the rule's compiled check (default: call the predicate)."""
        pred = self.predicate()
        if pred is None:
            return [], {}
        return [f"{prefix}f(p)"], {f"{prefix}f": pred}

    def reset(self) -> None:
        """Forget state kept between packets (the nth counters)."""

    def describe(self, numeric: bool = True) -> str:
        """The words `iptables -L` shows for this match."""
        return ""

    def _need(self, rule: Rule, protos: tuple[int, ...], message: str, allow_inverted: bool = True) -> None:
        # iptables-nft turns tcp/udp/icmp into payload matches: `! -p tcp -m tcp` loads (the legacy kernel refuses it)
        if rule.proto not in protos or (rule.proto_inv and not allow_inverted):
            raise _err(self.line, f"-m {self.name}", message, self.name)


class _Ports(Match):
    """tcp and udp: --sport/--dport ranges (and, for tcp, flags and options)."""

    OPTIONS: ClassVar[dict[str, int]] = {"sport": 1, "dport": 1}
    ALIASES: ClassVar[dict[str, str]] = {"source-port": "sport", "destination-port": "dport"}
    INVERTIBLE = frozenset({"sport", "dport"})
    proto_num = 6

    def __init__(self, line: int | None = None) -> None:
        super().__init__(line)
        self.spts, self.dpts = (0, 65535), (0, 65535)
        self.sinv = self.dinv = False

    def parse(self, opt: str, args: list[str], invert: bool) -> None:
        if opt == "sport":
            self.spts, self.sinv = parse_port_range(args[0], self.line, "--sport"), invert
        elif opt == "dport":
            self.dpts, self.dinv = parse_port_range(args[0], self.line, "--dport"), invert

    def finish(self, rule: Rule) -> None:
        self._need(rule, (self.proto_num,), f"-p {self.name} before -m {self.name} "
                   f"({self.name.upper()} match requires '-p {self.name}')")

    def save(self) -> str:
        out = ""
        if self.spts != (0, 65535):
            out += (" !" if self.sinv else "") + " --sport " + _format_range(*self.spts)
        if self.dpts != (0, 65535):
            out += (" !" if self.dinv else "") + " --dport " + _format_range(*self.dpts)
        return out

    def _port_tests(self) -> list:
        tests = []
        if self.spts != (0, 65535):
            lo, hi, inv = *self.spts, self.sinv
            tests.append(lambda p: (lo <= p.sport <= hi) != inv)
        if self.dpts != (0, 65535):
            lo2, hi2, inv2 = *self.dpts, self.dinv
            tests.append(lambda p: (lo2 <= p.dport <= hi2) != inv2)
        return tests

    def predicate(self):
        tests = self._port_tests()
        return _all_of([lambda p: p.fragoff == 0 and p.sport is not None, *tests])

    def inline(self, prefix: str) -> tuple[list[str], dict[str, object]]:
        if getattr(self, "tcp_option", None) is not None:
            return super().inline(prefix)
        exprs, consts = ["p.sport is not None", "p.fragoff == 0"], {}
        for side, (lo, hi), inv in (("s", self.spts, self.sinv), ("d", self.dpts, self.dinv)):
            if (lo, hi) == (0, 65535):
                continue
            attr = "p.sport" if side == "s" else "p.dport"
            test = f"{attr} == {prefix}{side}lo" if lo == hi else f"{prefix}{side}lo <= {attr} <= {prefix}{side}hi"
            exprs.append(f"not ({test})" if inv else test)
            consts[f"{prefix}{side}lo"] = lo
            if lo != hi:
                consts[f"{prefix}{side}hi"] = hi
        flags = getattr(self, "flags", None)
        if flags is not None:
            mask, comp, inv = flags
            exprs.append(f"(p.tcpflags & {prefix}fm) {'!=' if inv else '=='} {prefix}fc")
            consts[f"{prefix}fm"], consts[f"{prefix}fc"] = mask, comp
        return exprs, consts

    def describe(self, numeric: bool = True) -> str:
        words = [self.name]
        for label, (lo, hi), inv in (("spt", self.spts, self.sinv), ("dpt", self.dpts, self.dinv)):
            if (lo, hi) != (0, 65535):
                ports = _port_name(lo, numeric) + ("" if lo == hi else f":{_port_name(hi, numeric)}")
                words.append(f"{label}{'s' if lo != hi else ''}:{'!' if inv else ''}{ports}")
        return " ".join(words)


class TcpMatch(_Ports):
    name = "tcp"
    OPTIONS: ClassVar[dict[str, int]] = {"sport": 1, "dport": 1, "tcp-flags": 2, "syn": 0, "tcp-option": 1}
    INVERTIBLE = frozenset({"sport", "dport", "tcp-flags", "syn", "tcp-option"})

    def __init__(self, line: int | None = None) -> None:
        super().__init__(line)
        self.flags: tuple[int, int, bool] | None = None
        self.tcp_option: tuple[int, bool] | None = None

    def parse(self, opt: str, args: list[str], invert: bool) -> None:
        if opt in ("tcp-flags", "syn"):
            if self.flags is not None:
                raise _err(self.line, f"--{opt}", "only one of --tcp-flags and --syn", "tcp")
            if opt == "syn":
                self.flags = (0x17, 0x02, invert)
            else:
                self.flags = (self._flag_list(args[0]), self._flag_list(args[1]), invert)
        elif opt == "tcp-option":
            self.tcp_option = (_uint(args[0], 0, 255, self.line, "--tcp-option"), invert)
        else:
            super().parse(opt, args, invert)

    def _flag_list(self, text: str) -> int:
        value = 0
        for word in text.split(","):
            name = word.upper()
            if name == "ALL":
                value |= 0x3F
            elif name == "NONE":
                continue
            elif name in TCP_FLAG_BITS:
                value |= TCP_FLAG_BITS[name]
            else:
                raise _err(self.line, word, "TCP flags from FIN,SYN,RST,PSH,ACK,URG,ALL,NONE", "--tcp-flags")
        return value

    def save(self) -> str:
        out = super().save()
        if self.tcp_option is not None:
            out += (" !" if self.tcp_option[1] else "") + f" --tcp-option {self.tcp_option[0]}"
        if self.flags is not None:
            mask, comp, inv = self.flags
            out += (" !" if inv else "") + f" --tcp-flags {_tcp_flag_names(mask)} {_tcp_flag_names(comp)}"
        return out

    def predicate(self):
        tests = [lambda p: p.fragoff == 0 and p.sport is not None, *self._port_tests()]
        if self.tcp_option is not None:
            kind, inv = self.tcp_option
            tests.append(lambda p: (kind in p.tcpopts) != inv)
        if self.flags is not None:
            mask, comp, finv = self.flags
            tests.append(lambda p: ((p.tcpflags & mask) == comp) != finv)
        return _all_of(tests)

    def describe(self, numeric: bool = True) -> str:
        text = super().describe(numeric)
        if self.flags is not None:
            mask, comp, inv = self.flags
            text += f" flags:{'!' if inv else ''}0x{mask:02X}/0x{comp:02X}"
        if self.tcp_option is not None:
            text += f" option={'!' if self.tcp_option[1] else ''}{self.tcp_option[0]}"
        return text


def _tcp_flag_names(bits: int) -> str:
    names = [n for n in _TCP_FLAG_ORDER if bits & TCP_FLAG_BITS[n]]
    return ",".join(names) if names else "NONE"


class UdpMatch(_Ports):
    name = "udp"
    proto_num = 17


class IcmpMatch(Match):
    name = "icmp"
    OPTIONS: ClassVar[dict[str, int]] = {"icmp-type": 1}
    INVERTIBLE = frozenset({"icmp-type"})

    def __init__(self, line: int | None = None) -> None:
        super().__init__(line)
        self.type, self.codes, self.inv = 0xFF, (0, 0xFF), False

    def parse(self, opt: str, args: list[str], invert: bool) -> None:
        self.type, lo, hi = parse_icmp_type(args[0], self.line)
        self.codes, self.inv = (lo, hi), invert

    def finish(self, rule: Rule) -> None:
        self._need(rule, (1,), "-p icmp before -m icmp")

    def save(self) -> str:
        out = " !" if self.inv else ""
        if self.type == 0xFF:
            return out + " --icmp-type any"
        out += f" --icmp-type {self.type}"
        if self.codes != (0, 0xFF):
            out += f"/{self.codes[0]}"
        return out

    def predicate(self):
        itype, (lo, hi), inv = self.type, self.codes, self.inv
        if itype == 0xFF:
            return lambda p: p.fragoff == 0 and p.itype is not None and not inv
        return lambda p: p.fragoff == 0 and p.itype is not None and (
            (p.itype == itype and lo <= p.icode <= hi) != inv)

    def describe(self, numeric: bool = True) -> str:
        if not numeric:
            name = next((n for n, v in ICMP_TYPES.items() if v == (self.type, *self.codes)), None)
            if name is not None:
                return f"icmp{' !' if self.inv else ''} {name}"
        code = "" if self.codes == (0, 0xFF) else f" code {self.codes[0]}"
        return f"icmp{' !' if self.inv else ''}type {self.type}{code}"


def parse_icmp_type(text: str, line: int | None = None) -> tuple[int, int, int]:
    """`--icmp-type`: a name (any unambiguous prefix, any case) or TYPE[/CODE] -> (type, code_min, code_max)."""
    hits = [name for name in ICMP_TYPES if name.lower().startswith(text.lower())] if text else []
    exact = [name for name in hits if name.lower() == text.lower()]
    if exact:
        return ICMP_TYPES[exact[0]]
    values = {ICMP_TYPES[name] for name in hits}
    if len(values) == 1:
        return values.pop()
    if len(values) > 1:
        raise _err(line, text, f"one ICMP type name (ambiguous: {', '.join(hits[:3])})", "--icmp-type")
    type_text, slash, code_text = text.partition("/")
    itype = _strtoul(type_text)
    if itype is None or itype > 255:
        raise _err(line, text, "an ICMP type name such as echo-request, or TYPE[/CODE] numbers 0-255", "--icmp-type")
    if not slash:
        return itype, 0, 0xFF
    code = _strtoul(code_text)
    if code is None or code > 255:
        raise _err(line, text, "an ICMP code from 0 to 255 after the /", "--icmp-type")
    return itype, code, code


class MultiportMatch(Match):
    name = "multiport"
    OPTIONS: ClassVar[dict[str, int]] = {"sports": 1, "dports": 1, "ports": 1}
    ALIASES: ClassVar[dict[str, str]] = {"source-ports": "sports", "destination-ports": "dports"}
    INVERTIBLE = frozenset({"sports", "dports", "ports"})

    def __init__(self, line: int | None = None) -> None:
        super().__init__(line)
        self.kind: str | None = None
        self.ports: list[tuple[int, int]] = []
        self.inv = False

    def parse(self, opt: str, args: list[str], invert: bool) -> None:
        if self.rule is not None:  # libxt_multiport checks the protocol given so far, when it reads its ports
            self._need(self.rule, (6, 17, 33, 132, 136), "-p tcp, -p udp, -p udplite, -p sctp or -p dccp before "
                       "-m multiport's ports (multiport needs `-p tcp', `-p udp', `-p udplite', `-p sctp' or `-p dccp')",
                       allow_inverted=False)
        if self.kind is not None:
            names = {"sports": "--source-ports", "dports": "--destination-ports", "ports": "--ports"}
            raise _err(self.line, f"--{opt}", f'option "{names[opt]}" cannot be used together with '
                       f'"{names[self.kind]}"', "multiport")
        self.kind, self.inv = opt, invert
        slots = 0
        for item in args[0].split(","):
            if ":" in item:
                first, _, last = item.partition(":")
                lo, hi = parse_port(first, self.line, f"--{opt}"), parse_port(last, self.line, f"--{opt}")
                if lo >= hi:
                    raise _err(self.line, item, "a range FIRST:LAST with FIRST < LAST (invalid portrange specified)",
                               f"--{opt}")
                slots += 2
            else:
                lo = hi = parse_port(item, self.line, f"--{opt}")
                slots += 1
            self.ports.append((lo, hi))
        if slots > 15:
            raise _err(self.line, args[0], "at most 15 ports, a range counting as two (too many ports specified)",
                       f"--{opt}")

    def finish(self, rule: Rule) -> None:
        if self.kind is None:
            raise _err(self.line, "-m multiport", "one of --sports, --dports or --ports", "multiport")
        self._need(rule, (6, 17, 33, 132, 136),
                   "-p tcp, -p udp, -p udplite, -p sctp or -p dccp before -m multiport", allow_inverted=False)

    def save(self) -> str:
        ports = ",".join(str(lo) if lo == hi else f"{lo}:{hi}" for lo, hi in self.ports)
        return (" !" if self.inv else "") + f" --{self.kind} {ports}"

    def predicate(self):
        ranges, inv, kind = tuple(self.ports), self.inv, self.kind

        def test(p) -> bool:
            if p.fragoff or p.sport is None:
                return False
            for lo, hi in ranges:
                if (kind != "dports" and lo <= p.sport <= hi) or (kind != "sports" and lo <= p.dport <= hi):
                    return not inv
            return inv

        return test

    def describe(self, numeric: bool = True) -> str:
        ports = ",".join(_port_name(lo, numeric) + ("" if lo == hi else f":{_port_name(hi, numeric)}")
                         for lo, hi in self.ports)
        return f"multiport {self.kind} {' !' if self.inv else ''}{ports}"


class CommentMatch(Match):
    name = "comment"
    OPTIONS: ClassVar[dict[str, int]] = {"comment": 1}

    def __init__(self, line: int | None = None) -> None:
        super().__init__(line)
        self.comment: str | None = None

    def parse(self, opt: str, args: list[str], invert: bool) -> None:
        if len(args[0]) > 255:
            raise _err(self.line, args[0][:40] + "…", "a comment of at most 255 characters", "--comment")
        self.comment = args[0]

    def finish(self, rule: Rule) -> None:
        if self.comment is None:
            raise _err(self.line, "-m comment", "--comment TEXT", "comment")

    def save(self) -> str:
        return " --comment " + quote(self.comment or "")

    def describe(self, numeric: bool = True) -> str:
        return f"/* {self.comment} */"


class ConntrackMatch(Match):
    name = "conntrack"
    OPTIONS: ClassVar[dict[str, int]] = {"ctstate": 1, "ctproto": 1, "ctorigsrc": 1, "ctorigdst": 1, "ctreplsrc": 1, "ctrepldst": 1,
               "ctorigsrcport": 1, "ctorigdstport": 1, "ctreplsrcport": 1, "ctrepldstport": 1, "ctstatus": 1,
               "ctdir": 1}
    INVERTIBLE = frozenset(OPTIONS) - {"ctdir"}
    _ADDR = ("ctorigsrc", "ctorigdst", "ctreplsrc", "ctrepldst")
    _PORT = ("ctorigsrcport", "ctorigdstport", "ctreplsrcport", "ctrepldstport")

    def __init__(self, line: int | None = None) -> None:
        super().__init__(line)
        self.values: dict[str, object] = {}
        self.inv: set[str] = set()

    def parse(self, opt: str, args: list[str], invert: bool) -> None:
        arg = args[0]
        if opt == "ctstate":
            self.values[opt] = _state_bits(arg, CTSTATE_NAMES, self.line, "--ctstate")
        elif opt == "ctstatus":
            bits = 0
            for word in arg.split(","):
                if word.upper() not in CTSTATUS_NAMES:
                    raise _err(self.line, word, "statuses from " + ",".join(CTSTATUS_NAMES), "--ctstatus")
                bits |= 1 << CTSTATUS_NAMES.index(word.upper())
            self.values[opt] = bits
        elif opt == "ctproto":
            self.values[opt] = parse_protocol(arg, self.line)
        elif opt in self._ADDR:
            (addr, mask), *more = parse_address(arg, self.line, f"--{opt}")
            if more:
                raise _err(self.line, arg, "one address", f"--{opt}")
            self.values[opt] = (addr, mask)
        elif opt in self._PORT:
            first, _, last = arg.partition(":")
            lo = parse_port(first, self.line, f"--{opt}")
            hi = parse_port(last, self.line, f"--{opt}") if last else lo
            self.values[opt] = (lo, hi)
        elif opt == "ctdir":
            if arg.upper() not in ("ORIGINAL", "REPLY"):
                raise _err(self.line, arg, "ORIGINAL or REPLY", "--ctdir")
            self.values[opt] = arg.upper()
        if invert:
            self.inv.add(opt)

    def save(self) -> str:
        out = ""
        for opt in self.OPTIONS:
            if opt not in self.values:
                continue
            value = self.values[opt]
            out += " !" if opt in self.inv else ""
            if opt == "ctstate":
                text = ",".join(n for n in _CTSTATE_ORDER if value & CTSTATE_NAMES[n])
            elif opt == "ctstatus":
                text = ",".join(n for i, n in enumerate(CTSTATUS_NAMES) if value & (1 << i))
            elif opt in self._ADDR:
                addr, mask = value
                text = int_to_ip(addr) + ("" if mask == 0xFFFFFFFF else "/" + format_address(addr, mask).split("/")[1])
            elif opt in self._PORT:
                text = _format_range(*value)
            else:
                text = str(value)
            out += f" --{opt} {text}"
        return out

    def predicate(self):
        tests = []
        for opt, value in self.values.items():
            inv = opt in self.inv
            if opt == "ctstate":
                tests.append(lambda p, v=value, i=inv: bool(_ctstate_bits(p) & v) != i)
            elif opt == "ctstatus":
                tests.append(lambda p, v=value, i=inv: (p.ct is not None and bool(p.ct.status_bits() & v)) != i)
            elif opt == "ctproto":
                tests.append(lambda p, v=value, i=inv: (p.ct is not None and p.ct.proto == v) != i)
            elif opt in self._ADDR or opt in self._PORT:
                tests.append(_ct_tuple_test(opt, value, inv))
            elif opt == "ctdir":
                want = 0 if value == "ORIGINAL" else 1
                tests.append(lambda p, w=want: p.ct is not None and p.ctdir == w)
        return _all_of(tests)

    def describe(self, numeric: bool = True) -> str:
        return self.save().replace(" --", " ").strip()


def _ctstate_bits(p) -> int:
    """The packet's state bits as xt_conntrack sees them: its state, plus SNAT/DNAT when its
    connection is source/destination NATed."""
    bits = p.ctstate
    if p.ct is not None:
        status = p.ct.status
        if "SRC_NAT" in status:
            bits |= CT_SNAT
        if "DST_NAT" in status:
            bits |= CT_DNAT
    return bits


def _ct_tuple_test(opt: str, value, inv: bool):
    reply = "repl" in opt
    index = {"src": 0, "dst": 1, "srcport": 2, "dstport": 3}[opt[6:]]

    def test(p) -> bool:
        if p.ct is None:
            return inv
        tup = p.ct.reply if reply else p.ct.orig
        field_value = (tup.src, tup.dst, tup.sport, tup.dport)[index]
        if index < 2:
            addr, mask = value
            hit = (field_value & mask) == addr
        else:
            hit = value[0] <= field_value <= value[1]
        return hit != inv

    return test


def _state_bits(text: str, names: dict[str, int], line: int | None, what: str) -> int:
    bits = 0
    for word in text.split(","):
        if word.upper() not in names:
            raise _err(line, word, "states from " + ",".join(names), what)
        bits |= names[word.upper()]
    return bits


class StateMatch(Match):
    name = "state"
    OPTIONS: ClassVar[dict[str, int]] = {"state": 1}
    INVERTIBLE = frozenset({"state"})
    _NAMES: ClassVar[dict[str, int]] = {n: CTSTATE_NAMES[n] for n in _STATE_ORDER}

    def __init__(self, line: int | None = None) -> None:
        super().__init__(line)
        self.bits, self.inv = 0, False

    def parse(self, opt: str, args: list[str], invert: bool) -> None:
        self.bits, self.inv = _state_bits(args[0], self._NAMES, self.line, "--state"), invert

    def finish(self, rule: Rule) -> None:
        if "state" not in self.seen:
            raise _err(self.line, "-m state", "--state STATES", "state")

    def save(self) -> str:
        return (" !" if self.inv else "") + " --state " + ",".join(n for n in _STATE_ORDER if self.bits & CTSTATE_NAMES[n])

    def predicate(self):
        bits, inv = self.bits, self.inv
        return lambda p: bool(p.ctstate & bits) != inv

    def describe(self, numeric: bool = True) -> str:
        return self.save().replace(" --", " ").strip()


class MarkMatch(Match):
    name = "mark"
    OPTIONS: ClassVar[dict[str, int]] = {"mark": 1}
    INVERTIBLE = frozenset({"mark"})

    def __init__(self, line: int | None = None) -> None:
        super().__init__(line)
        self.mark, self.mask, self.inv = 0, 0xFFFFFFFF, False

    def parse(self, opt: str, args: list[str], invert: bool) -> None:
        value, mask = _parse_mark(args[0], self.line, "--mark")
        self.mask = 0xFFFFFFFF if mask is None else mask
        self.mark, self.inv = value, invert

    def finish(self, rule: Rule) -> None:
        if "mark" not in self.seen:
            raise _err(self.line, "-m mark", "--mark VALUE[/MASK]", "mark")

    def save(self) -> str:
        text = f"0x{self.mark:x}" + ("" if self.mask == 0xFFFFFFFF else f"/0x{self.mask:x}")
        return (" !" if self.inv else "") + f" --mark {text}"

    def predicate(self):
        mark, mask, inv = self.mark, self.mask, self.inv
        return lambda p: ((p.mark & mask) == mark) != inv

    def inline(self, prefix: str) -> tuple[list[str], dict[str, object]]:
        return ([f"(p.mark & {prefix}mm) {'!=' if self.inv else '=='} {prefix}mv"],
                {f"{prefix}mm": self.mask, f"{prefix}mv": self.mark})

    def describe(self, numeric: bool = True) -> str:
        text = f"0x{self.mark:x}" + ("" if self.mask == 0xFFFFFFFF else f"/0x{self.mask:x}")
        return f"mark match {'! ' if self.inv else ''}{text}"


class AddrtypeMatch(Match):
    name = "addrtype"
    OPTIONS: ClassVar[dict[str, int]] = {"src-type": 1, "dst-type": 1, "limit-iface-in": 0, "limit-iface-out": 0}
    INVERTIBLE = frozenset({"src-type", "dst-type"})

    def __init__(self, line: int | None = None) -> None:
        super().__init__(line)
        self.src = self.dst = 0
        self.src_inv = self.dst_inv = False
        self.limit_in = self.limit_out = False

    def parse(self, opt: str, args: list[str], invert: bool) -> None:
        if opt == "limit-iface-in":
            self.limit_in = True
        elif opt == "limit-iface-out":
            self.limit_out = True
        else:
            bits = 0
            for word in args[0].split(","):
                if word.upper() not in ADDRTYPES:
                    raise _err(self.line, word, "address types from " + ",".join(ADDRTYPES), f"--{opt}")
                bits |= 1 << ADDRTYPES.index(word.upper())
            if opt == "src-type":
                self.src, self.src_inv = bits, invert
            else:
                self.dst, self.dst_inv = bits, invert
        if self.limit_in and self.limit_out:
            raise _err(self.line, "--limit-iface-out", "only one of --limit-iface-in and --limit-iface-out", "addrtype")

    def finish(self, rule: Rule) -> None:
        if not (self.src or self.dst):
            raise _err(self.line, "-m addrtype", "--src-type or --dst-type", "addrtype")

    def save(self) -> str:
        out = ""
        for opt, bits, inv in (("src-type", self.src, self.src_inv), ("dst-type", self.dst, self.dst_inv)):
            if bits:
                out += (" !" if inv else "") + f" --{opt} " + ",".join(
                    n for i, n in enumerate(ADDRTYPES) if bits & (1 << i))
        if self.limit_in:
            out += " --limit-iface-in"
        if self.limit_out:
            out += " --limit-iface-out"
        return out

    def predicate(self):
        tests = []
        limit_in, limit_out = self.limit_in, self.limit_out
        for which, bits, inv in (("src", self.src, self.src_inv), ("dst", self.dst, self.dst_inv)):
            if not bits:
                continue

            def test(p, which=which, bits=bits, inv=inv) -> bool:
                dev = p.iif if limit_in else p.oif if limit_out else None
                kind = p.env.addr_type(p.src if which == "src" else p.dst, dev)
                return bool(bits & (1 << kind)) != inv

            tests.append(test)
        return _all_of(tests)

    def describe(self, numeric: bool = True) -> str:
        words = ["ADDRTYPE match"]
        for label, bits, inv in (("src-type", self.src, self.src_inv), ("dst-type", self.dst, self.dst_inv)):
            if bits:
                words.append(f"{label} {'!' if inv else ''}" + ",".join(n for i, n in enumerate(ADDRTYPES) if bits & (1 << i)))
        if self.limit_in:
            words.append("limit-in")
        if self.limit_out:
            words.append("limit-out")
        return " ".join(words)


class StatisticMatch(Match):
    name = "statistic"
    OPTIONS: ClassVar[dict[str, int]] = {"mode": 1, "probability": 1, "every": 1, "packet": 1}
    INVERTIBLE = frozenset({"probability", "every"})

    def __init__(self, line: int | None = None) -> None:
        super().__init__(line)
        self.mode: str | None = None
        self.probability = 0  # as the kernel stores it: lround(0x80000000 * p)
        self.every = 0
        self.packet = 0
        self.inv = False
        self.count = 0

    def parse(self, opt: str, args: list[str], invert: bool) -> None:
        arg = args[0]
        if opt == "mode":
            if arg not in ("random", "nth"):
                raise _err(self.line, arg, "random or nth", "--mode")
            self.mode = arg
        elif opt == "probability":
            if "every" in self.seen or "packet" in self.seen:
                raise _err(self.line, "--probability", 'option "--probability" cannot be used together with "--every"',
                           "statistic")
            self.probability = _lround(0x80000000 * _parse_float01(arg, self.line, "--probability"))
        elif opt == "every":
            if "probability" in self.seen:
                raise _err(self.line, "--every", 'option "--probability" cannot be used together with "--every"',
                           "statistic")
            self.every = _uint(arg, 1, 0xFFFFFFFF, self.line, "--every")
        else:
            self.packet = _uint(arg, 0, 0xFFFFFFFF, self.line, "--packet")
        self.inv = self.inv or invert

    def finish(self, rule: Rule) -> None:
        if self.mode is None:
            raise _err(self.line, "-m statistic", 'option "--mode" must be specified', "statistic")
        if self.mode == "random":
            if "probability" not in self.seen:
                raise _err(self.line, "-m statistic", "--probability must be specified when using random mode",
                           "statistic")
            if "every" in self.seen or "packet" in self.seen:
                raise _err(self.line, "--every", "--every and --packet only in nth mode", "statistic")
        else:
            if "probability" in self.seen:
                raise _err(self.line, "--probability", "--probability only in random mode", "statistic")
            if "every" not in self.seen:
                raise _err(self.line, "-m statistic", 'option "--packet" also requires "--every"'
                           if "packet" in self.seen else "--every N in nth mode", "statistic")
            if "packet" not in self.seen:
                raise _err(self.line, "--every", 'option "--every" also requires "--packet"', "statistic")
            if self.packet > self.every - 1:
                raise _err(self.line, str(self.packet), "the --packet p must be 0 <= p <= n-1", "statistic")
        self.reset()

    def reset(self) -> None:
        # libxt_statistic stores every-1 and starts the counter at (every-1) - packet.
        self.count = (self.every - 1) - self.packet if self.mode == "nth" else 0

    def save(self) -> str:
        inv = " !" if self.inv else ""
        if self.mode == "random":
            return f" --mode random{inv} --probability {self.probability / 0x80000000:.11f}"
        return f" --mode nth{inv} --every {self.every} --packet {self.packet}"

    def predicate(self):
        inv = self.inv
        if self.mode == "random":
            threshold = self.probability
            return lambda p: (p.env.rng.getrandbits(31) < threshold) != inv
        last = self.every - 1

        def nth(p) -> bool:
            self.count = 0 if self.count == last else self.count + 1
            return (self.count == 0) != inv

        return nth

    def describe(self, numeric: bool = True) -> str:
        if self.mode == "random":
            return f"statistic mode random{' !' if self.inv else ''} probability {self.probability / 0x80000000:.11f}"
        return f"statistic mode nth{' !' if self.inv else ''} every {self.every}" + (
            f" packet {self.packet}" if self.packet else "")


class RecentMatch(Match):
    name = "recent"
    OPTIONS: ClassVar[dict[str, int]] = {"set": 0, "rcheck": 0, "update": 0, "remove": 0, "seconds": 1, "reap": 0, "hitcount": 1, "rttl": 0,
               "name": 1, "rsource": 0, "rdest": 0, "mask": 1}
    INVERTIBLE = frozenset({"set", "rcheck", "update", "remove"})
    _COMMANDS = ("set", "rcheck", "update", "remove")

    def __init__(self, line: int | None = None) -> None:
        super().__init__(line)
        self.command: str | None = None
        self.inv = False
        self.seconds = self.hitcount = 0
        self.reap = self.rttl = False
        self.list_name = "DEFAULT"
        self.side = "rsource"
        self.mask = 0xFFFFFFFF

    def parse(self, opt: str, args: list[str], invert: bool) -> None:
        if opt in self._COMMANDS:
            if self.command is not None:
                raise _err(self.line, f"--{opt}", "only one of --set, --rcheck, --update, --remove", "recent")
            self.command, self.inv = opt, invert
        elif opt == "seconds":
            self.seconds = _uint(args[0], 1, 0xFFFFFFFF, self.line, "--seconds")
        elif opt == "hitcount":
            self.hitcount = _uint(args[0], 1, 20, self.line, "--hitcount (ip_pkt_list_tot is 20)")
        elif opt == "reap":
            self.reap = True
        elif opt == "rttl":
            self.rttl = True
        elif opt == "name":
            if not 0 < len(args[0]) <= 200 or any(c.isspace() for c in args[0]):
                raise _err(self.line, args[0], "a list name of 1 to 200 characters", "--name")
            self.list_name = args[0]
        elif opt in ("rsource", "rdest"):
            self.side = opt
        elif opt == "mask":
            mask = _xt_ipaddr(args[0], is_mask=True)
            if mask is None:
                raise _err(self.line, args[0], "a dotted mask such as 255.255.255.255", "--mask")
            self.mask = mask

    def finish(self, rule: Rule) -> None:
        if self.command is None:
            raise _err(self.line, "-m recent", "one of --set, --rcheck, --update or --remove", "recent")
        if (self.seconds or self.hitcount or self.rttl) and self.command not in ("rcheck", "update"):
            raise _err(self.line, f"--{self.command}", "--seconds, --hitcount and --rttl only with --rcheck or --update",
                       "recent")
        if self.reap and not self.seconds:
            raise _err(self.line, "--reap", "--reap only together with --seconds", "recent")

    def save(self) -> str:
        out = (" !" if self.inv else "") + f" --{self.command}"
        if self.seconds:
            out += f" --seconds {self.seconds}"
        if self.reap:
            out += " --reap"
        if self.hitcount:
            out += f" --hitcount {self.hitcount}"
        if self.rttl:
            out += " --rttl"
        return out + f" --name {self.list_name} --mask {int_to_ip(self.mask)} --{self.side}"

    def predicate(self):
        def test(p) -> bool:
            return p.env.recent_match(self, p)

        return test

    def describe(self, numeric: bool = True) -> str:
        words = ["recent:", {"set": "SET", "rcheck": "CHECK", "update": "UPDATE", "remove": "REMOVE"}[self.command or "set"]]
        if self.seconds:
            words.append(f"seconds: {self.seconds}")
        if self.reap:
            words.append("reap")
        if self.hitcount:
            words.append(f"hit_count: {self.hitcount}")
        if self.rttl:
            words.append("TTL-Match")
        words += [f"name: {self.list_name}", f"side: {'source' if self.side == 'rsource' else 'dest'}",
                  f"mask: {int_to_ip(self.mask)}"]
        return ("! " if self.inv else "") + " ".join(words)


MATCHES: dict[str, type[Match]] = {
    cls.name: cls for cls in (TcpMatch, UdpMatch, IcmpMatch, MultiportMatch, CommentMatch, ConntrackMatch,
                              StateMatch, MarkMatch, AddrtypeMatch, StatisticMatch, RecentMatch)
}
#: -p NAME loads these matches implicitly when one of their options follows
_IMPLICIT = {6: "tcp", 17: "udp", 1: "icmp"}


def _all_of(tests: list):
    tests = [t for t in tests if t is not None]
    if not tests:
        return None
    if len(tests) == 1:
        return tests[0]
    if len(tests) == 2:
        a, b = tests
        return lambda p: a(p) and b(p)
    tests_t = tuple(tests)

    def every(p) -> bool:
        for t in tests_t:
            if not t(p):
                return False
        return True

    return every


# --- targets ------------------------------------------------------------------------------------

V_CONTINUE, V_ACCEPT, V_DROP, V_REJECT = "CONTINUE", "ACCEPT", "DROP", "REJECT"


class Target:
    """An extension target (`-j NAME …`): parses and prints its options, and acts on the packet."""

    name = ""
    OPTIONS: ClassVar[dict[str, int]] = {}
    ALIASES: ClassVar[dict[str, str]] = {}
    INVERTIBLE: frozenset[str] = frozenset()
    REPEATABLE: frozenset[str] = frozenset()
    #: tables the target is allowed in (None: any) and hooks it may be reached from (None: any)
    TABLES: tuple[str, ...] | None = None
    HOOKS: tuple[str, ...] | None = None

    def __init__(self, line: int | None = None) -> None:
        self.line = line
        self.seen: set[str] = set()

    option = Match.option

    def parse(self, opt: str, args: list[str], invert: bool) -> None:
        raise _err(self.line, f"--{opt}", f"an option of {self.name}", self.name)  # pragma: no cover

    def finish(self, rule: Rule) -> None:
        """Checks once the rule is read."""

    def save(self) -> str:
        return ""

    def run(self, p, env) -> str:
        """Act on the packet; return V_CONTINUE, V_ACCEPT, V_DROP or V_REJECT."""
        return V_CONTINUE

    def describe(self, numeric: bool = True) -> str:
        return self.save().strip()


class RejectTarget(Target):
    name = "REJECT"
    OPTIONS: ClassVar[dict[str, int]] = {"reject-with": 1}
    TABLES = ("filter",)
    HOOKS = ("INPUT", "FORWARD", "OUTPUT")

    def __init__(self, line: int | None = None) -> None:
        super().__init__(line)
        self.with_ = "icmp-port-unreachable"

    def parse(self, opt: str, args: list[str], invert: bool) -> None:
        name = _REJECT_ALIASES.get(args[0], args[0])
        if name not in REJECT_WITH:
            raise _err(self.line, args[0], "one of " + ", ".join(REJECT_WITH), "--reject-with")
        self.with_ = name

    def finish(self, rule: Rule) -> None:
        if self.with_ == "tcp-reset" and (rule.proto != 6 or rule.proto_inv):
            raise _err(self.line, "tcp-reset", "-p tcp in a rule that resets with tcp-reset", "REJECT")

    def save(self) -> str:
        return f" --reject-with {self.with_}"

    def run(self, p, env) -> str:
        env.reject(p, self.with_)
        return V_REJECT

    def describe(self, numeric: bool = True) -> str:
        return f"reject-with {self.with_}"


class LogTarget(Target):
    name = "LOG"
    OPTIONS: ClassVar[dict[str, int]] = {"log-level": 1, "log-prefix": 1, "log-tcp-sequence": 0, "log-tcp-options": 0,
               "log-ip-options": 0, "log-uid": 0, "log-macdecode": 0}
    _FLAGS = ("log-tcp-sequence", "log-tcp-options", "log-ip-options", "log-uid", "log-macdecode")

    def __init__(self, line: int | None = None) -> None:
        super().__init__(line)
        self.level, self.prefix = 4, ""
        self.flags: set[str] = set()

    def parse(self, opt: str, args: list[str], invert: bool) -> None:
        if opt == "log-level":
            text = args[0]
            level = LOG_LEVELS.get(text.lower(), _strtoul(text))
            if level is None or not 0 <= level <= 7:
                raise _err(self.line, text, "a level 0-7 or a name such as warning or debug", "--log-level")
            self.level = level
        elif opt == "log-prefix":
            self.prefix = args[0][:29]  # the kernel keeps 29 characters (char prefix[30])
        else:
            self.flags.add(opt)

    def save(self) -> str:
        out = f" --log-prefix {quote(self.prefix)}" if self.prefix else ""
        if self.level != 4:
            out += f" --log-level {self.level}"
        return out + "".join(f" --{flag}" for flag in self._FLAGS if flag in self.flags)

    def run(self, p, env) -> str:
        env.log(p, self)
        return V_CONTINUE

    def describe(self, numeric: bool = True) -> str:
        bits = sum(1 << i for i, f in enumerate(self._FLAGS[:4]) if f in self.flags) | (
            0x20 if "log-macdecode" in self.flags else 0)
        return f"LOG flags {bits} level {self.level}" + (f' prefix "{self.prefix}"' if self.prefix else "")


class MarkTarget(Target):
    name = "MARK"
    OPTIONS: ClassVar[dict[str, int]] = {"set-xmark": 1, "set-mark": 1, "and-mark": 1, "or-mark": 1, "xor-mark": 1}

    def __init__(self, line: int | None = None) -> None:
        super().__init__(line)
        self.value: int | None = None
        self.mask = 0xFFFFFFFF
        self.op = "set-xmark"

    def parse(self, opt: str, args: list[str], invert: bool) -> None:
        if self.value is not None:
            raise _err(self.line, f"--{opt}", f'only one of --set-xmark, --set-mark, --and-mark, --or-mark, '
                       f'--xor-mark (option "--{self.op}" cannot be used together with "--{opt}")', "MARK")
        value, mask = _parse_mark(args[0], self.line, f"--{opt}", allow_mask=opt in ("set-xmark", "set-mark"))
        self.op = opt
        if opt == "set-xmark":
            self.value, self.mask = value, 0xFFFFFFFF if mask is None else mask
        elif opt == "set-mark":
            self.value, self.mask = value, 0xFFFFFFFF if mask is None else (value | mask)
        elif opt == "and-mark":
            self.value, self.mask = 0, ~value & 0xFFFFFFFF
        elif opt == "or-mark":
            self.value, self.mask = value, value
        else:
            self.value, self.mask = value, 0

    def finish(self, rule: Rule) -> None:
        if self.value is None:
            raise _err(self.line, "-j MARK", "one of the --set-xmark, --{and,or,xor,set}-mark options", "MARK")

    def save(self) -> str:
        return f" --set-xmark 0x{self.value:x}/0x{self.mask:x}"

    def run(self, p, env) -> str:
        before = p.mark
        p.mark = (p.mark & ~self.mask & 0xFFFFFFFF) ^ self.value
        if p.mark != before:
            env.rewrote(p, "MARK", f"{p.summary()} mark 0x{before:x}", f"{p.summary()} mark 0x{p.mark:x}")
        return V_CONTINUE

    def describe(self, numeric: bool = True) -> str:
        if self.mask == 0xFFFFFFFF:
            return f"MARK set 0x{self.value:x}"
        if self.value == 0:
            return f"MARK and 0x{~self.mask & 0xFFFFFFFF:x}"
        if self.value == self.mask:
            return f"MARK or 0x{self.value:x}"
        if self.mask == 0:
            return f"MARK xor 0x{self.value:x}"
        return f"MARK xset 0x{self.value:x}/0x{self.mask:x}"


@dataclass(frozen=True)
class NatRange:
    """The --to-source/--to-destination/--to-ports of a NAT target (nf_nat_range2)."""

    min_ip: int | None = None
    max_ip: int | None = None
    min_port: int | None = None
    max_port: int | None = None
    random: bool = False
    random_fully: bool = False
    persistent: bool = False

    def text(self) -> str:
        out = ""
        if self.min_ip is not None and self.max_ip is not None:
            out = int_to_ip(self.min_ip) + ("" if self.max_ip == self.min_ip else "-" + int_to_ip(self.max_ip))
        if self.min_port is not None:
            out += f":{self.min_port}" + ("" if self.max_port == self.min_port else f"-{self.max_port}")
        return out

    def ports_text(self) -> str:
        return f"{self.min_port}" + ("" if self.max_port == self.min_port else f"-{self.max_port}")


def _parse_ports_dash(text: str, line: int | None, what: str, lowest: int = 1) -> tuple[int, int]:
    first, dash, last = text.partition("-")
    lo = _strtoul(first, 10)
    hi = _strtoul(last, 10) if dash else lo
    if lo is None or hi is None or not lowest <= lo <= 65535 or not lowest <= hi <= 65535:
        raise _err(line, text, f"a port {lowest}-65535 or a range FIRST-LAST", what)
    if hi < lo:
        raise _err(line, text, "a range FIRST-LAST with FIRST <= LAST", what)
    return lo, hi


def parse_nat_to(text: str, line: int | None, what: str) -> NatRange:
    """`--to-destination`/`--to-source`: ADDRESS[-ADDRESS][:PORT[-PORT]]."""
    addr_text, colon, port_text = text.partition(":")
    first, dash, last = addr_text.partition("-")
    lo = _xt_ipaddr(first) if first else None
    hi = _xt_ipaddr(last) if dash else lo
    if (lo is None and (first or dash)) or (dash and hi is None) or (lo is None and not colon):
        raise _err(line, text, "ADDRESS[-ADDRESS][:PORT[-PORT]] such as 10.244.1.5:8080", what)
    ports = _parse_ports_dash(port_text, line, what, lowest=0) if colon else (None, None)
    return NatRange(lo, hi, *ports)


class _Nat(Target):
    TABLES = ("nat",)
    to_option = ""

    def __init__(self, line: int | None = None) -> None:
        super().__init__(line)
        self.range = NatRange()

    def parse(self, opt: str, args: list[str], invert: bool) -> None:
        r = self.range
        if opt == self.to_option:
            new = parse_nat_to(args[0], self.line, f"--{opt}")
            self.range = NatRange(new.min_ip, new.max_ip, new.min_port, new.max_port, r.random, r.random_fully,
                                  r.persistent)
        elif opt == "to-ports":
            lo, hi = _parse_ports_dash(args[0], self.line, "--to-ports")
            self.range = NatRange(r.min_ip, r.max_ip, lo, hi, r.random, r.random_fully, r.persistent)
        else:
            flags = {"random": r.random, "random-fully": r.random_fully, "persistent": r.persistent, opt: True}
            self.range = NatRange(r.min_ip, r.max_ip, r.min_port, r.max_port, flags["random"], flags["random-fully"],
                                  flags["persistent"])

    def finish(self, rule: Rule) -> None:
        # libxt_NAT/REDIRECT/MASQUERADE: ports need -p tcp, udp, sctp, dccp or icmp (the echo id); `!` is not looked at
        if self.range.min_port is not None and rule.proto not in (6, 17, 33, 132, 1):
            raise _err(self.line, self.range.text() or self.range.ports_text(),
                       "-p tcp, udp, sctp or dccp in a rule that maps ports "
                       "(Need TCP, UDP, SCTP or DCCP with port specification)", self.name)

    def _flags(self) -> str:
        r = self.range
        return (" --random" if r.random else "") + (" --random-fully" if r.random_fully else "") + (
            " --persistent" if r.persistent else "")

    def describe(self, numeric: bool = True) -> str:
        r = self.range
        words = []
        if r.min_ip is not None or r.min_port is not None:
            words.append("to:" + r.text())
        words += [w for w, on in (("random", r.random), ("random-fully", r.random_fully),
                                  ("persistent", r.persistent)) if on]
        return " ".join(words)


class _NatTo(_Nat):
    """DNAT and SNAT: the same target with the destination or the source as what it maps."""

    manip = ""

    def finish(self, rule: Rule) -> None:
        if self.range.min_ip is None and self.range.min_port is None:
            raise _err(self.line, f"-j {self.name}", f"--{self.to_option} ADDRESS[:PORT]", self.name)
        super().finish(rule)

    def save(self) -> str:
        return f" --{self.to_option} {self.range.text()}" + self._flags()

    def run(self, p, env) -> str:
        env.nat(p, self.manip, self.range, self)
        return V_ACCEPT


class DnatTarget(_NatTo):
    name = "DNAT"
    OPTIONS: ClassVar[dict[str, int]] = {"to-destination": 1, "random": 0, "persistent": 0}
    HOOKS = ("PREROUTING", "OUTPUT")
    to_option = "to-destination"
    manip = "dst"


class SnatTarget(_NatTo):
    name = "SNAT"
    OPTIONS: ClassVar[dict[str, int]] = {"to-source": 1, "random": 0, "random-fully": 0, "persistent": 0}
    HOOKS = ("POSTROUTING", "INPUT")
    to_option = "to-source"
    manip = "src"


class MasqueradeTarget(_Nat):
    name = "MASQUERADE"
    OPTIONS: ClassVar[dict[str, int]] = {"to-ports": 1, "random": 0, "random-fully": 0}
    HOOKS = ("POSTROUTING",)

    def save(self) -> str:
        r = self.range
        out = f" --to-ports {r.ports_text()}" if r.min_port is not None else ""
        return out + (" --random" if r.random else "") + (" --random-fully" if r.random_fully else "")

    def run(self, p, env) -> str:
        addr = env.masquerade_source(p)
        if addr is None:
            return V_DROP
        r = self.range
        env.nat(p, "src", NatRange(addr, addr, r.min_port, r.max_port, r.random, r.random_fully), self)
        return V_ACCEPT

    def describe(self, numeric: bool = True) -> str:
        r = self.range
        words = [f"masq ports: {r.ports_text()}"] if r.min_port is not None else []
        return " ".join(words + [w for w, on in (("random", r.random), ("random-fully", r.random_fully)) if on])


class RedirectTarget(_Nat):
    name = "REDIRECT"
    OPTIONS: ClassVar[dict[str, int]] = {"to-ports": 1, "random": 0}
    HOOKS = ("PREROUTING", "OUTPUT")

    def save(self) -> str:
        r = self.range
        out = f" --to-ports {r.ports_text()}" if r.min_port is not None else ""
        return out + (" --random" if r.random else "")

    def run(self, p, env) -> str:
        addr = env.redirect_address(p)
        if addr is None:
            return V_DROP
        r = self.range
        env.nat(p, "dst", NatRange(addr, addr, r.min_port, r.max_port, r.random), self)
        return V_ACCEPT

    def describe(self, numeric: bool = True) -> str:
        r = self.range
        words = [f"redir ports {r.ports_text()}"] if r.min_port is not None else []
        return " ".join(words + (["random"] if r.random else []))


class CtTarget(Target):
    """CT: only --notrack is modelled (no zones, helpers or timeouts); a bare `-j CT` does nothing."""

    name = "CT"
    OPTIONS: ClassVar[dict[str, int]] = {"notrack": 0}
    TABLES = ("raw",)

    def parse(self, opt: str, args: list[str], invert: bool) -> None:
        pass

    def save(self) -> str:
        return " --notrack" if "notrack" in self.seen else ""

    def run(self, p, env) -> str:
        if "notrack" in self.seen or self.name == "NOTRACK":
            env.notrack(p)
        return V_CONTINUE

    def describe(self, numeric: bool = True) -> str:
        if self.name == "NOTRACK":
            return "NOTRACK"
        return "CT notrack" if "notrack" in self.seen else "CT"


class NotrackTarget(CtTarget):
    name = "NOTRACK"
    OPTIONS: ClassVar[dict[str, int]] = {}

    def finish(self, rule: Rule) -> None:
        pass

    def save(self) -> str:
        return ""


class TraceTarget(Target):
    name = "TRACE"

    def run(self, p, env) -> str:
        p.nftrace = True
        return V_CONTINUE

    def describe(self, numeric: bool = True) -> str:
        return ""


TARGETS: dict[str, type[Target]] = {
    cls.name: cls for cls in (RejectTarget, LogTarget, MarkTarget, DnatTarget, SnatTarget, MasqueradeTarget,
                              RedirectTarget, CtTarget, NotrackTarget, TraceTarget)
}
# Names a user chain may not take: the standard verdicts (iptables-restore also refuses the name of a target
# extension it has already loaded, e.g. `-N MARK` after a `-j MARK` rule; the model does not follow that).
_RESERVED_TARGETS = frozenset({"ACCEPT", "DROP", "QUEUE", "RETURN"})


# --- rules, chains, tables ----------------------------------------------------------------------


@dataclass
class Counters:
    """A packet and a byte counter, as `iptables-save -c` prints them: [packets:bytes]."""

    packets: int = 0
    bytes: int = 0

    def add(self, length: int) -> None:
        self.packets += 1
        self.bytes += length

    def __str__(self) -> str:
        return f"[{self.packets}:{self.bytes}]"


@dataclass(eq=False, slots=True)
class Rule:
    """One rule: the IP-header part, the matches in order, and a target (or none)."""

    src: tuple[int, int] | None = None
    src_inv: bool = False
    dst: tuple[int, int] | None = None
    dst_inv: bool = False
    iif: str | None = None
    iif_inv: bool = False
    oif: str | None = None
    oif_inv: bool = False
    proto: int = 0
    proto_inv: bool = False
    frag: bool | None = None  # True: -f, False: ! -f
    matches: list[Match] = field(default_factory=list)
    target: str | None = None  # ACCEPT, DROP, RETURN, a chain name, or an extension target's name
    ext: Target | None = None
    goto: bool = False
    counters: Counters = field(default_factory=Counters)
    line: int | None = None
    check: object = None  # compiled predicate (None: matches every packet)

    def args(self) -> str:
        """The rule after `-A CHAIN`, in iptables-save's canonical order."""
        head, tail = self._parts()
        return f"{head} {tail}".strip()

    def _parts(self) -> tuple[str, str]:
        """(IP part and matches, target) in iptables-save's order: `iptables -S -v` puts `-c` between them."""
        words: list[str] = []
        for flag, value, inv in (("-s", self.src, self.src_inv), ("-d", self.dst, self.dst_inv)):
            if value is not None and (value[1] != 0 or inv):
                words += (["!"] if inv else []) + [flag, format_address(*value)]
        for flag, name, inv in (("-i", self.iif, self.iif_inv), ("-o", self.oif, self.oif_inv)):
            if name is not None and (name != "+" or inv):
                words += (["!"] if inv else []) + [flag, name]
        if self.proto:
            words += (["!"] if self.proto_inv else []) + ["-p", protocol_name(self.proto)]
        if self.frag is not None:
            words += ([] if self.frag else ["!"]) + ["-f"]
        head = " ".join(words)
        for match in self.matches:
            head += f" -m {match.name}{match.save()}"
        tail = ""
        if self.target is not None:
            tail = f"{'-g' if self.goto else '-j'} {self.target}" + (self.ext.save() if self.ext is not None else "")
        return head.strip(), tail

    def __str__(self) -> str:
        return self.args()

    @property
    def unconditional(self) -> bool:
        """No IP-header condition and no match: what the kernel's TRACE calls a policy/return entry
        when its target is a standard verdict."""
        return (self.src is None or self.src[1] == 0) and (self.dst is None or self.dst[1] == 0) and \
            self.iif in (None, "+") and self.oif in (None, "+") and not self.proto and self.frag is None and \
            not self.matches

    def compile(self) -> None:
        """Precompile the rule into one predicate on the traced packet (no parsing per packet): one
        Python function per rule, built from a template shared by every rule of the same shape."""
        exprs: list[str] = []
        consts: dict[str, object] = {}
        if self.src is not None and (self.src[1] or self.src_inv):
            exprs.append("(p.src & sm) != sa" if self.src_inv else "(p.src & sm) == sa")
            consts["sa"], consts["sm"] = self.src
        if self.dst is not None and (self.dst[1] or self.dst_inv):
            exprs.append("(p.dst & dm) != da" if self.dst_inv else "(p.dst & dm) == da")
            consts["da"], consts["dm"] = self.dst
        for attr, name, inv in (("iif", self.iif, self.iif_inv), ("oif", self.oif, self.oif_inv)):
            if name is not None and (name != "+" or inv):
                if name.endswith("+"):
                    exprs.append(f"{'not ' if inv else ''}p.{attr}.startswith({attr}_n)")
                    consts[f"{attr}_n"] = name[:-1]
                else:
                    exprs.append(f"p.{attr} {'!=' if inv else '=='} {attr}_n")
                    consts[f"{attr}_n"] = name
        if self.proto:
            exprs.append("p.proto != pr" if self.proto_inv else "p.proto == pr")
            consts["pr"] = self.proto
        if self.frag is not None:
            exprs.append("p.fragoff != 0" if self.frag else "p.fragoff == 0")
        for k, match in enumerate(self.matches):
            more, values = match.inline(f"m{k}_")
            exprs += more
            consts.update(values)
        self.check = _make_check(exprs, consts)


_FACTORIES: dict[tuple, object] = {}


def _make_check(exprs: list[str], consts: dict[str, object]):
    """One function testing all exprs (in order, stopping at the first false one) with consts bound.
    The source comes only from the templates above; a factory is compiled once per rule shape."""
    if not exprs:
        return None
    key = (tuple(exprs), tuple(consts))
    factory = _FACTORIES.get(key)
    if factory is None:
        body = " and ".join(f"({e})" for e in exprs)
        source = f"def make({', '.join(consts)}):\n    def check(p):\n        return {body}\n    return check\n"
        namespace: dict = {}
        exec(compile(source, "<netfilter rule>", "exec"), namespace)  # noqa: S102 - fixed templates only
        factory = _FACTORIES[key] = namespace["make"]
    return factory(**consts)


@dataclass(eq=False)
class Chain:
    """A chain: built-in ones have a policy (ACCEPT or DROP) and policy counters; user chains have None."""

    name: str
    policy: str | None = None
    rules: list[Rule] = field(default_factory=list)
    counters: Counters = field(default_factory=Counters)
    _index: object = field(default=None, repr=False)

    @property
    def builtin(self) -> bool:
        return self.policy is not None


_INDEX_FROM = 64  # chains this long get a destination index (kube-proxy's KUBE-SERVICES: one rule per service IP)


def _walk_order(chain: Chain, dst: int):
    """The rule positions a packet to dst must be tested against, in order: all of them for a short chain;
    for a long one, the rules that do not require one exact destination, plus those that require dst."""
    rules = chain.rules
    if len(rules) < _INDEX_FROM:
        return range(len(rules))
    key = tuple(map(id, rules))  # rebuilt whenever the chain's rules change
    if chain._index is None or chain._index[0] != key:
        by_dst: dict[int, list[int]] = {}
        generic: list[int] = []
        for position, rule in enumerate(rules):
            if rule.dst is not None and rule.dst[1] == 0xFFFFFFFF and not rule.dst_inv:
                by_dst.setdefault(rule.dst[0], []).append(position)
            else:
                generic.append(position)
        chain._index = (key, by_dst, generic) if len(generic) * 2 < len(rules) else (key, None, None)
    _, by_dst, generic = chain._index
    if by_dst is None:
        return range(len(rules))
    hits = by_dst.get(dst)
    if not hits:
        return generic
    return sorted(generic + hits) if generic else hits


@dataclass(eq=False)
class Table:
    """One table (`*filter` … `COMMIT`): its built-in chains, then user chains."""

    name: str
    chains: dict[str, Chain] = field(default_factory=dict)
    header: list[str] = field(default_factory=list)  # comment lines before `*name` (iptables-save's "# Generated by")
    footer: list[str] = field(default_factory=list)  # comment lines after COMMIT ("# Completed on")

    def __post_init__(self) -> None:
        for name in TABLE_CHAINS[self.name]:
            self.chains.setdefault(name, Chain(name, "ACCEPT"))

    def user_chains(self) -> list[Chain]:
        """User chains as iptables-save lists them: sorted by name (strcmp order)."""
        return sorted((c for c in self.chains.values() if not c.builtin), key=lambda c: c.name.encode())

    def save_lines(self, counters: bool = False) -> list[str]:
        lines = [*self.header, f"*{self.name}"]
        builtins = [self.chains[n] for n in TABLE_CHAINS[self.name]]
        users = self.user_chains()
        lines += [f":{c.name} {c.policy} {c.counters}" for c in builtins]
        lines += [f":{c.name} - [0:0]" for c in users]
        for chain in builtins + users:
            for rule in chain.rules:
                text = rule.args()
                lines.append((f"{rule.counters} " if counters else "") + f"-A {chain.name}" + (f" {text}" if text else ""))
        return [*lines, "COMMIT", *self.footer]


class Ruleset:
    """All tables of one network namespace, as `iptables-save` shows them.

    Besides the tables it keeps the state some matches carry between packets: the random
    generator of `-m statistic --mode random` (seeded: :meth:`seed`), the `-m recent` lists.
    The nth counters live in each rule's statistic match.
    """

    def __init__(self, seed: int = 0) -> None:
        self.tables: dict[str, Table] = {}
        self.rng = random.Random(seed)
        self.recent: dict[str, dict[int, list]] = {}

    def seed(self, value: int) -> None:
        """Reseed the generator behind `--mode random` (the kernel's is get_random_u32)."""
        self.rng = random.Random(value)

    def table(self, name: str) -> Table:
        """The table called name, created with its built-in chains if it is not there yet."""
        if name not in TABLE_CHAINS:
            raise LabInputError("table", name, "one of " + ", ".join(TABLE_CHAINS))
        if name not in self.tables:
            self.tables[name] = Table(name)
            order = {n: i for i, n in enumerate(SAVE_ORDER)}
            if all(t in order for t in self.tables):
                self.tables = {n: self.tables[n] for n in sorted(self.tables, key=order.__getitem__)}
        return self.tables[name]

    def to_iptables_save(self, counters: bool = False) -> str:
        """The ruleset as `iptables-save` prints it (`iptables-save -c` with counters=True)."""
        lines: list[str] = []
        for table in self.tables.values():
            lines += table.save_lines(counters)
        return "\n".join(lines) + "\n" if lines else ""

    def __str__(self) -> str:
        return self.to_iptables_save()

    def rules(self, table: str, chain: str) -> list[Rule]:
        """The rules of one chain."""
        tbl = self.tables.get(table)
        if tbl is None or chain not in tbl.chains:
            raise LabInputError("chain", f"{table}:{chain}", "a chain of a table in this ruleset")
        return tbl.chains[chain].rules

    def iptables(self, command: str, legacy: bool = False) -> str:
        """Run one `iptables …` command line on the ruleset and return what iptables prints.

        Changes: -A, -I, -D (by number or by rule), -N, -X, -P, -F, -Z, each with -t TABLE. Views: -L and
        -S (with -n, -v, -x, --line-numbers; `-nvL` style bundles too), as list_rules and list_specs print
        them. With legacy=True the pre-1.6 intrapositioned negation of the notes (`-p ! tcp`, `-s ! ADDR`)
        is read as `! -p tcp`; iptables 1.8 refuses it, and so does the model by default.
        """
        words = split_words(command)
        if words and words[0] in ("$>", "$", "#"):  # a shell prompt, as the notes write commands
            words = words[1:]
        if words and words[0] in ("iptables", "iptables-nft", "iptables-legacy"):
            words = words[1:]
        table = "filter"
        rest: list[str] = []
        view: dict[str, object] = {}
        i = 0
        while i < len(words):
            word = words[i]
            i += 1
            if word in ("-t", "--table"):
                if i >= len(words):
                    raise LabInputError("-t", command, "a table name after -t")
                table = words[i]
                i += 1
            elif word.startswith("-t") and len(word) > 2 and not word.startswith("--"):
                table = word[2:]
            elif word in ("--list", "--list-rules", "--numeric", "--verbose", "--exact", "--line-numbers", "--zero") or (
                    len(word) > 1 and word[0] == "-" and word[1] != "-" and set(word[1:]) <= set("LSnvxZ")):
                for flag in ([word] if word.startswith("--") else [f"-{c}" for c in word[1:]]):
                    view[flag] = True
                    if flag in ("-L", "--list", "-S", "--list-rules", "-Z", "--zero") and i < len(words) \
                            and not words[i].startswith("-"):
                        view["chain"] = words[i]
                        i += 1
            else:
                rest.append(word)
        tbl = self.table(table)
        listing = next((f for f in ("-L", "--list", "-S", "--list-rules") if f in view), None)
        zero = "-Z" in view or "--zero" in view
        if listing or zero:
            if rest:
                raise LabInputError("iptables", " ".join(rest), f"no other command or rule options with {listing or '-Z'}")
            chain = view.get("chain")
            if chain is not None and chain not in tbl.chains:
                raise LabInputError("chain", chain, f"a chain of table {table} (No chain/target/match by that name)")
            out = ""
            if listing in ("-L", "--list"):
                out = self.list_rules(table, chain, line_numbers="--line-numbers" in view,
                                      numeric="-n" in view or "--numeric" in view,
                                      verbose="-v" in view or "--verbose" in view, exact="-x" in view or "--exact" in view)
            elif listing:
                out = self.list_specs(table, chain, counters="-v" in view or "--verbose" in view)
            if zero:
                for c in [tbl.chains[chain]] if chain is not None else tbl.chains.values():
                    c.counters = Counters()
                    for rule in c.rules:
                        rule.counters = Counters()
            return out
        _apply_words(self, tbl, rest, None, legacy=legacy)
        return ""

    def zero(self) -> None:
        """`iptables -Z` on every table: rule and policy counters back to 0."""
        for table in self.tables.values():
            for chain in table.chains.values():
                chain.counters = Counters()
                for rule in chain.rules:
                    rule.counters = Counters()

    def reset_state(self) -> None:
        """Forget the nth counters and recent lists, as reloading the rules does."""
        self.recent.clear()
        for table in self.tables.values():
            for chain in table.chains.values():
                for rule in chain.rules:
                    for match in rule.matches:
                        match.reset()

    def rule_count(self) -> int:
        return sum(len(c.rules) for t in self.tables.values() for c in t.chains.values())

    def list_specs(self, table: str = "filter", chain: str | None = None, counters: bool = False) -> str:
        """`iptables -t TABLE -S [CHAIN] [-v]`: policies, user chains and rules in iptables' own words."""
        tbl = self.tables.get(table)
        if tbl is None:
            raise LabInputError("table", table, "a table of this ruleset: " + ", ".join(self.tables))
        chains = [tbl.chains[n] for n in TABLE_CHAINS[table]] + tbl.user_chains()
        if chain is not None:
            if chain not in tbl.chains:
                raise LabInputError("chain", chain, f"a chain of table {table}")
            chains = [tbl.chains[chain]]
        lines = []
        for c in chains:
            count = f" -c {c.counters.packets} {c.counters.bytes}" if counters else ""
            lines.append(f"-P {c.name} {c.policy}{count}" if c.builtin else f"-N {c.name}")
        for c in chains:
            for rule in c.rules:
                head, tail = rule._parts()
                count = f"-c {rule.counters.packets} {rule.counters.bytes}" if counters else ""
                lines.append(" ".join(w for w in (f"-A {c.name}", head, count, tail) if w))
        return "\n".join(lines)

    def list_rules(self, table: str = "filter", chain: str | None = None, line_numbers: bool = False,
                   numeric: bool = True, verbose: bool = True, exact: bool = True) -> str:
        """`iptables -t TABLE -L [CHAIN] [-n] [-v] [-x] [--line-numbers]` (by default -n -v -x).

        Without -n, iptables names addresses, protocols, ports and ICMP types: the model says "anywhere",
        names protocols, the common ports and the ICMP types, and prints addresses as numbers (it does
        no reverse DNS). Lines end without iptables' trailing blanks."""
        tbl = self.tables.get(table)
        if tbl is None:
            raise LabInputError("table", table, "a table of this ruleset: " + ", ".join(self.tables))
        chains = [tbl.chains[n] for n in TABLE_CHAINS[table]] + tbl.user_chains()
        if chain is not None:
            if chain not in tbl.chains:
                raise LabInputError("chain", chain, f"a chain of table {table}")
            chains = [tbl.chains[chain]]
        refs = _references(tbl)
        blocks = []
        for c in chains:
            if c.builtin:
                counts = ""
                if verbose:
                    counts = (f" {_num(c.counters.packets, exact, False)}packets, "
                              f"{_num(c.counters.bytes, exact, False)}bytes")
                head = f"Chain {c.name} (policy {c.policy}{counts})"
            else:
                head = f"Chain {c.name} ({refs.get(c.name, 0)} references)"
            title = ("num  " if line_numbers else "")
            if verbose:
                title += "    pkts      bytes " if exact else " pkts bytes "
            title += "target     prot opt " + ("in     out     " if verbose else "") + "source               destination"
            lines = [head, title]
            for i, rule in enumerate(c.rules, 1):
                lines.append((f"{i:<4} " if line_numbers else "") + _list_line(rule, numeric, verbose, exact))
            blocks.append("\n".join(lines))
        return "\n\n".join(blocks)


def _num(number: int, exact: bool, table: bool = True) -> str:
    """xtables_print_num: exact, or in K/M/G/T beyond 99999."""
    if exact:
        return f"{number:8} " if table else f"{number} "
    if number <= 99999:
        return f"{number:5} " if table else f"{number} "
    for unit in "KMGT":
        number = (number + 500) // 1000
        if number <= 9999 or unit == "T":
            return f"{number:4}{unit} " if table else f"{number}{unit} "
    return ""  # pragma: no cover


def _references(table: Table) -> dict[str, int]:
    refs: dict[str, int] = {}
    for chain in table.chains.values():
        for rule in chain.rules:
            if rule.target in table.chains and not table.chains[rule.target].builtin:
                refs[rule.target] = refs.get(rule.target, 0) + 1
    return refs


def _list_line(rule: Rule, numeric: bool = True, verbose: bool = True, exact: bool = True) -> str:
    """One rule as `iptables -L` prints it (print_firewall), without the trailing blanks."""
    def addr(value, inv):
        if value is None or value[1] == 0:
            text = "0.0.0.0/0" if numeric else "anywhere"
        else:
            text = int_to_ip(value[0]) if value[1] == 0xFFFFFFFF else format_address(*value)
        return ("!" if inv else " ") + f"{text:<19} "

    def iface(name, inv):
        return ("!" if inv else "") + (name if name not in (None, "+") or inv else "*" if numeric else "any")

    opt = ("!" if rule.frag is False else "-") + ("f" if rule.frag is not None else "-")
    target = "CT" if rule.target == "NOTRACK" else rule.target or ""  # NOTRACK is CT's alias in the kernel
    proto = str(rule.proto) if numeric else ("all" if rule.proto == 0 else protocol_name(rule.proto))
    text = (_num(rule.counters.packets, exact) + _num(rule.counters.bytes, exact) if verbose else "")
    text += f"{target:<9} {'!' if rule.proto_inv else ' '}{proto:<5}{opt} "
    if verbose:
        text += f" {iface(rule.iif, rule.iif_inv):<6} {iface(rule.oif, rule.oif_inv):<6} "
    text += f"{addr(rule.src, rule.src_inv)}{addr(rule.dst, rule.dst_inv)}" + ("[goto] " if rule.goto else "")
    extra = [m.describe(numeric) for m in rule.matches] + ([rule.ext.describe(numeric)] if rule.ext is not None else [])
    return (text + "".join(f" {e}" for e in extra if e)).rstrip()


# --- reading iptables-save / iptables-restore text and iptables commands --------------------------

_COMMANDS = {"A": "append", "I": "insert", "D": "delete", "N": "new-chain", "P": "policy", "F": "flush",
             "X": "delete-chain"}
_MAIN_SHORT = {"s": "source", "d": "destination", "p": "protocol", "i": "in-interface", "o": "out-interface",
               "j": "jump", "g": "goto", "m": "match", "f": "fragment", "c": "set-counters", "4": "ipv4",
               "6": "ipv6", **_COMMANDS}
_MAIN_LONG = {"source": "source", "src": "source", "destination": "destination", "dst": "destination",
              "protocol": "protocol", "in-interface": "in-interface", "out-interface": "out-interface",
              "jump": "jump", "goto": "goto", "match": "match", "fragment": "fragment",
              "set-counters": "set-counters", "ipv4": "ipv4", "ipv6": "ipv6", "append": "append",
              "insert": "insert", "delete": "delete", "new-chain": "new-chain", "policy": "policy", "flush": "flush",
              "delete-chain": "delete-chain"}
_MAIN_NARGS = {"source": 1, "destination": 1, "protocol": 1, "in-interface": 1, "out-interface": 1, "jump": 1,
               "goto": 1, "match": 1, "fragment": 0, "set-counters": 2, "ipv4": 0, "ipv6": 0}
_INVERTIBLE_MAIN = {"source", "destination", "protocol", "in-interface", "out-interface", "fragment"}


def check_chain_name(name: str, line: int | None = None) -> str:
    """A user chain name as iptables accepts it."""
    if not name:
        raise _err(line, name, "a chain name", "chain")
    if len(name) > MAX_CHAIN_NAME:
        raise _err(line, name, f"a chain name under {MAX_CHAIN_NAME + 1} characters (too long)", "chain")
    if name[0] in "-!":
        raise _err(line, name, f"a chain name not starting with `{name[0]}'", "chain")
    if name in _RESERVED_TARGETS:
        raise _err(line, name, "a chain name that does not clash with a target name", "chain")
    if any(c.isspace() or c == '"' for c in name):
        raise _err(line, name, "a chain name without blanks or quotes", "chain")
    return name


class _RuleReader:
    """Reads the words of one command (`-A CHAIN …`) as iptables' getopt loop does."""

    def __init__(self, table: Table, line: int | None, legacy: bool) -> None:
        self.table, self.line, self.legacy = table, line, legacy
        self.rule = Rule(line=line)
        self.command: str | None = None
        self.command_args: list[str] = []
        self.srcs: list[tuple[int, int]] | None = None
        self.dsts: list[tuple[int, int]] | None = None
        self.rule_options: list[str] = []

    def err(self, value: object, allowed: str, what: str | None = None) -> LabInputError:
        return _err(self.line, value, allowed, what)

    def owners(self) -> list:
        return ([self.rule.ext] if self.rule.ext is not None else []) + list(reversed(self.rule.matches))

    def resolve(self, name: str) -> tuple[object, str]:
        """The owner (None: iptables itself) and canonical name of a long option (getopt_long rules:
        exact name first, else an unambiguous prefix)."""
        for owner in self.owners():
            if name in owner.OPTIONS:
                return owner, name
            if name in owner.ALIASES:
                return owner, owner.ALIASES[name]
        if name in _MAIN_LONG:
            return None, _MAIN_LONG[name]
        found: dict[tuple[int, str], tuple[object, str]] = {}
        for owner in self.owners():
            for opt in [*owner.OPTIONS, *owner.ALIASES]:
                if name and opt.startswith(name):
                    canon = owner.ALIASES.get(opt, opt)
                    found[(id(owner), canon)] = (owner, canon)
        for opt, canon in _MAIN_LONG.items():
            if name and opt.startswith(name):
                found[(0, canon)] = (None, canon)
        if len(found) == 1:
            return next(iter(found.values()))
        if len(found) > 1:
            raise self.err(f"--{name}", "an unambiguous option (it abbreviates "
                           + " and ".join(sorted(f"--{c}" for _, c in found)) + ")")
        implicit = _IMPLICIT.get(self.rule.proto)
        if implicit and not any(m.name == implicit for m in self.rule.matches):
            match = MATCHES[implicit](self.line)
            match.rule = self.rule
            if name in match.OPTIONS or name in match.ALIASES or any(o.startswith(name) for o in match.OPTIONS):
                self.rule.matches.append(match)
                return self.resolve(name)
        raise self.err(f"--{name}", "an option of iptables or of a loaded -m match or -j target "
                       "(unknown option)")

    def read(self, words: list[str]) -> None:
        invert = False
        i = 0
        while i < len(words):
            word = words[i]
            i += 1
            if word == "!":
                if invert:
                    raise self.err("!", "one ! before an option (multiple ! flags not allowed)")
                invert = True
                continue
            if word.startswith("--") and len(word) > 2:
                name, eq, value = word[2:].partition("=")
                owner, opt = self.resolve(name)
                nargs = _MAIN_NARGS.get(opt, 1) if owner is None else owner.OPTIONS[opt]
                if owner is None and opt in _COMMAND_NAMES:
                    i = self.take_command(opt, words, i, value if eq else None)
                    if invert:
                        raise self.err("!", "no ! before a command")
                    continue
            elif len(word) == 2 and word[0] == "-" and word[1] in _MAIN_SHORT:
                owner, opt, value, eq = None, _MAIN_SHORT[word[1]], "", False
                if opt in _COMMAND_NAMES:
                    i = self.take_command(opt, words, i, value if eq else None)
                    if invert:
                        raise self.err("!", "no ! before a command")
                    continue
                nargs = _MAIN_NARGS[opt]
                if nargs == 0 and eq:
                    raise self.err(word, "one option per word")
            else:
                raise self.err(word, "an option such as -p, -s, -m or -j (Bad argument)")
            if eq:
                args = [value] + words[i:i + nargs - 1]
                i += nargs - 1
            else:
                args = words[i:i + nargs]
                i += nargs
            if len(args) < nargs:
                raise self.err(word, f"{nargs} argument{'s' if nargs > 1 else ''} after --{opt}")
            if nargs and args[0] == "!" and (owner is not None or opt in _INVERTIBLE_MAIN):
                if not self.legacy:
                    raise self.err(f"--{opt} !", f"iptables 1.8 refuses intrapositioned negation: write "
                                   f"`! --{opt} …` (or `! -{word[1]} …`)")
                if i >= len(words):
                    raise self.err(word, f"an argument after --{opt} !")
                invert, args = True, [words[i]] + args[1:]
                i += 1
            self.rule_options.append(opt)
            if owner is None:
                self.main_option(opt, args, invert)
            else:
                owner.option(opt, args, invert)
            invert = False
        if invert:
            raise self.err("!", "an option after !")

    def take_command(self, opt: str, words: list[str], i: int, attached: str | None) -> int:
        if self.command is not None:
            raise self.err(f"--{opt}", f"one command per line (already --{self.command})")
        self.command = opt
        args: list[str] = [attached] if attached else []
        need = {"append": 1, "insert": 1, "delete": 1, "new-chain": 1, "policy": 2, "flush": 0, "delete-chain": 0}[opt]
        while len(args) < need:
            if i >= len(words):
                raise self.err(f"--{opt}", f"{need} argument{'s' if need > 1 else ''} after --{opt}")
            args.append(words[i])
            i += 1
        optional = {"insert": "number", "delete": "number", "flush": "chain", "delete-chain": "chain"}.get(opt)
        if (optional and i < len(words) and not words[i].startswith("-") and words[i] != "!"
                and (optional == "chain" or words[i].isdigit())):
            args.append(words[i])
            i += 1
        self.command_args = args
        return i

    def main_option(self, opt: str, args: list[str], invert: bool) -> None:
        rule = self.rule
        if invert and opt not in _INVERTIBLE_MAIN:
            raise self.err(f"--{opt}", f"no ! before --{opt}" + (" (cannot have ! before -j)" if opt == "jump" else ""))
        if opt in ("source", "destination"):
            flag = "-s" if opt == "source" else "-d"
            if (self.srcs if opt == "source" else self.dsts) is not None:
                raise self.err(flag, f"one {flag} per rule (multiple {flag} flags not allowed)")
            values = parse_address(args[0], self.line, flag)
            if invert and len(values) > 1:
                raise self.err(args[0], f"one address after ! {flag}")
            if invert and values[0][1] == 0:
                raise self.err(args[0], f"an address other than 0.0.0.0/0 after ! {flag} (it would match nothing)")
            if opt == "source":
                self.srcs, rule.src_inv = values, invert
            else:
                self.dsts, rule.dst_inv = values, invert
        elif opt == "protocol":
            if rule.proto or "protocol" in self.rule_options[:-1]:
                raise self.err("-p", "one -p per rule (multiple -p flags not allowed)")
            rule.proto, rule.proto_inv = parse_protocol(args[0], self.line), invert
            if invert and rule.proto == 0:
                raise self.err(args[0], "a protocol other than all after ! -p (rule would never match protocol)")
        elif opt in ("in-interface", "out-interface"):
            flag = "-i" if opt == "in-interface" else "-o"
            if opt in self.rule_options[:-1]:
                raise self.err(flag, f"one {flag} per rule (multiple {flag} flags not allowed)")
            name = _check_ifname(args[0], self.line, flag)
            if opt == "in-interface":
                rule.iif, rule.iif_inv = name, invert
            else:
                rule.oif, rule.oif_inv = name, invert
        elif opt == "fragment":
            if opt in self.rule_options[:-1]:
                raise self.err("-f", "one -f per rule (multiple -f flags not allowed)")
            rule.frag = not invert
        elif opt == "match":
            name = args[0]
            cls = MATCHES.get(name)
            if cls is None:
                raise self.err(name, "a match the model knows: " + ", ".join(MATCHES), "-m")
            if name in ("tcp", "udp", "icmp") and any(m.name == name for m in rule.matches):
                # iptables-nft keeps one tcp/udp/icmp match per rule: `-m tcp` again continues it
                existing = next(m for m in rule.matches if m.name == name)
                rule.matches.remove(existing)
                rule.matches.append(existing)
                existing.seen.clear()  # options given again override (last one wins)
                return
            match = cls(self.line)
            match.rule = rule
            rule.matches.append(match)
        elif opt in ("jump", "goto"):
            if rule.target is not None:
                raise self.err(args[0], "one -j or -g per rule (multiple -j flags not allowed)")
            name = args[0]
            rule.goto = opt == "goto"
            if name in VERDICTS and not rule.goto:
                rule.target = name
            elif name in TARGETS and not rule.goto:
                rule.target, rule.ext = name, TARGETS[name](self.line)
            else:
                chain = self.table.chains.get(name)
                if chain is None:
                    raise self.err(name, f"a target ({', '.join(VERDICTS)}, {', '.join(TARGETS)}) or a chain of "
                                   f"table {self.table.name} declared before this line (Chain '{name}' does not exist)",
                                   "-g" if rule.goto else "-j")
                if chain.builtin:
                    raise self.err(name, "a user chain: a rule cannot jump to a built-in chain",
                                   "-g" if rule.goto else "-j")
                rule.target = name
        elif opt == "set-counters":
            pkts, nbytes = _strtoul(args[0], 10), _strtoul(args[1], 10)
            if pkts is None or nbytes is None:
                raise self.err(" ".join(args), "two counters PACKETS BYTES", "-c")
            rule.counters = Counters(pkts, nbytes)
        elif opt == "ipv6":
            raise self.err("-6", "IPv4 rules (this is iptables, not ip6tables)")

    def rules(self, chain: Chain) -> list[Rule]:
        """The finished rule(s): one per -s/-d address combination, checked as iptables checks them."""
        import copy

        rule = self.rule
        table = self.table.name
        for match in rule.matches:
            match.finish(rule)
        if rule.ext is not None:
            ext = rule.ext
            if ext.TABLES is not None and table not in ext.TABLES:
                raise self.err(f"-j {ext.name}", f"{ext.name} only in the {', '.join(ext.TABLES)} table")
            if chain.builtin and ext.HOOKS is not None and chain.name not in ext.HOOKS:
                raise self.err(f"-j {ext.name}", f"{ext.name} only in chains reached from {', '.join(ext.HOOKS)}")
            ext.finish(rule)
        if table == "nat" and rule.target == "DROP":
            raise self.err("-j DROP", 'a nat-table target other than DROP (the "nat" table is not intended for '
                           'filtering, the use of DROP is therefore inhibited)')
        if chain.builtin:
            if rule.oif is not None and chain.name in ("PREROUTING", "INPUT"):
                raise self.err("-o", f"no -o in {chain.name} (Can't use -o with {chain.name})")
            if rule.iif is not None and chain.name in ("OUTPUT", "POSTROUTING"):
                raise self.err("-i", f"no -i in {chain.name} (Can't use -i with {chain.name})")
            for match in rule.matches:
                if isinstance(match, AddrtypeMatch):
                    if match.limit_in and chain.name in ("OUTPUT", "POSTROUTING"):
                        raise self.err("--limit-iface-in", "--limit-iface-in only in PREROUTING, INPUT, FORWARD")
                    if match.limit_out and chain.name in ("PREROUTING", "INPUT"):
                        raise self.err("--limit-iface-out", "--limit-iface-out only in OUTPUT, POSTROUTING, FORWARD")
        out = []
        for src in self.srcs or [None]:
            for dst in self.dsts or [None]:
                one = copy.deepcopy(rule) if len(self.srcs or [0]) * len(self.dsts or [0]) > 1 else rule
                one.src, one.dst = src, dst
                one.counters = Counters(rule.counters.packets, rule.counters.bytes)
                one.compile()
                out.append(one)
        return out


_COMMAND_NAMES = frozenset(_COMMANDS.values())


def _apply_words(ruleset: Ruleset | None, table: Table, words: list[str], line: int | None,
                 legacy: bool = False, counters: Counters | None = None) -> None:
    """Run one command (the words of a restore line, or of `iptables …` after -t) on a table."""
    reader = _RuleReader(table, line, legacy)
    reader.read(words)
    command, args = reader.command, reader.command_args
    if command is None:
        raise _err(line, " ".join(words)[:60], "a command such as -A CHAIN (no command specified)")
    rule_opts = [o for o in reader.rule_options if o not in ("ipv4",)]
    if command == "delete":
        chain = table.chains.get(args[0])
        if chain is None:
            raise _err(line, args[0], f"a chain of table {table.name} (No chain/target/match by that name)")
        if len(args) > 1:
            if rule_opts:
                raise _err(line, f"--{rule_opts[0]}", "a rule number or a rule, not both")
            number = int(args[1])
            if not 1 <= number <= len(chain.rules):
                raise _err(line, number, f"a rule number from 1 to {len(chain.rules)} (Index of deletion too big)")
            del chain.rules[number - 1]
        else:
            wanted = [r.args() for r in reader.rules(chain)]
            present = [r.args() for r in chain.rules]
            if wanted[0] not in present:
                raise _err(line, wanted[0] or "-A " + chain.name, "a rule of the chain (Bad rule (does a matching "
                           "rule exist in that chain?))")
            del chain.rules[present.index(wanted[0])]
        return
    if command not in ("append", "insert") and rule_opts:
        raise _err(line, f"--{rule_opts[0]}", f"no rule options with --{command}")
    name = args[0] if args else None
    if command in ("append", "insert"):
        chain = table.chains.get(name)
        if chain is None:
            raise _err(line, name, f"a chain of table {table.name} (No chain/target/match by that name)")
        if counters is not None and "set-counters" not in reader.rule_options:
            reader.rule.counters = counters
        rules = reader.rules(chain)
        if command == "append":
            chain.rules.extend(rules)
        else:
            position = int(args[1]) if len(args) > 1 else 1
            if not 1 <= position <= len(chain.rules) + 1:
                raise _err(line, position, f"a rule number from 1 to {len(chain.rules) + 1} (Index of insertion too big)")
            chain.rules[position - 1:position - 1] = rules
    elif command == "new-chain":
        check_chain_name(name, line)
        if name in table.chains:
            raise _err(line, name, "a chain name not in use (Chain already exists)")
        table.chains[name] = Chain(name)
    elif command == "policy":
        chain = table.chains.get(name)
        if chain is None or not chain.builtin:
            raise _err(line, name, "a built-in chain (only built-in chains have a policy)")
        if args[1] not in POLICIES:
            raise _err(line, args[1], "ACCEPT or DROP (Bad policy name)")
        chain.policy = args[1]
    elif command == "flush":
        for chain in ([table.chains[name]] if name in table.chains else list(table.chains.values()) if name is None
                      else []):
            chain.rules.clear()
        if name is not None and name not in table.chains:
            raise _err(line, name, f"a chain of table {table.name}")
    elif command == "delete-chain":
        victims = [name] if name is not None else [c.name for c in table.chains.values() if not c.builtin]
        for victim in victims:
            chain = table.chains.get(victim)
            if chain is None or chain.builtin:
                raise _err(line, victim, "a user chain")
            if _references(table).get(victim):
                raise _err(line, victim, "a chain no rule jumps to (Too many links)")
            del table.chains[victim]
    if ruleset is not None:
        validate_table(table)


def validate_table(table: Table) -> None:
    """What the kernel checks when a table is committed: no loop of jumps reachable from a hook, and
    hook-limited targets (DNAT, REJECT, …) only in chains reachable from their hooks."""
    reached: dict[str, set[str]] = {}

    def walk(chain: Chain, hook: str, path: list[str]) -> None:
        for rule in chain.rules:
            if rule.ext is not None and rule.ext.HOOKS is not None and hook not in rule.ext.HOOKS:
                raise _err(rule.line, f"-j {rule.ext.name}", f"{rule.ext.name} only in chains reached from "
                           f"{', '.join(rule.ext.HOOKS)} (chain {chain.name} is reached from {hook})")
            if rule.target in table.chains and not table.chains[rule.target].builtin:
                if rule.target in path:
                    raise _err(rule.line, f"-j {rule.target}", "jumps without a loop (Too many links: "
                               + " -> ".join([*path, rule.target]) + ")")
                if hook not in reached.setdefault(rule.target, set()) or True:
                    reached[rule.target].add(hook)
                    walk(table.chains[rule.target], hook, [*path, rule.target])

    for hook in TABLE_CHAINS[table.name]:
        walk(table.chains[hook], hook, [hook])


def _parse_counters(text: str, line: int) -> Counters:
    inner = text[1:-1] if text.startswith("[") and text.endswith("]") else None
    pkts, colon, nbytes = (inner or "").partition(":")
    p, b = _strtoul(pkts, 10), _strtoul(nbytes, 10)
    if inner is None or not colon or p is None or b is None:
        raise _err(line, text, "counters as [PACKETS:BYTES]")
    return Counters(p, b)


def parse_iptables_save(text: str) -> Ruleset:
    """Read `iptables-save` (or `iptables-save -c`, or an `iptables-restore` file) into a Ruleset.

    Counters (`[p:b]` before a rule, or after a chain's policy) are kept. Each `*table` section
    replaces an earlier one of the same name, as iptables-restore's flush does. The `# Generated`
    comment before a table and the `# Completed` comment after it are kept, so a dump prints back
    unchanged. A bad line raises LabInputError naming its line number.
    """
    if not isinstance(text, str):
        raise LabInputError("rules", type(text).__name__, "the text iptables-save prints")
    ruleset = Ruleset()
    table: Table | None = None
    touched = False
    header: list[str] = []
    last: Table | None = None
    lines = text.split("\n")
    for number, raw in enumerate(lines, 1):
        line = raw.removesuffix("\r")
        if not line:
            continue
        if line.startswith("#"):
            # iptables-save's own comments are kept so that a dump prints back unchanged; others are dropped
            if table is None:
                if last is not None and line.startswith("# Completed on ") and not header:
                    last.footer.append(line)
                elif line.startswith("# Generated by "):
                    header.append(line)
            continue
        if not line.strip():
            raise _err(number, line, "a command, a chain, COMMIT or nothing (no command specified)")
        if table is None:
            if not line.startswith("*"):
                raise _err(number, line[:60], "*TABLE to open a table (such as *filter) before rules")
            name = (line[1:].split() or [""])[0]
            if name not in TABLE_CHAINS:
                raise _err(number, name, "a table: " + ", ".join(TABLE_CHAINS), "*table")
            table, touched = Table(name, header=header), False
            header = []
            continue
        if line.startswith("*"):
            raise _err(number, line, f"COMMIT to close table {table.name} first")
        if line.startswith("COMMIT") and line[6:].strip() == "":
            validate_table(table)
            if touched:
                ruleset.tables.pop(table.name, None)
                ruleset.tables[table.name] = table
                last = table
            else:
                last = None
            table = None
            continue
        touched = True
        if line.startswith(":"):
            words = line[1:].split()
            if len(words) < 2:
                raise _err(number, line, ":CHAIN POLICY [PACKETS:BYTES] (policy invalid)")
            name, policy = words[0], words[1]
            counters = _parse_counters(words[2], number) if len(words) > 2 else Counters()
            if name in TABLE_CHAINS[table.name]:
                if policy not in POLICIES:
                    raise _err(number, policy, "ACCEPT or DROP (Bad policy name)", f"chain {name}")
                table.chains[name].policy, table.chains[name].counters = policy, counters
            elif name not in table.chains:
                table.chains[name] = Chain(check_chain_name(name, number))
            continue
        body = line.lstrip()
        counters = None
        if body.startswith("["):
            prefix, _, body = body.partition(" ")
            counters = _parse_counters(prefix, number)
        _apply_words(None, table, split_words(body), number, counters=counters)
    if table is not None:
        raise _err(len(lines), f"*{table.name}", f"COMMIT at the end of table {table.name} (COMMIT expected)")
    return ruleset


def parse_iptables_command(command: str, ruleset: Ruleset | None = None, legacy: bool = False) -> Ruleset:
    """Apply one `iptables …` command line to a ruleset (a new one by default) and return it."""
    ruleset = ruleset if ruleset is not None else Ruleset()
    ruleset.iptables(command, legacy=legacy)
    return ruleset


# --- packets --------------------------------------------------------------------------------------

_TCP_SCAPY_FLAGS = {"F": 0x01, "S": 0x02, "R": 0x04, "P": 0x08, "A": 0x10, "U": 0x20, "E": 0x40, "C": 0x80}


@dataclass(frozen=True)
class PacketSpec:
    """A packet described in a line, as the command line takes it:

        tcp 10.0.0.5:34567 > 10.96.0.10:80 iif eth0 [flags S] [seq N] [ack N] [window N] [mark 0x1]
        udp 127.0.0.1:5000 > 10.96.0.10:53 local [len N]
        icmp 10.0.0.5 > 10.0.0.1 iif eth0 [type echo-request] [code 0] [id 1] [seq 1]

    Every packet may also take ttl N, tos N, ipid N (the IP id), len N (payload bytes), df, nodf.

    `iif DEV` says the packet arrives on DEV; `local` says the host itself sends it.
    """

    proto: int
    src: str
    dst: str
    sport: int | None = None
    dport: int | None = None
    iif: str | None = None
    local: bool = False
    flags: str = "S"
    seq: int = 1000
    ack: int = 0
    window: int = 64240
    mark: int = 0
    ttl: int = 64
    tos: int = 0
    ip_id: int = 0
    df: bool = True
    payload: int = 0
    icmp_type: int = 8
    icmp_code: int = 0
    icmp_id: int = 1
    icmp_seq: int = 1

    def __str__(self) -> str:
        name = PROTOCOLS.get(self.proto, str(self.proto))
        src = self.src + (f":{self.sport}" if self.sport is not None else "")
        dst = self.dst + (f":{self.dport}" if self.dport is not None else "")
        where = "local" if self.local else f"iif {self.iif}"
        extra = ""
        if self.proto == 6 and self.flags != "S":
            extra += f" flags {self.flags}"
        if self.proto == 1 and (self.icmp_type, self.icmp_code) != (8, 0):
            extra += f" type {self.icmp_type} code {self.icmp_code}"
        if self.proto == 1 and self.icmp_id != 1:
            extra += f" id {self.icmp_id}"
        if self.mark:
            extra += f" mark 0x{self.mark:x}"
        return f"{name} {src} > {dst} {where}{extra}"

    def packet(self):
        """The scapy IP packet, every header field set (checksums and lengths computed once)."""
        from scapy.layers.inet import ICMP, IP, TCP, UDP

        ip = IP(version=4, ihl=5, tos=self.tos, id=self.ip_id, flags="DF" if self.df else 0, frag=0, ttl=self.ttl,
                proto=self.proto, src=self.src, dst=self.dst)
        data = b"\x00" * self.payload
        if self.proto == 6:
            flags = sum(_TCP_SCAPY_FLAGS[c] for c in self.flags)
            l4 = TCP(sport=self.sport, dport=self.dport, seq=self.seq, ack=self.ack, dataofs=5, reserved=0,
                     flags=flags, window=self.window, urgptr=0, options=[])
        elif self.proto == 17:
            l4 = UDP(sport=self.sport, dport=self.dport)
        elif self.proto == 1:
            l4 = ICMP(type=self.icmp_type, code=self.icmp_code, id=self.icmp_id, seq=self.icmp_seq)
        else:
            return IP(bytes(ip / data))
        return IP(bytes(ip / l4 / data))


def parse_packet_spec(text: str) -> PacketSpec:
    """Read a packet line such as `tcp 10.0.0.5:34567 > 10.96.0.10:80 iif eth0` (see PacketSpec)."""
    if not isinstance(text, str):
        raise LabInputError("packet", type(text).__name__, "a packet line such as 'tcp 10.0.0.5:34567 > 10.96.0.10:80 iif eth0'")
    words = text.split()
    if len(words) < 4 or words[2] != ">":
        raise LabInputError("packet", text, "PROTO SRC[:PORT] > DST[:PORT] (iif DEV | local) [options], such as "
                                            "'tcp 10.0.0.5:34567 > 10.96.0.10:80 iif eth0'")
    proto_word = words[0].lower()
    num = _PROTO_BY_NAME.get(proto_word)
    if num is None and proto_word.isdigit() and int(proto_word) < 256:
        num = int(proto_word)
    if num is None or num == 0:
        raise LabInputError("packet.proto", words[0], "tcp, udp, icmp or another protocol name or number 1-255")
    ported = num in (6, 17)
    endpoints = []
    for role, word in (("src", words[1]), ("dst", words[3])):
        addr, colon, port = word.partition(":")
        try:
            ip_to_int(addr)
        except LabInputError:
            raise LabInputError(f"packet.{role}", word, "a dotted IPv4 address such as 10.0.0.5") from None
        if ported != bool(colon):
            raise LabInputError(f"packet.{role}", word, f"ADDRESS:PORT for {proto_word}" if ported
                                else f"an address without a port for {proto_word}")
        value = None
        if colon:
            if not (port.isdigit() and port.isascii()) or not 0 <= int(port) <= 65535:
                raise LabInputError(f"packet.{role}", word, "a port from 0 to 65535 after the colon")
            value = int(port)
        endpoints.append((addr, value))
    options: dict = {}
    rest = words[4:]
    i = 0
    numeric = {"seq": (0, 2**32 - 1), "ack": (0, 2**32 - 1), "window": (0, 65535), "mark": (0, 2**32 - 1),
               "ttl": (1, 255), "tos": (0, 255), "ipid": (0, 65535), "id": (0, 65535), "len": (0, 1400),
               "code": (0, 255)}
    while i < len(rest):
        key = rest[i]
        if key in ("local", "df", "nodf"):
            options[key] = True
            i += 1
            continue
        if i + 1 >= len(rest):
            raise LabInputError("packet", key, "iif DEV, local, flags F, seq N, ack N, mark N, ttl N, tos N, ipid N, "
                                               "len N, type T, code N, id N, df, nodf")
        value = rest[i + 1]
        i += 2
        if key == "iif":
            options["iif"] = _check_ifname(value, None, "packet.iif")
        elif key == "flags":
            if num != 6 or not value or any(c not in _TCP_SCAPY_FLAGS for c in value) or len(set(value)) != len(value):
                raise LabInputError("packet.flags", value, "TCP flags as letters from SAFRPUEC, such as S, SA, A, FA")
            options["flags"] = value
        elif key == "type":
            if num != 1:
                raise LabInputError("packet.type", value, "type only for icmp")
            try:
                itype, lo, _ = parse_icmp_type(value)
            except LabInputError:
                raise LabInputError("packet.type", value, "an ICMP type name or number such as echo-reply or 0") from None
            if itype == 0xFF and value.lower() != "255":
                raise LabInputError("packet.type", value, "one ICMP type, not any")
            options["type"] = itype
            if lo == _icmp_code_of(value):
                options.setdefault("code", lo)
        elif key in numeric:
            lo, hi = numeric[key]
            parsed = _strtoul(value)
            if parsed is None or not lo <= parsed <= hi:
                raise LabInputError(f"packet.{key}", value, f"a number from {lo} to {hi}")
            if key in ("code", "id") and num != 1:
                raise LabInputError(f"packet.{key}", value, f"{key} only for icmp (the IP id is ipid)")
            options[key] = parsed
        else:
            raise LabInputError("packet", key, "options iif, local, flags, seq, ack, window, mark, ttl, tos, ipid, len, "
                                               "type, code, id, df, nodf")
    if ("iif" in options) == bool(options.get("local")):
        raise LabInputError("packet", text, "exactly one of `iif DEV` (it arrives on DEV) and `local` (the host sends it)")
    (src, sport), (dst, dport) = endpoints
    df = "nodf" not in options  # Linux sockets set DF (IP_PMTUDISC_WANT), pings included
    kwargs = {"proto": num, "src": src, "dst": dst, "sport": sport, "dport": dport, "iif": options.get("iif"),
              "local": bool(options.get("local")), "df": df}
    for key, attr in (("flags", "flags"), ("seq", "seq"), ("ack", "ack"), ("window", "window"), ("mark", "mark"),
                      ("ttl", "ttl"), ("tos", "tos"), ("ipid", "ip_id"), ("len", "payload"), ("type", "icmp_type"),
                      ("code", "icmp_code"), ("id", "icmp_id")):
        if key in options:
            kwargs[attr] = options[key]
    if num == 1 and "seq" in options:
        kwargs["icmp_seq"], kwargs["seq"] = options["seq"] & 0xFFFF, 1000
    return PacketSpec(**kwargs)


def _icmp_code_of(name: str) -> int | None:
    entry = ICMP_TYPES.get(name)
    return entry[1] if entry and entry[1] == entry[2] else None


class _Pkt:
    """The fields of the traced packet the matches read (kept as ints for speed)."""

    __slots__ = (
        "ack",
        "ct",
        "ctdir",
        "ctnew",
        "ctstate",
        "df",
        "dport",
        "dst",
        "env",
        "fragoff",
        "icode",
        "iid",
        "iif",
        "inner",
        "ipid",
        "iseq",
        "itype",
        "length",
        "local",
        "mark",
        "mf",
        "nftrace",
        "oif",
        "proto",
        "related",
        "seq",
        "sport",
        "src",
        "tcpflags",
        "tcpopts",
        "tos",
        "ttl",
        "udplen",
        "urgptr",
        "window",
    )

    def summary(self) -> str:
        if self.sport is not None:
            return f"{protocol_name(self.proto)} {int_to_ip(self.src)}:{self.sport} > {int_to_ip(self.dst)}:{self.dport}"
        extra = f" type {self.itype} code {self.icode}" if self.itype is not None else ""
        if self.itype in (0, 8):
            extra += f" id {self.iid}"
        return f"{protocol_name(self.proto)} {int_to_ip(self.src)} > {int_to_ip(self.dst)}{extra}"

    def tuple(self) -> CtTuple:
        if self.proto == 1:
            return CtTuple(1, self.src, self.dst, self.iid or 0, ((self.itype or 0) << 8) | (self.icode or 0))
        if self.sport is not None:
            return CtTuple(self.proto, self.src, self.dst, self.sport, self.dport)
        return CtTuple(self.proto, self.src, self.dst, 0, 0)


def _pkt_from_ip(ip) -> _Pkt:
    from scapy.layers.inet import ICMP, IP, TCP, UDP

    if not isinstance(ip, IP):
        raise LabInputError("packet", type(ip).__name__, "a scapy IP packet, a PacketSpec or a packet line")
    ip = IP(bytes(ip))
    p = _Pkt()
    p.src, p.dst, p.proto = ip_to_int(ip.src), ip_to_int(ip.dst), ip.proto
    p.ttl, p.tos, p.ipid, p.length = ip.ttl, ip.tos, ip.id, ip.len
    p.df, p.mf, p.fragoff = bool(ip.flags & 2), bool(ip.flags & 1), ip.frag
    p.sport = p.dport = p.itype = p.icode = p.iid = p.iseq = p.inner = None
    p.tcpflags = p.seq = p.ack = p.window = p.urgptr = p.udplen = 0
    p.tcpopts = ()
    p.mark, p.iif, p.oif, p.ct, p.ctdir, p.ctstate, p.ctnew = 0, "", "", None, 0, CT_INVALID, False
    p.nftrace, p.env, p.local, p.related = False, None, False, False
    if p.fragoff == 0:
        if ip.proto == 6 and ip.haslayer(TCP):
            tcp = ip[TCP]
            p.sport, p.dport, p.tcpflags = tcp.sport, tcp.dport, int(tcp.flags) & 0xFF
            p.seq, p.ack, p.window, p.urgptr = tcp.seq, tcp.ack, tcp.window, tcp.urgptr
            p.tcpopts = tuple(_tcp_option_kinds(bytes(tcp)[20:tcp.dataofs * 4]))
        elif ip.proto == 17 and ip.haslayer(UDP):
            udp = ip[UDP]
            p.sport, p.dport, p.udplen = udp.sport, udp.dport, udp.len
        elif ip.proto == 1 and ip.haslayer(ICMP):
            icmp = ip[ICMP]
            p.itype, p.icode = icmp.type, icmp.code
            if icmp.type in ICMP_ERRORS:
                inner = bytes(icmp.payload)
                if len(inner) >= 20:
                    p.inner = _inner_pkt(inner)
            else:
                p.iid, p.iseq = icmp.id, icmp.seq
    return p


def _pkt_from_spec(spec: PacketSpec) -> _Pkt:
    """The traced fields straight from a PacketSpec (the scapy packet is built only when asked for)."""
    p = _Pkt()
    p.src, p.dst, p.proto = ip_to_int(spec.src), ip_to_int(spec.dst), spec.proto
    l4 = {6: 20, 17: 8, 1: 8}.get(spec.proto, 0)
    p.ttl, p.tos, p.ipid, p.length = spec.ttl, spec.tos, spec.ip_id, 20 + l4 + spec.payload
    p.df, p.mf, p.fragoff = spec.df, False, 0
    p.sport = p.dport = p.itype = p.icode = p.iid = p.iseq = p.inner = None
    p.tcpflags = p.seq = p.ack = p.window = p.urgptr = p.udplen = 0
    p.tcpopts = ()
    if spec.proto == 6:
        p.sport, p.dport, p.seq, p.ack, p.window = spec.sport, spec.dport, spec.seq, spec.ack, spec.window
        p.tcpflags = sum(_TCP_SCAPY_FLAGS[c] for c in spec.flags) & 0xFF
    elif spec.proto == 17:
        p.sport, p.dport, p.udplen = spec.sport, spec.dport, 8 + spec.payload
    elif spec.proto == 1:
        p.itype, p.icode = spec.icmp_type, spec.icmp_code
        if spec.icmp_type not in ICMP_ERRORS:
            p.iid, p.iseq = spec.icmp_id, spec.icmp_seq
    p.mark, p.iif, p.oif, p.ct, p.ctdir, p.ctstate, p.ctnew = 0, "", "", None, 0, CT_INVALID, False
    p.nftrace, p.env, p.local, p.related = False, None, False, False
    return p


def _tcp_option_kinds(raw: bytes) -> list[int]:
    kinds, i = [], 0
    while i < len(raw):
        kind = raw[i]
        if kind == 0:
            break
        kinds.append(kind)
        if kind == 1:
            i += 1
            continue
        if i + 1 >= len(raw) or raw[i + 1] < 2:
            break
        i += raw[i + 1]
    return kinds


def _inner_pkt(raw: bytes) -> _Pkt:
    """The IP header (and first bytes) an ICMP error quotes, as far as it goes."""
    p = _Pkt()
    ihl = (raw[0] & 0x0F) * 4
    p.src, p.dst = int.from_bytes(raw[12:16], "big"), int.from_bytes(raw[16:20], "big")
    p.proto, p.ttl, p.tos = raw[9], raw[8], raw[1]
    p.ipid, p.length = int.from_bytes(raw[4:6], "big"), int.from_bytes(raw[2:4], "big")
    frag = int.from_bytes(raw[6:8], "big")
    p.df, p.mf, p.fragoff = bool(frag & 0x4000), bool(frag & 0x2000), frag & 0x1FFF
    l4 = raw[ihl:]
    p.sport = p.dport = p.itype = p.icode = p.iid = p.iseq = p.inner = None
    p.tcpflags = p.seq = p.ack = p.window = p.urgptr = p.udplen = 0
    p.tcpopts = ()
    p.mark, p.iif, p.oif, p.ct, p.ctdir, p.ctstate, p.ctnew = 0, "", "", None, 0, CT_INVALID, False
    p.nftrace, p.env, p.local, p.related = False, None, False, False
    if p.proto in (6, 17) and len(l4) >= 4:
        p.sport, p.dport = int.from_bytes(l4[0:2], "big"), int.from_bytes(l4[2:4], "big")
        if p.proto == 17 and len(l4) >= 6:
            p.udplen = int.from_bytes(l4[4:6], "big")
        if p.proto == 6 and len(l4) >= 14:
            p.seq = int.from_bytes(l4[4:8], "big")
            p.tcpflags = l4[13]
    elif p.proto == 1 and len(l4) >= 8:
        p.itype, p.icode = l4[0], l4[1]
        p.iid, p.iseq = int.from_bytes(l4[4:6], "big"), int.from_bytes(l4[6:8], "big")
    return p


def _pkt_to_ip(p: _Pkt, original):
    """The original scapy packet with the traced packet's (rewritten) fields, rebuilt with fresh checksums."""
    from scapy.layers.inet import ICMP, IP, TCP, UDP

    ip = IP(bytes(original))
    ip.src, ip.dst, ip.ttl, ip.tos = int_to_ip(p.src), int_to_ip(p.dst), p.ttl, p.tos
    del ip.chksum
    if p.fragoff == 0:
        if ip.haslayer(TCP):
            ip[TCP].sport, ip[TCP].dport = p.sport, p.dport
            del ip[TCP].chksum
        elif ip.haslayer(UDP):
            ip[UDP].sport, ip[UDP].dport = p.sport, p.dport
            del ip[UDP].chksum
        elif ip.haslayer(ICMP):
            icmp = ip[ICMP]
            if p.iid is not None and icmp.type not in ICMP_ERRORS:
                icmp.id = p.iid
            elif p.inner is not None and icmp.type in ICMP_ERRORS:
                raw = bytearray(bytes(icmp.payload))
                _patch_inner(raw, p.inner)
                icmp.remove_payload()
                icmp.add_payload(bytes(raw))
            del icmp.chksum
    return IP(bytes(ip))


def _csum_update(csum: int, old: bytes, new: bytes) -> int:
    """RFC 1624 incremental update of a one's-complement checksum (the kernel's inet_proto_csum_replace)."""
    total = ~csum & 0xFFFF
    for i in range(0, len(old), 2):
        total += (~int.from_bytes(old[i:i + 2], "big") & 0xFFFF) + int.from_bytes(new[i:i + 2], "big")
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _patch_inner(raw: bytearray, inner: _Pkt) -> None:
    """Write the quoted packet's rewritten addresses and ports back into its bytes, updating its IP
    checksum and (as far as quoted) its TCP/UDP checksum as the kernel's NAT does."""
    ihl = (raw[0] & 0x0F) * 4
    old_addrs = bytes(raw[12:20])
    new_addrs = inner.src.to_bytes(4, "big") + inner.dst.to_bytes(4, "big")
    raw[12:20] = new_addrs
    raw[10:12] = _csum_update(int.from_bytes(raw[10:12], "big"), old_addrs, new_addrs).to_bytes(2, "big")
    l4 = ihl
    if inner.sport is not None and len(raw) >= l4 + 4:
        old_ports = bytes(raw[l4:l4 + 4])
        new_ports = inner.sport.to_bytes(2, "big") + inner.dport.to_bytes(2, "big")
        raw[l4:l4 + 4] = new_ports
        at = l4 + (16 if inner.proto == 6 else 6)
        if len(raw) >= at + 2:
            csum = int.from_bytes(raw[at:at + 2], "big")
            if inner.proto == 6 or csum != 0:  # a UDP checksum of 0 means none
                csum = _csum_update(csum, old_addrs + old_ports, new_addrs + new_ports)
                raw[at:at + 2] = (csum or (0xFFFF if inner.proto == 17 else 0)).to_bytes(2, "big")
    elif inner.proto == 1 and inner.iid is not None and len(raw) >= l4 + 6:
        old_id, new_id = bytes(raw[l4 + 4:l4 + 6]), inner.iid.to_bytes(2, "big")
        raw[l4 + 4:l4 + 6] = new_id
        if len(raw) >= l4 + 4:
            csum = int.from_bytes(raw[l4 + 2:l4 + 4], "big")
            raw[l4 + 2:l4 + 4] = _csum_update(csum, old_id, new_id).to_bytes(2, "big")


def _dump(p: _Pkt, flags: set[str], inner: bool = False) -> str:
    """The packet as nf_log prints it after IN=/OUT= (dump_ipv4_packet), without the trailing space."""
    words = [f"SRC={int_to_ip(p.src)}", f"DST={int_to_ip(p.dst)}",
             f"LEN={p.length}", f"TOS=0x{p.tos & 0x1E:02X}", f"PREC=0x{p.tos & 0xE0:02X}", f"TTL={p.ttl}", f"ID={p.ipid}"]
    if p.df:
        words.append("DF")
    if p.mf:
        words.append("MF")
    if p.fragoff:
        words.append(f"FRAG:{p.fragoff}")
    if p.proto == 6:
        words.append("PROTO=TCP")
        if not p.fragoff and p.sport is not None:
            words.append(f"SPT={p.sport} DPT={p.dport}")
            if "log-tcp-sequence" in flags:
                words.append(f"SEQ={p.seq} ACK={p.ack}")
            words += [f"WINDOW={p.window}", "RES=0x00"]
            words += [n for n, bit in (("CWR", 0x80), ("ECE", 0x40), ("URG", 0x20), ("ACK", 0x10), ("PSH", 0x08),
                                       ("RST", 0x04), ("SYN", 0x02), ("FIN", 0x01)) if p.tcpflags & bit]
            words.append(f"URGP={p.urgptr}")
    elif p.proto in (17, 136):
        words.append("PROTO=UDP" if p.proto == 17 else "PROTO=UDPLITE")
        if not p.fragoff and p.sport is not None:
            words.append(f"SPT={p.sport} DPT={p.dport} LEN={p.udplen}")
    elif p.proto == 1:
        words.append("PROTO=ICMP")
        if not p.fragoff and p.itype is not None:
            words.append(f"TYPE={p.itype} CODE={p.icode}")
            if p.itype in (0, 8):
                words.append(f"ID={p.iid} SEQ={p.iseq}")
            elif p.itype in (3, 4, 5, 11) and p.inner is not None and not inner:
                words.append("[" + _dump(p.inner, flags, inner=True) + "]")
    else:
        words.append(f"PROTO={p.proto}")
    if not inner:
        if "log-uid" in flags and p.local:
            words.append("UID=0 GID=0")
        if p.mark:
            words.append(f"MARK=0x{p.mark:x}")
    return " ".join(words)


# --- conntrack ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CtTuple:
    """A conntrack tuple: protocol, addresses, and ports (for ICMP: the echo id, and type<<8|code)."""

    proto: int
    src: int
    dst: int
    sport: int
    dport: int

    def inverse(self) -> CtTuple:
        if self.proto == 1:
            itype, code = self.dport >> 8, self.dport & 0xFF
            return CtTuple(1, self.dst, self.src, self.sport, (_ICMP_REPLY_TYPE.get(itype, itype) << 8) | code)
        return CtTuple(self.proto, self.dst, self.src, self.dport, self.sport)

    def text(self) -> str:
        """The tuple as `conntrack -L` prints it."""
        out = f"src={int_to_ip(self.src)} dst={int_to_ip(self.dst)}"
        if self.proto in (6, 17, 132, 33, 136):
            out += f" sport={self.sport} dport={self.dport}"
        elif self.proto == 1:
            out += f" type={self.dport >> 8} code={self.dport & 0xFF} id={self.sport}"
        return out


TCP_STATES = ("NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT", "LAST_ACK", "TIME_WAIT",
              "CLOSE", "SYN_SENT2")
TCP_TIMEOUTS = {"SYN_SENT": 120, "SYN_RECV": 60, "ESTABLISHED": 432000, "FIN_WAIT": 120, "CLOSE_WAIT": 60,
                "LAST_ACK": 30, "TIME_WAIT": 120, "CLOSE": 10, "SYN_SENT2": 120}
UDP_TIMEOUT, UDP_STREAM_TIMEOUT, ICMP_TIMEOUT, GENERIC_TIMEOUT = 30, 120, 30, 600
# nf_conntrack_proto_tcp.c tcp_conntracks[dir][flags][state]; IV invalid, IG ignore.
_S = dict(zip(("sNO", "sSS", "sSR", "sES", "sFW", "sCW", "sLA", "sTW", "sCL", "sS2"), TCP_STATES))
_S.update(sIV="IV", sIG="IG")
_TCP_TABLE_TEXT = {
    0: {"syn": "sSS sSS sIG sIG sIG sIG sIG sSS sSS sS2", "synack": "sIV sIV sSR sIV sIV sIV sIV sIV sIV sSR",
        "fin": "sIV sIV sFW sFW sLA sLA sLA sTW sCL sIV", "ack": "sES sIV sES sES sCW sCW sTW sTW sCL sIV",
        "rst": "sIV sCL sCL sCL sCL sCL sCL sCL sCL sCL", "none": "sIV sIV sIV sIV sIV sIV sIV sIV sIV sIV"},
    1: {"syn": "sIV sS2 sIV sIV sIV sIV sIV sSS sIV sS2", "synack": "sIV sSR sIG sIG sIG sIG sIG sIG sIG sSR",
        "fin": "sIV sIV sFW sFW sLA sLA sLA sTW sCL sIV", "ack": "sIV sIG sSR sES sCW sCW sTW sTW sCL sIG",
        "rst": "sIV sCL sCL sCL sCL sCL sCL sCL sCL sCL", "none": "sIV sIV sIV sIV sIV sIV sIV sIV sIV sIV"},
}
TCP_TRANSITIONS = {d: {k: dict(zip(TCP_STATES, (_S[w] for w in v.split()))) for k, v in rows.items()}
                   for d, rows in _TCP_TABLE_TEXT.items()}


def _tcp_index(flags: int) -> str:
    if flags & 0x04:
        return "rst"
    if flags & 0x02:
        return "synack" if flags & 0x10 else "syn"
    if flags & 0x01:
        return "fin"
    if flags & 0x10:
        return "ack"
    return "none"


_PROTO_CT_NAMES = {6: "tcp", 17: "udp", 1: "icmp", 136: "udplite", 132: "sctp", 33: "dccp"}


@dataclass(eq=False)
class ConntrackEntry:
    """One connection: the original and reply tuples, the TCP state, the status bits, the timeout."""

    orig: CtTuple
    reply: CtTuple
    state: str | None = None
    expires: float = 0.0
    status: set[str] = field(default_factory=set)
    mark: int = 0
    created: float = 0.0
    nat_done: set[str] = field(default_factory=set)  # "src", "dst": NAT decided for that manip
    nat_rule: dict = field(default_factory=dict)  # manip -> (table, chain, rule) that decided it

    @property
    def proto(self) -> int:
        return self.orig.proto

    def status_bits(self) -> int:
        bits = 0
        for i, name in enumerate(CTSTATUS_NAMES):
            if name in self.status:
                bits |= 1 << i
        return bits

    def line(self, now: float) -> str:
        """This entry as one line of `conntrack -L`."""
        name = _PROTO_CT_NAMES.get(self.proto, "unknown")
        remaining = max(0, int(self.expires - now))
        words = [f"{name:<8} {self.proto} {remaining}"]
        if self.state is not None:
            words.append(self.state)
        words.append(self.orig.text())
        if "SEEN_REPLY" not in self.status:
            words.append("[UNREPLIED]")
        words.append(self.reply.text())
        if "ASSURED" in self.status:
            words.append("[ASSURED]")
        words += [f"mark={self.mark}", "use=1"]
        return " ".join(words)

    def __str__(self) -> str:
        return self.line(self.expires - (TCP_TIMEOUTS.get(self.state or "", 0)))


class Conntrack:
    """The connection-tracking table of one network namespace (`conntrack -L`).

    Time is the model's: :meth:`advance` lets seconds pass (entries time out, `--seconds` of
    `-m recent` counts it). Random choices (source ports picked on a clash, `--random-fully`) come
    from a generator seeded with `seed`.
    """

    def __init__(self, seed: int = 0) -> None:
        self.now = 0.0
        self.rng = random.Random(seed)
        self._entries: list[ConntrackEntry] = []
        self._by_tuple: dict[CtTuple, tuple[ConntrackEntry, int]] = {}

    @property
    def entries(self) -> list[ConntrackEntry]:
        """The confirmed connections, oldest first."""
        self._expire()
        return list(self._entries)

    def advance(self, seconds: float) -> None:
        """Let time pass; connections whose timeout ran out disappear."""
        if not isinstance(seconds, (int, float)) or seconds < 0:
            raise LabInputError("seconds", seconds, "a number of seconds >= 0")
        self.now += seconds
        self._expire()

    def _expire(self) -> None:
        for entry in [e for e in self._entries if e.expires <= self.now]:
            self.remove(entry)

    def lookup(self, tup: CtTuple) -> tuple[ConntrackEntry, int] | None:
        """The entry a tuple belongs to and the direction (0 original, 1 reply), or None."""
        found = self._by_tuple.get(tup)
        if found is not None and found[0].expires <= self.now:
            self.remove(found[0])
            return None
        return found

    def taken(self, tup: CtTuple, ignore: ConntrackEntry | None = None) -> bool:
        """Whether a confirmed connection other than ignore already uses this tuple (either way)."""
        found = self.lookup(tup)
        return found is not None and found[0] is not ignore

    def insert(self, entry: ConntrackEntry) -> None:
        entry.status.add("CONFIRMED")
        self._entries.append(entry)
        self._by_tuple[entry.orig] = (entry, 0)
        self._by_tuple[entry.reply] = (entry, 1)

    def remove(self, entry: ConntrackEntry) -> None:
        if entry in self._entries:
            self._entries.remove(entry)
        for tup in (entry.orig, entry.reply):
            if self._by_tuple.get(tup, (None,))[0] is entry:
                del self._by_tuple[tup]

    def show(self) -> str:
        """The table as `conntrack -L` prints it on stdout (one line per connection)."""
        self._expire()
        return "\n".join(e.line(self.now) for e in self._entries)

    def summary(self) -> str:
        """The line `conntrack -L` prints on stderr."""
        return f"conntrack v1.4.7 (conntrack-tools): {len(self.entries)} flow entries have been shown."

    def __len__(self) -> int:
        return len(self.entries)


# --- one packet through the hooks -----------------------------------------------------------------


@dataclass
class TraceResult:
    """What happened to one packet.

    verdict: "deliver" (to a local socket), "forward" (out of oif), "output" (sent by the host out of
    oif), "drop" or "reject". matched: (table, chain, rule number) of every rule whose matches held,
    in order. lines: the kernel's TRACE lines. logs: what LOG rules wrote. steps: every rewrite of
    the packet (NAT, mark, TTL) with the packet before and after. reply: the packet REJECT sent back.
    """

    verdict: str
    oif: str | None
    source: object  # the PacketSpec or scapy packet traced
    final: object  # the traced packet's fields at the end
    matched: list[tuple[str, str, int]]
    lines: list[str]
    logs: list[str]
    steps: list[dict]
    reply: object = None
    reason: str = ""
    ctstate: str = ""
    entry: ConntrackEntry | None = None
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def traced(self) -> bool:
        """Whether a TRACE rule marked the packet (the kernel writes TRACE lines only for such packets)."""
        return bool(self.final.nftrace)

    @property
    def packet_before(self):
        """The scapy IP packet as it arrived (or as the host sent it)."""
        if "before" not in self._cache:
            self._cache["before"] = self.source.packet() if isinstance(self.source, PacketSpec) else self.source
        return self._cache["before"]

    @property
    def packet_after(self):
        """The scapy IP packet after every rewrite (NAT, TTL), checksums recomputed."""
        if "after" not in self._cache:
            self._cache["after"] = _pkt_to_ip(self.final, self.packet_before)
        return self._cache["after"]

    def outcome(self) -> str:
        """One line: the verdict, the device and the packet as it leaves (or why it stopped)."""
        words = {"deliver": "delivered locally", "forward": f"forwarded out of {self.oif}",
                 "output": f"sent out of {self.oif}", "drop": "dropped", "reject": "rejected"}[self.verdict]
        text = f"{words}: {self.final.summary()}"
        if self.reason:
            text += f" ({self.reason})"
        return text

    def rewrites(self) -> list[str]:
        """Each rewrite of the packet: where, what, before -> after."""
        out = []
        for step in self.steps:
            where = step["hook"]
            if step["table"] and step["table"] != "conntrack":
                where += f" ({step['table']} {step['chain']} rule {step['rule']})"
            elif step["table"] == "conntrack":
                where += " (conntrack: the connection's binding)"
            out.append(f"{step['what']} at {where}: {step['before']} -> {step['after']}")
        return out

    def text(self) -> str:
        """TRACE lines, LOG lines, then the outcome and the rewrites (the command line's text output)."""
        lines = [*self.lines, *self.logs, self.outcome()]
        lines += ["  " + r for r in self.rewrites()]
        if self.reply is not None:
            lines.append(f"  reply sent back: {packet_text(self.reply)}")
        return "\n".join(lines)

    def to_json(self) -> dict:
        """The result as the command line's --json prints it."""
        f = self.final
        ported = f.sport is not None and not f.fragoff
        return {"verdict": self.verdict, "oif": self.oif,
                "packet": {"proto": protocol_name(f.proto), "src": int_to_ip(f.src), "sport": f.sport if ported else None,
                           "dst": int_to_ip(f.dst), "dport": f.dport if ported else None},
                "matched": [{"table": t, "chain": c, "rule": n} for t, c, n in self.matched]}


def packet_fields(ip) -> dict:
    """proto, src, sport, dst, dport of a scapy IP packet (ports None without them; the echo id for ICMP)."""
    from scapy.layers.inet import ICMP, TCP, UDP

    out = {"proto": protocol_name(ip.proto), "src": ip.src, "sport": None, "dst": ip.dst, "dport": None}
    for layer in (TCP, UDP):
        if ip.haslayer(layer):
            out["sport"], out["dport"] = ip[layer].sport, ip[layer].dport
    if ip.haslayer(ICMP):
        out["type"], out["code"] = ip[ICMP].type, ip[ICMP].code
    return out


def packet_text(ip) -> str:
    """A scapy IP packet in the words of a PacketSpec: `tcp 10.0.0.5:34567 > 10.96.0.10:80`."""
    f = packet_fields(ip)
    if f["sport"] is not None:
        return f"{f['proto']} {f['src']}:{f['sport']} > {f['dst']}:{f['dport']}"
    extra = f" type {f['type']} code {f['code']}" if "type" in f else ""
    return f"{f['proto']} {f['src']} > {f['dst']}{extra}"


class _Drop(Exception):
    def __init__(self, verdict: str, reason: str = "") -> None:
        super().__init__(reason)
        self.verdict, self.reason = verdict, reason


class _Env:
    """One trace: the ruleset, the host, the conntrack table and what the trace collects."""

    def __init__(self, ruleset: Ruleset, host, ct: Conntrack, counters: bool) -> None:
        self.ruleset, self.host, self.ctt, self.counters = ruleset, host, ct, counters
        self.rng = ruleset.rng
        self.matched: list[tuple[str, str, int]] = []
        self.lines: list[str] = []
        self.logs: list[str] = []
        self.steps: list[dict] = []
        self.reply = None
        self.where = ("", "", 0)
        self.hook = ""
        self._local_table = None
        self.current_ip = lambda: None

    # --- host facts ---

    def local_routes(self) -> dict[int, tuple[str, str]]:
        if self._local_table is None:
            table = {}
            for route in self.host.local_table().routes:
                if route.dst.prefixlen == 32:
                    table[int(route.dst.network_address)] = (route.kind, route.dev)
            self._local_table = table
        return self._local_table

    def addr_type(self, addr: int, dev: str | None) -> int:
        """inet_dev_addr_type: BROADCAST for 0.0.0.0/8 and 255.255.255.255, MULTICAST for 224/4, the
        local table's LOCAL or BROADCAST (on dev, when given), else UNICAST."""
        if addr >> 24 == 0 or addr == 0xFFFFFFFF:
            return ADDRTYPES.index("BROADCAST")
        if addr >> 28 == 0xE:
            return ADDRTYPES.index("MULTICAST")
        found = self.local_routes().get(addr)
        if found is None and addr >> 24 == 127:
            found = ("local", "lo")
        if found is not None and (dev is None or found[1] == dev):
            return ADDRTYPES.index("LOCAL" if found[0] == "local" else "BROADCAST")
        return ADDRTYPES.index("UNICAST")

    def route(self, dst: int, src: int | None, iif: str | None):
        try:
            return self.host.route_get(int_to_ip(dst), src=int_to_ip(src) if src is not None else None, iif=iif)
        except LabInputError:
            return None

    def is_local(self, decision) -> bool:
        return decision.route.kind in ("local", "broadcast")

    # --- what rules do ---

    def rewrote(self, p: _Pkt, what: str, before: str, after: str) -> None:
        table, chain, rule = self.where
        self.steps.append({"hook": self.hook, "table": table, "chain": chain, "rule": rule, "what": what,
                           "before": before, "after": after})

    def log(self, p: _Pkt, target: LogTarget) -> None:
        self.logs.append(f"{target.prefix}IN={p.iif} OUT={p.oif} " + _dump(p, target.flags))

    def trace_line(self, p: _Pkt, table: str, chain: str, comment: str, number: int) -> None:
        self.lines.append(f"TRACE: {table}:{chain}:{comment}:{number} IN={p.iif} OUT={p.oif} "
                          + _dump(p, {"log-tcp-sequence", "log-tcp-options", "log-ip-options", "log-uid"}))

    def notrack(self, p: _Pkt) -> None:
        p.ct, p.ctstate, p.ctnew = None, CT_UNTRACKED, False

    def recent_match(self, m: RecentMatch, p: _Pkt) -> bool:
        table = self.ruleset.recent.setdefault(m.list_name, {})
        addr = (p.src if m.side == "rsource" else p.dst) & m.mask
        ttl = p.ttl + (1 if self.hook in ("FORWARD", "POSTROUTING") and not p.local else 0)
        now = self.ctt.now
        ret = m.inv
        entry = table.get(addr)
        if entry is not None and m.rttl and entry["ttl"] != ttl:
            entry = None
        if entry is None:
            if m.command != "set":
                return ret
            table[addr] = {"stamps": [now], "ttl": ttl, "last": now}
            return not ret
        if m.command == "set":
            ret = not ret
        elif m.command == "remove":
            del table[addr]
            return not ret
        else:
            since = now - m.seconds
            hits = 0
            for stamp in entry["stamps"]:
                if m.seconds and stamp < since:
                    continue
                hits += 1
                if not m.hitcount or hits >= m.hitcount:
                    ret = not ret
                    break
            if m.reap and table:
                oldest = min(table, key=lambda a: table[a]["last"])
                if not (oldest == addr and m.command == "update" and ret) and table[oldest]["stamps"][-1] < since:
                    del table[oldest]
        if (m.command == "set" or (m.command == "update" and ret)) and addr in table:
            entry["stamps"] = (entry["stamps"] + [now])[-20:]
            entry["last"], entry["ttl"] = now, ttl
        return ret

    def reject(self, p: _Pkt, kind: str) -> None:
        """Build the packet REJECT sends back (nf_send_reset / icmp_send)."""
        from scapy.layers.inet import ICMP, IP, TCP

        orig = _pkt_to_ip(p, self.current_ip())
        if kind == "tcp-reset":
            if p.tcpflags & 0x04 or p.fragoff:
                return
            if p.tcpflags & 0x10:
                seq, ack, flags = p.ack, 0, 0x04
            else:
                payload = p.length - 20 - 20
                seq, ack, flags = 0, (p.seq + payload + (1 if p.tcpflags & 0x02 else 0)
                                      + (1 if p.tcpflags & 0x01 else 0)) & 0xFFFFFFFF, 0x14
            reply = IP(version=4, ihl=5, tos=0, id=0, flags="DF", frag=0, ttl=64, proto=6, src=int_to_ip(p.dst),
                       dst=int_to_ip(p.src)) / TCP(sport=p.dport, dport=p.sport, seq=seq, ack=ack, dataofs=5,
                                                   reserved=0, flags=flags, window=0, urgptr=0, options=[])
            ct = p.ct
            if ct is not None and ct.proto == 6 and "CONFIRMED" in ct.status and ct.state != "CLOSE":
                # nf_send_reset calls nf_ct_set_closing: a confirmed connection it resets is CLOSE, 10 s left
                ct.state, ct.expires = "CLOSE", self.ctt.now + TCP_TIMEOUTS["CLOSE"]
        else:
            if p.proto == 1 and p.itype in ICMP_ERRORS or p.fragoff:
                return  # no ICMP error about an ICMP error, nor about a later fragment
            kind_dst = self.addr_type(p.dst, None)
            if ADDRTYPES[kind_dst] in ("BROADCAST", "MULTICAST"):
                return
            if ADDRTYPES[kind_dst] == "LOCAL":
                src = p.dst
            else:
                back = self.route(p.src, None, None)
                if back is None:
                    return
                src = int(self.host.source_for(back.route))
            quoted = bytes(orig)[:548]
            reply = IP(version=4, ihl=5, tos=(p.tos & 0x1E) | 0xC0, id=0, flags=0, frag=0, ttl=64, proto=1,
                       src=int_to_ip(src), dst=int_to_ip(p.src)) / ICMP(type=3, code=REJECT_WITH[kind]) / quoted
        self.reply = IP(bytes(reply))

    def masquerade_source(self, p: _Pkt) -> int | None:
        """The address MASQUERADE picks: the first primary address of the out device on the next hop's
        subnet, else its first primary address (inet_select_addr)."""
        link = self.host.links.get(p.oif)
        if link is None:
            return None
        primaries = [a for a in link.addresses if link.primary(a) == a]
        if not primaries:
            return None
        hop = self.route(p.dst, None, None)
        nexthop = int(hop.route.via) if hop is not None and hop.route.via is not None else p.dst
        for iface in primaries:
            if int(iface.network.network_address) == nexthop & int(iface.network.netmask):
                return int(iface.ip)
        return int(primaries[0].ip)

    def redirect_address(self, p: _Pkt) -> int | None:
        """REDIRECT's new destination: 127.0.0.1 for the host's own packets, else the first address of
        the device the packet came in on."""
        if self.hook == "OUTPUT":
            return 0x7F000001
        link = self.host.links.get(p.iif)
        if link is None or not link.addresses:
            return None
        return int(link.addresses[0].ip)

    # --- NAT ---

    def nat(self, p: _Pkt, manip: str, rng: NatRange, target: Target) -> None:
        ct = p.ct
        if ct is None or manip in ct.nat_done:
            return
        self._setup_nat(ct, manip, rng, target)

    def _setup_nat(self, ct, manip: str, rng: NatRange, target: Target | None) -> None:
        """nf_nat_setup_info: choose the new tuple for this manip and store it as the reply tuple."""
        current = ct.reply.inverse()
        new = self._unique_tuple(current, rng, ct, manip)
        if new != current:
            ct.reply = new.inverse()
            ct.status.add("SRC_NAT" if manip == "src" else "DST_NAT")
        ct.nat_done.add(manip)
        ct.nat_rule[manip] = self.where if target is not None else None

    def _unique_tuple(self, orig: CtTuple, rng: NatRange, entry: ConntrackEntry, manip: str) -> CtTuple:
        """get_unique_tuple: keep what is in range and unused, else pick as the kernel does."""
        random_all = rng.random or rng.random_fully
        proto_specified = rng.min_port is not None
        ported = orig.proto in (6, 17, 132, 33, 136, 1)

        def in_range(t: CtTuple) -> bool:
            addr = t.src if manip == "src" else t.dst
            if rng.min_ip is not None and not min(rng.min_ip, rng.max_ip) <= addr <= max(rng.min_ip, rng.max_ip):
                return False
            if proto_specified and ported and t.proto != 1:
                port = t.sport if manip == "src" else t.dport
                return rng.min_port <= port <= rng.max_port
            return True

        if manip == "src" and not random_all:
            if in_range(orig):
                if not self.ctt.taken(orig.inverse(), entry):
                    return orig
            else:
                for other in self.ctt.entries:
                    o = other.orig
                    if (o.proto, o.src, o.sport) == (orig.proto, orig.src, orig.sport):
                        candidate = CtTuple(orig.proto, other.reply.dst, orig.dst, other.reply.dport, orig.dport)
                        if orig.proto == 1:
                            candidate = CtTuple(1, other.reply.dst, orig.dst, other.reply.sport, orig.dport)
                        if in_range(candidate) and not self.ctt.taken(candidate.inverse(), entry):
                            return candidate
        tup = self._best_ip(orig, rng, manip)
        if not random_all:
            if proto_specified and ported:
                port = tup.sport if manip == "src" or tup.proto == 1 else tup.dport
                if rng.min_port <= port <= rng.max_port and (
                        rng.min_port == rng.max_port or not self.ctt.taken(tup.inverse(), entry)):
                    return tup
            elif not self.ctt.taken(tup.inverse(), entry):
                return tup
        return self._unique_port(tup, rng, entry, manip)

    def _best_ip(self, tup: CtTuple, rng: NatRange, manip: str) -> CtTuple:
        if rng.min_ip is None:
            return tup
        lo, hi = sorted((rng.min_ip, rng.max_ip))
        if lo == hi:
            addr = lo
        else:
            key = tup.src.to_bytes(4, "big") + (b"" if rng.persistent else tup.dst.to_bytes(4, "big"))
            addr = lo + zlib.crc32(key) % (hi - lo + 1)
        if manip == "src":
            return CtTuple(tup.proto, addr, tup.dst, tup.sport, tup.dport)
        return CtTuple(tup.proto, tup.src, addr, tup.sport, tup.dport)

    def _unique_port(self, tup: CtTuple, rng: NatRange, entry: ConntrackEntry, manip: str) -> CtTuple:
        """nf_nat_l4proto_unique_tuple: walk the port range from an offset until the tuple is free."""
        if tup.proto not in (6, 17, 132, 33, 136, 1):
            return tup
        icmp = tup.proto == 1
        key = tup.sport if manip == "src" or icmp else tup.dport
        if icmp:
            lo, size = (0, 65536) if rng.min_port is None else (rng.min_port, rng.max_port - rng.min_port + 1)
        elif rng.min_port is None:
            if manip == "dst":
                return tup
            lo, size = (1, 511) if key < 512 else (600, 424) if key < 1024 else (1024, 64512)
        else:
            lo, size = rng.min_port, rng.max_port - rng.min_port + 1
        if rng.random or rng.random_fully or manip == "src" or icmp:
            offset = self.ctt.rng.getrandbits(16)
        else:
            offset = 0
        for i in range(min(size, 128)):
            port = lo + (offset + i) % size
            if manip == "src" or icmp:
                candidate = CtTuple(tup.proto, tup.src, tup.dst, port, tup.dport)
            else:
                candidate = CtTuple(tup.proto, tup.src, tup.dst, tup.sport, port)
            if not self.ctt.taken(candidate.inverse(), entry):
                return candidate
        return candidate

    def apply_nat(self, p: _Pkt, manip: str) -> None:
        """nf_nat_packet: rewrite the packet to the binding of its connection, either direction."""
        ct = p.ct
        bit = "SRC_NAT" if manip == "src" else "DST_NAT"
        if p.ctdir == 1:
            bit = "DST_NAT" if bit == "SRC_NAT" else "SRC_NAT"
        if bit not in ct.status:
            return
        other = ct.reply if p.ctdir == 0 else ct.orig
        target = other.inverse()
        before = p.summary()
        if p.related and p.inner is not None:
            self._translate_icmp_error(p, manip, other, target)
        elif manip == "src":
            p.src = target.src
            if p.sport is not None:
                p.sport = target.sport
            elif p.proto == 1 and p.iid is not None:
                p.iid = target.sport
        else:
            p.dst = target.dst
            if p.dport is not None:
                p.dport = target.dport
            elif p.proto == 1 and p.iid is not None:
                p.iid = target.sport
        if p.summary() != before or p.related:
            table, chain, rule = (ct.nat_rule.get(manip) or ("conntrack", "", 0)) if p.ctnew else ("conntrack", "", 0)
            self.steps.append({"hook": self.hook, "table": table, "chain": chain, "rule": rule,
                               "what": ("SNAT" if manip == "src" else "DNAT") + (" (reply)" if p.ctdir else ""),
                               "before": before, "after": p.summary()})

    def _translate_icmp_error(self, p: _Pkt, manip: str, other: CtTuple, target: CtTuple) -> None:
        """nf_nat_icmp_reply_translation: the quoted packet made to look as its sender sent it (the
        opposite manip), then the outer header made to look like a reply to it."""
        inner = p.inner
        if manip == "src":
            inner.dst = other.dst
            if inner.dport is not None:
                inner.dport = other.dport
            p.src = target.src
        else:
            inner.src = other.src
            if inner.sport is not None:
                inner.sport = other.sport
            elif inner.proto == 1 and inner.iid is not None:
                inner.iid = other.sport
            p.dst = target.dst

    # --- conntrack ---

    def conntrack_in(self, p: _Pkt) -> None:
        """nf_conntrack_in: find the packet's connection (or start one), set its state."""
        if p.ctstate == CT_UNTRACKED or p.ct is not None:
            return  # untracked by the raw table, or seen already (looped back)
        ctt, now = self.ctt, self.ctt.now
        if p.proto == 1 and p.itype in ICMP_ERRORS:
            found = self.ctt.lookup(p.inner.tuple().inverse()) if p.inner is not None else None
            if found is None:
                p.ctstate = CT_INVALID
                return
            p.ct, p.ctdir = found
            p.ctstate, p.related = CT_RELATED, True
            return
        tup = p.tuple()
        found = ctt.lookup(tup)
        if found is not None and p.proto == 6:
            entry, direction = found
            index = _tcp_index(p.tcpflags)
            if direction == 0 and index == "syn" and entry.state in ("TIME_WAIT", "CLOSE"):
                ctt.remove(entry)  # a new connection reuses the tuple (RFC 1122 reopen)
                found = None
        if found is None:
            entry = self._new_entry(p, tup)
            if entry is None:
                p.ctstate = CT_INVALID
                return
            p.ct, p.ctdir, p.ctstate, p.ctnew = entry, 0, CT_NEW, True
            return
        entry, direction = found
        seen_reply = "SEEN_REPLY" in entry.status
        if p.proto == 6:
            index = _tcp_index(p.tcpflags)
            old = entry.state
            new = TCP_TRANSITIONS[direction][index][old]
            if new == "IV":
                p.ctstate = CT_INVALID
                return
            if new != "IG":
                if not seen_reply and direction == 1 and index == "rst":
                    ctt.remove(entry)  # only a RST came back: the connection is gone at once
                entry.state = new
                entry.expires = now + (TCP_TIMEOUTS["CLOSE"] if index == "rst" else TCP_TIMEOUTS[new])
                if seen_reply and old in ("SYN_RECV", "ESTABLISHED") and new == "ESTABLISHED":
                    entry.status.add("ASSURED")
        elif p.proto == 17 or p.proto == 136:
            if seen_reply and now > entry.created + 2:
                entry.expires = now + UDP_STREAM_TIMEOUT
                entry.status.add("ASSURED")
            else:
                entry.expires = now + UDP_TIMEOUT
        elif p.proto == 1:
            entry.expires = now + ICMP_TIMEOUT
        else:
            entry.expires = now + GENERIC_TIMEOUT
        if direction == 1:
            entry.status.add("SEEN_REPLY")
        p.ct, p.ctdir = entry, direction
        p.ctstate = CT_ESTABLISHED if direction == 1 or seen_reply else CT_NEW

    def _new_entry(self, p: _Pkt, tup: CtTuple) -> ConntrackEntry | None:
        now = self.ctt.now
        state = None
        if p.proto == 6:
            state = TCP_TRANSITIONS[0][_tcp_index(p.tcpflags)]["NONE"]
            if state == "IV":
                return None
            timeout = TCP_TIMEOUTS[state]
        elif p.proto in (17, 136):
            timeout = UDP_TIMEOUT
        elif p.proto == 1:
            if p.itype not in _ICMP_REPLY_TYPE:
                return None  # only a request starts an ICMP connection
            timeout = ICMP_TIMEOUT
        else:
            timeout = GENERIC_TIMEOUT
        return ConntrackEntry(tup, tup.inverse(), state=state, expires=now + timeout, created=now)

    def confirm(self, p: _Pkt) -> None:
        """nf_conntrack_confirm: a new connection enters the table once its first packet got through."""
        if not p.ctnew or p.ct is None:
            return
        entry = p.ct
        p.ctnew = False
        clash = self.ctt.lookup(entry.orig) or self.ctt.lookup(entry.reply)
        if clash is not None and clash[0] is not entry:
            raise _Drop("drop", "conntrack clash: another connection already has this tuple")
        self.ctt.insert(entry)

    # --- tables and chains ---

    def run_chain(self, table: Table, hook: str, p: _Pkt) -> str:
        """ipt_do_table: walk the hook's chain, jumping and returning like the kernel, counting and tracing.

        A long chain is walked through its index (_walk_order): rules that need another destination
        address than the packet's are skipped without being evaluated, which changes nothing (a rule
        whose IP part fails has no effect: its matches are never asked)."""
        base = table.chains[hook]
        chain, rules = base, base.rules
        dst = p.dst
        order, k = _walk_order(chain, dst), 0
        stack: list[tuple[Chain, object, int]] = []
        counters, tname = self.counters, table.name
        while True:
            if k < len(order):
                r = order[k]
                k += 1
                rule = rules[r]
                check = rule.check
                if check is not None and not check(p):
                    continue
                i = r + 1
                if counters:
                    rule.counters.packets += 1
                    rule.counters.bytes += p.length
                self.matched.append((tname, chain.name, i))
                target = rule.target
                comment = "rule"
                if rule.ext is None and target in VERDICTS and rule.unconditional:
                    comment = "policy" if chain.builtin else "return"
                self.trace_line(p, tname, chain.name, comment, i)
                if target is None:
                    continue
                if rule.ext is not None:
                    self.where = (tname, chain.name, i)
                    verdict = rule.ext.run(p, self)
                    if verdict == V_CONTINUE:
                        continue
                    return verdict
                if target == "ACCEPT" or target == "DROP":
                    return target
                if target == "RETURN":
                    if stack:
                        chain, order, k = stack.pop()
                        rules = chain.rules
                        continue
                    return self._policy(base, p, tname)
                if not rule.goto:
                    stack.append((chain, order, k))
                chain = table.chains[target]
                rules, order, k = chain.rules, _walk_order(chain, dst), 0
                continue
            if chain is base:
                return self._policy(base, p, tname)
            self.trace_line(p, tname, chain.name, "return", len(rules) + 1)
            if stack:
                chain, order, k = stack.pop()
                rules = chain.rules
                continue
            return self._policy(base, p, tname)

    def _policy(self, base: Chain, p: _Pkt, tname: str) -> str:
        if self.counters:
            base.counters.packets += 1
            base.counters.bytes += p.length
        self.trace_line(p, tname, base.name, "policy", len(base.rules) + 1)
        return base.policy

    def nat_step(self, hook: str, p: _Pkt) -> None:
        """nf_nat_inet_fn: the nat table decides for a connection's first packet; every packet of the
        connection, both ways, is then rewritten to that decision."""
        table = self.ruleset.tables.get("nat")
        if table is None or p.ct is None:
            return
        manip = "dst" if hook in ("PREROUTING", "OUTPUT") else "src"
        ct = p.ct
        if p.related:
            if p.proto == 1:
                self.apply_nat(p, manip)
            return
        # a connection's first packet, or a packet RELATED to it that is not an ICMP error (REJECT's TCP reset),
        # goes through the nat chain while the connection has no binding for this manip
        if (p.ctstate == CT_NEW or p.ctstate == CT_RELATED) and manip not in ct.nat_done:
            verdict = self.run_chain(table, hook, p)
            if verdict != "ACCEPT":
                raise _Drop("drop" if verdict == "DROP" else "reject", f"nat {hook}: {verdict}")
            if manip not in ct.nat_done:
                addr = ct.reply.dst if manip == "src" else ct.reply.src
                self._setup_nat(ct, manip, NatRange(addr, addr), None)
        self.apply_nat(p, manip)

    def run_hook(self, hook: str, p: _Pkt, iif: str, oif: str) -> None:
        self.hook = hook
        p.iif, p.oif = iif, oif
        tables = self.ruleset.tables
        for step in HOOK_ORDER[hook]:
            if step == "conntrack":
                self.conntrack_in(p)
            elif step == "confirm":
                self.confirm(p)
            elif step == "nat":
                self.nat_step(hook, p)
            elif step in tables:
                verdict = self.run_chain(tables[step], hook, p)
                if verdict == V_REJECT:
                    raise _Drop("reject", f"REJECT in {step} {hook}")
                if verdict != "ACCEPT":
                    raise _Drop("drop", f"{verdict} in {step} {hook}")

    def walk(self, p: _Pkt, iif: str | None, local: bool) -> tuple[str, str | None, str]:
        """The packet's path through the hooks: (verdict, out device, reason)."""
        if local:
            p.local = True
            return self.send_local(p)
        self.run_hook("PREROUTING", p, iif, "")
        decision = self.route(p.dst, p.src, iif)
        if decision is None:
            return "drop", None, "no route to the destination (Network is unreachable)"
        if self.is_local(decision):
            self.run_hook("INPUT", p, iif, "")
            return "deliver", None, ""
        if not self.host.forwarding:
            return "drop", None, "not for this host and forwarding is off (net.ipv4.ip_forward = 0)"
        if p.ttl <= 1:
            return "drop", None, "TTL exceeded in transit"
        p.ttl -= 1
        self.hook = "FORWARD"
        self.steps.append({"hook": "FORWARD", "table": "", "chain": "", "rule": 0, "what": "TTL",
                           "before": f"{p.summary()} ttl {p.ttl + 1}", "after": f"{p.summary()} ttl {p.ttl}"})
        oif = decision.route.dev
        self.run_hook("FORWARD", p, iif, oif)
        self.run_hook("POSTROUTING", p, iif, oif)
        return "forward", oif, ""


    def send_local(self, p: _Pkt) -> tuple[str, str | None, str]:
        """A packet the host sends: routed, OUTPUT, rerouted if OUTPUT changed its destination or mark,
        POSTROUTING; to one of the host's own addresses it comes back in over lo (PREROUTING, INPUT)."""
        decision = self.route(p.dst, p.src, None)
        if decision is None:
            return "drop", None, "no route to the destination (Network is unreachable)"
        oif = "lo" if self.is_local(decision) else decision.route.dev
        before = (p.dst, p.mark)
        self.run_hook("OUTPUT", p, "", oif)
        out = oif
        if (p.dst, p.mark) != before:
            decision = self.route(p.dst, p.src, None)
            if decision is None:
                return "drop", None, "no route after the OUTPUT rewrite"
            out = "lo" if self.is_local(decision) else decision.route.dev
        self.run_hook("POSTROUTING", p, "", out)
        if not self.is_local(decision):
            return "output", out, ""
        self.run_hook("PREROUTING", p, "lo", "")
        self.run_hook("INPUT", p, "lo", "")
        return "deliver", "lo", ""

    def send_reply(self, p: _Pkt) -> str:
        """REJECT's answer leaves like any packet the host sends (raw, mangle, nat, filter, security OUTPUT,
        then POSTROUTING), attached to the rejected packet's connection as RELATED in the other direction
        (nf_ct_attach): NAT is undone on it as on a reply. Returns why it did not leave, or ''."""
        reply = self.reply
        q = _pkt_from_ip(reply)
        q.env = self
        if p.ct is not None:
            q.ct, q.ctdir, q.ctstate = p.ct, 1 - p.ctdir, CT_RELATED
            q.related = q.proto == 1  # an ICMP error is translated, quote and all, never run through nat
        current_ip, self.current_ip = self.current_ip, lambda: reply  # a REJECT of the answer quotes it
        try:
            verdict, _, reason = self.send_local(q)
        except _Drop as drop:
            verdict, reason = "drop", drop.reason
            if drop.verdict == "reject" and self.reply is not reply:
                # A REJECT in OUTPUT answers REJECT's answer in turn (the target runs nf_send_reset /
                # nf_send_unreach on it as on any packet), and that answer leaves through OUTPUT too. The
                # kernel's refusals end it: nf_send_reset sends no RST for a RST, icmp_send no ICMP error
                # about an ICMP error (self.reject builds none then, leaving self.reply as it was).
                self.send_reply(q)
        finally:
            self.current_ip = current_ip
        if verdict == "drop":
            self.reply = None
            return f"its answer was dropped: {reason}"
        self.reply = _pkt_to_ip(q, reply)
        return ""


def trace(ruleset: Ruleset, host, packet, conntrack: Conntrack | None = None, counters: bool = True, *,
          iif: str | None = None, local: bool | None = None, mark: int = 0) -> TraceResult:
    """Walk one packet through a host's netfilter hooks as the kernel does.

    packet: a PacketSpec, a packet line (`tcp 10.0.0.5:34567 > 10.96.0.10:80 iif eth0`), or a scapy
    IP packet with iif=DEV (it arrives on DEV) or local=True (the host sends it). host: a
    labsupport.host.Namespace (its routes decide, its forwarding flag allows forwarding). conntrack:
    the table to use and update (a fresh one when None). counters: update the rules' counters.

    Known simplifications: TRACE lines are written for every packet, as if a raw-table TRACE rule
    had marked it at the first hook, and without the MAC= the kernel prints for received packets;
    TCP windows are not tracked (nf_conntrack_tcp_be_liberal); NAT address ranges pick an address
    with a CRC32 hash where the kernel uses jhash. REJECT's answer is traced too (OUTPUT, POSTROUTING:
    its rules are in matched and counted); `reply` is the answer as it leaves, NAT undone.
    """
    if not isinstance(ruleset, Ruleset):
        raise LabInputError("ruleset", type(ruleset).__name__, "a Ruleset (parse_iptables_save)")
    spec = parse_packet_spec(packet) if isinstance(packet, str) else packet if isinstance(packet, PacketSpec) else None
    if spec is not None:
        iif, local, mark = spec.iif, spec.local, spec.mark
        p = _pkt_from_spec(spec)
    else:
        if (iif is None) == (not local):
            raise LabInputError("packet", "iif/local", "iif=DEV for a packet that arrives, or local=True for one the host sends")
        p = _pkt_from_ip(packet)
    if iif is not None and iif not in host.links:
        raise LabInputError("packet.iif", iif, f"a device of {host.name}: {', '.join(host.links)}")
    ct = conntrack if conntrack is not None else Conntrack()
    env = _Env(ruleset, host, ct, counters)
    p.env, p.mark = env, mark
    source = spec if spec is not None else packet
    env.current_ip = lambda: source.packet() if isinstance(source, PacketSpec) else source
    try:
        verdict, oif, reason = env.walk(p, iif, bool(local))
    except _Drop as drop:
        verdict, oif, reason = drop.verdict, None, drop.reason
        if verdict == "reject" and env.reply is None:
            reason += " (no answer: the kernel sends none for this packet)"
        elif verdict == "reject":
            lost = env.send_reply(p)
            reason += f"; {lost}" if lost else ""
    p.env = None
    state = "UNTRACKED" if p.ctstate == CT_UNTRACKED else next(
        (n for n in ("INVALID", "NEW", "RELATED", "ESTABLISHED") if p.ctstate == CTSTATE_NAMES[n]), "")
    return TraceResult(verdict, oif, source, p, env.matched, env.lines, env.logs, env.steps, env.reply, reason,
                       state, p.ct)


def replay(ruleset: Ruleset, host, packets, conntrack: Conntrack | None = None) -> tuple[Conntrack, list[TraceResult]]:
    """Trace several packets in order through one conntrack table (`netfilter conntrack`)."""
    ct = conntrack if conntrack is not None else Conntrack()
    return ct, [trace(ruleset, host, packet, ct) for packet in packets]
