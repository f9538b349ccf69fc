"""`python -m labsupport …`: the course's models on the command line, printing what real tools print.

    python -m labsupport pod-network show [--pods N] [--bridge NAME] [--pod-cidr CIDR] [--namespace NS] [--view V]
    python -m labsupport pod-network walk --from NS --to NS|IP [--udp PORT] [--pcap FILE] [--pods N] …
    python -m labsupport pod-network aws [--namespace NS] [--view V]
    python -m labsupport route get DST [--from SRC] [--iif DEV] --addrs FILE --routes FILE [--rules FILE] [--json]
    python -m labsupport pki init DIR [--key rsa|ec|ed25519] [--server-name NAME]... [--client-name NAME]
                                      [--p12-password P] [--seed S]
    python -m labsupport pki show FILE [--password P]
    python -m labsupport pki convert IN OUT [--password P] [--key KEYFILE]
    python -m labsupport pki verify CERT --ca CA [--untrusted CHAIN] [--hostname H] [--ip IP]
                                        [--purpose sslserver|sslclient] [--attime EPOCH]
    python -m labsupport netfilter show --rules FILE [--counters]
    python -m labsupport netfilter trace --rules FILE --addrs FILE --routes FILE --packet SPEC [--json]
    python -m labsupport netfilter conntrack --rules FILE --addrs FILE --routes FILE --packet SPEC [--packet SPEC]…
    python -m labsupport encap {vxlan|ipip|gre|sit|geneve} --outer-src IP --outer-dst IP --inner-src IP --inner-dst IP
                               [--vni N] [--key N] [--seq N] [--payload icmp|udp:PORT|tcp:PORT] [--pcap FILE]
    python -m labsupport cni routes --plugin NAME [--mode MODE] --node NAME [--topology two-nodes|two-subnets]

`route get` reads a real host's `ip -j -d addr`, `ip -4 -j route show table all` and `ip -j rule`
and answers like `ip route get`, naming the rule and table that decided. `pki` makes a CA with a
server and a client certificate, prints certificates as `openssl x509 -text -noout` does, converts
between PEM, DER, PKCS#7 and PKCS#12, and verifies like `openssl verify` (status 0 and `CERT: OK`, or
status 2 and openssl's error lines on stderr). `netfilter` reads `iptables-save` text and prints
it back as iptables-save does; `trace` walks one packet (`tcp 10.0.0.5:34567 > 10.96.0.10:80 iif eth0`,
or `… local` for one the host sends) through the host's hooks and tables and prints the kernel's
TRACE lines and the outcome; `conntrack` replays packets in order and prints `conntrack -L`
(the host's `ip -j rule` can be given with --ip-rules; --no-forwarding for net.ipv4.ip_forward=0). `encap`
wraps a pod's packet (a ping, or UDP/TCP to PORT) in a tunnel as Linux sends it and prints its layers, every
byte labelled with its header and field, and the overhead with the pod MTU it leaves; --pcap writes the
frame for Wireshark. `cni routes` prints one node's `ip route`, `bridge fdb show` and `ip neigh` as a
CNI plugin (flannel, calico, weave, cilium, aws-vpc-cni) in a mode leaves them, after any command the kernel
refused. Bad input prints one line naming the field, the value
and what is allowed, and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from labsupport.errors import LabInputError

VIEWS = ("addr", "route", "rule", "neigh", "arp", "fdb", "all")


def _view(ns, view: str) -> str:
    shown = {
        "addr": ("ip addr", ns.ip_addr),
        "route": ("ip route", ns.ip_route),
        "rule": ("ip rule", ns.ip_rule),
        "neigh": ("ip neigh", ns.ip_neigh),
        "arp": ("arp -a", ns.arp_a),
        "fdb": ("bridge fdb show", ns.bridge_fdb),
    }
    names = [v for v in VIEWS if v != "all"] if view == "all" else [view]
    parts = []
    for name in names:
        command, produce = shown[name]
        parts.append(f"$ {command}   # {ns.name}\n{produce()}" if view == "all" else produce())
    return "\n\n".join(parts)


def _node_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pods", type=int, default=2, help="number of pods (1-8)")
    parser.add_argument("--bridge", default="cni0", help="bridge name (cni0, docker0, …)")
    parser.add_argument("--pod-cidr", default="10.244.1.0/24", help="the node's pod CIDR")


def _read_json(path: str, what: str):
    try:
        return json.loads(Path(path).read_text())
    except OSError as error:
        raise LabInputError(what, path, f"a readable file ({error.strerror})") from None
    except json.JSONDecodeError as error:
        raise LabInputError(what, path, f"the JSON `ip -j` prints (line {error.lineno}: {error.msg})") from None


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run the model, print in the real tools' format."""
    parser = argparse.ArgumentParser(prog="python -m labsupport", description=__doc__.splitlines()[0])
    topics = parser.add_subparsers(dest="topic", required=True)

    pod = topics.add_parser("pod-network", help="a node's namespaces, veths and bridge").add_subparsers(
        dest="command", required=True
    )
    show = pod.add_parser("show", help="print a namespace's iproute2 views")
    _node_args(show)
    show.add_argument("--namespace", help="node-1 (default) or pod-a, pod-b, …")
    show.add_argument("--view", choices=VIEWS, default="all")
    walk = pod.add_parser("walk", help="send one ping (or UDP datagram) and print every hop")
    _node_args(walk)
    walk.add_argument("--from", dest="source", required=True)
    walk.add_argument("--to", dest="destination", required=True)
    walk.add_argument("--udp", type=int, metavar="PORT", help="send UDP to PORT instead of a ping")
    walk.add_argument("--pcap", help="also write the frames to this pcap file")
    aws = pod.add_parser("aws", help="the notes' AWS VPC CNI node")
    aws.add_argument("--namespace")
    aws.add_argument("--view", choices=VIEWS, default="all")

    route = topics.add_parser("route", help="routing decisions on a real host's dumps").add_subparsers(
        dest="command", required=True
    )
    get = route.add_parser("get", help="like `ip route get`, naming rule and table")
    get.add_argument("destination")
    get.add_argument("--from", dest="source")
    get.add_argument("--iif")
    get.add_argument("--addrs", required=True, help="output of `ip -j -d addr`")
    get.add_argument("--routes", required=True, help="output of `ip -4 -j route show table all`")
    get.add_argument("--rules", help="output of `ip -j rule`")
    get.add_argument("--json", action="store_true")

    _pki_args(topics)
    _netfilter_args(topics)
    _encap_args(topics)
    _cni_args(topics)

    args = parser.parse_args(argv)
    try:
        result = _run(args)
    except LabInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if isinstance(result, tuple):  # (stdout, stderr, status): `pki verify` answers as openssl verify does
        out, err, status = result
        if out:
            print(out)
        if err:
            print(err, file=sys.stderr)
        return status
    print(result)
    return 0


