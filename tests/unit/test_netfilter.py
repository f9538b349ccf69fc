"""labsupport.netfilter: iptables-save text, the hooks and tables in kernel order, conntrack and NAT.

Expected iptables-save text is what the real tool printed: iptables v1.8.9 (nf_tables back end) on
Linux 6.18, each rule loaded with iptables-restore into a scratch network namespace and dumped with
iptables-save (tests/kernel/test_kernel_netfilter_formats.py repeats every comparison live, and checks
that iptables-restore --test accepts what the model prints). `conntrack -L` lines follow the real
conntrack-tools 1.4.7 output after a DNAT/MASQUERADE flow through a router namespace. Traversal,
conntrack and NAT follow the kernel's code (ip_tables.c ipt_do_table and trace_packet,
nf_conntrack_proto_tcp.c, nf_nat_core.c get_unique_tuple, xt_statistic.c, xt_recent.c); the nth
counter's behaviour was also confirmed on the kernel (--every 3 --packet 0 matched packets 1, 4, 7).
None of these tests needs root.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labsupport.__main__ import main
from labsupport.errors import LabInputError
from labsupport.host import Namespace
from labsupport.netfilter import (
    SAVE_ORDER,
    TABLE_CHAINS,
    Conntrack,
    PacketSpec,
    Ruleset,
    parse_iptables_command,
    parse_iptables_save,
    parse_packet_spec,
    split_words,
    trace,
)

# --- hosts ------------------------------------------------------------------------------------------


def router() -> Namespace:
    """A router: clients on eth0 (10.0.0.0/24), pods on eth1 (10.244.1.0/24), the internet on eth2."""
    host = Namespace("router", role="node", forwarding=True)
    for name, mac, address in (("eth0", "02:00:00:00:00:01", "10.0.0.1/24"),
                               ("eth1", "02:00:00:00:00:02", "10.244.1.1/24"),
                               ("eth2", "02:00:00:00:00:03", "203.0.113.1/24")):
        host.add_link(name, "veth", mac)
        host.add_address(name, address)
    host.add_route("default", via="203.0.113.254", dev="eth2")
    return host


def table(name: str, *rules: str, chains: tuple[str, ...] = (), policy: str = "ACCEPT") -> str:
    """One table section as iptables-restore takes it."""
    lines = [f"*{name}", *(f":{c} {policy} [0:0]" for c in TABLE_CHAINS[name]), *(f":{c} - [0:0]" for c in chains)]
    return "\n".join([*lines, *rules, "COMMIT"]) + "\n"


# --- iptables-save text: the canonical form ------------------------------------------------------------

# (table, rule as written, what iptables-save printed after iptables-restore loaded it)
CANONICAL = [
    ('filter', '-A INPUT -s 10.0.0.1 -j ACCEPT',
     ['-A INPUT -s 10.0.0.1/32 -j ACCEPT']),
    ('filter', '-A INPUT -s 10.0.0.0/8 -d 192.168.1.1/24 -j DROP',
     ['-A INPUT -s 10.0.0.0/8 -d 192.168.1.0/24 -j DROP']),
    ('filter', '-A INPUT ! -s 10.0.0.1 ! -d 10.0.0.2 -j ACCEPT',
     ['-A INPUT ! -s 10.0.0.1/32 ! -d 10.0.0.2/32 -j ACCEPT']),
    ('filter', '-A INPUT -d 10.1.2.3/255.255.0.0 -j ACCEPT',
     ['-A INPUT -d 10.1.0.0/16 -j ACCEPT']),
    ('filter', '-A INPUT -d 10.0.0.0/255.0.255.0 -j ACCEPT',
     ['-A INPUT -d 10.0.0.0/255.0.255.0 -j ACCEPT']),
    ('filter', '-A INPUT -s 10 -j ACCEPT',
     ['-A INPUT -s 10.0.0.0/32 -j ACCEPT']),
    ('filter', '-A INPUT -s 010.0.0.1 -j ACCEPT',
     ['-A INPUT -s 8.0.0.1/32 -j ACCEPT']),
    ('filter', '-A INPUT -s 0.0.0.0/0 -j ACCEPT',
     ['-A INPUT -j ACCEPT']),
    ('filter', '-A INPUT -s 10.0.0.1,10.0.0.2 -d 1.1.1.1,2.2.2.2 -j ACCEPT',
     ['-A INPUT -s 10.0.0.1/32 -d 1.1.1.1/32 -j ACCEPT', '-A INPUT -s 10.0.0.1/32 -d 2.2.2.2/32 -j ACCEPT', '-A INPUT -s 10.0.0.2/32 -d 1.1.1.1/32 -j ACCEPT', '-A INPUT -s 10.0.0.2/32 -d 2.2.2.2/32 -j ACCEPT']),
    ('filter', '-A INPUT --src 1.2.3.4 --dst 1.1.1.1 -j ACCEPT',
     ['-A INPUT -s 1.2.3.4/32 -d 1.1.1.1/32 -j ACCEPT']),
    ('filter', '-A INPUT -p tcp --dport 80 -j ACCEPT',
     ['-A INPUT -p tcp -m tcp --dport 80 -j ACCEPT']),
    ('filter', '-A INPUT -p tcp --sport 1000:2000 --dport 80 -j ACCEPT',
     ['-A INPUT -p tcp -m tcp --sport 1000:2000 --dport 80 -j ACCEPT']),
    ('filter', '-A INPUT -p tcp ! --dport 80 -j ACCEPT',
     ['-A INPUT -p tcp -m tcp ! --dport 80 -j ACCEPT']),
    ('filter', '-A INPUT -p tcp --dport :1023 -j ACCEPT',
     ['-A INPUT -p tcp -m tcp --dport 0:1023 -j ACCEPT']),
    ('filter', '-A INPUT -p tcp --dport 1024: -j ACCEPT',
     ['-A INPUT -p tcp -m tcp --dport 1024:65535 -j ACCEPT']),
    ('filter', '-A INPUT -p tcp --dport 0:65535 -j ACCEPT',
     ['-A INPUT -p tcp -m tcp -j ACCEPT']),
    ('filter', '-A INPUT -p tcp --dport http -j ACCEPT',
     ['-A INPUT -p tcp -m tcp --dport 80 -j ACCEPT']),
    ('filter', '-A INPUT -p tcp --dport=80 -j ACCEPT',
     ['-A INPUT -p tcp -m tcp --dport 80 -j ACCEPT']),
    ('filter', '-A INPUT -p udp --dport 53 -j ACCEPT',
     ['-A INPUT -p udp -m udp --dport 53 -j ACCEPT']),
    ('filter', '-A INPUT -p 6 -j ACCEPT',
     ['-A INPUT -p tcp -j ACCEPT']),
    ('filter', '-A INPUT -p TCP -j ACCEPT',
     ['-A INPUT -p tcp -j ACCEPT']),
    ('filter', '-A INPUT ! -p tcp -j ACCEPT',
     ['-A INPUT ! -p tcp -j ACCEPT']),
    ('filter', '-A INPUT -p all -j ACCEPT',
     ['-A INPUT -j ACCEPT']),
    ('filter', '-A INPUT -p 4 -j ACCEPT',
     ['-A INPUT -p ipencap -j ACCEPT']),
    ('filter', '-A INPUT -p 47 -j ACCEPT',
     ['-A INPUT -p gre -j ACCEPT']),
    ('filter', '-A INPUT -p 255 -j ACCEPT',
     ['-A INPUT -p 255 -j ACCEPT']),
    ('filter', '-A INPUT -p icmpv6 -j ACCEPT',
     ['-A INPUT -p ipv6-icmp -j ACCEPT']),
    ('filter', '-A INPUT -p icmp --icmp-type echo-request -j ACCEPT',
     ['-A INPUT -p icmp -m icmp --icmp-type 8 -j ACCEPT']),
    ('filter', '-A INPUT -p icmp --icmp-type port-unreachable -j ACCEPT',
     ['-A INPUT -p icmp -m icmp --icmp-type 3/3 -j ACCEPT']),
    ('filter', '-A INPUT -p icmp --icmp-type 3/4 -j ACCEPT',
     ['-A INPUT -p icmp -m icmp --icmp-type 3/4 -j ACCEPT']),
    ('filter', '-A INPUT -p icmp --icmp-type any -j ACCEPT',
     ['-A INPUT -p icmp -m icmp --icmp-type any -j ACCEPT']),
    ('filter', '-A INPUT -p icmp ! --icmp-type destination-unreachable -j ACCEPT',
     ['-A INPUT -p icmp -m icmp ! --icmp-type 3 -j ACCEPT']),
    ('filter', '-A INPUT -p icmp --icmp-type 0/0 -j ACCEPT',
     ['-A INPUT -p icmp -m icmp --icmp-type 0/0 -j ACCEPT']),
    ('filter', '-A INPUT -p tcp --dport 80 -m tcp --sport 5 -j ACCEPT',
     ['-A INPUT -p tcp -m tcp --sport 5 --dport 80 -j ACCEPT']),
    ('filter', '-A INPUT -m conntrack --ctstate NEW -m tcp -p tcp --dport 22 -j ACCEPT',
     ['-A INPUT -p tcp -m conntrack --ctstate NEW -m tcp --dport 22 -j ACCEPT']),
    ('filter', '-A INPUT -p tcp -m comment --comment x --dport 80 -m mark --mark 1 --sport 5 -j ACCEPT',
     ['-A INPUT -p tcp -m comment --comment x -m tcp --sport 5 --dport 80 -m mark --mark 0x1 -j ACCEPT']),
    ('filter', '-A INPUT -p tcp --syn -j ACCEPT',
     ['-A INPUT -p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -j ACCEPT']),
    ('filter', '-A INPUT -p tcp ! --syn -j ACCEPT',
     ['-A INPUT -p tcp -m tcp ! --tcp-flags FIN,SYN,RST,ACK SYN -j ACCEPT']),
    ('filter', '-A INPUT -p tcp --tcp-flags ALL NONE -j DROP',
     ['-A INPUT -p tcp -m tcp --tcp-flags FIN,SYN,RST,PSH,ACK,URG NONE -j DROP']),
    ('filter', '-A INPUT -p tcp --tcp-flags SYN,ACK SYN,ACK -j ACCEPT',
     ['-A INPUT -p tcp -m tcp --tcp-flags SYN,ACK SYN,ACK -j ACCEPT']),
    ('filter', '-A INPUT -f -j DROP',
     ['-A INPUT -f -j DROP']),
    ('filter', '-A INPUT ! -f -j DROP',
     ['-A INPUT ! -f -j DROP']),
    ('filter', '-A FORWARD -i eth+ ! -o veth+ -j ACCEPT',
     ['-A FORWARD -i eth+ ! -o veth+ -j ACCEPT']),
    ('filter', '-A FORWARD -i + -j ACCEPT',
     ['-A FORWARD -j ACCEPT']),
    ('filter', '-A FORWARD ! -i + -j ACCEPT',
     ['-A FORWARD ! -i + -j ACCEPT']),
    ('filter', '-A FORWARD -o veth+ ! -i eth0 -d 1.1.1.1 ! -s 2.2.2.2 -p udp -f -j ACCEPT',
     ['-A FORWARD ! -s 2.2.2.2/32 -d 1.1.1.1/32 ! -i eth0 -o veth+ -p udp -f -j ACCEPT']),
    ('filter', '-A INPUT -p tcp -m multiport --dports 80,443,8000:8080 -j ACCEPT',
     ['-A INPUT -p tcp -m multiport --dports 80,443,8000:8080 -j ACCEPT']),
    ('filter', '-A INPUT -p tcp -m multiport --destination-ports 443,80 -j ACCEPT',
     ['-A INPUT -p tcp -m multiport --dports 443,80 -j ACCEPT']),
    ('filter', '-A INPUT -p udp -m multiport ! --dports 53,54 -j ACCEPT',
     ['-A INPUT -p udp -m multiport ! --dports 53,54 -j ACCEPT']),
    ('filter', '-A INPUT -p tcp -m multiport --ports 22 -j ACCEPT',
     ['-A INPUT -p tcp -m multiport --ports 22 -j ACCEPT']),
    ('filter', '-A INPUT -m comment --comment hello -j ACCEPT',
     ['-A INPUT -m comment --comment hello -j ACCEPT']),
    ('filter', '-A INPUT -m comment --comment "it\'s \\"quoted\\" ok" -j ACCEPT',
     ['-A INPUT -m comment --comment "it\\\'s \\"quoted\\" ok" -j ACCEPT']),
    ('filter', '-A INPUT -m comment --comment "" -j ACCEPT',
     ['-A INPUT -m comment --comment "" -j ACCEPT']),
    ('filter', '-A INPUT -m comment --comment a.b -j ACCEPT',
     ['-A INPUT -m comment --comment "a.b" -j ACCEPT']),
    ('filter', '-A INPUT -m comment --comment "ns1/svc1:p80 cluster IP" -j ACCEPT',
     ['-A INPUT -m comment --comment "ns1/svc1:p80 cluster IP" -j ACCEPT']),
    ('filter', '-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
     ['-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT']),
    ('filter', '-A INPUT -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP',
     ['-A INPUT -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP']),
    ('filter', '-A INPUT -m conntrack --ctstate DNAT,SNAT,UNTRACKED,RELATED,INVALID,NEW,ESTABLISHED -j ACCEPT',
     ['-A INPUT -m conntrack --ctstate INVALID,NEW,RELATED,ESTABLISHED,UNTRACKED,SNAT,DNAT -j ACCEPT']),
    ('filter', '-A INPUT -m conntrack --ctstate new -j ACCEPT',
     ['-A INPUT -m conntrack --ctstate NEW -j ACCEPT']),
    ('filter', '-A INPUT -m conntrack --ctstate INVALID -j DROP',
     ['-A INPUT -m conntrack --ctstate INVALID -j DROP']),
    ('filter', '-A INPUT -m conntrack --ctstatus SEEN_REPLY,ASSURED -j ACCEPT',
     ['-A INPUT -m conntrack --ctstatus SEEN_REPLY,ASSURED -j ACCEPT']),
    ('filter', '-A INPUT -m conntrack ! --ctorigsrc 10.0.0.0/8 --ctstate NEW -j ACCEPT',
     ['-A INPUT -m conntrack --ctstate NEW ! --ctorigsrc 10.0.0.0/8 -j ACCEPT']),
    ('filter', '-A INPUT -m conntrack --ctproto tcp --ctorigdstport 80 -j ACCEPT',
     ['-A INPUT -m conntrack --ctproto 6 --ctorigdstport 80 -j ACCEPT']),
    ('filter', '-A INPUT -m state --state UNTRACKED,INVALID,RELATED,ESTABLISHED,NEW -j ACCEPT',
     ['-A INPUT -m state --state INVALID,NEW,RELATED,ESTABLISHED,UNTRACKED -j ACCEPT']),
    ('filter', '-A INPUT -m state ! --state INVALID -j ACCEPT',
     ['-A INPUT -m state ! --state INVALID -j ACCEPT']),
    ('filter', '-A INPUT -m mark --mark 0x4000/0x4000 -j ACCEPT',
     ['-A INPUT -m mark --mark 0x4000/0x4000 -j ACCEPT']),
    ('filter', '-A INPUT -m mark --mark 1 -j ACCEPT',
     ['-A INPUT -m mark --mark 0x1 -j ACCEPT']),
    ('filter', '-A INPUT -m mark ! --mark 010 -j ACCEPT',
     ['-A INPUT -m mark ! --mark 0x8 -j ACCEPT']),
    ('filter', '-A INPUT -m mark --mark 0x4000/0xffffffff -j ACCEPT',
     ['-A INPUT -m mark --mark 0x4000 -j ACCEPT']),
    ('filter', '-A INPUT -m addrtype --dst-type local -j ACCEPT',
     ['-A INPUT -m addrtype --dst-type LOCAL -j ACCEPT']),
    ('filter', '-A INPUT -m addrtype --dst-type LOCAL,UNICAST -j ACCEPT',
     ['-A INPUT -m addrtype --dst-type UNICAST,LOCAL -j ACCEPT']),
    ('filter', '-A INPUT -m addrtype --dst-type BROADCAST --src-type LOCAL -j ACCEPT',
     ['-A INPUT -m addrtype --src-type LOCAL --dst-type BROADCAST -j ACCEPT']),
    ('filter', '-A INPUT -m addrtype ! --src-type LOCAL ! --dst-type LOCAL -j ACCEPT',
     ['-A INPUT -m addrtype ! --src-type LOCAL ! --dst-type LOCAL -j ACCEPT']),
    ('filter', '-A INPUT -m addrtype --dst-type LOCAL --limit-iface-in -j ACCEPT',
     ['-A INPUT -m addrtype --dst-type LOCAL --limit-iface-in -j ACCEPT']),
    ('filter', '-A INPUT -m statistic --mode random --probability 0.5 -j ACCEPT',
     ['-A INPUT -m statistic --mode random --probability 0.50000000000 -j ACCEPT']),
    ('filter', '-A INPUT -m statistic --mode random --probability 0.3333333333 -j ACCEPT',
     ['-A INPUT -m statistic --mode random --probability 0.33333333349 -j ACCEPT']),
    ('filter', '-A INPUT -m statistic --mode random --probability 0.2000000000 -j ACCEPT',
     ['-A INPUT -m statistic --mode random --probability 0.20000000019 -j ACCEPT']),
    ('filter', '-A INPUT -m statistic --mode random --probability 0.1666666667 -j ACCEPT',
     ['-A INPUT -m statistic --mode random --probability 0.16666666651 -j ACCEPT']),
    ('filter', '-A INPUT -m statistic --mode random --probability 0.33333 -j ACCEPT',
     ['-A INPUT -m statistic --mode random --probability 0.33332999982 -j ACCEPT']),
    ('filter', '-A INPUT -m statistic --mode random --probability 0.1428571429 -j ACCEPT',
     ['-A INPUT -m statistic --mode random --probability 0.14285714272 -j ACCEPT']),
    ('filter', '-A INPUT -m statistic --mode random ! --probability 0.25 -j ACCEPT',
     ['-A INPUT -m statistic --mode random ! --probability 0.25000000000 -j ACCEPT']),
    ('filter', '-A INPUT -m statistic --mode nth --every 3 --packet 2 -j ACCEPT',
     ['-A INPUT -m statistic --mode nth --every 3 --packet 2 -j ACCEPT']),
    ('filter', '-A INPUT -m statistic --mode nth ! --every 3 --packet 0 -j ACCEPT',
     ['-A INPUT -m statistic --mode nth ! --every 3 --packet 0 -j ACCEPT']),
    ('filter', '-A INPUT -m recent --set -j ACCEPT',
     ['-A INPUT -m recent --set --name DEFAULT --mask 255.255.255.255 --rsource -j ACCEPT']),
    ('filter', '-A INPUT -m recent --name foo --set --rdest -j ACCEPT',
     ['-A INPUT -m recent --set --name foo --mask 255.255.255.255 --rdest -j ACCEPT']),
    ('filter', '-A INPUT -m recent --name KUBE-SEP-A --rcheck --seconds 10800 --reap -j ACCEPT',
     ['-A INPUT -m recent --rcheck --seconds 10800 --reap --name KUBE-SEP-A --mask 255.255.255.255 --rsource -j ACCEPT']),
    ('filter', '-A INPUT -m recent --name foo --update --seconds 60 --hitcount 3 -j DROP',
     ['-A INPUT -m recent --update --seconds 60 --hitcount 3 --name foo --mask 255.255.255.255 --rsource -j DROP']),
    ('filter', '-A INPUT -m recent --name foo --remove -j ACCEPT',
     ['-A INPUT -m recent --remove --name foo --mask 255.255.255.255 --rsource -j ACCEPT']),
    ('filter', '-A INPUT -m recent ! --rcheck --name foo -j ACCEPT',
     ['-A INPUT -m recent ! --rcheck --name foo --mask 255.255.255.255 --rsource -j ACCEPT']),
    ('filter', '-A INPUT -m recent --rcheck --seconds 60 --reap --rttl --name foo --mask 255.255.0.0 -j ACCEPT',
     ['-A INPUT -m recent --rcheck --seconds 60 --reap --rttl --name foo --mask 255.255.0.0 --rsource -j ACCEPT']),
    ('filter', '-A INPUT -p tcp -j REJECT',
     ['-A INPUT -p tcp -j REJECT --reject-with icmp-port-unreachable']),
    ('filter', '-A INPUT -p tcp -j REJECT --reject-with tcp-reset',
     ['-A INPUT -p tcp -j REJECT --reject-with tcp-reset']),
    ('filter', '-A INPUT -j REJECT --reject-with host-prohib',
     ['-A INPUT -j REJECT --reject-with icmp-host-prohibited']),
    ('filter', '-A INPUT -j REJECT --reject-with icmp-admin-prohibited',
     ['-A INPUT -j REJECT --reject-with icmp-admin-prohibited']),
    ('filter', '-A INPUT -j LOG',
     ['-A INPUT -j LOG']),
    ('filter', '-A INPUT -j LOG --log-prefix "FW: " --log-level 4',
     ['-A INPUT -j LOG --log-prefix "FW: "']),
    ('filter', '-A INPUT -j LOG --log-level alert --log-prefix "a b"',
     ['-A INPUT -j LOG --log-prefix "a b" --log-level 1']),
    ('filter', '-A INPUT -j LOG --log-prefix x --log-level debug --log-tcp-options --log-ip-options --log-uid',
     ['-A INPUT -j LOG --log-prefix x --log-level 7 --log-tcp-options --log-ip-options --log-uid']),
    ('filter', '-A INPUT -j LOG --log-prefix "01234567890123456789012345678901"',
     ['-A INPUT -j LOG --log-prefix 01234567890123456789012345678']),
    ('filter', '-A INPUT -j MARK --set-mark 5',
     ['-A INPUT -j MARK --set-xmark 0x5/0xffffffff']),
    ('filter', '-A INPUT -j MARK --set-mark 0x5/0xff',
     ['-A INPUT -j MARK --set-xmark 0x5/0xff']),
    ('filter', '-A INPUT -j MARK --set-mark 5/0',
     ['-A INPUT -j MARK --set-xmark 0x5/0x5']),
    ('filter', '-A INPUT -j MARK --set-xmark 0x5/0xff',
     ['-A INPUT -j MARK --set-xmark 0x5/0xff']),
    ('filter', '-A INPUT -j MARK --or-mark 0x4000',
     ['-A INPUT -j MARK --set-xmark 0x4000/0x4000']),
    ('filter', '-A INPUT -j MARK --xor-mark 0x4000',
     ['-A INPUT -j MARK --set-xmark 0x4000/0x0']),
    ('filter', '-A INPUT -j MARK --and-mark 0xff',
     ['-A INPUT -j MARK --set-xmark 0x0/0xffffff00']),
    ('filter', '-A INPUT -j RETURN',
     ['-A INPUT -j RETURN']),
    ('filter', '-A INPUT',
     ['-A INPUT']),
    ('filter', '-A INPUT -j TRACE',
     ['-A INPUT -j TRACE']),
    ('filter', '-A INPUT -j U',
     ['-A INPUT -j U']),
    ('filter', '-A INPUT -g U',
     ['-A INPUT -g U']),
    ('filter', '-A INPUT -c 5 10 -j ACCEPT',
     ['-A INPUT -j ACCEPT']),
    ('nat', '-A PREROUTING -p tcp -i eth1 --dport 80 -j DNAT --to 192.168.1.2',
     ['-A PREROUTING -i eth1 -p tcp -m tcp --dport 80 -j DNAT --to-destination 192.168.1.2']),
    ('nat', '-A PREROUTING -p tcp -j DNAT --to-destination 1.2.3.4-1.2.3.10:80-90 --random --persistent',
     ['-A PREROUTING -p tcp -j DNAT --to-destination 1.2.3.4-1.2.3.10:80-90 --random --persistent']),
    ('nat', '-A PREROUTING -p udp -j DNAT --to-destination :53',
     ['-A PREROUTING -p udp -j DNAT --to-destination :53']),
    ('nat', '-A PREROUTING -i eth0 -p tcp --dport 80 -j REDIRECT --to-ports 8080',
     ['-A PREROUTING -i eth0 -p tcp -m tcp --dport 80 -j REDIRECT --to-ports 8080']),
    ('nat', '-A PREROUTING -p tcp -j REDIRECT --to-ports 8080-8090 --random',
     ['-A PREROUTING -p tcp -j REDIRECT --to-ports 8080-8090 --random']),
    ('nat', '-A POSTROUTING -o eth1 -j MASQUERADE',
     ['-A POSTROUTING -o eth1 -j MASQUERADE']),
    ('nat', '-A POSTROUTING -p tcp -o eth1 -j MASQUERADE --to-ports 1024-2000 --random',
     ['-A POSTROUTING -o eth1 -p tcp -j MASQUERADE --to-ports 1024-2000 --random']),
    ('nat', '-A POSTROUTING -j MASQUERADE --random-fully --random',
     ['-A POSTROUTING -j MASQUERADE --random --random-fully']),
    ('nat', '-A POSTROUTING -j SNAT --to 123.123.123.123',
     ['-A POSTROUTING -j SNAT --to-source 123.123.123.123']),
    ('nat', '-A POSTROUTING -p tcp -j SNAT --to-source 1.2.3.4:1000-2000 --persistent --random-fully --random',
     ['-A POSTROUTING -p tcp -j SNAT --to-source 1.2.3.4:1000-2000 --random --random-fully --persistent']),
    ('nat', '-A POSTROUTING -p tcp -s 192.168.1.2 --sport 12345:12356 -d 123.123.123.123 --dport 22 -j ACCEPT',
     ['-A POSTROUTING -s 192.168.1.2/32 -d 123.123.123.123/32 -p tcp -m tcp --sport 12345:12356 --dport 22 -j ACCEPT']),
    ('nat', '-A PREROUTING ! -p tcp ! -s 192.168.1.2 -j ACCEPT',
     ['-A PREROUTING ! -s 192.168.1.2/32 ! -p tcp -j ACCEPT']),
    ('nat', '-A OUTPUT -p tcp -d 10.96.0.10 --dport 80 -j DNAT --to-destination 10.244.1.5:8080',
     ['-A OUTPUT -d 10.96.0.10/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.244.1.5:8080']),
    ('nat', '-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000',
     ['-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000']),
    ('nat', '-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN',
     ['-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN']),
    ('nat', '-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000',
     ['-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0']),
    ('nat', '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully',
     ['-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully']),
    ('nat', '-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O',
     ['-A KUBE-SERVICES -d 172.30.0.41/32 -p tcp -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O']),
    ('nat', '-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ',
     ['-A KUBE-SVC-XPGD46QRK7WJZT7O ! -s 10.0.0.0/8 -d 172.30.0.41/32 -p tcp -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp --dport 80 -j KUBE-MARK-MASQ']),
    ('nat', '-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment ns1/svc1:p80 -m recent --name KUBE-SEP-SXIVWICOYRO3J4NJ --rcheck --seconds 10800 --reap -j KUBE-SEP-SXIVWICOYRO3J4NJ',
     ['-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80" -m recent --rcheck --seconds 10800 --reap --name KUBE-SEP-SXIVWICOYRO3J4NJ --mask 255.255.255.255 --rsource -j KUBE-SEP-SXIVWICOYRO3J4NJ']),
    ('nat', '-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -m statistic --mode random --probability 0.3333333333 -j KUBE-SEP-SXIVWICOYRO3J4NJ',
     ['-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -m statistic --mode random --probability 0.33333333349 -j KUBE-SEP-SXIVWICOYRO3J4NJ']),
    ('nat', '-A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -s 10.180.0.1 -j KUBE-MARK-MASQ',
     ['-A KUBE-SEP-SXIVWICOYRO3J4NJ -s 10.180.0.1/32 -m comment --comment "ns1/svc1:p80" -j KUBE-MARK-MASQ']),
    ('nat', '-A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -m recent --name KUBE-SEP-SXIVWICOYRO3J4NJ --set -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:80',
     ['-A KUBE-SEP-SXIVWICOYRO3J4NJ -p tcp -m comment --comment "ns1/svc1:p80" -m recent --set --name KUBE-SEP-SXIVWICOYRO3J4NJ --mask 255.255.255.255 --rsource -m tcp -j DNAT --to-destination 10.180.0.1:80']),
    ('nat', '-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS',
     ['-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS']),
    ('nat', '-A KUBE-NODEPORTS -m comment --comment ns2/svc2:p80 -m tcp -p tcp --dport 3001 -j KUBE-EXT-GNZBNJ2PO5MGZ6GT',
     ['-A KUBE-NODEPORTS -p tcp -m comment --comment "ns2/svc2:p80" -m tcp --dport 3001 -j KUBE-EXT-GNZBNJ2PO5MGZ6GT']),
    ('raw', '-A PREROUTING -p udp --dport 53 -j CT --notrack',
     ['-A PREROUTING -p udp -m udp --dport 53 -j CT --notrack']),
    ('raw', '-A PREROUTING -p udp --dport 54 -j NOTRACK',
     ['-A PREROUTING -p udp -m udp --dport 54 -j NOTRACK']),
    ('raw', '-A PREROUTING -p icmp -j TRACE',
     ['-A PREROUTING -p icmp -j TRACE']),
    ('raw', '-A OUTPUT -j CT',
     ['-A OUTPUT -j CT']),
    ('mangle', '-A PREROUTING -j MARK --set-mark 1',
     ['-A PREROUTING -j MARK --set-xmark 0x1/0xffffffff']),
    ('mangle', '-A POSTROUTING -o eth0 -j LOG --log-prefix "mangle "',
     ['-A POSTROUTING -o eth0 -j LOG --log-prefix "mangle "']),
    ('security', '-A INPUT -j ACCEPT',
     ['-A INPUT -j ACCEPT']),
]

USER_CHAINS = {"filter": ("U",), "nat": ("KUBE-MARK-MASQ", "KUBE-POSTROUTING", "KUBE-SERVICES", "KUBE-SVC-XPGD46QRK7WJZT7O",
                                          "KUBE-SEP-SXIVWICOYRO3J4NJ", "KUBE-NODEPORTS", "KUBE-EXT-GNZBNJ2PO5MGZ6GT")}


@pytest.mark.parametrize("name, rule, printed", CANONICAL, ids=[r for _, r, _ in CANONICAL])
def test_rules_print_as_iptables_save_prints_them(name: str, rule: str, printed: list[str]) -> None:
    text = table(name, rule, chains=USER_CHAINS.get(name, ()))
    dump = parse_iptables_save(text).to_iptables_save()
    assert [line for line in dump.splitlines() if line.startswith("-A")] == printed


# A real `iptables-save -c` (kube-proxy's forward and masquerade chains), header comments included.
REAL_DUMP_C = """\
# Generated by iptables-save v1.8.9 (nf_tables) on Thu Nov 26 13:46:07 2026
*raw
:PREROUTING ACCEPT [12:1008]
:OUTPUT ACCEPT [3:180]
[2:120] -A PREROUTING -p udp -m udp --dport 53 -j CT --notrack
COMMIT
# Completed on Thu Nov 26 13:46:07 2026
# Generated by iptables-save v1.8.9 (nf_tables) on Thu Nov 26 13:46:07 2026
*filter
:INPUT ACCEPT [5:300]
:FORWARD DROP [1:60]
:OUTPUT ACCEPT [3:180]
:KUBE-FORWARD - [0:0]
[7:420] -A FORWARD -j KUBE-FORWARD
[0:0] -A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP
[4:240] -A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
[2:120] -A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
COMMIT
# Completed on Thu Nov 26 13:46:07 2026
# Generated by iptables-save v1.8.9 (nf_tables) on Thu Nov 26 13:46:07 2026
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-POSTROUTING - [0:0]
[3:180] -A POSTROUTING -j KUBE-POSTROUTING
[1:60] -A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
[2:120] -A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
[1:60] -A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0
[1:60] -A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
COMMIT
# Completed on Thu Nov 26 13:46:07 2026
"""
REAL_DUMP = """\
# Generated by iptables-save v1.8.9 (nf_tables) on Thu Nov 26 13:46:07 2026
*raw
:PREROUTING ACCEPT [12:1008]
:OUTPUT ACCEPT [3:180]
-A PREROUTING -p udp -m udp --dport 53 -j CT --notrack
COMMIT
# Completed on Thu Nov 26 13:46:07 2026
# Generated by iptables-save v1.8.9 (nf_tables) on Thu Nov 26 13:46:07 2026
*filter
:INPUT ACCEPT [5:300]
:FORWARD DROP [1:60]
:OUTPUT ACCEPT [3:180]
:KUBE-FORWARD - [0:0]
-A FORWARD -j KUBE-FORWARD
-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
COMMIT
# Completed on Thu Nov 26 13:46:07 2026
# Generated by iptables-save v1.8.9 (nf_tables) on Thu Nov 26 13:46:07 2026
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-POSTROUTING - [0:0]
-A POSTROUTING -j KUBE-POSTROUTING
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
COMMIT
# Completed on Thu Nov 26 13:46:07 2026
"""


def test_a_canonical_dump_prints_back_byte_for_byte() -> None:
    rules = parse_iptables_save(REAL_DUMP_C)
    assert rules.to_iptables_save(counters=True) == REAL_DUMP_C
    # without -c the rules lose their [p:b] but the chains keep their policy counters, as iptables-save does
    assert parse_iptables_save(REAL_DUMP).to_iptables_save() == REAL_DUMP
    assert rules.to_iptables_save() == REAL_DUMP


def test_printing_is_idempotent_for_every_canonical_rule() -> None:
    for name, rule, _ in CANONICAL:
        once = parse_iptables_save(table(name, rule, chains=USER_CHAINS.get(name, ()))).to_iptables_save()
        assert parse_iptables_save(once).to_iptables_save() == once


def test_the_model_knows_each_tables_built_in_chains() -> None:
    # iptables(8) TABLES, and the reference's table x chain matrix
    assert TABLE_CHAINS == {
        "raw": ("PREROUTING", "OUTPUT"),
        "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
        "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
        "filter": ("INPUT", "FORWARD", "OUTPUT"),
        "security": ("INPUT", "FORWARD", "OUTPUT"),
    }
    rules = parse_iptables_save("".join(table(t) for t in ("nat", "filter", "raw", "security", "mangle")))
    for name, tbl in rules.tables.items():
        assert [c.name for c in tbl.chains.values()] == list(TABLE_CHAINS[name])
        assert all(c.policy == "ACCEPT" and c.rules == [] for c in tbl.chains.values())


def test_tables_print_in_iptables_saves_order_and_user_chains_sorted() -> None:
    assert SAVE_ORDER == ("mangle", "security", "raw", "filter", "nat")
    rules = Ruleset()
    for name in ("nat", "filter", "raw", "security", "mangle"):
        rules.table(name)
    assert [line for line in rules.to_iptables_save().splitlines() if line.startswith("*")] == [
        "*mangle", "*security", "*raw", "*filter", "*nat"]
    # user chains in strcmp order, as iptables-save lists them (uppercase before _ before lowercase)
    text = table("filter", chains=("zeta", "Alpha", "alpha", "B-C", "B", "B_C", "a1", "_x"))
    assert [line for line in parse_iptables_save(text).to_iptables_save().splitlines() if line.endswith("- [0:0]")] == [
        ":Alpha - [0:0]", ":B - [0:0]", ":B-C - [0:0]", ":B_C - [0:0]", ":_x - [0:0]", ":a1 - [0:0]",
        ":alpha - [0:0]", ":zeta - [0:0]"]


def test_restore_files_with_commands_counters_and_a_second_section() -> None:
    text = """# a comment
