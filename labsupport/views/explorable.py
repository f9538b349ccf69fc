"""Explorable widgets: lab controls that work on the static site and in a live kernel.

Every lab uses :func:`explore` instead of a bare ``interact``::

    from labsupport.views.explorable import explore, Choice, Free, Text, Html, Figure, Tabs

    def build(pods, bridge, cidr):
        node = pod_network.build_node(pods=pods, bridge=bridge, pod_cidr=cidr)  # may raise LabInputError
        return [Text(node.host.ip_route()), Html(draw_node(node).markup), Figure(a_matplotlib_figure)]

    ui = explore(build, title="Build a node",
                 pods=Choice([2, 3, 4], label="pods", default=3),
                 bridge=Choice(["cni0", "docker0"], label="bridge"),
                 cidr=Free("10.244.1.0/24", label="pod CIDR"))
    ui   # the last expression of the cell displays it

How it works:

* Every combination of the :class:`Choice` values is rendered once, up front, into nested
  ``ipywidgets.Stack`` widgets; each control's ``index`` is ``jslink``-ed to the ``selected_index``
  of every Stack at its level. Switching a Choice is therefore done by the browser alone: it works on
  the static site (no kernel) and instantly in a live kernel. The number of combinations is bounded
  by ``max_states`` (48 unless given); each one costs one ``render`` call and its share of the stored
  widget state (about 1.5 kB of models plus the content: a PNG figure is typically 15-40 kB).
* :class:`Free` controls (text fields) cannot be precomputed. In a live kernel a change re-renders the
  visible combination only; the others are marked stale and re-rendered when they become visible.
  On the static page typing changes nothing, and a hint under the fields says so.
* ``render(**values)`` returns a part or a list of parts: :class:`Text`, :class:`Html`,
  :class:`Figure`, :class:`Tabs` (a plain ``str`` counts as ``Text``; ``None`` as nothing).
* If ``render`` raises :class:`~labsupport.errors.LabInputError`, its message is shown in place (an HTML
  box with the class ``lab-error``); the last good output and the typed text stay. The next good render
  clears it. Any other exception is a bug and propagates.
* Tests and benchmarks drive it with ``ui.set(...)``, ``ui.visible()``, ``ui.error`` and ``ui.stale()``.

Importing this module imports ipywidgets but not matplotlib, and displays nothing.
"""

from __future__ import annotations

import html
import io
import itertools
import math
import struct
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from contextlib import contextmanager
from typing import Any

import ipywidgets as widgets
from ipywidgets.widgets.widget_link import Link
from ipywidgets.widgets.widget_string import HTMLStyle

from labsupport.errors import LabInputError

__all__ = [
    "DEFAULT_MAX_STATES",
    "FIGURE_DPI",
    "LIVE_HINT",
    "Choice",
    "Explorable",
    "Figure",
    "Free",
    "Html",
    "Tabs",
    "Text",
    "explore",
    "figure_png",
]

#: Resolution every :class:`Figure` is rasterised at (pixels per inch). A 6.4 x 4.8 in figure
#: becomes about 640 x 480 px and is shown at that width (shrunk to fit narrow screens).
FIGURE_DPI = 100

#: Default bound on the number of precomputed Choice combinations of one explorable.
DEFAULT_MAX_STATES = 48

#: Shown under the Free controls, always: true on the static page and in a live kernel.
LIVE_HINT = (
    "Changing {this} needs a live kernel: launch the lab (rocket icon above); "
    "the result shown is for the value shown."
)

_PRE_STYLE = (
    "margin:0;padding:4px 6px;white-space:pre;overflow-x:auto;"
    "font-family:var(--jp-code-font-family,monospace);font-size:0.85em;line-height:1.35;"
)
_ERROR_STYLE = (
    "border-left:4px solid #c62828;background:#fdecea;color:#7f1d1d;"
    "padding:6px 10px;margin:4px 0;white-space:pre-wrap;font-family:inherit;"
)
_HINT_STYLE = "font-size:0.85em;color:#555;font-style:italic;margin:0 0 4px 0;"


# --------------------------------------------------------------------------------------------
# Parts: what render() returns


class Part(ABC):
    """Base class of what ``render`` returns. Each part knows how to become a widget."""

    @abstractmethod
    def _describe(self) -> list[str]:
        """The part as comparable text (what ``Explorable.visible`` returns)."""

    @abstractmethod
    def _build(self, kit: _Kit) -> widgets.Widget:
        """A new widget showing this part."""

    @abstractmethod
    def _update(self, widget: widgets.Widget, kit: _Kit) -> bool:
        """Update ``widget`` in place to show this part; False if it is the wrong kind."""


