"""Framework-neutral data layer: official sources -> uint8 cache -> fixed splits.

Both backends read the same :class:`PreparedData`; nothing here imports a framework.
"""

from benchmark.data.cache import PreparedData, prepare_dataset

__all__ = ["PreparedData", "prepare_dataset"]
