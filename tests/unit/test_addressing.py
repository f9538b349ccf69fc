"""labsupport.addressing: parsers, MAC helpers and the kernel's IPv6 link-local address.

Expected values come from the study notes, from a real kernel (Linux 6.18 with iproute2 6.1,
in scratch network namespaces; tests/kernel/test_kernel_formats.py re-checks them live) or
from a definition (RFC 4291 modified EUI-64, the CNI plugins' `0a:58` MAC prefix, the
kernel's `dev_valid_name`).
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, IPv4Network, IPv6Interface

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labsupport.addressing import (
    BROADCAST_MAC,
    ZERO_MAC,
    check_ifname,
    cni_mac,
    ipv6_link_local,
    parse_ipv4_address,
    parse_ipv4_interface,
    parse_ipv4_network,
    parse_mac,
    stable_mac,
)
from labsupport.errors import LabInputError

FAST = settings(max_examples=60, deadline=None)


def assert_lab_error(excinfo, field: str, value: object) -> None:
    """The one error type, naming the field, the value and what is allowed."""
    err = excinfo.value
    assert isinstance(err, LabInputError) and isinstance(err, ValueError)
    assert err.field == field
    assert err.value == value or (err.value != err.value)  # NaN is not equal to itself
    text = str(err)
    assert text.startswith(f"{field}: ")
    assert repr(value) in text
    assert err.allowed and err.allowed in text


# --- parsers --------------------------------------------------------------------------------------


def test_parse_ipv4_address_reads_an_address_and_strips_blanks():
    assert parse_ipv4_address(" 10.244.1.2 ", "via") == IPv4Address("10.244.1.2")
    assert parse_ipv4_address(IPv4Address("169.254.1.1"), "via") == IPv4Address("169.254.1.1")


@pytest.mark.parametrize("bad", ["10.244.1.256", "10.244.1", "10.244.1.2/24", "fe80::1", "", None, "eth0"])
def test_parse_ipv4_address_refuses_what_is_not_one_address(bad):
    with pytest.raises(LabInputError) as excinfo:
        parse_ipv4_address(bad, "route.via")
    assert_lab_error(excinfo, "route.via", bad)
    assert "IPv4 address" in excinfo.value.allowed


def test_parse_ipv4_interface_keeps_the_host_bits():
    iface = parse_ipv4_interface("10.244.1.2/24", "address")
    assert iface == IPv4Interface("10.244.1.2/24")
    assert iface.network == IPv4Network("10.244.1.0/24")


@pytest.mark.parametrize("bad", ["10.244.1.2", "10.244.1.2/33", "10.244.1.2/", "/24", "x/24"])
def test_parse_ipv4_interface_needs_address_and_prefix_length(bad):
    # iproute2 refuses /33 too: `ip addr add 10.244.1.9/33` -> 'any valid prefix is expected'.
    with pytest.raises(LabInputError) as excinfo:
        parse_ipv4_interface(bad, "pod.address")
    assert_lab_error(excinfo, "pod.address", bad)
    assert "ADDRESS/PREFIXLEN" in excinfo.value.allowed


def test_parse_ipv4_network_takes_a_prefix():
    assert parse_ipv4_network("10.244.0.0/16", "pod_cidr") == IPv4Network("10.244.0.0/16")
    assert parse_ipv4_network("0.0.0.0/0", "route.dst").prefixlen == 0


def test_parse_ipv4_network_refuses_host_bits_and_names_the_network():
    # The kernel refuses it too: `ip route add 10.244.1.5/24 dev eth0` ->
    # 'Error: Invalid prefix for given prefix length.' (confirmed with iproute2 6.1).
    with pytest.raises(LabInputError) as excinfo:
        parse_ipv4_network("10.244.1.5/24", "pod_cidr")
    assert_lab_error(excinfo, "pod_cidr", "10.244.1.5/24")
    assert "host bits must be zero" in excinfo.value.allowed
    assert "10.244.1.0/24" in excinfo.value.allowed


@pytest.mark.parametrize("bad", ["10.244.0.0/40", "ten/8", "", "10.244.0.0/-1"])
def test_parse_ipv4_network_refuses_garbage(bad):
    with pytest.raises(LabInputError) as excinfo:
        parse_ipv4_network(bad, "route.dst")
    assert_lab_error(excinfo, "route.dst", bad)
    assert "network prefix" in excinfo.value.allowed


def test_parse_mac_lowercases_the_colon_form_iproute2_prints():
    assert parse_mac("2A:09:74:CD:C4:62", "mac") == "2a:09:74:cd:c4:62"


@pytest.mark.parametrize("bad", ["2a:09:74:cd:c4", "2a-09-74-cd-c4-62", "2a:09:74:cd:c4:6g", "2a0974cdc462", ""])
def test_parse_mac_refuses_other_forms(bad):
    with pytest.raises(LabInputError) as excinfo:
        parse_mac(bad, "link.mac")
    assert_lab_error(excinfo, "link.mac", bad)


# --- interface names, as the kernel checks them (dev_valid_name, IFNAMSIZ = 16 with the NUL) -----------


@pytest.mark.parametrize("name", ["eth0", "cni0", "docker0", "aws8db0408c9a8", "x" * 15, "veth-ä.1"])
def test_check_ifname_accepts_kernel_names(name):
    assert check_ifname(name, "link.name") == name


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "x" * 16,  # 16 bytes: IFNAMSIZ leaves 15 for the name
        "é" * 9,  # 9 characters but 18 bytes: the kernel counts bytes ('Attribute failed policy validation')
        "eth0\n",  # a trailing newline: iproute2 says '"dev" not a valid ifname'
        "eth 0",
        "eth\t0",
        "a/b",
        "a:b",
        ".",
        "..",
    ],
)
def test_check_ifname_refuses_what_the_kernel_refuses(bad):
    with pytest.raises(LabInputError) as excinfo:
        check_ifname(bad, "bridge")
    assert_lab_error(excinfo, "bridge", bad)
    assert "1-15 bytes" in excinfo.value.allowed


@FAST
@given(st.text(max_size=24))
def test_check_ifname_accepts_exactly_the_kernels_valid_names(text):
    # dev_valid_name(): non-empty, strnlen < IFNAMSIZ, not "." or "..", no '/', ':' or isspace().
    valid = (
        0 < len(text.encode("utf-8", "surrogatepass")) <= 15
        and text not in {".", ".."}
        and not any(c in "/:" or c.isspace() for c in text)
    )
    if valid:
        assert check_ifname(text, "link.name") == text
    else:
        with pytest.raises(LabInputError):
            check_ifname(text, "link.name")


# --- MACs -------------------------------------------------------------------------------------------


def test_special_macs():
    assert BROADCAST_MAC == "ff:ff:ff:ff:ff:ff"
    assert ZERO_MAC == "00:00:00:00:00:00"


def test_cni_mac_is_0a58_then_the_ipv4_bytes():
    # containernetworking/plugins pkg/utils/hwaddr: PrivateMACPrefix = 0a:58, then the 4 address bytes.
    assert cni_mac(IPv4Address("10.244.1.2")) == "0a:58:0a:f4:01:02"
    assert cni_mac(IPv4Address("192.168.255.1")) == "0a:58:c0:a8:ff:01"


@FAST
@given(st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=3))
def test_stable_mac_is_a_deterministic_locally_administered_unicast_mac(names):
    mac = stable_mac(*names)
    assert mac == stable_mac(*names)
    assert parse_mac(mac, "mac") == mac
    first = int(mac[:2], 16)
    assert first & 0x02, "locally administered bit (IEEE 802: U/L) must be set"
    assert not first & 0x01, "group bit must be clear: a station's MAC is unicast"


def test_stable_mac_differs_between_names():
    assert stable_mac("node-1", "pod-a") != stable_mac("node-1", "pod-b")


# --- the IPv6 link-local address the kernel derives from a MAC (modified EUI-64) ------------------------


@pytest.mark.parametrize(
    "mac, expected",
    [
        # The notes' pod ("Inside Pod"): link/ether 56:41:95:26:17:41 -> inet6 fe80::5441:95ff:fe26:1741/64.
        ("56:41:95:26:17:41", "fe80::5441:95ff:fe26:1741/64"),
        # Printed by a real kernel for veths with these MACs (confirmed with iproute2 6.1, Linux 6.18).
        ("0a:58:0a:f4:01:02", "fe80::858:aff:fef4:102/64"),
        ("0a:58:0a:f4:01:01", "fe80::858:aff:fef4:101/64"),
        ("36:5b:e0:a0:96:c1", "fe80::345b:e0ff:fea0:96c1/64"),
        ("d6:ba:28:4b:fc:3f", "fe80::d4ba:28ff:fe4b:fc3f/64"),
    ],
)
def test_ipv6_link_local_matches_the_notes_and_the_kernel(mac, expected):
    assert ipv6_link_local(mac) == IPv6Interface(expected)
    assert ipv6_link_local(mac).with_prefixlen == expected


def _eui64_reference(mac: str) -> IPv6Interface:
    """RFC 4291 appendix A, by integer arithmetic: insert FFFE in the middle, invert the U/L bit."""
    value = int(mac.replace(":", ""), 16)
    interface_id = ((value >> 24) << 40) | (0xFFFE << 24) | (value & 0xFFFFFF)
    interface_id ^= 1 << 57  # the universal/local bit: bit 1 of the first octet
    return IPv6Interface(((0xFE80 << 112) | interface_id, 64))


@FAST
@given(st.binary(min_size=6, max_size=6))
def test_ipv6_link_local_agrees_with_rfc4291(raw):
    mac = ":".join(f"{b:02x}" for b in raw)
    assert ipv6_link_local(mac) == _eui64_reference(mac)


# --- garbage never escapes as anything but LabInputError ----------------------------------------------

PARSERS = [parse_ipv4_address, parse_ipv4_interface, parse_ipv4_network, parse_mac, check_ifname]
GARBAGE = st.one_of(
    st.text(max_size=40),
    st.text(alphabet="0123456789./:abcdefABCDEF -\n", max_size=24),
    st.binary(max_size=16),
    st.integers(),
    st.floats(),
    st.none(),
    st.lists(st.integers(), max_size=3),
)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(PARSERS), GARBAGE)
def test_parsers_raise_only_lab_input_error(parser, value):
    try:
        parser(value, "field.under.test")
    except LabInputError as err:
        assert err.field == "field.under.test"
        assert str(err).startswith("field.under.test: ")
    # any other exception fails the test
