"""The Keras trainer's input pipelines, one per kind of engine: ``tfdata`` (tf.data, the
TensorFlow engine) and ``numpy`` (NumPy on the host, the engines without TensorFlow).
Both offer the same names to the trainer: ``Normalizer``, ``TrainBatches`` (with its
``epoch(e)`` and ``data_stream``) and ``eval_batches``. Imports nothing: each engine
imports the one it uses, so Keras on JAX or torch never loads TensorFlow."""
