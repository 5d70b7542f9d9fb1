"""Datasets: the in-memory model, layout readers, writers, download and synthesis."""

from cellbench.data.dataset import Dataset, Sample, Task
from cellbench.data.layouts import LAYOUTS, read_dataset

__all__ = ["LAYOUTS", "Dataset", "Sample", "Task", "read_dataset"]
