"""The explorable widget helper: precomputed Stacks + jslinks, live Free controls, errors in place."""

from __future__ import annotations

import subprocess
import sys

import ipywidgets as widgets
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ipywidgets.widgets.widget_link import Link

from labsupport.errors import LabInputError
from labsupport.views.explorable import (
    LIVE_HINT,
    Choice,
    Explorable,
    Figure,
    Free,
    Html,
    Tabs,
    Text,
    explore,
)


class Recorder:
    """A render function that records its calls and rejects CIDRs that are not /24."""

    def __init__(self):
        self.calls = []

    def __call__(self, pods, bridge, cidr):
        self.calls.append((pods, bridge, cidr))
        if not cidr.endswith("/24"):
            raise LabInputError("pod CIDR", cidr, "a /24 prefix")
        return [Text(f"{pods} pods on {bridge} in {cidr}"), Html(f"<b>{bridge}</b>")]


def node_ui(render=None, **kw):
    return explore(render or Recorder(), title="Build a node",
                   pods=Choice([2, 3, 4], label="pods", default=3),
                   bridge=Choice(["cni0", "docker0"], label="bridge"),
                   cidr=Free("10.244.1.0/24", label="pod CIDR"), **kw)


# ---------------------------------------------------------------- precomputed structure


def test_every_combination_rendered_once_up_front():
    rec = Recorder()
    ui = node_ui(rec)
    assert isinstance(ui, widgets.VBox) and isinstance(ui, Explorable)
    assert ui.n_states == 6
    assert sorted(rec.calls) == sorted((p, b, "10.244.1.0/24") for p in (2, 3, 4) for b in ("cni0", "docker0"))
    assert ui.visible() == ["3 pods on cni0 in 10.244.1.0/24", "<b>cni0</b>"]  # defaults: pods=3, first bridge
    assert ui.error is None and ui.stale() == []


def test_nested_stacks_and_jslinks():
    ui = node_ui()
    pods, bridge = ui.controls["pods"], ui.controls["bridge"]
    assert isinstance(pods, widgets.Dropdown) and isinstance(bridge, widgets.Dropdown)
    assert pods.index == 1 and bridge.index == 0
    (top,) = ui.stacks[0]
    assert isinstance(top, widgets.Stack) and len(top.children) == 3 and top.selected_index == 1
    assert list(top.children) == ui.stacks[1]
    for s in ui.stacks[1]:
        assert isinstance(s, widgets.Stack) and len(s.children) == 2 and s.selected_index == 0
        assert all(isinstance(leaf, widgets.VBox) for leaf in s.children)
    assert top in ui.children
    # one jslink per Stack, from the control of its level
    assert len(ui.links) == 1 + 3
    linked = {}
    for link in ui.links:
        assert type(link) is Link  # jslink: switched by the browser, no kernel needed
        (src, src_attr), (dst, dst_attr) = link.source, link.target
        assert (src_attr, dst_attr) == ("index", "selected_index")
        linked[dst.model_id] = src
    assert linked[top.model_id] is pods
    assert all(linked[s.model_id] is bridge for s in ui.stacks[1])


def test_setting_a_choice_switches_stacks_kernel_side_too():
    rec = Recorder()
    ui = node_ui(rec)
    n = len(rec.calls)
    ui.set(pods=4, bridge="docker0")
    assert ui.visible() == ["4 pods on docker0 in 10.244.1.0/24", "<b>docker0</b>"]
    assert ui.stacks[0][0].selected_index == 2
    assert all(s.selected_index == 1 for s in ui.stacks[1])
    assert len(rec.calls) == n  # precomputed: no render on a Choice switch
    ui.controls["pods"].index = 0  # as if the browser changed it
    assert ui.visible()[0] == "2 pods on docker0 in 10.244.1.0/24"


def test_choice_pairs_toggle_buttons_and_bad_choice():
    seen = []

    def render(mode):
        seen.append(mode)
        return Text(f"mode {mode}")

    ui = explore(render, mode=Choice([("iptables", 1), ("IPVS", 2)], label="kube-proxy", default=2,
                                     buttons=True))
    assert isinstance(ui.controls["mode"], widgets.ToggleButtons)
    assert ui.visible() == ["mode 2"] and sorted(seen) == [1, 2]
    ui.set(mode="iptables")  # a label works too
    assert ui.visible() == ["mode 1"]
    ui.set(mode=2)
    assert ui.visible() == ["mode 2"]
    with pytest.raises(LabInputError) as e:
        ui.set(mode=3)
    assert e.value.field == "kube-proxy"
    with pytest.raises(TypeError):
        ui.set(nope=1)
    assert "kube-proxy=['iptables', 'IPVS']" in repr(ui)


# ---------------------------------------------------------------- Free controls


