"""Overlap-capable instances: the core data type, RLE, polygons and flattening."""

from cellbench.instances.flatten import (
    DEFAULT_POLICY,
    FLATTEN_NAMES,
    FlatLabels,
    FlattenName,
    FlattenPolicy,
    NearestCentroidFlatten,
    PriorityFlatten,
    flatten,
    policy_from_name,
)
from cellbench.instances.instance import BBox, Instance, InstanceSet
from cellbench.instances.polygons import instance_geometry, polygon_problem, rasterize_polygon, trace_outline
from cellbench.instances.rle import instance_to_rle, rle_area, rle_to_instance

__all__ = [
    "DEFAULT_POLICY",
    "FLATTEN_NAMES",
    "BBox",
    "FlatLabels",
    "FlattenName",
    "FlattenPolicy",
    "Instance",
    "InstanceSet",
    "NearestCentroidFlatten",
    "PriorityFlatten",
    "flatten",
    "instance_geometry",
    "instance_to_rle",
    "policy_from_name",
    "polygon_problem",
    "rasterize_polygon",
    "rle_area",
    "rle_to_instance",
    "trace_outline",
]
