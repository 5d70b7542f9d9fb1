"""Shared pieces of the methods that classify pixels and cut the classes into cells (``unet``, ``maunet``,
``mesmer``, ``featurenet``).

One module an idea: :mod:`.targets` (interior / boundary / background map
and saltfish's distance target from a flattened label image),
:mod:`.patches` (random augmented training patches), :mod:`.train_loop`
(seeded AdamW / SGD loop), :mod:`.inference` (normalisation and sliding-window
prediction), :mod:`.postprocess` (seeded watersheds, scores), :mod:`.deepcell`
(DeepCell's targets, loss and deep watershed, for Mesmer and FeatureNet) and
:mod:`.method` (:class:`SemanticMethod`, the ``Method`` built from them).
Nothing here imports torch at module level.
"""

from cellbench.methods.adapters.semantic.inference import InferenceSettings, SemanticPreprocess
from cellbench.methods.adapters.semantic.method import SemanticConfig, SemanticMethod
from cellbench.methods.adapters.semantic.patches import AugmentSettings
from cellbench.methods.adapters.semantic.train_loop import TrainSettings

__all__ = ["AugmentSettings", "InferenceSettings", "SemanticConfig", "SemanticMethod", "SemanticPreprocess",
           "TrainSettings"]
