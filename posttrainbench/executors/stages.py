"""The stages of a run after prepare, in order; what the store, grids and failure records name."""

STAGES = ("agent", "collect", "integrity", "evaluate", "score")
