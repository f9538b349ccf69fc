"""The references page: every link is a well-formed http(s) URL, none is listed twice,
and every link of the study notes the course is built from is there."""

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

PAGE = Path(__file__).resolve().parents[2] / "book" / "references.md"

# Every URL in the study notes (the notes themselves are not part of the repository).
NOTES_URLS = (
    "https://sookocheff.com/post/kubernetes/understanding-kubernetes-networking-model/",
    "https://www.docker.com/resources/what-container/",
    "https://github.com/aws/amazon-vpc-cni-k8s/blob/master/docs/cni-proposal.md",
    "https://mayankshah.dev/blog/demystifying-kube-proxy/",
    "https://github.com/kubernetes/kubernetes/blob/master/pkg/proxy/ipvs/README.md",
    "https://platform9.com/blog/the-ultimate-guide-to-using-calico-flannel-weave-and-cilium/",
    "https://support.huawei.com/enterprise/zh/doc/EDOC1100087027",
    "https://new.qq.com/omn/20200718/20200718A05H2H00.html",
    "https://wiki.linuxfoundation.org/networking/tunneling",
    "https://www.digitalocean.com/community/tutorials/a-deep-dive-into-iptables-and-netfilter-architecture",
    "https://cloudnative.to/blog/k8s-node-proxy/",
    "https://mp.weixin.qq.com/s/jJiX47kRTfX-3UnbN8cvtQ",
    "https://www.ssl.com/guide/pem-der-crt-and-cer-x-509-encodings-and-conversions/",
    "https://mp.weixin.qq.com/s/JOpega3ud9P7NDNsGAwCCg",
    "https://arthurchiao.art/blog/nat-zh/",
    (
        "https://arthurchiao.art/blog/how-nat-traversal-works-zh/"
        "#77-%E5%85%A8-ipv6-%E7%BD%91%E7%BB%9C%E7%90%86%E6%83%B3%E4%B9%8B%E5%9C%B0"
        "%E4%BD%86%E5%B9%B6%E9%9D%9E%E9%97%AE%E9%A2%98%E5%85%A8%E6%97%A0"
    ),
    "https://plantegg.github.io/2019/01/09/nslookup-OK-but-ping-fail/",
    "https://mp.weixin.qq.com/s/e8pyVJZ4CBf0xy3OGVr3LA",
)

MD_LINK = re.compile(r"\]\(([^)\s]*)\)")  # [text](url)
AUTOLINK = re.compile(r"<([a-zA-Z][a-zA-Z0-9+.-]*:[^>\s]*)>")  # <url>
ANY_URL = re.compile(r"https?://[^\s)>\]]+")
# RFC 3986 unreserved, reserved and percent characters: anything else must be percent-encoded.
URL_CHARS = re.compile(r"^[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+$")


def page_text():
    return PAGE.read_text(encoding="utf-8")


def links(text):
    """The targets of all external links on the page, in order (internal #anchors left out)."""
    found = MD_LINK.findall(text) + AUTOLINK.findall(text)
    return [u for u in found if not u.startswith("#")]


def normalised(url):
    """Scheme and host are case-insensitive, and a trailing slash names the same page."""
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    return (parts.scheme.lower(), parts.netloc.lower(), path, parts.query, parts.fragment)


def test_page_has_one_title():
    titles = [line for line in page_text().splitlines() if re.match(r"^# \S", line)]
    assert titles == ["# References"]


@pytest.mark.parametrize("url", links(page_text()))
def test_link_is_well_formed_http_url(url):
    parts = urlsplit(url)
    assert parts.scheme in ("http", "https"), f"{url}: scheme must be http or https"
    assert parts.netloc and "." in parts.hostname, f"{url}: no host name"
    assert " " not in url and URL_CHARS.match(url), f"{url}: characters that must be percent-encoded"
    if "%" in url:
        assert re.fullmatch(r"(?:[^%]|%[0-9A-Fa-f]{2})*", url), f"{url}: bad percent-escape"


def test_no_link_is_listed_twice():
    seen = {}
    for url in links(page_text()):
        key = normalised(url)
        assert key not in seen, f"{url} duplicates {seen[key]}"
        seen[key] = url


def test_every_url_on_the_page_is_a_link():
    """A bare URL in the prose would render as plain text: every URL must be a link target."""
    text = page_text()
    targets = set(links(text))
    bare = [u for u in ANY_URL.findall(text) if u not in targets]
    assert not bare, f"URLs that are not links: {bare}"


def test_no_accidental_links():
    """MyST turns bare domain names ("example.com") into links (linkify): the rendered page must link to
    exactly the URLs written as links, nothing more."""
    markdown_it = pytest.importorskip("markdown_it")
    pytest.importorskip("linkify_it")
    md = markdown_it.MarkdownIt("commonmark", {"linkify": True}).enable(["linkify", "table"])
    rendered = {
        child.attrGet("href")
        for token in md.parse(page_text())
        for child in token.children or ()
        if child.type == "link_open"
    }
    extra = rendered - set(links(page_text()))
    assert not extra, f"text that renders as a link by accident: {sorted(extra)}"


def test_every_link_of_the_notes_is_listed():
    listed = {normalised(u) for u in links(page_text())}
    missing = [u for u in NOTES_URLS if normalised(u) not in listed]
    assert not missing, f"links of the notes missing from the references page: {missing}"
    assert len(set(NOTES_URLS)) == len(NOTES_URLS) == 18