*filter
:INPUT DROP [5:300]
-N ssh
-A INPUT -j ACCEPT
-I INPUT -p tcp --dport 22 -j ssh
-I INPUT 2 -s 1.1.1.1
[3:180] -A ssh -j ACCEPT
-A ssh -c 1 60 -j DROP
COMMIT
*nat
COMMIT
"""
    dump = parse_iptables_save(text).to_iptables_save(counters=True)
    assert dump == """*filter
:INPUT DROP [5:300]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:ssh - [0:0]
[0:0] -A INPUT -p tcp -m tcp --dport 22 -j ssh
[0:0] -A INPUT -s 1.1.1.1/32
[0:0] -A INPUT -j ACCEPT
[3:180] -A ssh -j ACCEPT
[1:60] -A ssh -j DROP
COMMIT
"""
    # an empty section creates no table; a later section of the same table replaces the earlier one
    again = parse_iptables_save(text + table("filter", "-A INPUT -j DROP"))
    assert list(again.tables) == ["filter"]
    assert [str(r) for r in again.rules("filter", "INPUT")] == ["-j DROP"]


@pytest.mark.parametrize(
    "text, line, words",
    [
        ("*filter\n-A INPUT -p tcp --dport 99999 -j ACCEPT\nCOMMIT\n", 2, "--dport"),
        ("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j NOPE\nCOMMIT\n", 3, "does not exist"),
        ("*filter\n-A INPUT -m nosuchmatch -j ACCEPT\nCOMMIT\n", 2, "a match the model knows"),
        ("*filter\n-A INPUT --bogus -j ACCEPT\nCOMMIT\n", 2, "unknown option"),
        ("*filter\n-A INPUT -j ACCEPT -j DROP\nCOMMIT\n", 2, "multiple -j"),
        ("*filter\n-A INPUT ! -j ACCEPT\nCOMMIT\n", 2, "cannot have ! before -j"),
        ("*filter\n-A NOCHAIN -j ACCEPT\nCOMMIT\n", 2, "No chain/target/match"),
        ("*filter\n-A INPUT -j ACCEPT\n", 3, "COMMIT expected"),
        ("*bogus\nCOMMIT\n", 1, "a table"),
        ("-A INPUT -j ACCEPT\n", 1, "*TABLE"),
        ("*filter\n:INPUT RETURN [0:0]\nCOMMIT\n", 2, "Bad policy name"),
        ("*filter\n:-bad - [0:0]\nCOMMIT\n", 2, "not starting with"),
        ("*filter\n:ABCDEFGHIJKLMNOPQRSTUVWXYZ012 - [0:0]\nCOMMIT\n", 2, "too long"),
        ("*filter\n:MARK - [0:0]\nCOMMIT\n", 2, "clash with a target"),
        ("*filter\n-A INPUT -o eth0 -j ACCEPT\nCOMMIT\n", 2, "Can't use -o with INPUT"),
        ("*nat\n-A POSTROUTING -i eth0 -j ACCEPT\nCOMMIT\n", 2, "Can't use -i with POSTROUTING"),
        ("*nat\n-A PREROUTING -j SNAT --to-source 1.1.1.1\nCOMMIT\n", 2, "POSTROUTING, INPUT"),
        ("*nat\n:U - [0:0]\n-A U -j DNAT --to-destination 1.1.1.1\n-A POSTROUTING -j U\nCOMMIT\n", 3,
         "reached from POSTROUTING"),
        ("*nat\n-A POSTROUTING -j DROP\nCOMMIT\n", 2, "not intended for filtering"),
        ("*mangle\n-A INPUT -j REJECT\nCOMMIT\n", 2, "filter table"),
        ("*filter\n-A INPUT -j DNAT --to-destination 1.1.1.1\nCOMMIT\n", 2, "nat table"),
        ("*nat\n-A PREROUTING -j DNAT --to-destination 1.2.3.4:80\nCOMMIT\n", 2, "port specification"),
        ("*filter\n-A INPUT -m tcp --dport 80\nCOMMIT\n", 2, "-p tcp"),
        ("*filter\n-A INPUT -j REJECT --reject-with tcp-reset\nCOMMIT\n", 2, "-p tcp"),
        ("*filter\n-A INPUT -m statistic --mode nth --every 3\nCOMMIT\n", 2, "requires \"--packet\""),
        ("*filter\n-A INPUT -m statistic --mode nth --every 3 --packet 3\nCOMMIT\n", 2, "0 <= p <= n-1"),
        ("*filter\n-A INPUT -m statistic --mode random --probability 1.5\nCOMMIT\n", 2, "out of range"),
        ("*filter\n-A INPUT -p tcp -m multiport --dports 80,443 --sport 5\nCOMMIT\n", 2, "cannot be used together"),
        ("*filter\n-A INPUT -m conntrack --ctstate NEW --ctstate ESTABLISHED\nCOMMIT\n", 2, "only be used once"),
        ("*filter\n-A INPUT -m conntrack --ctstate NEWISH\nCOMMIT\n", 2, "states from"),
        ("*filter\n-A INPUT -s 10.0.0.0/33\nCOMMIT\n", 2, "prefix length"),
        ("*filter\n-A INPUT -s example.com\nCOMMIT\n", 2, "does not resolve"),
        ("*filter\n-A INPUT ! -d 0.0.0.0/0\nCOMMIT\n", 2, "match nothing"),
        ("*filter\n-A INPUT -i abcdefghijklmnop\nCOMMIT\n", 2, "IFNAMSIZ"),
        ("*filter\n:a - [0:0]\n:b - [0:0]\n-A a -j b\n-A b -j a\n-A INPUT -j a\nCOMMIT\n", 5, "loop"),
        ("*filter\n-A INPUT -j MARK --set-mark 1 --or-mark 2\nCOMMIT\n", 2, "cannot be used together"),
        ("*filter\n-A INPUT -p ! tcp\nCOMMIT\n", 2, "intrapositioned negation"),
        ("*filter\n[1:x] -A INPUT\nCOMMIT\n", 2, "[PACKETS:BYTES]"),
        ("*filter\n   \nCOMMIT\n", 2, "no command specified"),
    ],
)
def test_bad_lines_raise_one_error_naming_the_line(text: str, line: int, words: str) -> None:
    with pytest.raises(LabInputError) as caught:
        parse_iptables_save(text)
    assert caught.value.field.startswith(f"line {line}")
    assert words in str(caught.value)


def test_a_chain_referenced_nowhere_may_loop_on_itself() -> None:
    # iptables-restore accepted this (nothing reaches the chain); the model too
    assert "-A a -j a" in parse_iptables_save(table("filter", "-A a -j a", chains=("a",))).to_iptables_save()


# --- the notes' iptables commands ----------------------------------------------------------------------

NOTES_NAT_COMMANDS = [
    # (command as the notes write it, [...] filled in, what `iptables -t nat -S` / iptables-save prints)
    ("iptables -t nat -A POSTROUTING -o eth1 -j MASQUERADE", "-A POSTROUTING -o eth1 -j MASQUERADE"),
    ("iptables -t nat -A POSTROUTING -p tcp -s 192.168.1.2 -j ACCEPT",
     "-A POSTROUTING -s 192.168.1.2/32 -p tcp -j ACCEPT"),
    ("iptables -t nat -A POSTROUTING -p udp -d 192.168.1.2 -j ACCEPT",
     "-A POSTROUTING -d 192.168.1.2/32 -p udp -j ACCEPT"),
    ("iptables -t nat -A PREROUTING -s 192.168.0.0/16 -i eth0 -j ACCEPT",
     "-A PREROUTING -s 192.168.0.0/16 -i eth0 -j ACCEPT"),
    ("iptables -t nat -A POSTROUTING -o eth1 -j ACCEPT", "-A POSTROUTING -o eth1 -j ACCEPT"),
    ("iptables -t nat -A POSTROUTING -p tcp -s 192.168.1.2 --sport 12345:12356 -d 123.123.123.123 --dport 22 -j ACCEPT",
     "-A POSTROUTING -s 192.168.1.2/32 -d 123.123.123.123/32 -p tcp -m tcp --sport 12345:12356 --dport 22 -j ACCEPT"),
    ("iptables -t nat -A POSTROUTING -j SNAT --to-source 123.123.123.123",
     "-A POSTROUTING -j SNAT --to-source 123.123.123.123"),
    ("iptables -t nat -A POSTROUTING -j MASQUERADE", "-A POSTROUTING -j MASQUERADE"),
    ("iptables -t nat -A PREROUTING -p tcp -j DNAT --to-destination 123.123.123.123:22",
     "-A PREROUTING -p tcp -j DNAT --to-destination 123.123.123.123:22"),
    ("iptables -t nat -A PREROUTING -p tcp -j REDIRECT --to-ports 8080", "-A PREROUTING -p tcp -j REDIRECT --to-ports 8080"),
    ("iptables -t nat -A PREROUTING -i eth0 -p tcp --dport 80 -j REDIRECT --to-ports 8080",
     "-A PREROUTING -i eth0 -p tcp -m tcp --dport 80 -j REDIRECT --to-ports 8080"),
    ("iptables -t nat -A PREROUTING -p tcp -i eth1 --dport 80 -j DNAT --to 192.168.1.2",
     "-A PREROUTING -i eth1 -p tcp -m tcp --dport 80 -j DNAT --to-destination 192.168.1.2"),
]


@pytest.mark.parametrize("command, printed", NOTES_NAT_COMMANDS)
def test_the_notes_nat_commands_parse_and_print_canonically(command: str, printed: str) -> None:
    rules = parse_iptables_command(command)
    assert [line for line in rules.to_iptables_save().splitlines() if line.startswith("-A")] == [printed]


def test_the_notes_old_negation_is_refused_as_iptables_1_8_refuses_it() -> None:
    old = "iptables -t nat -A PREROUTING -p ! tcp -s ! 192.168.1.2 -j ACCEPT"
    with pytest.raises(LabInputError, match="intrapositioned negation"):
        parse_iptables_command(old)
    # read as the iptables of the notes' time read it, it is `! -p tcp ! -s 192.168.1.2`
    rules = parse_iptables_command(old, legacy=True)
    assert "-A PREROUTING ! -s 192.168.1.2/32 ! -p tcp -j ACCEPT" in rules.to_iptables_save()


def test_the_notes_nat_rules_do_what_the_notes_say() -> None:
    # The notes' router: 192.168.1.1 inside on eth0, a public 123.123.123.123 on eth1.
    host = Namespace("nat-router", role="node", forwarding=True)
    host.add_link("eth0", "veth", "02:00:00:00:01:00")
    host.add_address("eth0", "192.168.1.1/24")
    host.add_link("eth1", "veth", "02:00:00:00:01:01")
    host.add_address("eth1", "123.123.123.123/24")
    host.add_route("default", via="123.123.123.1", dev="eth1")
    # "from the local network to the internet: change the sender to the router's address"
    rules = parse_iptables_command("iptables -t nat -A POSTROUTING -o eth1 -j MASQUERADE")
    out = trace(rules, host, "tcp 192.168.1.2:40000 > 8.8.8.8:443 iif eth0")
    assert (out.verdict, out.oif, out.packet_after.src, out.packet_after.dst) == ("forward", "eth1", "123.123.123.123",
                                                                                 "8.8.8.8")
    # "reach the inside HTTP server 192.168.1.2 from outside"
    rules = parse_iptables_command("iptables -t nat -A PREROUTING -p tcp -i eth1 --dport 80 -j DNAT --to 192.168.1.2")
    out = trace(rules, host, "tcp 198.51.100.7:50000 > 123.123.123.123:80 iif eth1")
    assert (out.verdict, out.oif, out.packet_after.dst, out.packet_after.dport) == ("forward", "eth0", "192.168.1.2", 80)
    # "transparent proxy": REDIRECT to the router's own port 8080, delivered locally
    rules = parse_iptables_command("iptables -t nat -A PREROUTING -i eth0 -p tcp --dport 80 -j REDIRECT --to-ports 8080")
    out = trace(rules, host, "tcp 192.168.1.2:40000 > 93.184.216.34:80 iif eth0")
    assert (out.verdict, out.packet_after.dst, out.packet_after.dport) == ("deliver", "192.168.1.1", 8080)
    # Source NAT to a fixed address; destination NAT to 123.123.123.123 port 22
    rules = parse_iptables_command("iptables -t nat -A POSTROUTING -j SNAT --to-source 123.123.123.123")
    assert trace(rules, host, "udp 192.168.1.2:5000 > 8.8.8.8:53 iif eth0").packet_after.src == "123.123.123.123"
    rules = parse_iptables_command("iptables -t nat -A PREROUTING -p tcp -j DNAT --to-destination 123.123.123.123:22")
    out = trace(rules, host, "tcp 198.51.100.7:50000 > 123.123.123.123:2222 iif eth1")
    assert (out.verdict, out.packet_after.dport) == ("deliver", 22)


# --- the hooks and tables in kernel order ---------------------------------------------------------------

EVERY_CHAIN = "".join(table(t, *[f"-A {c}" for c in TABLE_CHAINS[t]]) for t in ("raw", "mangle", "nat", "filter", "security"))


@pytest.mark.parametrize(
    "spec, verdict, order",
    [
        # forwarded: PREROUTING -> FORWARD -> POSTROUTING, tables by priority at each hook
        ("tcp 10.0.0.5:1000 > 10.244.1.5:80 iif eth0", "forward",
         "raw:PREROUTING mangle:PREROUTING nat:PREROUTING mangle:FORWARD filter:FORWARD security:FORWARD "
         "mangle:POSTROUTING nat:POSTROUTING"),
        # for this host: PREROUTING -> INPUT (nat's INPUT chain runs last, at NF_IP_PRI_NAT_SRC)
        ("tcp 10.0.0.5:1000 > 10.0.0.1:22 iif eth0", "deliver",
         "raw:PREROUTING mangle:PREROUTING nat:PREROUTING mangle:INPUT filter:INPUT security:INPUT nat:INPUT"),
        # sent by the host: OUTPUT (nat DNAT before filter) -> POSTROUTING
        ("tcp 10.0.0.1:1000 > 10.244.1.5:80 local", "output",
         "raw:OUTPUT mangle:OUTPUT nat:OUTPUT filter:OUTPUT security:OUTPUT mangle:POSTROUTING nat:POSTROUTING"),
        # to itself over lo: back in through PREROUTING and INPUT, where nat has already decided
        ("udp 127.0.0.1:5000 > 127.0.0.1:53 local", "deliver",
         "raw:OUTPUT mangle:OUTPUT nat:OUTPUT filter:OUTPUT security:OUTPUT mangle:POSTROUTING nat:POSTROUTING "
         "raw:PREROUTING mangle:PREROUTING mangle:INPUT filter:INPUT security:INPUT"),
    ],
)
def test_traversal_follows_the_hooks_and_priorities(spec: str, verdict: str, order: str) -> None:
    out = trace(parse_iptables_save(EVERY_CHAIN), router(), spec)
    assert out.verdict == verdict
    assert " ".join(f"{t}:{c}" for t, c, _ in out.matched) == order


def test_forwarding_off_drops_what_is_not_for_the_host() -> None:
    host = router()
    host.forwarding = False
    out = trace(parse_iptables_save(EVERY_CHAIN), host, "tcp 10.0.0.5:1000 > 10.244.1.5:80 iif eth0")
    assert out.verdict == "drop" and "ip_forward" in out.reason
    assert [c for _, c, _ in out.matched] == ["PREROUTING"] * 3


def test_routing_decides_after_dnat_and_the_output_reroute_keeps_outputs_device() -> None:
    rules = parse_iptables_save(
        table("nat", "-A OUTPUT -d 10.96.0.10/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.0.0.9:8080")
        + table("filter", "-A OUTPUT -o eth2", "-A OUTPUT -o eth0"))
    out = trace(rules, router(), "tcp 203.0.113.1:40000 > 10.96.0.10:80 local")
    # 10.96.0.10 routes by default via eth2; DNAT moves it to 10.0.0.9 on eth0: the packet leaves on eth0,
    # but filter OUTPUT still saw the device of the first decision (the hook's out device is fixed)
    assert (out.verdict, out.oif) == ("output", "eth0")
    assert ("filter", "OUTPUT", 1) in out.matched and ("filter", "OUTPUT", 2) not in out.matched
    assert [line.split(" SRC=")[0] for line in out.lines[-2:]] == [
        "TRACE: filter:OUTPUT:policy:3 IN= OUT=eth2", "TRACE: nat:POSTROUTING:policy:1 IN= OUT=eth0"]


def test_jumps_gotos_returns_and_the_kernels_trace_numbers() -> None:
    rules = parse_iptables_save(table(
        "filter",
        "-A FORWARD -p tcp -j A",      # 1: jump; A returns here
        "-A FORWARD -p tcp -g B",      # 2: goto; B's end returns to FORWARD's caller: the policy
        "-A FORWARD -j ACCEPT",        # 3: never reached
        "-A A -p udp -j DROP",
        "-A A -p tcp -j RETURN",       # A rule 2: explicit RETURN
        "-A B -p tcp",                 # B rule 1: no target, goes on
        chains=("A", "B"), policy="DROP"))
    out = trace(rules, router(), "tcp 10.0.0.5:1000 > 10.244.1.5:80 iif eth0")
    assert out.verdict == "drop"
    assert out.matched == [("filter", "FORWARD", 1), ("filter", "A", 2), ("filter", "FORWARD", 2), ("filter", "B", 1)]
    assert [line.split(" IN=")[0] for line in out.lines] == [
        "TRACE: filter:FORWARD:rule:1", "TRACE: filter:A:rule:2", "TRACE: filter:FORWARD:rule:2",
        "TRACE: filter:B:rule:1", "TRACE: filter:B:return:2", "TRACE: filter:FORWARD:policy:4"]
    # ipt_do_table counted every rule that matched, and the policy; the user chain's own end is not shown
    assert [r.counters.packets for r in rules.rules("filter", "FORWARD")] == [1, 1, 0]
    assert rules.tables["filter"].chains["FORWARD"].counters.packets == 1


def test_an_unconditional_verdict_rule_is_named_policy_or_return_by_trace() -> None:
    # trace_packet calls any unconditional standard verdict "policy" in a built-in chain, "return" in a user chain
    rules = parse_iptables_save(table("filter", "-A FORWARD -j U", "-A U -j ACCEPT", chains=("U",)))
    out = trace(rules, router(), "tcp 10.0.0.5:1000 > 10.244.1.5:80 iif eth0")
    assert [line.split(" IN=")[0] for line in out.lines] == ["TRACE: filter:FORWARD:rule:1", "TRACE: filter:U:return:1"]
    rules = parse_iptables_save(table("filter", "-A FORWARD -j DROP"))
    assert trace(rules, router(), "tcp 10.0.0.5:1000 > 10.244.1.5:80 iif eth0").lines[0].startswith(
        "TRACE: filter:FORWARD:policy:1 ")


def test_trace_lines_print_the_packet_as_nf_log_does() -> None:
    rules = parse_iptables_save(table("raw"))
    tcp = trace(rules, router(), "tcp 10.0.0.5:34567 > 10.96.0.10:80 iif eth0 mark 0x4000")
    assert tcp.lines == [
        "TRACE: raw:PREROUTING:policy:1 IN=eth0 OUT= SRC=10.0.0.5 DST=10.96.0.10 LEN=40 TOS=0x00 PREC=0x00 TTL=64 "
        "ID=0 DF PROTO=TCP SPT=34567 DPT=80 SEQ=1000 ACK=0 WINDOW=64240 RES=0x00 SYN URGP=0 MARK=0x4000"]
    udp = trace(rules, router(), "udp 10.0.0.5:5000 > 10.0.0.1:53 iif eth0 len 12")
    assert udp.lines[0].endswith("LEN=40 TOS=0x00 PREC=0x00 TTL=64 ID=0 DF PROTO=UDP SPT=5000 DPT=53 LEN=20")
    icmp = trace(rules, router(), "icmp 10.0.0.1 > 10.0.0.5 local")
    assert icmp.lines[0] == ("TRACE: raw:OUTPUT:policy:1 IN= OUT=eth0 SRC=10.0.0.1 DST=10.0.0.5 LEN=28 TOS=0x00 "
                             "PREC=0x00 TTL=64 ID=0 DF PROTO=ICMP TYPE=8 CODE=0 ID=1 SEQ=1 UID=0 GID=0")


def test_counters_show_as_iptables_save_c_prints_them() -> None:
    rules = parse_iptables_save(table("filter", "-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT", "-A INPUT -p tcp",
                                      policy="DROP"))
    for spec in ("tcp 10.0.0.5:1000 > 10.0.0.1:22 iif eth0", "tcp 10.0.0.5:1001 > 10.0.0.1:22 iif eth0 len 100",
                 "tcp 10.0.0.5:1002 > 10.0.0.1:80 iif eth0"):
        trace(rules, router(), spec)
    assert rules.to_iptables_save(counters=True).splitlines()[1:6] == [
        ":INPUT DROP [1:40]", ":FORWARD DROP [0:0]", ":OUTPUT DROP [0:0]",
        "[2:180] -A INPUT -p tcp -m tcp --dport 22 -j ACCEPT", "[1:40] -A INPUT -p tcp"]
    assert rules.list_rules("filter", "INPUT").splitlines()[0] == "Chain INPUT (policy DROP 1 packets, 40 bytes)"
    rules.zero()
    assert "[0:0] -A INPUT -p tcp" in rules.to_iptables_save(counters=True)
    # counters=False leaves them alone
    trace(rules, router(), "tcp 10.0.0.5:1000 > 10.0.0.1:22 iif eth0", counters=False)
    assert "[0:0] -A INPUT -p tcp -m tcp --dport 22 -j ACCEPT" in rules.to_iptables_save(counters=True)
