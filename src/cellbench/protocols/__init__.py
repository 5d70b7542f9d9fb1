"""The seed papers' protocols: finding them, their published numbers, compute budgets, and what a run needs.

A protocol is an experiment file in ``examples/protocols/`` (``cellbench run``
runs it) with the paper's numbers beside it (``NAME.published.yaml``).
``cellbench reproduce NAME`` finds it (:mod:`.locate`), checks the published
values against it (:mod:`.published`, :mod:`.load`), applies a budget
(:mod:`.budget`), fetches its data and weights (:mod:`.downloads`), runs it,
records where the run came from (:mod:`.provenance`) and writes the report,
whose "Published vs this run" section compares the two. Importing this
package imports no deep-learning framework, and its names load on first use (the CLI builds its
parser without the analysis stack).
"""

import importlib

_NAMES = {
    "budget": ("BUDGETS", "CPU_IMAGES", "BudgetChange", "apply_budget"),
    "downloads": ("Requirements", "fetch_requirements", "protocol_requirements"),
    "load": ("LoadedProtocol", "load_protocol", "method_regimes"),
    "locate": ("PROTOCOLS_ENV", "PUBLISHED_SUFFIX", "Protocol", "find_protocol", "list_protocols"),
    "provenance": ("PROVENANCE_FILE", "RunProvenance", "read_provenance", "run_published", "write_provenance"),
    "published": ("GROUND_TRUTHS", "PublishedEntry", "PublishedSet", "PublishedValue", "check_published",
                  "load_published", "published_from_dict"),
}
_MODULE = {name: module for module, names in _NAMES.items() for name in names}

__all__ = sorted(_MODULE)


def __getattr__(name: str):
    if name not in _MODULE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_MODULE[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
