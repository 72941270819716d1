"""One visual identity per curve, shared by every view: a method or utility keeps its
colour from the accuracy panels to the diagnostics and the assay bars, so a reader learns
it once.

A curve label reads `[source: ]method[+utility][ key=value ...]` (runner.aggregate). Its
*colour key* is the utility where there is one (the utilities are what the study
compares) and otherwise the method; everything else (another method with the same
utility, a hyperparameter, the source) is its *variant* and is told apart by the dash.
"""

from __future__ import annotations

import colorsys
import hashlib
from collections.abc import Iterable, Sequence

BASELINE_COLOR = "#222222"
"""Backprop, the reference every figure compares against: always near-black."""
COLORS = {
    "bp": BASELINE_COLOR,
    # utilities (`plasticity list utilities`); the paper's proposal gxd in the strongest red
    "gxd": "#d62728", "gxd_all": "#ff9896", "gxi": "#ff7f0e", "contribution": "#1f77b4",
    "mc_contribution": "#17becf", "mc_adaptable": "#2ca02c", "activation": "#9467bd",
    "loss_gradient": "#bcbd22", "random": "#7f7f7f", "oracle": "#393b79",
    # methods without a utility (`plasticity list methods`)
    "l2": "#8c564b", "l2_init": "#c49c94", "shrink_perturb": "#e377c2", "cbp": "#637939",
    "redo": "#7b4173", "regrama": "#ad494a",
}  # fmt: skip
DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")


def parts_of(label: str) -> tuple[str, str, str]:
    """(source, base, rest) of a curve label: 'study: cbp+gxd lr=0.03' gives ('study',
    'cbp+gxd', 'lr=0.03'); a label without a source gives ''."""
    source, _, body = label.rpartition(": ")
    base, _, rest = body.strip().partition(" ")
    return source, base, rest


def colour_key(label: str) -> str:
    """The utility of 'cbp+gxd lr=0.03' (gxd), the method of 'bp' (bp)."""
    base = parts_of(label)[1]
    return base.partition("+")[2] or base


def method_of(label: str) -> str:
    """The method of a curve label ('cbp' of 'study: cbp+gxd lr=0.03')."""
    return parts_of(label)[1].partition("+")[0]


def color_of(key: str) -> str:
    """The fixed colour of a method or utility; a stable hash-based one for any other
    (the same text gives the same colour on every page and every run)."""
    if key in COLORS:
        return COLORS[key]
    digest = int(hashlib.md5(key.encode()).hexdigest()[:8], 16)
    red, green, blue = colorsys.hls_to_rgb((digest % 360) / 360, 0.42, 0.6)
    return "#{:02x}{:02x}{:02x}".format(*(round(255 * c) for c in (red, green, blue)))


def style_of(curve_label: str, among: Iterable[str] = ()) -> dict[str, str]:
    """{"color", "dash"} of a curve. The colour comes from its method or utility alone;
    the dash tells apart the curves of `among` (the labels of the same rows) that share
    that colour, in the sorted order of what else their labels say, so a view given the
    same rows draws the same curve the same way."""
    key = colour_key(curve_label)
    variants = sorted({_variant(label) for label in (*among, curve_label)
                       if colour_key(label) == key})  # fmt: skip
    dash = DASHES[variants.index(_variant(curve_label)) % len(DASHES)]
    return {"color": color_of(key), "dash": dash}


def _variant(label: str) -> str:
    source, base, rest = parts_of(label)
    method = base.partition("+")[0] if "+" in base else ""
    return " ".join(p for p in (source, method, rest) if p)


def fill_of(color: str, alpha: float = 0.12) -> str:
    """A '#rrggbb' colour as 'rgba(r,g,b,alpha)': SE bands that overlap stay readable
    (a trace opacity stacks the opaque colours into brown)."""
    red, green, blue = (int(color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({red},{green},{blue},{alpha})"


def ranked(labels: Iterable[str], order: Sequence[str] | None = None) -> list[str]:
    """`labels` best first: in `order` (curve labels, best first, e.g. from the ranked
    summary) by the first entry naming the label itself, the label without its source, its
    method+utility, or its colour key (the first of these found); the rest after them; ties
    and no order alphabetical."""
    labels = sorted(set(labels))
    if not order:
        return labels
    first: dict[str, int] = {}
    for i, name in enumerate(order):
        _, base, rest = parts_of(name)
        for key in (name, f"{base} {rest}".strip(), base, colour_key(name)):
            first.setdefault(key, i)

    def rank(label: str) -> int:
        _, base, rest = parts_of(label)
        keys = (label, f"{base} {rest}".strip(), base, colour_key(label))
        return next((first[k] for k in keys if k in first), len(order))

    return sorted(labels, key=lambda label: (rank(label), label))
