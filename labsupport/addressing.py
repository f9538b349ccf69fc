"""Addresses as Linux and iproute2 see them: IPv4 prefixes, MAC addresses, link-local IPv6.

Every parser takes the name of the field it reads, so bad input raises the one
:class:`~labsupport.errors.LabInputError` naming field, value and what is allowed.
"""

from __future__ import annotations

import hashlib
import re
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, IPv6Interface

from labsupport.errors import LabInputError

BROADCAST_MAC = "ff:ff:ff:ff:ff:ff"
ZERO_MAC = "00:00:00:00:00:00"
_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_IFNAME_RE = re.compile(r"^[^\s/:]{1,15}$")


def parse_ipv4_address(value: object, field: str) -> IPv4Address:
    """Read one IPv4 address, as `ip addr add` or `ip route add … via` would."""
    try:
        return IPv4Address(str(value).strip())
    except ValueError:
        raise LabInputError(field, value, "expected an IPv4 address such as 10.244.1.2") from None


def parse_ipv4_interface(value: object, field: str) -> IPv4Interface:
    """Read an address with its prefix length, as `ip addr add 10.244.1.2/24 dev eth0` takes it."""
    text = str(value).strip()
    if "/" not in text:
        raise LabInputError(field, value, "expected ADDRESS/PREFIXLEN such as 10.244.1.2/24")
    try:
        return IPv4Interface(text)
    except ValueError:
        raise LabInputError(field, value, "expected ADDRESS/PREFIXLEN such as 10.244.1.2/24") from None


def parse_ipv4_network(value: object, field: str) -> IPv4Network:
    """Read a network prefix such as a pod CIDR; host bits must be zero, as in `ip route add 10.244.1.0/24`."""
    text = str(value).strip()
    try:
        return IPv4Network(text, strict=True)
    except ValueError:
        try:
            suggestion = IPv4Network(text, strict=False)
        except ValueError:
            raise LabInputError(field, value, "expected a network prefix such as 10.244.1.0/24") from None
        raise LabInputError(
            field, value, f"host bits must be zero: the network is {suggestion}"
        ) from None


def parse_mac(value: object, field: str) -> str:
    """Read a MAC address in the colon form iproute2 prints (lower case)."""
    text = str(value).strip().lower()
    if not _MAC_RE.match(text):
        raise LabInputError(field, value, "expected a MAC address such as 0a:58:0a:f4:01:02")
    return text


def check_ifname(value: object, field: str) -> str:
    """Check an interface name the way the kernel does: 1-15 bytes, no whitespace, '/' or ':'."""
    text = str(value)
    # fullmatch, not match: `$` would let a trailing newline through; the limit is bytes (IFNAMSIZ).
    too_long = len(text.encode("utf-8", "surrogatepass")) > 15
    if not _IFNAME_RE.fullmatch(text) or too_long or text in {".", ".."}:
        raise LabInputError(field, value, "an interface name has 1-15 bytes and no space, '/' or ':'")
    return text


def cni_mac(address: IPv4Address) -> str:
    """The MAC the CNI bridge plugin historically derived from an IPv4 address: 0a:58 then the 4 bytes.

    Mirrors `hwaddr.GenerateHardwareAddr4(ip, hwaddr.PrivateMACPrefix)` in containernetworking/plugins.
    """
    return "0a:58:" + ":".join(f"{b:02x}" for b in address.packed)


def stable_mac(*names: str) -> str:
    """A locally administered unicast MAC derived from names, standing in for the kernel's random one.

    Real veth ends get random MACs; the model needs stable ones so labs reproduce their outputs.
    """
    digest = hashlib.sha256("/".join(names).encode()).digest()
    first = (digest[0] & 0xFC) | 0x02  # locally administered, unicast
    return ":".join(f"{b:02x}" for b in (first, *digest[1:6]))


def ipv6_link_local(mac: str) -> IPv6Interface:
    """The fe80::/64 address the kernel derives from a MAC (modified EUI-64), as `ip addr` shows it."""
    octets = [int(part, 16) for part in mac.split(":")]
    octets[0] ^= 0x02
    eui = octets[:3] + [0xFF, 0xFE] + octets[3:]
    groups = [(eui[i] << 8) | eui[i + 1] for i in range(0, 8, 2)]
    return IPv6Interface(f"fe80::{groups[0]:x}:{groups[1]:x}:{groups[2]:x}:{groups[3]:x}/64")
