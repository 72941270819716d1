"""Packed runs: R runs of one experiment advanced by one vectorised step.

Runs of a pack share architecture, method and utility and differ in seed and scalar
hyperparameters (`loop.PACKED_FIELDS`). Each run keeps its own model, optimizer, method and
generators, whose tensors become views of the pack's [R, ...] tensors (`model.PackedMLP`),
so the per-step hot path (`step.MLPStep`, the optimizer update, CBP's statistics) runs once
for the pack while everything per run (its example order, resets, evaluation, diagnostics,
rows and `state_dict()`) is the single-run code itself: a run's rows do not depend on its
pack, and a pack's state is its runs' states.
"""
