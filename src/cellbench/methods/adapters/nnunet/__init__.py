"""nnU-Net v2 behind cellbench's Method interface: raw-format writer, nnU-Net driver, instances from classes.

torch and nnunetv2 are imported only by :mod:`.run` and inside the method's calls; a saved model
folder is checked by :mod:`.model_folder` before nnU-Net reads it.
"""

from cellbench.methods.adapters.nnunet.instances import instances_from_semantic
from cellbench.methods.adapters.nnunet.method import NnUNetConfig, NnUNetMethod
from cellbench.methods.adapters.nnunet.raw import class_names, nnunet_input, semantic_target, write_raw_dataset

__all__ = ["NnUNetConfig", "NnUNetMethod", "class_names", "instances_from_semantic", "nnunet_input",
           "semantic_target", "write_raw_dataset"]
