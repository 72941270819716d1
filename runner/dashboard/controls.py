"""A figure's controls as Plotly's own updatemenus, so the page needs no server: every
state a button can show is precomputed into its `args`, which Plotly applies with
`Plotly.update` / `restyle` / `relayout` when clicked."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import plotly.graph_objects as go

from runner.dashboard.identity import method_of, parts_of
from runner.dashboard.smoothing import window_text

LINE, BAND, SEEDS = "line", "band", "seeds"


@dataclass(frozen=True)
class Drawn:
    """A trace the controls switch: its index in the figure, its curve, what it draws,
    and its {"y", "x0", "dx"} under each smoothing window."""

    index: int
    label: str
    kind: str
    smoothings: dict[int, dict] = field(default_factory=dict)


def smoothing_menu(drawn: list[Drawn], windows: list[int], default: int,
                   title_of: Callable[[int], str]) -> dict:  # fmt: skip
    """Buttons 'raw', '5 tasks', ...: each swaps every trace's y (and its thinning x0,
    dx) for that window's, and the title for one naming the window."""
    indices = [d.index for d in drawn]
    buttons = []
    for window in windows:
        changes = {key: [d.smoothings[window][key] for d in drawn] for key in ("y", "x0", "dx")}
        buttons.append({
            "label": "raw" if window == 1 else f"{window} tasks", "method": "update",
            "args": [changes, {"title.text": title_of(window)}, indices],
        })  # fmt: skip
    return {"type": "buttons", "direction": "right", "active": windows.index(default),
            "buttons": buttons, "name": "smoothing"}  # fmt: skip


def log_menu(fig: go.Figure) -> dict:
    """Buttons 'linear y' / 'log y' over every y axis of the figure."""
    axes = [key for key in fig.layout.to_plotly_json() if key.startswith("yaxis")]
    buttons = [
        {"label": f"{kind} y", "method": "relayout",
         "args": [{f"{axis}.type": kind for axis in axes}]}
        for kind in ("linear", "log")
    ]  # fmt: skip
    return {"type": "buttons", "direction": "right", "active": 0, "buttons": buttons,
            "name": "y scale"}  # fmt: skip


def seeds_menu(drawn: list[Drawn]) -> dict:
    """Buttons 'seeds off' / 'seeds on': the per-seed traces (added hidden) shown or not."""
    indices = [d.index for d in drawn if d.kind == SEEDS]
    buttons = [{"label": f"seeds {name}", "method": "restyle",
                "args": [{"visible": shown}, indices]}
               for name, shown in (("off", False), ("on", True))]  # fmt: skip
    return {"type": "buttons", "direction": "right", "active": 0, "buttons": buttons,
            "name": "seeds"}  # fmt: skip


def filter_menu(drawn: list[Drawn]) -> dict | None:
    """A dropdown 'all curves' / one method / one method+utility: the others' lines and
    bands go to the legend only (a legend click brings one back), their seeds hidden.
    None where there is nothing to choose between."""
    labels = list(dict.fromkeys(d.label for d in drawn))
    bases = sorted({parts_of(label)[1] for label in labels})
    # a method is a choice of its own where it holds several bases (cbp: each utility)
    methods = sorted({m for m in map(method_of, labels)
                      if sum(b.partition("+")[0] == m for b in bases) > 1})  # fmt: skip
    choices = [m for m in methods if m not in bases] + bases
    if len(choices) < 2:
        return None
    shown = [d for d in drawn if d.kind != SEEDS]
    buttons = [{"label": "all curves", "method": "restyle",
                "args": [{"visible": True}, [d.index for d in shown]]}]  # fmt: skip
    for choice in choices:
        keep = {d.index for d in drawn if choice in (method_of(d.label), parts_of(d.label)[1])}
        kept = [d.index for d in shown if d.index in keep]
        hidden = [d for d in drawn if d.index not in keep]
        visible = [True] * len(kept) + [False if d.kind == SEEDS else "legendonly"
                                        for d in hidden]  # fmt: skip
        buttons.append(
            {
                "label": choice,
                "method": "restyle",
                "args": [{"visible": visible}, kept + [d.index for d in hidden]],
            }
        )
    return {"type": "dropdown", "direction": "down", "active": 0, "buttons": buttons,
            "name": "curves"}  # fmt: skip


def place(menus: list[dict], y: float) -> list[dict]:
    """Menus side by side, left to right, their bottoms at paper height `y` (above the
    plots); x positions leave room for each menu's buttons."""
    x = 0.0
    placed = []
    for menu in menus:
        placed.append({**menu, "x": x, "y": y, "xanchor": "left", "yanchor": "bottom",
                       "pad": {"r": 4, "t": 0}, "font": {"size": 11}})  # fmt: skip
        x += 0.07 * len(menu["buttons"]) + 0.03 if menu["type"] == "buttons" else 0.2
    return placed


def smoothing_title(text: str, seeds: int | None) -> Callable[[int], str]:
    """A title naming the window shown: 'permuted-mnist: test accuracy, mean ± SE over 15
    seeds (50-task moving average)'."""
    over = f", mean ± SE over {seeds} seeds" if seeds and seeds > 1 else ""
    return lambda window: f"{text}{over} ({window_text(window)})"
