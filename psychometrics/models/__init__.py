"""Model backends behind one async interface (:class:`~psychometrics.models.base.ModelBackend`).

``resolve_model`` turns a ``--model`` string into a backend:

``sim/...``            a simulated respondent with known traits (:mod:`.simulated`)
``local/NAME``         an embedded offline model shipped in PyPI packages (:mod:`.local`)
``gguf:PATH``          any GGUF file, run in-process by llama.cpp (:mod:`.local`)
``router:FILE[#GROUP]`` one model group served by several deployments, via a litellm Router (:mod:`.litellm_router`)
``PROVIDER/MODEL``     anything litellm knows: ``openai/gpt-4o-mini``, ``anthropic/...``, ``ollama/...``,
                       (:mod:`.litellm_backend`); ``openai/NAME`` with ``--api-base`` for an OpenAI-compatible
                       server goes over plain HTTP instead (:mod:`.openai_http`)

Backends import their heavy libraries only when constructed, so listing or validating never pays for them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from psychometrics.errors import ModelSpecError
from psychometrics.models.base import ModelBackend

if TYPE_CHECKING:
    from psychometrics.inventories.model import Inventory

DEFAULT_MODEL = "local/qwen2.5-0.5b"


def resolve_model(
    model: str,
    *,
    api_base: str | None = None,
    timeout_s: float | None = None,
    connect_timeout_s: float | None = None,
    threads: int | None = None,
    threads_batch: int | None = None,
    inventories: Sequence["Inventory"] = (),
) -> ModelBackend:
    """Build the backend named by ``model``. ``inventories``: user inventories a simulated respondent
    should know from the start (their traits are valid keys of a ``sim/`` model string)."""
    if api_base is not None and (model.startswith(("sim/", "local/", "gguf:", "router:")) or model == "sim"):
        raise ModelSpecError(
            f"--api-base is for models served over HTTP (openai/NAME, ...); --model {model} does not use it"
        )
    if model.startswith("router:"):
        from psychometrics.models.litellm_router import LiteLLMRouterBackend

        return LiteLLMRouterBackend(model, timeout_s=timeout_s)
    if model.startswith("sim/") or model == "sim":
        from psychometrics.models.simulated import SimulatedRespondent

        return SimulatedRespondent(model, inventories)
    if model.startswith(("local/", "gguf:")):
        from psychometrics.models.local import LocalModel

        options = {k: v for k, v in (("threads", threads), ("threads_batch", threads_batch)) if v}
        return LocalModel(model, **options)
    provider, sep, name = model.partition("/")
    if provider == "openai" and name and api_base:  # an OpenAI-compatible server: direct HTTP, no litellm
        from psychometrics.models.openai_http import OpenAIHTTPBackend

        return OpenAIHTTPBackend(model, api_base=api_base, timeout_s=timeout_s, connect_timeout_s=connect_timeout_s)
    if sep and provider and name and " " not in model:
        from psychometrics.models.litellm_backend import LiteLLMBackend

        return LiteLLMBackend(model, api_base=api_base, timeout_s=timeout_s)
    raise ModelSpecError(
        f"--model {model}: unknown model kind; use sim/..., local/qwen2.5-0.5b, local/smollm2-135m, "
        "gguf:PATH, or a litellm model such as openai/gpt-4o-mini"
    )
