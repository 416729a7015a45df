"""What each engine adds to the one Keras trainer (benchmark.backends.keras.trainer): one
module per engine, named after it, each the backend module that
benchmark.backends.load_backend returns for that engine. Imports nothing, so loading one
engine's module loads no other engine."""
