"""`python -m labsupport`: prints what the models print, and bad input is one line with status 2."""

from __future__ import annotations

import json
import subprocess
import sys

from scapy.utils import rdpcap

from labsupport.__main__ import main
from labsupport.pod_network import aws_vpc_cni_node, build_node, walk


def test_show_prints_the_namespace_views(capsys) -> None:
    assert main(["pod-network", "show", "--pods", "3", "--namespace", "pod-b", "--view", "route"]) == 0
    assert capsys.readouterr().out.strip() == build_node(pods=3).namespaces["pod-b"].ip_route()


def test_show_all_names_each_command(capsys) -> None:
    assert main(["pod-network", "show"]) == 0
    out = capsys.readouterr().out
    for command in ("$ ip addr", "$ ip route", "$ ip rule", "$ ip neigh", "$ arp -a", "$ bridge fdb show"):
        assert command in out


def test_walk_prints_the_hops_and_writes_a_pcap(tmp_path, capsys) -> None:
    pcap = tmp_path / "walk.pcap"
    assert main(["pod-network", "walk", "--from", "pod-a", "--to", "pod-b", "--pcap", str(pcap)]) == 0
    expected = walk(build_node(), "pod-a", "pod-b")
    out = capsys.readouterr().out
    assert expected.table() in out
    assert [bytes(p) for p in rdpcap(str(pcap))] == [bytes(f) for f in expected.frames()]


def test_aws_rules_are_the_notes(capsys) -> None:
    assert main(["pod-network", "aws", "--view", "rule"]) == 0
    assert capsys.readouterr().out.strip() == aws_vpc_cni_node().host.ip_rule()


def test_route_get_reads_ip_json_dumps(tmp_path, capsys) -> None:
    # The AWS node's own tables, dumped in `ip -j` shape, give the model's own decision back.
    host = aws_vpc_cni_node().host
    addrs = [
        {
            "ifindex": link.index, "ifname": link.name, "mtu": link.mtu, "address": link.mac,
            "link_type": "loopback" if link.kind == "loopback" else "ether",
            "addr_info": [{"family": "inet", "local": str(a.ip), "prefixlen": a.network.prefixlen} for a in link.addresses],
        }
        for link in host.links.values()
    ]
    routes = [dict(r, table=name) if name != "main" else r for name, t in host.tables.items() for r in t.to_json()]
    table_ids = {name: t.id for name, t in host.all_tables().items()}
    rules = [r.to_json(table_ids) for r in host.rules]
    rules = [dict(r, table="eni-1") if r["table"] == "2" else r for r in rules]
    files = {}
    for name, data in (("addrs", addrs), ("routes", routes), ("rules", rules)):
        files[name] = tmp_path / f"{name}.json"
        files[name].write_text(json.dumps(data))
    args = ["route", "get", "10.0.5.5", "--from", "10.0.97.30", "--iif", "aws8db0408c9a8",
            "--addrs", str(files["addrs"]), "--routes", str(files["routes"]), "--rules", str(files["rules"]), "--json"]
    assert main(args) == 0
    decision = json.loads(capsys.readouterr().out)
    assert decision["rule"] == 1536 and decision["table"] == "eni-1"
    assert decision["route"]["dev"] == "eth1" and decision["route"]["gateway"] == "10.0.96.1"


def test_bad_input_is_one_line_and_status_2() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "labsupport", "pod-network", "show", "--pod-cidr", "10.1.2.3/24"],
        capture_output=True, text=True, check=False,
    )
    assert run.returncode == 2
    assert run.stdout == ""
    assert run.stderr.strip() == (
        "error: pod_cidr: '10.1.2.3/24' is not allowed; host bits must be zero: the network is 10.1.2.0/24"
    )
    assert "Traceback" not in run.stderr