def test_free_change_rerenders_visible_only_and_marks_others_stale():
    rec = Recorder()
    ui = node_ui(rec)
    rec.calls.clear()
    before = {st.index: list(st.box.children) for st in ui._states.values()}
    ui.set(cidr="10.0.7.0/24")
    assert rec.calls == [(3, "cni0", "10.0.7.0/24")]
    assert ui.visible()[0] == "3 pods on cni0 in 10.0.7.0/24"
    assert len(ui.stale()) == 5 and (3, "cni0") not in ui.stale()
    # updated in place: same widget models, new values (cheap in a live kernel)
    assert list(ui._states[(1, 0)].box.children) == before[(1, 0)]
    # switching to a stale combination renders it (once), switching back does not
    ui.set(bridge="docker0")
    assert rec.calls[-1] == (3, "docker0", "10.0.7.0/24") and len(rec.calls) == 2
    assert ui.visible()[0] == "3 pods on docker0 in 10.0.7.0/24"
    ui.set(bridge="cni0")
    assert len(rec.calls) == 2 and len(ui.stale()) == 4
    # a browser-side change of the Text widget does the same
    ui.controls["cidr"].value = "10.0.8.0/24"
    assert rec.calls[-1] == (3, "cni0", "10.0.8.0/24") and len(ui.stale()) == 5


def test_set_several_values_renders_once():
    rec = Recorder()
    ui = node_ui(rec)
    rec.calls.clear()
    ui.set(pods=2, bridge="docker0", cidr="10.1.0.0/24")
    assert rec.calls == [(2, "docker0", "10.1.0.0/24")]


def test_free_hint_is_always_there():
    ui = node_ui()
    hints = [w for w in ui.children if "lab-live-hint" in w._dom_classes]
    assert len(hints) == 1
    assert "needs a live kernel" in hints[0].value and "this field" in hints[0].value
    assert "live kernel" in LIVE_HINT
    assert isinstance(ui.controls["cidr"], widgets.Text) and ui.controls["cidr"].continuous_update is False


def test_free_int_is_parsed_and_bad_text_is_an_error_in_place():
    ui = explore(lambda mtu: Text(f"payload {mtu - 50}"), mtu=Free(1500, label="MTU"))
    assert ui.visible() == ["payload 1450"] and ui.n_states == 1
    ui.set(mtu="abc")
    assert ui.error == "MTU: 'abc' is not allowed; a whole number"
    assert ui.visible() == ["payload 1450"] and ui.controls["mtu"].value == "abc"
    ui.set(mtu=9000)
    assert ui.error is None and ui.visible() == ["payload 8950"]


def test_no_controls_at_all():
    ui = explore(lambda: [Text("static"), Html("<i>x</i>")], title="Plain")
    assert ui.visible() == ["static", "<i>x</i>"] and ui.n_states == 1
    assert ui.stacks == [] and ui.links == []
    assert repr(ui) == "Explorable 'Plain': no controls ; 1 precomputed state"
    ui.set()
    assert ui.visible() == ["static", "<i>x</i>"]


# ---------------------------------------------------------------- errors


def test_lab_input_error_shown_in_place_keeps_output_and_text_and_clears():
    ui = node_ui()
    good = ui.visible()
    ui.set(cidr="10.0.0.0/16")
    assert ui.error == "pod CIDR: '10.0.0.0/16' is not allowed; a /24 prefix"
    assert ui.visible() == good  # last good output kept
    assert ui.controls["cidr"].value == "10.0.0.0/16"  # typed text kept
    leaf = ui._visible_state().box
    box = leaf.children[0]
    assert isinstance(box, widgets.HTML) and 'class="lab-error"' in box.value
    assert "10.0.0.0/16" in box.value and "last accepted input" in box.value
    assert len(leaf.children) == 1 + 2
    ui.set(cidr="10.0.9.0/24")
    assert ui.error is None and ui.visible()[0] == "3 pods on cni0 in 10.0.9.0/24"
    assert len(leaf.children) == 2 and not any("lab-error" in getattr(w, "value", "") for w in leaf.children)


def test_error_while_precomputing_is_shown_in_that_state_only():
    def render(n):
        if n == 3:
            raise LabInputError("n", n, "at most 2")
        return Text(f"n={n}")

    ui = explore(render, n=Choice([1, 2, 3]))
    assert ui.visible() == ["n=1"] and ui.error is None
    ui.set(n=3)
    assert ui.visible() == [] and ui.error == "n: 3 is not allowed; at most 2"
    assert "last accepted" not in ui._visible_state().box.children[0].value


def test_other_exceptions_propagate():
    def render(pods, bridge, cidr):
        if cidr == "boom":
            raise KeyError("bug")
        return Text("ok")

    ui = node_ui(render)
    with pytest.raises(KeyError):
        ui.set(cidr="boom")
    with pytest.raises(ZeroDivisionError):
        explore(lambda n: 1 / 0, n=Choice([1]))
    with pytest.raises(TypeError):
        explore(lambda: 42)  # not a part


# ---------------------------------------------------------------- bounds, repr


def test_max_states_bound_names_the_controls():
    with pytest.raises(LabInputError) as e:
        explore(lambda a, b: Text(""), a=Choice(range(7), label="alpha"), b=Choice(range(7), label="beta"))
    msg = str(e.value)
    assert "alpha (7)" in msg and "beta (7)" in msg and "49" in msg and "48" in msg
    with pytest.raises(LabInputError):
        node_ui(max_states=5)
    assert node_ui(max_states=6).n_states == 6


