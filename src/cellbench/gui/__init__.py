"""The web GUI (``cellbench gui``; ``pip install 'cellbench[gui]'``), on top of every other package.

Pages: Data (open or upload a dataset, view it with outlines), Annotate (SAM proposes a
cell per click or box; saved as COCO), Train and Predict (queued jobs that run the
``cellbench train`` / ``predict`` commands in their own processes), Compare (a run
folder's tables, figures and a side-by-side FP / FN view) and Jobs. The GUI computes
nothing itself: it calls the functions the CLI calls. Why NiceGUI, and the security
rules, are in :mod:`cellbench.gui.app` and :mod:`cellbench.gui.security`.
"""

__all__ = ["serve"]


def serve(*args, **kwargs):
    """Run the GUI server (see :func:`cellbench.gui.app.serve`); imports NiceGUI only when called."""
    from cellbench.gui.app import serve as _serve

    return _serve(*args, **kwargs)