def test_unreadable_dump_is_a_clear_error(tmp_path, capsys) -> None:
    bad = tmp_path / "addrs.json"
    bad.write_text("{not json")
    assert main(["route", "get", "1.1.1.1", "--addrs", str(bad), "--routes", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --addrs:") and "line 1" in err


# --- encap ---------------------------------------------------------------------------------------

ENCAP = ["encap", "vxlan", "--outer-src", "192.168.56.10", "--outer-dst", "192.168.56.11",
         "--inner-src", "10.244.1.2", "--inner-dst", "10.244.2.2"]


def test_encap_prints_layers_bytes_and_overhead_and_writes_the_frame(tmp_path, capsys) -> None:
    from labsupport import packets, tunneling

    pcap = tmp_path / "vxlan.pcap"
    assert main([*ENCAP, "--vni", "42", "--payload", "udp:5000", "--pcap", str(pcap)]) == 0
    out = capsys.readouterr().out
    built = tunneling.build("vxlan", "192.168.56.10", "192.168.56.11", "10.244.1.2", "10.244.2.2", payload="udp:5000", vni=42)
    assert packets.layered_summary(built.wire) in out and packets.hexdump(built.wire) in out
    assert "VXLAN · vni = 0x00002a" in out
    assert "overhead: 50 bytes = outer IPv4 20 + outer UDP 8 + VXLAN 8 + inner Ethernet 14\n" in out  # UDP inside too
    assert out.rstrip().endswith(f"1 frame written to {pcap}")
    (frame,) = rdpcap(str(pcap))
    assert bytes(frame) == bytes(built.wire)


def test_encap_every_kind_reports_the_models_overhead(capsys) -> None:
    from labsupport import tunneling

    cases = {
        "ipip": ([], 20), "gre": (["--key", "7", "--seq", "1"], 32), "geneve": (["--vni", "5"], 50),
        "sit": (["--inner-src", "fd00::1", "--inner-dst", "fd00::2", "--payload", "tcp:443"], 20),
    }
    for kind, (extra, overhead) in cases.items():
        args = [ENCAP[0], kind, *ENCAP[2:], *extra]
        assert main(args) == 0, kind
        out = capsys.readouterr().out
        assert f"overhead: {overhead} bytes" in out and f"1500 - {overhead} = {1500 - overhead}" in out
        assert tunneling.overhead(kind, key=kind == "gre", seq=kind == "gre") == overhead


def test_encap_bad_input_is_one_line_naming_the_option_and_status_2() -> None:
    cases = [
        (["--vni", "16777216"], "error: --vni: '16777216' is not allowed; a whole number from 0 to 16777215"),
        (["--key", "5"], "error: --key: '5' is not allowed; only with gre or gretap"),
        (["--payload", "udp:0"], "error: --payload: 'udp:0' is not allowed; icmp, udp:PORT or tcp:PORT (PORT from 1 to 65535)"),
        (["--outer-dst", "fd00::1"], "error: --outer-dst: 'fd00::1' is not allowed; an IPv4 address, like the tunnel's source 192.168.56.10"),
    ]
    for extra, message in cases:
        run = subprocess.run([sys.executable, "-m", "labsupport", *ENCAP, *extra],
                             capture_output=True, text=True, check=False)
        assert (run.returncode, run.stdout, run.stderr.strip()) == (2, "", message)
    wrong_family = {
        "ipip": (["--inner-src", "fd00::1", "--inner-dst", "fd00::2"],
                 "error: --inner-src: 'fd00::1' is not allowed; an IPv4 address: IPIP carries IPv4 only (IPv6 goes over sit or GRE)"),
        "sit": ([*ENCAP[6:]],
                "error: --inner-src: '10.244.1.2' is not allowed; an IPv6 address: sit carries IPv6 over IPv4"),
    }
    for kind, (inner, message) in wrong_family.items():
        run = subprocess.run([sys.executable, "-m", "labsupport", "encap", kind, *ENCAP[2:6], *inner],
                             capture_output=True, text=True, check=False)
        assert (run.returncode, run.stdout, run.stderr) == (2, "", message + "\n")
