"""How every figure of the page is configured: downloads as SVG (the modebar's camera) and
as PNG (a button added by MODEBAR_SCRIPT), no Plotly logo.

Plotly's Python side serialises a config as JSON, and a modebar button's `click` is a
JavaScript function, which JSON cannot hold: so the PNG button is registered by a small
script, once for the page, as a default of every plot made after it
(`Plotly.setPlotConfig`). The page puts MODEBAR_SCRIPT after plotly.js and before the
first figure, and renders each figure with `to_html(..., config=FIGURE_CONFIG)`.
"""

from __future__ import annotations

FIGURE_CONFIG = {
    "displaylogo": False,
    "responsive": True,
    "toImageButtonOptions": {"format": "svg", "filename": "plasticity-figure"},
    "modeBarButtonsToRemove": ["lasso2d", "select2d"],
}
"""The `config` of every figure: the camera button downloads an SVG (for papers)."""

PNG_BUTTON_TITLE = "Download plot as PNG"
MODEBAR_SCRIPT = (
    "<script>if(window.Plotly){Plotly.setPlotConfig({modeBarButtonsToAdd:[{"
    f'name:"downloadPng",title:"{PNG_BUTTON_TITLE}",icon:Plotly.Icons["camera-retro"],'
    'click:function(gd){Plotly.downloadImage(gd,{format:"png",scale:2,'
    'filename:gd.id||"plasticity-figure"})}}]})}</script>'
)
"""A `<script>` element to place after plotly.js and before the first figure: every plot
made after it gets a PNG download button (file named after the figure's div id)."""
