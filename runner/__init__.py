"""Runner layer: results store, command line (and, later, the Ray Tune scheduling)."""
