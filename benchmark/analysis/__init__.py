"""The analysis of a sweep: from run directories to a report a reviewer can trust.

- ``runs``         find the run directories of a sweep and reduce each to one row (results.csv)
- ``stats``        statistics of arm pairs, paired by seed (statistical_results.csv)
- ``summary``      what is significant and how large, in words (significance_summary.csv/.md)
- ``sanity``       the protocol's sanity checks of docs/protocol.md §6 (sanity.csv/.md)
- ``plots``        training curves, comparison bars, paired differences (plots/)
- ``environment``  the software and hardware the runs used (environment.txt)
- ``report``       ``analyze(sweep_dir)``: all of the above, written atomically to SWEEP_DIR/report/

``python -m benchmark.analyze SWEEP_DIR`` is the command-line entry. Nothing here
imports a training framework, so a report can be built on any machine.
"""
