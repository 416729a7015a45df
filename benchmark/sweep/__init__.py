"""Many runs: the end-of-sweep callback that lists every run's state and writes the
report (``callback``), and the live view of a sweep (``status``). The launchers and the
resumable sweeper are Hydra plugins (hydra_plugins/benchmark_sweeper).
"""