PKI_FILES = ("ca.pem", "ca.key", "server.pem", "server.key", "client.pem", "client.key", "client.p12")


def _pki_args(topics) -> None:
    from labsupport.x509 import KEY_KINDS, OUTPUT_FORMATS, PURPOSES

    pki = topics.add_parser("pki", help="certificates: a CA, show, convert, verify (like openssl)").add_subparsers(
        dest="command", required=True
    )
    init = pki.add_parser("init", help="write a CA and a server and a client certificate with their keys")
    init.add_argument("dir", help="directory to write ca.pem, ca.key, server.pem, server.key, client.pem, client.key")
    init.add_argument("--key", choices=KEY_KINDS, default="ed25519", help="key type (default ed25519)")
    init.add_argument("--server-name", action="append", dest="server_names", metavar="NAME",
                      help="the server's DNS name or IP address (repeat; default localhost and 127.0.0.1)")
    init.add_argument("--client-name", default="client", help="the client certificate's CN")
    init.add_argument("--p12-password", metavar="P", help="also write client.p12 protected by P")
    init.add_argument("--seed", help="derive the keys from this seed (reproducible, NOT secret; default random)")
    show = pki.add_parser("show", help="print certificates as `openssl x509 -text -noout` does")
    show.add_argument("file", help="PEM, DER, PKCS#7 (.p7b) or PKCS#12 (with --password)")
    show.add_argument("--password", help="the password of a .p12/.pfx")
    conv = pki.add_parser("convert", help="convert between PEM, DER, PKCS#7 and PKCS#12")
    conv.add_argument("input", metavar="IN", help="any certificate file (its format is read from its bytes)")
    conv.add_argument("output", metavar="OUT",
                      help=f"output; its extension picks the format: {' '.join(OUTPUT_FORMATS)} "
                      "(.crt is written as PEM, .cer as DER)")
    conv.add_argument("--password", help="the .p12 password (reading and writing)")
    conv.add_argument("--key", dest="keyfile", help="the private key for a .p12 output, if IN does not hold it")
    ver = pki.add_parser("verify", help="check a certificate chain like `openssl verify`")
    ver.add_argument("cert", metavar="CERT")
    ver.add_argument("--ca", required=True, help="trusted CA certificates (like -CAfile)")
    ver.add_argument("--untrusted", help="intermediate certificates (like -untrusted)")
    ver.add_argument("--hostname", help="the name the certificate must be for (like -verify_hostname)")
    ver.add_argument("--ip", help="the IP address it must be for (like -verify_ip)")
    ver.add_argument("--purpose", choices=PURPOSES, help="like -purpose")
    ver.add_argument("--attime", type=int, metavar="EPOCH", help="check validity at this time (like -attime)")


