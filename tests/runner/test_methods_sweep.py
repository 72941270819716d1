"""Every method added for issue 19 runs as a sweep on a real local Ray, one trial each,
and its curves reach the summary and the dashboard by name."""

from __future__ import annotations

import yaml

from runner.cli import main
from runner.results import read_results

METHODS = ["bp", "swr", "upgd", "ccbp", "infer", "spectral", "nap"]


def test_a_sweep_over_the_methods_runs_summarises_and_shows(local_ray, tmp_path, capsys):
    spec = {"name": "methods", "experiment": "permuted-mnist",
            "fixed": {"tasks": 2, "hidden": [16], "norm": "layer", "probe_size": 100,
                      "maturity": 10, "ccbp_every": 10},
            "grid": {"method": METHODS}, "seeds": {"sweep": 1, "final": 1},
            "select": {"per": ["method"]}}  # fmt: skip
    spec_file = tmp_path / "methods.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    out = tmp_path / "out"
    assert main(["sweep", str(spec_file), "--stage", "sweep", "--out", str(out)]) == 0
    rows = read_results(out / "methods", stage="sweep")
    assert rows.groupby("method")["task"].apply(sorted).to_dict() == {m: [0, 1] for m in METHODS}
    assert rows["accuracy"].notna().all()

    capsys.readouterr()
    assert main(["summary", str(out / "methods"), "--last", "1"]) == 0
    table = capsys.readouterr().out
    page = tmp_path / "page.html"
    assert main(["dashboard", str(out), "--out", str(page)]) == 0
    html = page.read_text()
    for method in METHODS:
        assert method in table, method
        assert f'"{method}' in html or f"{method} " in html, method
