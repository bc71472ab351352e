"""psytest: measure the personality an LLM presents, with the rigour of a psychometrics lab.

The package is named ``psychometrics``; its command is ``psytest``. Every command is a function of
:mod:`psychometrics.api` with the command's options as parameters, and those functions are available
here too::

    import psychometrics as pm

    run = pm.administer("sim/extraversion=1,seed=7", inventory="bfi-44", out="runs/demo")
    pm.score("runs/demo", by="persona").tables["score_summary"]

``report``, ``validity`` and ``study`` are the exceptions: here those names are the subpackages
:mod:`psychometrics.report`, :mod:`psychometrics.validity` and :mod:`psychometrics.study`, so call
``psychometrics.api.report``, ``psychometrics.api.validity`` and ``psychometrics.api.study``. Importing the package is cheap on purpose (the CLI must start
instantly): the API is imported on first use, and heavy libraries only by the modules that need them.
"""

__version__ = "0.1.0"

# The names of psychometrics.api offered here; report, validity and study would hide the subpackages.
_API = (
    "administer", "behave", "score", "analyze", "compare", "baseline", "check", "reproduce", "export",
    "list_inventories", "get_inventory", "validate_inventory", "render_templates", "list_persona_sets",
    "get_persona_set", "list_tasks", "get_task", "render_task", "validate_task",
)

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API or name == "api":
        import importlib

        api = importlib.import_module("psychometrics.api")  # not "from psychometrics import api": that asks here again
        return api if name == "api" else getattr(api, name)
    raise AttributeError(f"module 'psychometrics' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_API, "api"})
