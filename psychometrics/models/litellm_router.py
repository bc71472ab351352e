"""Several deployments of one model behind a litellm Router: ``--model router:CLUSTER.yaml[#GROUP]``.

A large study can spread its requests over several servers (vLLM or llama.cpp replicas, one endpoint per
GPU node) or several API keys of one provider. The file is litellm's own ``model_list`` format (the one its
proxy reads), plus optional ``router_settings``::

    model_list:
      - model_name: llama-8b                      # the group psytest asks for
        litellm_params:
          model: openai/meta-llama/Llama-3.1-8B-Instruct
          api_base: http://gpu1:8000/v1
          api_key: os.environ/GPU1_KEY           # keys only as os.environ/VARIABLE, never written out
      - model_name: llama-8b
        litellm_params: {model: openai/meta-llama/Llama-3.1-8B-Instruct, api_base: http://gpu2:8000/v1}
    router_settings:
      routing_strategy: least-busy               # simple-shuffle (default), least-busy, latency-based-routing, ...

Every request goes to one deployment of the group, chosen by the routing strategy. The router itself
never retries (``num_retries: 0``): psytest's own retries (``--max-retries``) resend a failed request, and
the router may then pick another deployment; a deployment that keeps failing is cooled down by litellm.

The run's identity (:attr:`params`) holds the group and the served model names, not the endpoints or
their number: replicas can be added or removed between resumptions of a run. Keys must be written
``os.environ/VARIABLE``; a literal key in the file is refused.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from psychometrics.errors import ModelSpecError
from psychometrics.models.base import TransientModelError
from psychometrics.models.litellm_backend import (
    LiteLLMBackend,
    _litellm,
    check_api_base,
    endpoint_url,
    is_secret_name,
    split_credentials,
)

PREFIX = "router:"
ROUTER_SETTINGS = ("routing_strategy", "allowed_fails", "cooldown_time", "routing_strategy_args")


def parse_router_spec(model: str) -> tuple[Path, str | None]:
    """``router:PATH[#GROUP]`` -> (path, group or None)."""
    body = model[len(PREFIX):]
    path, _, group = body.partition("#")
    if not path.strip():
        raise ModelSpecError(f"--model {model}: give the router file, e.g. router:cluster.yaml or router:cluster.yaml#GROUP")
    return Path(path).expanduser(), (group.strip() or None)


def load_router_config(path: Path, group: str | None, model: str) -> tuple[list[dict], dict, str]:
    """(the group's deployments, router settings, group name) from a router file; one-line errors."""
    from psychometrics.yaml_io import load_yaml_file

    data = load_yaml_file(path)
    if not isinstance(data, dict) or not isinstance(data.get("model_list"), list) or not data["model_list"]:
        raise ModelSpecError(f"{path}: a router file needs a non-empty model_list (litellm's format)")
    unknown = sorted(set(data) - {"model_list", "router_settings"})
    if unknown:
        raise ModelSpecError(f"{path}: unknown key '{unknown[0]}'; a router file has model_list and router_settings")
    deployments = []
    for index, entry in enumerate(data["model_list"], start=1):
        where = f"{path}: model_list entry {index}"
        params = entry.get("litellm_params") if isinstance(entry, dict) else None
        if not isinstance(entry, dict) or not isinstance(entry.get("model_name"), str) or not isinstance(params, dict):
            raise ModelSpecError(f"{where}: needs model_name (text) and litellm_params (a mapping)")
        if not isinstance(params.get("model"), str) or "/" not in params["model"]:
            raise ModelSpecError(f"{where}: litellm_params.model must be a litellm model such as openai/NAME")
        for name, value in params.items():
            if is_secret_name(str(name)) and not (isinstance(value, str) and value.startswith("os.environ/")):
                raise ModelSpecError(
                    f"{where}: litellm_params.{name}: write it as os.environ/VARIABLE; keys are read from the "
                    "environment, never from files"
                )
        if isinstance(params.get("api_base"), str) and not params["api_base"].startswith("os.environ/"):
            check_api_base(params["api_base"])
        deployments.append(entry)
    groups = sorted({entry["model_name"] for entry in deployments})
    if group is None:
        if len(groups) > 1:
            raise ModelSpecError(f"--model {model}: the file has several model groups ({', '.join(groups)}); "
                                 f"choose one with router:{path}#GROUP")
        group = groups[0]
    if group not in groups:
        raise ModelSpecError(f"--model {model}: no model group '{group}' in {path}; it has: {', '.join(groups)}")
    settings = data.get("router_settings") or {}
    if not isinstance(settings, dict) or set(settings) - set(ROUTER_SETTINGS):
        raise ModelSpecError(f"{path}: router_settings may set only {', '.join(ROUTER_SETTINGS)}")
    return [entry for entry in deployments if entry["model_name"] == group], settings, group


class LiteLLMRouterBackend(LiteLLMBackend):
    """The deployments of one model group behind a litellm Router (see the module docstring)."""

    def __init__(self, model: str, *, timeout_s: float | None = None):
        if not model.startswith(PREFIX):
            raise ModelSpecError(f"--model {model}: a router model is written router:FILE.yaml[#GROUP]")
        path, group = parse_router_spec(model)
        self.deployments, self.settings, self.group = load_router_config(path, group, model)
        super().__init__(model, timeout_s=timeout_s)
        bases = sorted({str(endpoint_url(b) if not b.startswith("os.environ/") else b)
                        for entry in self.deployments
                        if isinstance(b := entry["litellm_params"].get("api_base"), str)})
        self.endpoint = " ".join(bases) or None  # every deployment's URL, recorded; the group is the identity
        self.endpoint_source = f"router file {path}" if bases else None
        self._routers: dict[int, Any] = {}

    @property
    def params(self) -> dict[str, Any]:
        """The group and the models served in it: not endpoints, keys or how many replicas there are."""
        models = sorted({entry["litellm_params"]["model"] for entry in self.deployments})
        return {"backend": "litellm-router", "model_group": self.group, "models": models}

    def _router(self) -> Any:
        """This event loop's router (HTTP clients belong to the loop that made them)."""
        key = id(asyncio.get_running_loop())
        if key not in self._routers:
            model_list = []
            for entry in self.deployments:
                params = dict(entry["litellm_params"])
                if isinstance(params.get("api_base"), str):
                    params["api_base"], basic = split_credentials(params["api_base"])
                    if basic:
                        params["extra_headers"] = {**(params.get("extra_headers") or {}), "Authorization": basic}
                model_list.append({**entry, "litellm_params": params})
            self._routers[key] = _litellm().Router(model_list=model_list, num_retries=0, **self.settings)
        return self._routers[key]

    def _call_kwargs(self, request) -> dict[str, Any]:
        kwargs = super()._call_kwargs(request)
        kwargs["model"] = self.group
        return kwargs

    async def _acompletion(self, litellm: Any, kwargs: dict[str, Any]) -> Any:
        return await self._router().acompletion(**kwargs)

    def _translate(self, exc: BaseException, request) -> Exception:
        """As for one endpoint, except that a deployment nothing answers at is not the group's end: the
        retry may go to another, so it never counts towards stopping the run."""
        error = super()._translate(exc, request)
        if isinstance(error, TransientModelError):
            error.unreachable = False
        return error

    async def aclose(self) -> None:
        """Forget this loop's router, then close litellm's clients for the loop."""
        self._routers.pop(id(asyncio.get_running_loop()), None)
        await super().aclose()

    def _secrets(self) -> list[str]:
        import os

        secrets = super()._secrets()
        for entry in self.deployments:
            for name, value in entry["litellm_params"].items():
                if is_secret_name(str(name)) and isinstance(value, str) and value.startswith("os.environ/"):
                    secrets.append(os.environ.get(value.removeprefix("os.environ/"), ""))
            base = entry["litellm_params"].get("api_base")
            if isinstance(base, str):
                basic = split_credentials(base)[1]
                if basic:
                    secrets += [basic.split(" ", 1)[1], *base.split("//", 1)[-1].split("@", 1)[0].split(":")]
        return [s for s in secrets if s]