def test_repr_short_and_stable():
    ui = node_ui()
    r = repr(ui)
    assert r == ("Explorable 'Build a node': pods=[2, 3, 4] bridge=['cni0', 'docker0'] | pod CIDR (live) ; "
                 "6 precomputed states")
    assert "0x" not in r and len(r) <= 110
    assert ui._repr_mimebundle_()["text/plain"] == r
    long = explore(lambda a, b: Text(""), title="Long",
                   a=Choice([f"option-number-{i}" for i in range(6)], label="first"),
                   b=Choice([f"another-long-option-{i}" for i in range(6)], label="second"))
    assert repr(long) == "Explorable 'Long': first(6) second(6) ; 36 precomputed states"


def test_import_does_not_import_matplotlib_or_display():
    code = ("import sys, labsupport.views.explorable; "
            "print('matplotlib' in sys.modules, 'IPython.core.display' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split()[0] == "False"
    assert out.stderr == ""


# ---------------------------------------------------------------- parts


def _draw(n):
    from matplotlib.figure import Figure as MplFigure

    fig = MplFigure(figsize=(3, 2))
    ax = fig.add_subplot()
    ax.plot(range(n), [i * i for i in range(n)], marker="o")
    ax.set_title(f"n={n}")
    return fig


def test_figure_png_is_byte_stable_and_pyplot_figures_are_closed():
    pytest.importorskip("matplotlib")
    a, b = Figure(_draw(4)), Figure(_draw(4))
    assert a.png == b.png and a.png.startswith(b"\x89PNG")
    assert b"Software" not in a.png and b"matplotlib" not in a.png
    assert a.png != Figure(_draw(5)).png
    assert a._describe() == [f"<Figure {a.size[0]}x{a.size[1]}>"] and a.width == a.size[0]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([1, 2, 3])
    assert plt.fignum_exists(fig.number)
    f = Figure(fig, width=200)
    assert not plt.fignum_exists(fig.number) and f.width == 200


def test_figure_and_tabs_in_an_explorable():
    pytest.importorskip("matplotlib")

    def render(n):
        return Tabs({"plot": Figure(_draw(n)), "table": [Text(f"n={n}"), Html("<hr>")]})

    ui = explore(render, n=Choice([3, 4]))
    vis = ui.visible()
    assert vis[0] == "<Tab plot>" and vis[1].startswith("<Figure ") and vis[2:] == ["<Tab table>", "n=3", "<hr>"]
    tab = ui._visible_state().box.children[0]
    assert isinstance(tab, widgets.Tab) and tab.titles == ("plot", "table")
    img = tab.children[0].children[0]
    assert isinstance(img, widgets.Image) and img.format == "png" and img.width == vis[1].split()[1].split("x")[0]


# ---------------------------------------------------------------- model-based (hypothesis)


@settings(max_examples=40, deadline=None)
@given(sizes=st.lists(st.integers(1, 4), min_size=0, max_size=3),
       moves=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3), st.sampled_from(["a", "b", "bad"])),
                      max_size=8))
def test_visible_always_matches_a_fresh_render(sizes, moves):
    names = [f"c{i}" for i in range(len(sizes))]

    def render(**kw):
        if kw["free"] == "bad":
            raise LabInputError("free", "bad", "a or b")
        return Text(" ".join(f"{k}={v}" for k, v in kw.items()))

    controls = {n: Choice([f"{n}v{j}" for j in range(k)]) for n, k in zip(names, sizes)}
    ui = explore(render, free=Free("a"), max_states=64, **controls)
    prod = 1
    for k in sizes:
        prod *= k
    assert ui.n_states == prod and len(ui.links) == sum(len(level) for level in ui.stacks)
    width = 1
    for level, k in enumerate(sizes):
        assert len(ui.stacks[level]) == width and all(len(s.children) == k for s in ui.stacks[level])
        width *= k
    current = {n: f"{n}v0" for n in names}
    for which, j, free in moves:
        change = {"free": free}
        if names:
            n = names[which % len(names)]
            change[n] = f"{n}v{j % sizes[names.index(n)]}"
            current[n] = change[n]
        ui.set(**change)
        choices = " ".join(f"{k}={v}" for k, v in current.items())
        if free == "bad":
            # error in place; the last good output of this combination stays; the text stays
            assert ui.error == "free: 'bad' is not allowed; a or b" and ui.controls["free"].value == "bad"
            assert ui.visible() in ([f"free={g} {choices}".strip()] for g in "ab")
        else:
            assert ui.error is None and ui.visible() == render(free=free, **current)._describe()


def test_close_closes_every_widget_it_made():
    from ipywidgets.widgets.widget import _instances

    before = set(_instances)
    ui = node_ui()
    ui.set(cidr="10.0.0.0/16")  # an error box too
    assert len(set(_instances) - before) > 20
    ui.close()
    assert set(_instances) - before == set()