class Html(Part):
    """Raw HTML (trusted: it comes from the course's own views)."""

    def __init__(self, html_text: str) -> None:
        self.html = str(html_text)

    def _value(self) -> str:
        return self.html

    def _describe(self) -> list[str]:
        return [self.html]

    def _build(self, kit: _Kit) -> widgets.Widget:
        return widgets.HTML(value=self._value(), layout=kit.layout, style=kit.html_style)

    def _update(self, widget: widgets.Widget, kit: _Kit) -> bool:
        if type(widget) is not widgets.HTML:
            return False
        widget.value = self._value()
        return True

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.html[:40]!r}{'…' if len(self.html) > 40 else ''})"


class Text(Html):
    """Plain text shown monospaced in a ``<pre>`` (HTML-escaped): ``ip route`` output and the like."""

    def __init__(self, text: str) -> None:
        self.text = str(text)
        self.html = f'<pre class="lab-text" style="{_PRE_STYLE}">{html.escape(self.text)}</pre>'

    def _describe(self) -> list[str]:
        return [self.text]

    def __repr__(self) -> str:
        return f"Text({self.text[:40]!r}{'…' if len(self.text) > 40 else ''})"


def figure_png(fig: Any, dpi: int = FIGURE_DPI) -> bytes:
    """Rasterise a matplotlib figure to PNG bytes that are identical for identical figures.

    Fixed dpi, tight bounding box, no ``Software`` metadata (so no matplotlib version in the bytes),
    reduced to a 64-colour palette.
    A figure managed by pyplot is closed afterwards, so the inline backend does not show it again.
    """
    from PIL import Image  # matplotlib's own dependency; lazy like matplotlib

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None},
                bbox_inches="tight", pad_inches=0.1)
    # A 64-colour palette keeps diagrams crisp at a third of the bytes: every precomputed state is
    # stored in the page's widget state, so this is what a static lab page weighs.
    rgb = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    buf = io.BytesIO()
    rgb.quantize(colors=64, method=Image.Quantize.FASTOCTREE).save(buf, format="PNG")
    if getattr(fig.canvas, "manager", None) is not None:
        import matplotlib.pyplot as plt  # only for pyplot-managed figures; lazy

        plt.close(fig)
    return buf.getvalue()


def _png_size(png: bytes) -> tuple[int, int]:
    if png[:8] != b"\x89PNG\r\n\x1a\n" or png[12:16] != b"IHDR":
        raise ValueError("not a PNG image")
    return struct.unpack(">II", png[16:24])


class Figure(Part):
    """A matplotlib figure, converted at once to PNG (at :data:`FIGURE_DPI`) and closed.

    ``width`` is the displayed width in CSS pixels (default: the PNG's own width); the image
    shrinks to fit narrower screens. ``fig`` may also be PNG bytes.
    """

    def __init__(self, fig: Any, width: int | None = None, dpi: int = FIGURE_DPI) -> None:
        self.png = bytes(fig) if isinstance(fig, (bytes, bytearray)) else figure_png(fig, dpi)
        self.size = _png_size(self.png)
        self.width = int(width) if width else self.size[0]

    def _describe(self) -> list[str]:
        return [f"<Figure {self.size[0]}x{self.size[1]}>"]

    def _build(self, kit: _Kit) -> widgets.Widget:
        return widgets.Image(value=self.png, format="png", width=str(self.width), layout=kit.image_layout)

    def _update(self, widget: widgets.Widget, kit: _Kit) -> bool:
        if type(widget) is not widgets.Image:
            return False
        widget.value = self.png
        widget.width = str(self.width)
        return True

    def __repr__(self) -> str:
        return f"Figure({self.size[0]}x{self.size[1]}, {len(self.png)} bytes)"