def _read_bytes(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise LabInputError(what, path, f"a readable file ({error.strerror})") from None


def _write_private(path: Path, data: bytes) -> None:
    """Write a file only its owner can read (mode 0600 from the start: no moment of wider access)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.chmod(path, 0o600)


def _pki(args: argparse.Namespace):
    from labsupport import x509

    if args.command == "init":
        target = Path(args.dir)
        if target.exists() and not target.is_dir():
            raise LabInputError("DIR", args.dir, "a directory (or a path to create)")
        taken = [name for name in PKI_FILES if (target / name).exists()]
        if taken:
            raise LabInputError("DIR", args.dir, f"a directory without {', '.join(taken)} (they would be overwritten)")
        pki = x509.build_pki(args.key, seed=args.seed, server_names=args.server_names or ("localhost", "127.0.0.1"),
                             client_name=args.client_name)
        p12 = x509.to_p12(pki.client, args.p12_password, chain=[pki.root]) if args.p12_password is not None else None
        target.mkdir(parents=True, exist_ok=True)
        lines = []
        for stem, identity in (("ca", pki.root), ("server", pki.server), ("client", pki.client)):
            (target / f"{stem}.pem").write_bytes(identity.cert_pem())
            _write_private(target / f"{stem}.key", identity.key_pem())
            dns, ips = x509._sans_of(identity.cert)
            names = ", ".join([f"DNS:{d}" for d in dns] + [f"IP:{i}" for i in ips])
            lines.append(f"{target / f'{stem}.pem'}: {identity.subject}" + (f" ({names})" if names else ""))
            lines.append(f"{target / f'{stem}.key'}: {x509.key_kind(identity.key)} private key (mode 0600)")
        if p12 is not None:
            _write_private(target / "client.p12", p12)
            lines.append(f"{target / 'client.p12'}: PKCS#12 with the client's key and certificates (mode 0600)")
        lines.append(f"check: openssl verify -CAfile {target / 'ca.pem'} {target / 'server.pem'}")
        return "\n".join(lines)
    if args.command == "show":
        data = _read_bytes(args.file, "FILE")
        found = x509.detect(data)
        if found.kind == "certificate request":
            return x509.csr_text(x509.load_csr(data))
        if found.kind in ("private key", "encrypted private key") and "certificate" not in found.items:
            return f"{args.file}: {found.describe()} (a private key: not printed)"
        return "\n\n".join(x509.text(c) for c in x509.load_certificates(data, args.password))
    if args.command == "convert":
        suffix = Path(args.output).suffix.lower()
        if suffix not in x509.OUTPUT_FORMATS:
            raise LabInputError("OUT", args.output, f"a file name ending in {', '.join(x509.OUTPUT_FORMATS)}")
        data = _read_bytes(args.input, "IN")
        key = _read_bytes(args.keyfile, "--key") if args.keyfile else None
        to = x509.OUTPUT_FORMATS[suffix]
        out = x509.convert(data, to, password=args.password, key=key)
        certs = x509.load_certificates(data, args.password)
        secret = to == "p12" or b"PRIVATE KEY" in out
        if secret:
            _write_private(Path(args.output), out)
        else:
            Path(args.output).write_bytes(out)
        what = {"pem": "PEM", "der": "DER", "p7b": "PKCS#7", "p12": "PKCS#12"}[to]
        count = 1 if to == "der" else len(certs)
        note = f"{count} certificate{'s' if count > 1 else ''}" + (" and the private key" if secret else "")
        if to == "der" and len(certs) > 1:
            note += f" (the first of {len(certs)}: DER holds one; use .p7b for a chain)"
        return f"{args.output}: {what}, {note}"
    cert = x509.load_certificates(_read_bytes(args.cert, "CERT"), fieldname="CERT")[0]
    trusted = x509.load_certificates(_read_bytes(args.ca, "--ca"), fieldname="--ca")
    untrusted = x509.load_certificates(_read_bytes(args.untrusted, "--untrusted"), fieldname="--untrusted") \
        if args.untrusted else []
    at = datetime.fromtimestamp(args.attime, UTC) if args.attime is not None else None
    result = x509.verify(cert, trusted, untrusted, hostname=args.hostname, ip=args.ip, purpose=args.purpose, at=at)
    if result.ok:
        return result.lines(args.cert)[0], "", 0
    return "", "\n".join(result.lines(args.cert)), 2


def _netfilter_args(topics) -> None:
    nf = topics.add_parser("netfilter", help="iptables rules: print, trace a packet, replay into conntrack")
    commands = nf.add_subparsers(dest="command", required=True)
    show = commands.add_parser("show", help="print the rules back as iptables-save does")
    show.add_argument("--rules", required=True, help="output of `iptables-save` (or an iptables-restore file)")
    show.add_argument("--counters", action="store_true", help="with [packets:bytes], as `iptables-save -c`")
    for name, text in (("trace", "walk one packet through the hooks and print the TRACE lines"),
                       ("conntrack", "replay packets in order and print `conntrack -L`")):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("--rules", required=True, help="output of `iptables-save`")
        sub.add_argument("--addrs", required=True, help="output of `ip -j -d addr`")
        sub.add_argument("--routes", required=True, help="output of `ip -4 -j route show table all`")
        sub.add_argument("--ip-rules", help="output of `ip -j rule`")
        sub.add_argument("--no-forwarding", action="store_true", help="the host has net.ipv4.ip_forward = 0")
        if name == "trace":
            sub.add_argument("--packet", required=True, metavar="SPEC",
                             help="e.g. 'tcp 10.0.0.5:34567 > 10.96.0.10:80 iif eth0' or '… local'")
            sub.add_argument("--json", action="store_true")
        else:
            sub.add_argument("--packet", required=True, action="append", metavar="SPEC", dest="packets",
                             help="a packet, in order (repeat)")


def _read_text(path: str, what: str) -> str:
    try:
        return Path(path).read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise LabInputError(what, path, f"a readable text file ({getattr(error, 'strerror', None) or error})") from None


def _netfilter(args: argparse.Namespace) -> str:
    from labsupport import netfilter as nf

    rules = nf.parse_iptables_save(_read_text(args.rules, "--rules"))
    if args.command == "show":
        return rules.to_iptables_save(counters=args.counters).rstrip("\n")
    from labsupport.host import namespace_from_ip_json

    host = namespace_from_ip_json(
        "host",
        _read_json(args.addrs, "--addrs"),
        _read_json(args.routes, "--routes"),
        _read_json(args.ip_rules, "--ip-rules") if args.ip_rules else None,
    )
    host.forwarding = not args.no_forwarding
    if args.command == "trace":
        result = nf.trace(rules, host, nf.parse_packet_spec(args.packet))
        if args.json:
            return json.dumps(result.to_json())
        return result.text()
    specs = [nf.parse_packet_spec(text) for text in args.packets]
    table, _ = nf.replay(rules, host, specs)
    return table.show()


ENCAP_KINDS = ("vxlan", "ipip", "gre", "sit", "geneve")


def _encap_args(topics) -> None:
    encap = topics.add_parser("encap", help="a pod's packet in a tunnel: layers, annotated bytes, overhead")
    encap.add_argument("kind", choices=ENCAP_KINDS, help="the encapsulation")
    encap.add_argument("--outer-src", required=True, metavar="IP", help="the sending node's address (tunnel local)")
    encap.add_argument("--outer-dst", required=True, metavar="IP", help="the receiving node's address (tunnel remote)")
    encap.add_argument("--inner-src", required=True, metavar="IP", help="the sending pod's address")
    encap.add_argument("--inner-dst", required=True, metavar="IP", help="the receiving pod's address")
    encap.add_argument("--vni", metavar="N", help="VXLAN/Geneve network identifier, 0-16777215 (default 1)")
    encap.add_argument("--key", metavar="N", help="GRE key, 0-4294967295")
    encap.add_argument("--seq", metavar="N", help="GRE sequence number, 0-4294967295")
    encap.add_argument("--payload", default="icmp", help="icmp (a ping, the default), udp:PORT or tcp:PORT")
    encap.add_argument("--pcap", metavar="FILE", help="also write the frame to this pcap file")


def _encap(args: argparse.Namespace) -> str:
    from labsupport import packets, tunneling

    try:
        built = tunneling.build(args.kind, args.outer_src, args.outer_dst, args.inner_src, args.inner_dst,
                                payload=args.payload, vni=args.vni, key=args.key, seq=args.seq)
    except LabInputError as error:  # name the option the user typed
        option = f"--{error.field.replace('_', '-')}"
        if option.lstrip("-").replace("-", "_") in vars(args):
            raise LabInputError(option, error.value, error.allowed) from None
        raise
    text = built.text()
    if args.pcap:
        try:
            packets.write_pcap(args.pcap, [built.wire])
        except OSError as error:
            raise LabInputError("--pcap", args.pcap, f"a writable file ({error.strerror})") from None
        text += f"\n1 frame written to {args.pcap}"
    return text


def _cni_args(topics) -> None:
    cni = topics.add_parser("cni", help="what a CNI plugin sets up on each node of a small cluster")
    commands = cni.add_subparsers(dest="command", required=True)
    routes = commands.add_parser("routes", help="a node's ip route, bridge fdb and ip neigh")
    routes.add_argument("--plugin", required=True, help="flannel, calico, weave, cilium or aws-vpc-cni")
    routes.add_argument("--mode", help="the plugin's mode (default: its first, e.g. vxlan for flannel)")
    routes.add_argument("--node", required=True, help="node-1, node-2 (and node-3 with --topology two-subnets)")
    routes.add_argument("--topology", default="two-nodes", help="two-nodes (default) or two-subnets")


def _run(args: argparse.Namespace):
    from labsupport import pod_network as pn

    if args.topic == "encap":
        return _encap(args)
    if args.topic == "cni":
        from labsupport import cni

        return cni.routes_text(args.plugin, args.mode, args.node, args.topology)
    if args.topic == "pki":
        return _pki(args)
    if args.topic == "netfilter":
        return _netfilter(args)
    if args.topic == "route":
        from labsupport.host import namespace_from_ip_json

        ns = namespace_from_ip_json(
            "host",
            _read_json(args.addrs, "--addrs"),
            _read_json(args.routes, "--routes"),
            _read_json(args.rules, "--rules") if args.rules else None,
        )
        decision = ns.route_get(args.destination, src=args.source, iif=args.iif)
        if args.json:
            return json.dumps(
                {"rule": decision.rule.priority, "table": decision.table.label, "route": decision.route.to_json()}
            )
        return decision.explain()
    if args.command == "aws":
        node = pn.aws_vpc_cni_node()
        return _view(node.namespace(args.namespace or node.name), args.view)
    node = pn.build_node(pods=args.pods, bridge=args.bridge, pod_cidr=args.pod_cidr)
    if args.command == "show":
        return _view(node.namespace(args.namespace or node.name), args.view)
    proto, port = ("udp", args.udp) if args.udp else ("icmp", 8080)
    result = pn.walk(node, args.source, args.destination, proto=proto, port=port)
    lines = [result.table()]
    if args.pcap:
        result.write_pcap(args.pcap)
        lines.append(f"{len(result.frames())} frames written to {args.pcap}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
