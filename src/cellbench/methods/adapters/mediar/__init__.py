"""MediarFormer (MEDIAR): MiT encoder + MA-Net decoder with Cellpose flows; see :mod:`.method`."""

from cellbench.methods.adapters.mediar.method import MediarConfig, MediarMethod

__all__ = ["MediarConfig", "MediarMethod"]
