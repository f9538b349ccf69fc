"""Kernel tier for the netfilter chapter: the netfilter model against the real kernel, differentially.

A random ruleset (filter and nat, from a seeded grammar: `labsupport.kernel.random_ruleset`) is loaded
with `iptables-restore` into the router of a client — router — server twin, and a few probes (TCP SYN,
UDP, ICMP echo) go from the client through it. For each probe the kernel says which rules counted it
(`iptables-save -c`), what became of it (delivered, forwarded and with which addresses after NAT,
rejected and with which answer, dropped) and, after the case, `conntrack -L`; the model
(`labsupport.netfilter.trace`) must say the same. The whole run is one module-scoped fixture: one twin,
one `iptables-restore` per case.

MODEL_SUPPORTS lists the grammar's features the comparison uses. It starts full; a feature leaves it only
with the reason and a reproducing case written next to it (DISABLED), never silently.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

import pytest

from labsupport.kernel import (
    NETFILTER_FEATURES,
    NF_ROUTER,
    GeneratedRuleset,
    NetfilterTwin,
    NfObservation,
    Probe,
    TwinError,
    compare,
    netfilter_topology,
    netns_list,
    random_probes,
    random_ruleset,
)

pytestmark = pytest.mark.usefixtures("requires_root_netns")

CASES = 240  # seeds 0 … CASES-1, PROBES each
PROBES = 4

# Grammar features whose cases are compared with the model. Starts full: a feature leaves only with its
# reason and a reproducer in DISABLED (reported to the model's author), so the comparison is never weakened
# without a trace.
DISABLED: dict[str, str] = {}
MODEL_SUPPORTS = frozenset(NETFILTER_FEATURES) - set(DISABLED)


def skip_or_fail(reason: str) -> None:
    if os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}:
        pytest.fail(f"required in CI (CI=true) but unavailable: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def requires_netfilter(requires_root_netns) -> None:
    for tool, package in (
        ("iptables-restore", "iptables"),
        ("iptables-save", "iptables"),
        ("conntrack", "conntrack"),
    ):
        if shutil.which(tool) is None:
            skip_or_fail(f"needs the `{tool}` command (Debian package {package})")


@dataclass
class Case:
    """One seed: the ruleset, its probes, and what the kernel did with them."""

    seed: int
    ruleset: GeneratedRuleset
    probes: list[Probe]
    loaded: str = ""
    seen: list[NfObservation] = field(default_factory=list)
    conntrack: str = ""


@dataclass
class Run:
    topology: dict = field(default_factory=dict)
    cases: list[Case] = field(default_factory=list)
    iptables: str = ""
    seconds: float = 0.0


@pytest.fixture(scope="module")
def run(requires_netfilter) -> Run:
    record = Run()
    start = time.perf_counter()
    with NetfilterTwin() as twin:
        record.iptables = twin.netns_exec(NF_ROUTER, "iptables", "-V").strip()
        record.topology = {name: twin.read(name) for name in twin.node.namespaces}
        for seed in range(CASES):
            case = Case(
                seed, random_ruleset(seed, MODEL_SUPPORTS), random_probes(seed, PROBES, MODEL_SUPPORTS)
            )
            case.loaded = twin.load(case.ruleset.text)
            case.seen = [twin.send(probe) for probe in case.probes]
            case.conntrack = twin.conntrack()
            record.cases.append(case)
    record.seconds = time.perf_counter() - start
    return record


# --- the twin itself ---------------------------------------------------------------------------------------


def test_router_model_is_the_real_router(run: Run) -> None:
    # The model Namespace the netfilter model routes with is, address for address and route for route,
    # the router the kernel runs (and the client and server around it).
    node = netfilter_topology()
    for name, ns in node.namespaces.items():
        assert compare(ns, run.topology[name]) == [], name
        assert run.topology[name] == ns.ip_json(), name


def test_generator_is_deterministic_and_only_uses_its_features() -> None:
    assert random_ruleset(11) == random_ruleset(11)
    assert random_probes(11) == random_probes(11)
    assert random_ruleset(11).text != random_ruleset(12).text
    bare = random_ruleset(5, features=())
    assert set(re.findall(r"-j (\w+)", bare.canonical)) <= {"ACCEPT"}
    assert not re.search(r" (-[sdiop]|-m|-g) ", bare.canonical)
    with pytest.raises(TwinError, match="unknown ruleset features"):
        random_ruleset(1, features=("no-such-feature",))


# What each grammar feature looks like in iptables-save's text: the corpus of the run must show each one
# many times, so a feature that silently stopped being generated fails here.
FEATURE_SIGNS = {
    "user-chains": r"^:(?!INPUT|FORWARD|OUTPUT|PREROUTING|POSTROUTING)\S+ - ",
    "goto": r" -g \S+",
    "return": r"-j RETURN",
    "negation": r" ! -",
    "addresses": r" -[sd] \d",
    "protocols": r" -p (tcp|udp|icmp)",
    "ports": r"--[sd]port \d",
    "multiport": r"-m multiport",
    "icmp-type": r"--icmp-type",
    "interfaces": r" -[io] e",
    "iface-wildcard": r" -[io] e\S*\+",
    "mark-match": r"-m mark",
    "mark-target": r"-j MARK",
    "ctstate": r"--ctstate",
    "statistic": r"-m statistic",
    "comment": r"--comment",
    "log": r"-j LOG",
    "no-target": r"^-A \S+( ((?!-j |-g )\S+))*$",
    "reject": r"-j REJECT",
    "drop": r"(-j DROP|^:\S+ DROP)",
    "dnat": r"-j DNAT",
    "snat": r"-j SNAT",
    "masquerade": r"-j MASQUERADE",
    "redirect": r"-j REDIRECT",
    "nat-ports": r"(--to-destination \S+:\d+|REDIRECT --to-ports)",
    "output-rules": r"^-A OUTPUT",
}


def test_the_rulesets_cover_every_feature(run: Run) -> None:
    corpus = "".join(c.ruleset.canonical for c in run.cases)
    for feature, sign in FEATURE_SIGNS.items():
        if feature in MODEL_SUPPORTS:
            assert len(re.findall(sign, corpus, re.MULTILINE)) >= 10, feature
    text = "".join(c.ruleset.text for c in run.cases)
    assert "--or-mark" in text and " -p tcp --dport" in text, "aliases"  # spellings iptables-save rewrites
    repeats = sum(len(set(c.probes)) < len(c.probes) for c in run.cases)
    assert repeats >= 10, "repeat-flow"


def test_every_ruleset_loads_as_iptables_save_prints_it(run: Run) -> None:
    # The generator only writes valid rules (iptables-restore took every one) and knows iptables-save's
    # canonical form of what it wrote.
    for case in run.cases:
        assert case.loaded == case.ruleset.canonical, f"seed {case.seed}"


def test_the_kernel_did_everything_at_least_a_few_times(run: Run) -> None:
    # The comparison is not vacuous: every outcome happens, NAT rewrites addresses both ways.
    seen = [o for c in run.cases for o in c.seen]
    verdicts = Counter(o.verdict for o in seen)
    assert all(verdicts[v] >= 20 for v in ("deliver", "forward", "reject", "drop")), verdicts
    assert Counter(o.oif for o in seen if o.verdict == "forward").keys() == {"eth0", "eth1"}
    assert all(not o.extra for o in seen), [str(o) for o in seen if o.extra]
    rewritten = [
        o for o in seen if o.after is not None and (o.after.src, o.after.dst) != (o.probe.src, o.probe.dst)
    ]
    assert sum(o.after.src != o.probe.src for o in rewritten) >= 20  # SNAT / MASQUERADE
    assert sum(o.after.dst != o.probe.dst for o in rewritten) >= 20  # DNAT / REDIRECT
    answers = Counter(
        (o.answer.proto, o.answer.payload.type if o.answer.proto == 1 else "rst") for o in seen if o.answer
    )
    assert answers[(6, "rst")] >= 5 and answers[(1, 3)] >= 10, answers
    assert sum("DNAT" in c.conntrack or "dport" in c.conntrack for c in run.cases) >= 100
    assert len(run.cases) * PROBES == len(seen) >= 200


# --- safety: the root namespace is never touched, nothing is left behind ----------------------------------

_COUNTERS = re.compile(r"\[\d+:\d+\]")
_TIMES = {"valid_life_time", "preferred_life_time", "expires"}


def _drop_times(value):
    if isinstance(value, dict):
        return {k: _drop_times(v) for k, v in value.items() if k not in _TIMES}
    if isinstance(value, list):
        return [_drop_times(v) for v in value]
    return value


def root_snapshot() -> dict:
    """This machine's own namespace as `ip -j link/addr/route/rule`, `iptables-save` (and
    `iptables-legacy-save`, if there) and `ip netns list` show it: only read, never changed.
    Lifetimes, expiry timers and packet counters are left out (they move on their own)."""

    def run(*cmd: str) -> str:
        return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=30).stdout

    snap = {
        "link": _drop_times(json.loads(run("ip", "-j", "link"))),
        "addr": _drop_times(json.loads(run("ip", "-j", "addr"))),
        "route": _drop_times(json.loads(run("ip", "-j", "route", "show", "table", "all"))),
        "rule": json.loads(run("ip", "-j", "rule")),
        # only this test process's twins: other runs may add namespaces meanwhile
        "netns": sorted(n for n in netns_list() if n.startswith(f"k8s101-{os.getpid()}-")),
    }
    for save in ("iptables-save", "iptables-legacy-save"):
        if shutil.which(save):
            text = run(save)
            snap[save] = [_COUNTERS.sub("", line) for line in text.splitlines() if not line.startswith("#")]
    return snap


def left_behind(prefix: str) -> list[str]:
    return [n for n in netns_list() if n.startswith(prefix)]


def _case(seed: int) -> tuple[str, list[Probe]]:
    return random_ruleset(seed).text, random_probes(seed)


def test_a_differential_run_leaves_the_root_namespace_as_it_was(requires_netfilter) -> None:
    before = root_snapshot()
    with NetfilterTwin() as twin:
        prefix = twin.prefix
        assert sorted(left_behind(prefix)) == sorted(twin.names.values())
        for seed in range(5):
            text, probes = _case(seed)
            twin.load(text)
            for probe in probes:
                twin.send(probe)
            twin.conntrack()
        agents = [p.pid for p in twin._procs]
        assert len(agents) == 3
        # every command ran inside one of the twin's own namespaces
        for command in twin.commands:
            assert command.startswith(("ip -n ", "bridge -n ", "ip netns ")), command
            if command.startswith("ip netns exec "):
                assert command.split()[3] in twin.names.values(), command
            if re.search(r"\b(iptables|iptables-restore|iptables-save|conntrack|sysctl)\b", command):
                assert command.startswith(f"ip netns exec {prefix}-"), command
    assert left_behind(prefix) == []
    assert all(not os.path.exists(f"/proc/{pid}") for pid in agents), "an observer outlived its twin"
    assert root_snapshot() == before


def test_an_error_in_the_middle_of_a_run_cleans_up(requires_netfilter) -> None:
    before = root_snapshot()
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    with pytest.raises(TwinError, match="iptables-restore"), NetfilterTwin() as twin:
        prefix = twin.prefix
        text, probes = _case(3)
        twin.load(text)
        twin.send(probes[0])
        twin.load("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp --dport 99999 -j ACCEPT\nCOMMIT\n")
    assert left_behind(prefix) == []
    assert root_snapshot() == before
    assert {sig: signal.getsignal(sig) for sig in handlers} == handlers


def test_the_twin_refuses_namespaces_it_does_not_own(requires_netfilter) -> None:
    with NetfilterTwin() as twin:
        for name in ("k8s101-not-mine", "1", "uplink"):
            with pytest.raises(TwinError, match="refusing"):
                twin.netns_exec(name, "iptables-save")


CHILD = """
import sys
from labsupport.kernel import NetfilterTwin, random_probes, random_ruleset
with NetfilterTwin() as twin:
    print(twin.prefix, " ".join(str(p.pid) for p in twin._procs), flush=True)
    seed = 0
    while True:  # a differential run that never ends, until a signal stops it
        twin.load(random_ruleset(seed).text)
        for probe in random_probes(seed):
            twin.send(probe)
        seed += 1
