"""`make bench`: how fast the course is, measured rather than asserted.

Prints, per lab widget, the median and 95th percentile of a control change driven
programmatically (goal: p95 under 50 ms); the time of `import labsupport` in a fresh
interpreter (goal: under 0.5 s); the models' own costs and the kernel twin's; each lab's execution time
(goal: under 20 s); and, unless BENCH_QUICK=1, a cold `make book` and `make test` in a
fresh clone of the repository (a new `.venv` from the pip cache).
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _timings(action: Callable[[], object], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        out.append(time.perf_counter() - start)
    return out


def _line(name: str, seconds: list[float], goal: float | None = None) -> str:
    ms = sorted(s * 1000 for s in seconds)
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    verdict = "" if goal is None else ("  ok" if p95 <= goal * 1000 else f"  OVER the {goal * 1000:.0f} ms goal")
    return f"{name:<68} median {statistics.median(ms):8.1f} ms   p95 {p95:8.1f} ms   (n={len(ms)}){verdict}"


def bench_import(repeat: int = 7) -> str:
    """`import labsupport` timed inside a fresh interpreter each time (nothing cached in the process)."""
    code = "import time; t = time.perf_counter(); import labsupport; print(time.perf_counter() - t)"
    seconds = [
        float(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)
        for _ in range(repeat)
    ]
    return _line("import labsupport (fresh interpreter)", seconds, goal=0.5)


def bench_widgets(repeat: int = 25) -> list[str]:
    """Control changes of every lab widget, driven with `Explorable.set` as a learner's click would."""
    from labsupport import tls
    from labsupport.views import pod_network as views
    from labsupport.views.quiz import Question, quiz

    lines = []
    node_ui = views.build_a_node()
    choices = iter([{"pods": p, "bridge": b} for _ in range(repeat) for p in (2, 3, 4) for b in ("cni0", "docker0")])
    lines.append(_line("pod-network 'Build a node': pods/bridge (precomputed)",
                       _timings(lambda: node_ui.set(**next(choices)), repeat), goal=0.05))
    cidrs = iter(["10.244.2.0/24", "10.1.0.0/16", "172.17.0.0/16", "10.244.1.0/24"] * repeat)
    lines.append(_line("pod-network 'Build a node': pod CIDR typed (live re-render)",
                       _timings(lambda: node_ui.set(pod_cidr=next(cidrs)), repeat), goal=0.05))
    walk_ui = views.packet_way()
    pairs = iter([{"source": s, "destination": d} for _ in range(repeat)
                  for s in ("pod-a", "pod-b", "node-1") for d in ("pod-b", "pod-c", "8.8.8.8")])
    lines.append(_line("pod-network 'A packet's way': from/to (precomputed)",
                       _timings(lambda: walk_ui.set(**next(pairs)), repeat), goal=0.05))
    from labsupport.views import x509 as x509_views

    workshop = x509_views.certificate_workshop()
    settings = iter([{"key": k, "validity": v} for _ in range(repeat) for k in ("ed25519", "ec")
                     for v in x509_views.VALIDITY])
    lines.append(_line("x509 'Certificate workshop': key/usage/validity/issuer (precomputed)",
                       _timings(lambda: workshop.set(**next(settings)), repeat), goal=0.05))
    hosts = iter(["localhost", "wrong.example", "127.0.0.1", "api.lab.example"] * repeat)
    lines.append(_line("x509 'Certificate workshop': host typed (live re-render)",
                       _timings(lambda: workshop.set(hostname=next(hosts)), repeat), goal=0.05))
    names = iter(["localhost, 127.0.0.1", "api.lab.example", "*.lab.example, 10.0.0.1"] * repeat)
    lines.append(_line("x509 'Certificate workshop': SAN names typed (live re-render)",
                       _timings(lambda: workshop.set(names=next(names)), repeat), goal=0.05))
    matrix = x509_views.handshake_matrix()
    cases = iter([{"case": c.name, "version": v} for _ in range(repeat) for c in tls.TLS_CASES[:3]
                  for v in ("TLSv1.2", "TLSv1.3")])
    lines.append(_line("x509 'Handshake matrix': case/version (precomputed)",
                       _timings(lambda: matrix.set(**next(cases)), repeat), goal=0.05))
    from labsupport import nat
    from labsupport.views import netfilter as nf_views

    rule_ui = nf_views.rule_workshop()
    picks = iter([{"ruleset": r, "packet": p} for _ in range(repeat) for r in nf_views.WORKSHOP_RULESETS
                  for p in nf_views.WORKSHOP_PACKETS])
    lines.append(_line("netfilter 'Rule-table workshop': rules/packet (precomputed)",
                       _timings(lambda: rule_ui.set(**next(picks)), repeat), goal=0.05))
    commands = iter(["iptables -t nat -A POSTROUTING -o eth1 -j MASQUERADE",
                     ("iptables -A INPUT -p tcp --dport 22 -j DROP; iptables -t nat -A PREROUTING -i eth1 -p tcp "
                     "--dport 80 -j DNAT --to-destination 192.168.1.2")] * repeat)
    lines.append(_line("netfilter 'Rule-table workshop': iptables commands typed (live)",
                       _timings(lambda: rule_ui.set(commands=next(commands)), repeat), goal=0.05))
    recipes = nf_views.nat_scenarios()
    names = iter(list(nat.SCENARIOS) * repeat)
    lines.append(_line("nat 'NAT recipes': recipe (precomputed)",
                       _timings(lambda: recipes.set(name=next(names)), repeat), goal=0.05))
    from labsupport.views import overlay as overlay_views
    from labsupport.views import tunneling as tunneling_views

    vxlan_ui = overlay_views.vxlan_builder()
    picks = iter([{"underlay": u, "payload": p} for _ in range(repeat) for u in ("ipv4", "ipv6")
                  for p in ("icmp", "udp:8080", "tcp:443")])
    lines.append(_line("overlay 'Build a VXLAN packet': underlay/payload (precomputed)",
                       _timings(lambda: vxlan_ui.set(**next(picks)), repeat), goal=0.05))
    vnis = iter(["4096", "16777215", "1", "70000"] * repeat)
    lines.append(_line("overlay 'Build a VXLAN packet': VNI typed (live re-render)",
                       _timings(lambda: vxlan_ui.set(vni=next(vnis)), repeat), goal=0.05))
    mtus = iter(["9001", "1400", "1500", "100"] * repeat)
    lines.append(_line("overlay 'Build a VXLAN packet': underlay MTU typed (live, incl. an error)",
                       _timings(lambda: vxlan_ui.set(underlay_mtu=next(mtus)), repeat), goal=0.05))
    tunnel_ui = tunneling_views.tunnel_builder()
    tunnels = iter([{"tunnel": t, "payload": p} for _ in range(repeat) for t in tunneling_views.TUNNELS
                    for p in ("icmp", "tcp:443")])
    lines.append(_line("tunneling 'Build a tunnel packet': tunnel/payload (precomputed)",
                       _timings(lambda: tunnel_ui.set(**next(tunnels)), repeat), goal=0.05))
    ends = iter(["10.0.0.1 > 10.0.0.2", "", "192.168.57.10 > 192.168.56.10", "fd00::1 > fd00::2"] * repeat)
    lines.append(_line("tunneling 'Build a tunnel packet': endpoints typed (live re-render)",
                       _timings(lambda: tunnel_ui.set(endpoints=next(ends)), repeat), goal=0.05))
    from labsupport.views import cni as cni_views

    comparator = cni_views.comparator()
    plugins = iter([label for _ in range(repeat) for label, _ in cni_views.PLUGIN_MODES])
    lines.append(_line("cni 'Two nodes, one packet': plugin · mode (precomputed)",
                       _timings(lambda: comparator.set(plugin=next(plugins)), repeat), goal=0.05))
    clusters = iter([t for _ in range(repeat) for t in ("two-subnets", "two-nodes")])
    lines.append(_line("cni 'Two nodes, one packet': cluster (precomputed)",
                       _timings(lambda: comparator.set(topology=next(clusters)), repeat), goal=0.05))
    pings = iter([d for _ in range(repeat) for d in ("pod-c", "pod-b")])
    lines.append(_line("cni 'Two nodes, one packet': ping pod-b/pod-c (precomputed)",
                       _timings(lambda: comparator.set(destination=next(pings)), repeat), goal=0.05))
    question = quiz(Question("q", ("a", "b", "c"), 1, "why")).children[0]
    answers = iter([0, 1, 2] * repeat)
    lines.append(_line("pod-network quiz: answer chosen (precomputed)",
                       _timings(lambda: question.set(answer=next(answers)), repeat), goal=0.05))
    return lines