class Tabs(Part):
    """Tabs, switched in the browser (works on the static page): ``Tabs({"title": part_or_list, ...})``."""

    def __init__(self, tabs: Mapping[str, Any]) -> None:
        self.titles = [str(t) for t in tabs]
        self.pages = [_as_parts(v) for v in tabs.values()]

    def _describe(self) -> list[str]:
        out: list[str] = []
        for title, page in zip(self.titles, self.pages):
            out.append(f"<Tab {title}>")
            out.extend(_describe(page))
        return out

    def _build(self, kit: _Kit) -> widgets.Widget:
        pages = [widgets.VBox([p._build(kit) for p in page], layout=kit.layout) for page in self.pages]
        return widgets.Tab(children=pages, titles=self.titles, layout=kit.layout)

    def _update(self, widget: widgets.Widget, kit: _Kit) -> bool:
        if type(widget) is not widgets.Tab or len(widget.children) != len(self.pages):
            return False
        for box, page in zip(widget.children, self.pages):
            new = kit.fill(list(box.children), page)
            if tuple(new) != tuple(box.children):
                box.children = new
        widget.titles = self.titles
        return True

    def __repr__(self) -> str:
        return f"Tabs({self.titles!r})"


def _as_parts(x: Any) -> list[Part]:
    if x is None:
        return []
    if isinstance(x, Part):
        return [x]
    if isinstance(x, str):
        return [Text(x)]
    if isinstance(x, (list, tuple)):
        out: list[Part] = []
        for item in x:
            out.extend(_as_parts(item))
        return out
    raise TypeError(f"render must return Text, Html, Figure, Tabs, str, None or a list of them, "
                    f"not {type(x).__name__}")


def _describe(parts: Iterable[Part]) -> list[str]:
    out: list[str] = []
    for p in parts:
        out.extend(p._describe())
    return out


def _close_tree(w: widgets.Widget) -> None:
    """Close a part widget and what it contains (not the shared layouts and styles)."""
    if isinstance(w, widgets.Box):
        for c in w.children:
            _close_tree(c)
    w.close()


class _Kit:
    """Layouts and styles shared by all content widgets of one explorable (smaller widget state)."""

    def __init__(self) -> None:
        self.layout = widgets.Layout()
        self.image_layout = widgets.Layout(max_width="100%", height="auto")
        self.html_style = HTMLStyle()

    def fill(self, old: list[widgets.Widget], parts: list[Part]) -> list[widgets.Widget]:
        """Show ``parts`` reusing the widgets ``old`` where the kind matches; close the rest."""
        new: list[widgets.Widget] = []
        for i, part in enumerate(parts):
            w = old[i] if i < len(old) else None
            if w is not None and part._update(w, self):
                new.append(w)
                continue
            if w is not None:
                _close_tree(w)
            new.append(part._build(self))
        for w in old[len(parts):]:
            _close_tree(w)
        return new

    def close(self) -> None:
        for w in (self.layout, self.image_layout, self.html_style):
            w.close()


# --------------------------------------------------------------------------------------------
# Controls


class Choice:
    """A bounded control: one of a few values, all precomputed (works on the static page).

    ``options`` are plain values or ``(label, value)`` pairs; ``default`` is a value (or a label);
    the first option if omitted. Shown as a Dropdown, or as toggle buttons with ``buttons=True``.
    """

    def __init__(self, options: Iterable[Any], label: str | None = None, default: Any = None,
                 buttons: bool = False) -> None:
        opts = list(options)
        self.pairs = all(isinstance(o, tuple) and len(o) == 2 for o in opts) and bool(opts)
        self.labels = [str(o[0]) if self.pairs else str(o) for o in opts]
        self.values = [o[1] if self.pairs else o for o in opts]
        self.label = label
        self.buttons = bool(buttons)
        if not opts:
            raise LabInputError(label or "Choice", [], "a Choice needs at least one option")
        self.default_index = 0 if default is None else self.index_of(default)

    def index_of(self, value: Any) -> int:
        """Index of ``value`` (compared with the values, then with the labels)."""
        for i, v in enumerate(self.values):
            if v == value:
                return i
        for i, lab in enumerate(self.labels):
            if lab == value:
                return i
        raise LabInputError(self.label or "Choice", value, f"one of {self.summary()}")

    def summary(self) -> str:
        return repr(self.labels if self.pairs else self.values)

    def __repr__(self) -> str:
        return f"Choice({self.summary()}, label={self.label!r})"


class Free:
    """A free text field: re-rendered by a live kernel only (not precomputable).

    ``render`` receives the text as typed (a ``str``), except when ``default`` is an ``int`` or a
    ``float``: then the text is parsed as one, and text that does not parse is reported like a
    :class:`LabInputError` from the model.
    """

    def __init__(self, default: Any = "", label: str | None = None, placeholder: str = "") -> None:
        self.default = default
        self.label = label
        self.placeholder = placeholder
        self.kind = type(default) if type(default) in (int, float) else str

    def parse(self, text: str) -> Any:
        if self.kind is str:
            return text
        try:
            return self.kind(text.strip())
        except ValueError:
            allowed = "a whole number" if self.kind is int else "a number"
            raise LabInputError(self.label or "value", text, allowed) from None

    def __repr__(self) -> str:
        return f"Free({self.default!r}, label={self.label!r})"