"""


def _start_child() -> tuple[subprocess.Popen, str, list[int]]:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    words = child.stdout.readline().split()
    assert words and words[0].startswith("k8s101-"), (
        child.stderr.read() if child.poll() is not None else words
    )
    prefix, agents = words[0], [int(w) for w in words[1:]]
    assert left_behind(prefix) and len(agents) == 3
    time.sleep(0.5)  # well inside the run: rulesets loaded, probes on the wire
    return child, prefix, agents


def _gone(pids: list[int], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while any(os.path.exists(f"/proc/{pid}") for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_run_cleans_up(requires_netfilter, signum: int) -> None:
    before = root_snapshot()
    child, prefix, agents = _start_child()
    child.send_signal(signum)
    child.communicate(timeout=30)
    assert child.returncode != 0  # interrupted, not finished
    assert left_behind(prefix) == []
    assert _gone(agents)
    assert root_snapshot() == before


def test_a_killed_run_is_swept_by_the_next(requires_netfilter) -> None:
    child, prefix, agents = _start_child()
    child.kill()  # SIGKILL: no handler runs; the namespaces stay, the observers see their stdin close
    child.communicate(timeout=30)
    stale = left_behind(prefix)
    assert stale
    assert _gone(agents)
    with NetfilterTwin() as twin:
        assert set(stale) <= set(twin.swept)
    assert left_behind(prefix) == []