def bench_models(repeat: int = 25) -> list[str]:
    """The models behind the widgets: building a node, walking a ping, the requirement checks."""
    from labsupport import pod_network as pn

    node = pn.build_node(pods=4)
    return [
        _line("build_node(pods=4)", _timings(lambda: pn.build_node(pods=4), repeat)),
        _line("walk pod-a -> pod-b (ARP, ICMP, reply)", _timings(lambda: pn.walk(node, "pod-a", "pod-b"), repeat)),
        _line("check_requirements (4 pods: 24 walks)", _timings(lambda: pn.check_requirements(node), 5)),
        *bench_cni(repeat),
    ]


def bench_cni(repeat: int = 25) -> list[str]:
    """The cni model: a cross-node ping through each plugin's datapath (after one warm-up walk)."""
    from labsupport import cni

    lines = []
    for plugin, mode in (("flannel", "vxlan"), ("calico", "ipip"), ("calico", "bgp"), ("cilium", "vxlan")):
        built = cni.cluster(plugin, mode)
        cni.walk(built, "pod-a", "pod-b")
        lines.append(_line(f"cni walk pod-a -> pod-b across nodes ({plugin} {mode})",
                           _timings(lambda built=built: cni.walk(built, "pod-a", "pod-b"), repeat)))
    return lines