# --------------------------------------------------------------------------------------------
# The explorable


class _State:
    """One precomputed combination of Choice values."""

    __slots__ = ("box", "desc", "error", "error_widget", "index", "parts", "tried")

    def __init__(self, index: tuple[int, ...], box: widgets.VBox) -> None:
        self.index = index
        self.box = box
        self.parts: list[widgets.Widget] = []
        self.error_widget: widgets.HTML | None = None
        self.error: str | None = None
        self.tried: tuple[str, ...] | None = None  # Free texts of the last render attempt
        self.desc: list[str] = []


def _error_html(message: str, has_output: bool) -> str:
    tail = " The result below is still the one for the last accepted input." if has_output else ""
    return (f'<div class="lab-error" role="alert" style="{_ERROR_STYLE}">'
            f"<b>Not accepted.</b> {html.escape(message)}{html.escape(tail)}</div>")


class Explorable(widgets.VBox):
    """The widget :func:`explore` returns (a ``VBox``). Use :func:`explore` to make one.

    Driving it from code (tests, benchmarks, exercise checks):

    * ``ui.set(name=value, ...)``: set controls (a Choice by value or label, a Free by text) and
      return once the kernel-side update is done.
    * ``ui.visible()``: the visible combination's output as a list of strings (Text content, Html
      source, ``"<Figure WxH>"``, ``"<Tab title>"`` followed by the tab's content).
    * ``ui.error``: the visible combination's error message, or None.
    * ``ui.stale()``: the combinations (tuples of Choice values) not yet rendered with the current
      Free values.
    * ``ui.values()``: the current values, as ``render`` receives them.
    """

    def __init__(self, render: Callable[..., Any], title: str | None = None,
                 controls: Mapping[str, Choice | Free] | None = None,
                 max_states: int = DEFAULT_MAX_STATES) -> None:
        controls = dict(controls or {})
        for name, c in controls.items():
            if not isinstance(c, (Choice, Free)):
                raise TypeError(f"control {name!r} must be a Choice or a Free, not {type(c).__name__}")
        choices = [(n, c) for n, c in controls.items() if isinstance(c, Choice)]
        frees = [(n, c) for n, c in controls.items() if isinstance(c, Free)]
        n_states = math.prod(len(c.values) for _, c in choices)
        if n_states > max_states:
            sizes = " x ".join(f"{c.label or n} ({len(c.values)})" for n, c in choices)
            raise LabInputError(
                "explorable states", n_states,
                f"at most {max_states} precomputed combinations, but {sizes} make {n_states}; "
                "use fewer options, turn a control into a Free one, or raise max_states")

        super().__init__()
        self._render = render
        self._title = title
        self._choice_names = [n for n, _ in choices]
        self._choices = [c for _, c in choices]
        self._free_names = [n for n, _ in frees]
        self._frees = [c for _, c in frees]
        self._order = list(controls)  # render's keyword order, as given
        self._hold_depth = 0
        self._kit = _Kit()
        self._states: dict[tuple[int, ...], _State] = {}
        self._by_box: dict[int, _State] = {}
        self.stacks: list[list[widgets.Stack]] = []  #: Stacks by nesting level (level i ↔ Choice i)
        self.links: list[Link] = []  #: the jslinks, control index → Stack selected_index
        self.controls: dict[str, widgets.Widget] = {}  #: control widgets by keyword name
        self._own: list[widgets.Widget] = []  # widgets closed by close()
        try:
            self._build(n_states)
        except BaseException:
            self.close()
            raise

    # -- construction

    def _build(self, n_states: int) -> None:
        kit = self._kit
        desc_style = {"description_width": "initial"}
        choice_widgets = []
        for name, c in zip(self._choice_names, self._choices):
            cls = widgets.ToggleButtons if c.buttons else widgets.Dropdown
            w = cls(options=list(zip(c.labels, range(len(c.labels)))), index=c.default_index,
                    description=c.label or name, style=desc_style)
            self.controls[name] = w
            choice_widgets.append(w)
        free_widgets = []
        for name, f in zip(self._free_names, self._frees):
            w = widgets.Text(value=str(f.default), description=f.label or name,
                             placeholder=f.placeholder, continuous_update=False, style=desc_style)
            self.controls[name] = w
            free_widgets.append(w)
        self._own.extend(self.controls.values())

        # Precompute every combination, in product order (one render call each).
        texts = self._free_texts()
        for index in itertools.product(*(range(len(c.values)) for c in self._choices)):
            st = _State(index, widgets.VBox(layout=kit.layout))
            self._states[index] = st
            self._by_box[id(st.box)] = st
            self._own.append(st.box)
            self._render_into(st, texts)

        # Nest them: a Stack per prefix of the index, level i switched by Choice i.
        self.stacks = [[] for _ in self._choices]
        default = tuple(c.default_index for c in self._choices)

        def nest(prefix: tuple[int, ...]) -> widgets.Widget:
            level = len(prefix)
            if level == len(self._choices):
                return self._states[prefix].box
            children = [nest(prefix + (i,)) for i in range(len(self._choices[level].values))]
            stack = widgets.Stack(children=children, selected_index=default[level], layout=kit.layout)
            self.stacks[level].append(stack)
            self._own.append(stack)
            return stack

        self._stage = nest(())
        for level, w in enumerate(choice_widgets):
            for stack in self.stacks[level]:
                self.links.append(widgets.jslink((w, "index"), (stack, "selected_index")))
        self._own.extend(self.links)

        for level, w in enumerate(choice_widgets):
            w.observe(lambda ch, level=level: self._on_choice(level, ch), names="index")
        for w in free_widgets:
            w.observe(self._on_free, names="value")

        rows: list[widgets.Widget] = []
        if self._title:
            rows.append(widgets.HTML(f"<b>{html.escape(self._title)}</b>"))
        if choice_widgets:
            rows.append(widgets.HBox(choice_widgets, layout=widgets.Layout(flex_flow="row wrap")))
        if free_widgets:
            rows.append(widgets.HBox(free_widgets, layout=widgets.Layout(flex_flow="row wrap")))
            this = "this field" if len(free_widgets) == 1 else "these fields"
            hint = widgets.HTML(f'<div style="{_HINT_STYLE}">{html.escape(LIVE_HINT.format(this=this))}</div>')
            hint.add_class("lab-live-hint")
            rows.append(hint)
        self._own.extend(rows)
        rows.append(self._stage)
        self.add_class("lab-explorable")
        self.children = rows
        self._n_states = n_states

    # -- rendering

    def _free_texts(self) -> tuple[str, ...]:
        return tuple(self.controls[n].value for n in self._free_names)

    def _values_for(self, index: tuple[int, ...], texts: tuple[str, ...]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        choice_at = dict(zip(self._choice_names, zip(self._choices, index)))
        free_at = dict(zip(self._free_names, zip(self._frees, texts)))
        for name in self._order:
            if name in choice_at:
                c, i = choice_at[name]
                values[name] = c.values[i]
            else:
                f, text = free_at[name]
                values[name] = f.parse(text)
        return values

    def _render_into(self, st: _State, texts: tuple[str, ...]) -> None:
        try:
            parts = _as_parts(self._render(**self._values_for(st.index, texts)))
        except LabInputError as e:
            st.tried = texts
            self._show(st, error=str(e))
            return
        st.tried = texts
        st.parts = self._kit.fill(st.parts, parts)
        st.desc = _describe(parts)
        self._show(st, error=None)

    def _show(self, st: _State, error: str | None) -> None:
        st.error = error
        if error is None:
            if st.error_widget is not None:
                st.error_widget.close()
                st.error_widget = None
        elif st.error_widget is None:
            st.error_widget = widgets.HTML(_error_html(error, bool(st.parts)),
                                           layout=self._kit.layout, style=self._kit.html_style)
        else:
            st.error_widget.value = _error_html(error, bool(st.parts))
        children = ([st.error_widget] if st.error_widget is not None else []) + st.parts
        if tuple(children) != tuple(st.box.children):
            st.box.children = children

    def _visible_state(self) -> _State:
        w = self._stage
        for _ in self._choices:
            w = w.children[w.selected_index]
        return self._by_box[id(w)]

    def _refresh(self) -> None:
        st = self._visible_state()
        texts = self._free_texts()
        if st.tried != texts:
            self._render_into(st, texts)

    # -- observers (kernel side; the browser switches Stacks by itself through the jslinks)

    def _on_choice(self, level: int, change: dict) -> None:
        new = change["new"]
        if new is None:
            return
        for stack in self.stacks[level]:
            stack.selected_index = new
        if not self._hold_depth:
            self._refresh()

    def _on_free(self, change: dict) -> None:
        if not self._hold_depth:
            self._refresh()

    @contextmanager
    def _hold(self):
        self._hold_depth += 1
        try:
            yield
        finally:
            self._hold_depth -= 1

    # -- public driving API

    def set(self, **values: Any) -> None:
        """Set controls by keyword name (Choice by value or label, Free by text); render what is needed.

        All values are checked before anything changes: an unknown name raises ``TypeError``, a value
        that is not one of a Choice's options raises :class:`LabInputError`.
        """
        unknown = [n for n in values if n not in self.controls]
        if unknown:
            raise TypeError(f"unknown control(s) {unknown}; this explorable has {list(self.controls)}")
        new: dict[str, Any] = {}
        for name, v in values.items():
            if name in self._choice_names:
                new[name] = self._choices[self._choice_names.index(name)].index_of(v)
            else:
                new[name] = str(v)
        with self._hold():
            for name, v in new.items():
                w = self.controls[name]
                if name in self._choice_names:
                    w.index = v
                else:
                    w.value = v
        self._refresh()

    def values(self) -> dict[str, Any]:
        """The current values, as ``render`` receives them (a Free's text may fail to parse)."""
        index = tuple(self.controls[n].index for n in self._choice_names)
        return self._values_for(index, self._free_texts())

    def visible(self) -> list[str]:
        """The visible combination's output in comparable text form (see the class docstring)."""
        return list(self._visible_state().desc)

    @property
    def error(self) -> str | None:
        """The visible combination's current error message, or None."""
        return self._visible_state().error

    def stale(self) -> list[tuple[Any, ...]]:
        """Combinations (tuples of Choice values) not yet rendered with the current Free values."""
        texts = self._free_texts()
        return [tuple(c.values[i] for c, i in zip(self._choices, st.index))
                for st in self._states.values() if st.tried != texts]

    @property
    def n_states(self) -> int:
        """Number of precomputed combinations."""
        return self._n_states

    def close(self) -> None:
        """Close this widget and every widget it made."""
        for st in getattr(self, "_states", {}).values():
            for w in st.parts:
                _close_tree(w)
            if st.error_widget is not None:
                st.error_widget.close()
        kit = getattr(self, "_kit", None)
        shared = {id(w) for w in (kit.layout, kit.image_layout, kit.html_style)} if kit else set()
        for w in [*getattr(self, "_own", []), self]:
            for attr in ("layout", "style"):
                sub = getattr(w, attr, None)
                if isinstance(sub, widgets.Widget) and id(sub) not in shared:
                    sub.close()
            if w is not self:
                w.close()
        if kit is not None:
            kit.close()
        super().close()

    def __repr__(self) -> str:
        if not hasattr(self, "_n_states"):
            return "Explorable (not built)"
        full = self._summary(full=True)
        return full if len(full) <= 110 else self._summary(full=False)

    def _summary(self, full: bool) -> str:
        bits = []
        for name, c in zip(self._choice_names, self._choices):
            label = c.label or name
            bits.append(f"{label}={c.summary()}" if full else f"{label}({len(c.values)})")
        s = " ".join(bits)
        if self._frees:
            live = ", ".join(f"{f.label or n} (live)" for n, f in zip(self._free_names, self._frees))
            s = f"{s} | {live}" if s else f"| {live}"
        s = s or "no controls"
        n = self._n_states
        head = f"Explorable {self._title!r}" if self._title else "Explorable"
        return f"{head}: {s} ; {n} precomputed state{'' if n == 1 else 's'}"


def explore(render: Callable[..., Any], title: str | None = None, *,
            max_states: int = DEFAULT_MAX_STATES, **controls: Choice | Free) -> Explorable:
    """Make an explorable widget: controls on top, ``render``'s output below.

    ``render(**values)`` is called with one keyword per control and returns a part or a list of
    parts (:class:`Text`, :class:`Html`, :class:`Figure`, :class:`Tabs`). Every combination of the
    :class:`Choice` controls is rendered up front (at most ``max_states`` of them, else
    :class:`LabInputError`), so switching them works on the static site; :class:`Free` controls
    re-render in a live kernel. Make it the last expression of a cell to display it.
    """
    return Explorable(render, title=title, controls=controls, max_states=max_states)
