"""What a run is, before anything runs: the config schema and its ranges, the run key,
the protocol's knobs, the learning-rate schedule and the per-model facts.

Framework-neutral and the lowest layer above ``benchmark.files``: everything else reads
these definitions, they read nothing of the rest (docs/architecture.md).
"""