def bench_twin(repeat: int = 5) -> list[str]:
    """The kernel twins: a three-pod node, and flannel's VXLAN across two nodes: build, ping, read back,
    compare, clean up (needs root)."""
    from labsupport import kernel
    from labsupport import pod_network as pn

    ok, why = kernel.available()
    if not ok:
        return [f"{'kernel twin run_twin(3 pods)':<68} skipped: {why}"]
    node = pn.build_node(pods=3)
    reports = [kernel.run_twin(node, "pod-a", "pod-b") for _ in range(repeat)]
    agreed = sum(r.agrees for r in reports)
    from labsupport import kernel_overlay

    vxlan = [kernel_overlay.run_vxlan_twin() for _ in range(repeat)]
    return [
        _line("kernel twin run_twin(3 pods)", [r.timings["total"] for r in reports])
        + f"   agreed {agreed}/{repeat}; last: {reports[-1].timing()}",
        _line("kernel twin run_vxlan_twin (flannel vxlan, two nodes)", [r.timings["total"] for r in vxlan])
        + f"   agreed {sum(r.agrees for r in vxlan)}/{repeat}; last: {vxlan[-1].timing()}",
    ]


def _service_dump(services: int) -> str:
    """An iptables-save dump shaped like kube-proxy's: one nat dispatch rule per ClusterIP service."""
    lines = ["*nat", ":PREROUTING ACCEPT [0:0]", ":INPUT ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]",
             ":POSTROUTING ACCEPT [0:0]", ":KUBE-SERVICES - [0:0]", "-A PREROUTING -j KUBE-SERVICES"]
    for i in range(services):
        ip = f"10.96.{i // 250}.{i % 250 + 1}"
        lines.append(f'-A KUBE-SERVICES -d {ip}/32 -p tcp -m comment --comment "ns/svc{i}:http cluster IP" '
                     f"-m tcp --dport 80 -j DNAT --to-destination 10.244.{i // 250}.{i % 250 + 1}:8080")
    return "\n".join([*lines, "COMMIT", "*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]",
                      ":OUTPUT ACCEPT [0:0]", "COMMIT"]) + "\n"


def bench_netfilter(repeat: int = 25, rules: int = 10_000) -> list[str]:
    """The netfilter model: one packet traced through a 10,000-rule nat chain to its last rule (goal: well
    under 50 ms), and reading (iptables-save text) and printing a 10,000-rule dump."""
    from labsupport import netfilter as nf
    from labsupport.host import Namespace

    host = Namespace("router", role="node", forwarding=True)
    host.add_link("eth0", "veth", "02:00:00:00:00:01")
    host.add_address("eth0", "10.0.0.1/24")
    host.add_link("eth1", "veth", "02:00:00:00:00:02")
    host.add_address("eth1", "10.244.0.1/16")
    text = _service_dump(rules)
    ruleset = nf.parse_iptables_save(text)
    last = nf.parse_packet_spec(f"tcp 10.0.0.5:34567 > 10.96.{(rules - 1) // 250}.{(rules - 1) % 250 + 1}:80 iif eth0")
    # the same chain keyed on ports, not addresses: no index helps, every rule is tested in turn
    by_port = nf.parse_iptables_save(re.sub(r"-d 10\.96\.\S+ ", "", text).replace("--dport 80 ", "--dport 0 ", rules - 1))
    worst = nf.parse_packet_spec("tcp 10.0.0.5:34567 > 10.96.0.1:80 iif eth0")
    return [
        _line(f"netfilter trace through {rules:,} rules (matches the last)",
              _timings(lambda: nf.trace(ruleset, host, last), repeat), goal=0.05),
        _line(f"netfilter trace through {rules:,} rules, each one tested",
              _timings(lambda: nf.trace(by_port, host, worst), repeat), goal=0.05),
        _line(f"netfilter parse a {rules:,}-rule iptables-save dump", _timings(lambda: nf.parse_iptables_save(text), 3)),
        _line(f"netfilter print a {rules:,}-rule dump (iptables-save)", _timings(ruleset.to_iptables_save, 5)),
    ]


