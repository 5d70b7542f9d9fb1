"""The GUI pages, one module each: data, annotate, train, predict, compare, jobs.

Each module has ``register(ctx)``, which adds its NiceGUI page(s) for a
:class:`~cellbench.gui.app.GuiContext`.
"""
