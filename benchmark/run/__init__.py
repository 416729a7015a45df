"""One run, from the command line to test.json: the Hydra application (``cli``), the epoch
loop (``loop``), resume decisions (``resume``), the run directory (``rundir``), the
metrics file (``metrics``), TensorBoard scalars (``tensorboard``) and the host part of
env.json (``host``). Framework-neutral: the backend is loaded by name (benchmark.backends).
"""
