"""`python -m labsupport …`: the course's models on the command line, printing what real tools print.

    python -m labsupport pod-network show [--pods N] [--bridge NAME] [--pod-cidr CIDR] [--namespace NS] [--view V]
    python -m labsupport pod-network walk --from NS --to NS|IP [--udp PORT] [--pcap FILE] [--pods N] …
    python -m labsupport pod-network aws [--namespace NS] [--view V]
    python -m labsupport route get DST [--from SRC] [--iif DEV] --addrs FILE --routes FILE [--rules FILE] [--json]

`route get` reads a real host's `ip -j -d addr`, `ip -4 -j route show table all` and `ip -j rule`
and answers like `ip route get`, naming the rule and table that decided. Bad input prints one line
naming the field, the value and what is allowed, and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
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

    args = parser.parse_args(argv)
    try:
        print(_run(args))
    except LabInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def _run(args: argparse.Namespace) -> str:
    from labsupport import pod_network as pn

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
