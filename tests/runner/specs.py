"""The small sweep-spec document that the spec and selection tests vary."""


def tiny_spec_document(**changes) -> dict:
    """A small valid spec document: 2 utilities x 2 lrs of a one-layer MLP over 3 tasks,
    2 sweep and 2 final seeds, a winner per utility; `changes` replace top-level keys."""
    data = {
        "name": "tiny",
        "experiment": "permuted-mnist",
        "fixed": {"tasks": 3, "hidden": [8]},
        "grid": {"method": ["cbp"], "utility": ["contribution", "gxd"], "lr": [0.01, 0.1]},
        "seeds": {"sweep": 2, "final": 2},
        "select": {"per": ["utility"]},
    }
    data.update(changes)
    return data
