"""The method adapters: one module or package per segmentation method, each a
:class:`~cellbench.methods.base.Method` built on the framework around it in
:mod:`cellbench.methods` (interface, training path, tiling, model directories,
checkpoints, devices, preprocessing, seeding).

Nothing is imported here: :data:`cellbench.methods.METHODS` names each
adapter's ``module:Class`` and imports it on first use, so a method's extra
(torch, TensorFlow, ...) is needed only when that method runs.
"""