def bench_netfilter_twin(cases: int = 40) -> list[str]:
    """The netfilter twin: one case (iptables-restore, its probes, iptables-save -c, conntrack -L) on the
    real kernel, the same case through the model, and the twin's build and cleanup (needs root)."""
    from labsupport import kernel

    ok, why = kernel.available()
    if not ok:
        return [f"{'netfilter twin: one case on the kernel':<68} skipped: {why}"]
    start = time.perf_counter()
    kernel_times, model_times, probes, agreed = [], [], 0, 0
    with kernel.NetfilterTwin() as twin:
        built = time.perf_counter() - start
        for seed in range(cases):
            ruleset, items = kernel.random_ruleset(seed).text, kernel.random_probes(seed)
            t = time.perf_counter()
            case = twin.run_case(ruleset, items)
            kernel_times.append(time.perf_counter() - t)
            t = time.perf_counter()
            _, conntrack, steps = kernel.model_case(ruleset, case.probes)
            model_times.append(time.perf_counter() - t)
            probes += len(case.probes)
            agreed += not kernel.compare_case(case, steps, conntrack.show())
        t = time.perf_counter()
    cleanup = time.perf_counter() - t
    return [
        _line("netfilter twin: one case on the kernel", kernel_times)
        + f"   {probes / cases:.1f} probes/case; all features: {agreed}/{cases} cases agree",
        _line("netfilter twin: the same case through the model", model_times),
        _line("netfilter twin: build (3 namespaces, 3 observers)", [built]),
        _line("netfilter twin: cleanup", [cleanup]),
    ]


def _connects(tls, pki, repeat: int) -> list[float]:
    with tls.TLSServer(pki.server, client_ca=[pki.root], connections=repeat) as server:
        return _timings(lambda: tls.connect(server.port, [pki.root], identity=pki.client), repeat)


def bench_x509(repeat: int = 25) -> list[str]:
    """Certificates and TLS: issue a CA + server + client set, verify a chain, one mutual-TLS handshake."""
    from labsupport import tls, x509

    pki = x509.build_pki(seed=None, intermediate=True)
    chain = (pki.server, [pki.root], [pki.intermediate])
    ids = tls.tls_identities()
    return [
        _line("x509 build_pki (Ed25519 CA + server + client, random keys)",
              _timings(lambda: x509.build_pki(seed=None), repeat)),
        _line("x509 build_pki (seeded: the lab's stable certificates)", _timings(x509.build_pki, repeat)),
        _line("x509 verify (leaf, intermediate, root; hostname)",
              _timings(lambda: x509.verify(*chain, hostname="localhost"), repeat)),
        _line("x509 text (openssl x509 -text of one certificate)", _timings(lambda: x509.text(pki.server.cert), repeat)),
        _line("tls mutual handshake on 127.0.0.1 (both contexts, thread start to join)",
              [tls.timed_handshake(pki) for _ in range(repeat)]),
        _line("tls connect to a running mutual-TLS server (client side only)", _connects(tls, pki, repeat)),
        _line("tls handshake_matrix (10 cases x TLS 1.2/1.3 = 20 handshakes)",
              _timings(lambda: tls.handshake_matrix(identities=ids), 5)),
    ]


def bench_labs() -> list[str]:
    """Each lab executed top to bottom on a fresh kernel, as nbval and the book build do."""
    import nbformat
    from nbclient import NotebookClient

    lines = []
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        start = time.perf_counter()
        NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
        lines.append(_line(f"lab {path.stem} (execute all)", [time.perf_counter() - start], goal=20))
    return lines


def bench_cold_make() -> list[str]:
    """A cold `make book` then `make test` in a fresh clone (its own new .venv; pip's cache is warm)."""
    lines = []
    with tempfile.TemporaryDirectory(prefix="k8s101-bench-") as tmp:
        clone = Path(tmp) / "clone"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        for target in ("book", "test"):
            start = time.perf_counter()
            done = subprocess.run(["make", target], cwd=clone, capture_output=True, text=True, check=False)
            elapsed = time.perf_counter() - start
            status = "passed" if done.returncode == 0 else f"FAILED (exit {done.returncode})"
            lines.append(f"{'cold make ' + target:<68} {elapsed:8.1f} s   {status}")
            if done.returncode != 0:
                lines.append(done.stdout[-2000:] + done.stderr[-2000:])
                break
    return lines


def main() -> None:
    """Run every benchmark and print one line each."""
    print(f"Kubernetes Networking 101 benchmarks ({os.cpu_count()} cores, Python {sys.version.split()[0]})")
    print(bench_import())
    for line in (bench_models() + bench_netfilter() + bench_x509() + bench_widgets() + bench_twin()
                 + bench_netfilter_twin() + bench_labs()):
        print(line)
    if os.environ.get("BENCH_QUICK") == "1":
        print("cold make book / make test: skipped (BENCH_QUICK=1)")
    else:
        for line in bench_cold_make():
            print(line)


if __name__ == "__main__":
    main()
