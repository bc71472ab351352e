"""A model's prices: from litellm's bundled price map, a user's price file, or free (local models).

The price map is the JSON file litellm ships (``model_prices_and_context_window_backup.json``, what
litellm itself reads with ``LITELLM_LOCAL_MODEL_COST_MAP=True``); it is read as data, without importing
litellm (seconds), and never fetched from the network. Its prices are per token in US dollars; a
user's price file (``--prices``) gives them per million tokens, which is how providers publish them::

    models:
      openai/my-finetune:          # the --model string (or its name without the provider)
        input: 0.30                # USD per 1M input tokens (required)
        output: 1.20               # USD per 1M output tokens (required)
        cached_input: 0.15         # a prompt-cache hit (optional; no caching assumed without it)
        cache_write: 0.375         # writing the cache (Anthropic; optional, else the input price)
        batch_input: 0.15          # through the batch API (optional; else no batch discount)
        batch_output: 0.60
        min_cached_tokens: 1024    # the shortest prefix the provider caches (optional)

A user's entry wins over the map. Local (``local/``, ``gguf:``) and simulated (``sim/``) models cost 0;
any other model priced nowhere is unknown (:func:`price_for` returns None), never taken as free.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

from psychometrics.errors import PsytestError

CURRENCY = "USD"  # the currency of litellm's price map (and so of a user's price file)
MAP_FILE = "model_prices_and_context_window_backup.json"

#: The shortest prompt prefix a provider caches, where the map does not say (providers' documentation:
#: OpenAI 1,024 tokens; Anthropic 1,024 for Sonnet/Opus, 2,048 for the Claude 3 and 3.5 Haiku models).
DEFAULT_MIN_CACHED = {"openai": 1024, "azure": 1024, "anthropic": 1024}


@dataclass(frozen=True)
class Price:
    """Prices per token for one model. ``None`` where a price does not exist (no cache, no batch API).

    ``caching``: ``explicit`` (the prefix must be marked, Anthropic's ``cache_control``), ``automatic``
    (the provider caches repeated prefixes by itself, OpenAI) or None (no prompt caching priced).
    """

    model: str
    input: float
    output: float
    cached_input: float | None = None
    cache_write: float | None = None
    batch_input: float | None = None
    batch_output: float | None = None
    cached_input_batch: float | None = None
    min_cached_tokens: int = 0
    caching: str | None = None
    provider: str | None = None
    source: str = "litellm price map"

    @property
    def free(self) -> bool:
        return self.input == 0 and self.output == 0

    def for_batch(self) -> "Price":
        """The prices through the provider's batch API; unchanged where the map has no batch price."""
        if self.batch_input is None or self.batch_output is None:
            return self
        cached = self.cached_input_batch
        if cached is None and self.cached_input is not None:
            cached = min(self.cached_input, self.batch_input)  # no stated batch cache price: the lower bound is not assumed
        write = self.cache_write * self.batch_input / self.input if self.cache_write is not None and self.input else None
        return replace(self, input=self.batch_input, output=self.batch_output, cached_input=cached, cache_write=write)

    def describe(self) -> str:
        """Prices per million tokens, as a provider's price list reads."""
        def per_million(value: float | None) -> str:
            if value is None:
                return "-"
            amount = value * 1e6
            return f"${amount:,.2f}" if abs(amount - round(amount, 2)) < 1e-9 else f"${amount:,.4g}"

        parts = [f"{per_million(self.input)} in", f"{per_million(self.output)} out"]
        if self.cached_input is not None:
            parts.append(f"{per_million(self.cached_input)} cached in")
        if self.cache_write is not None and self.cache_write != self.input:
            parts.append(f"{per_million(self.cache_write)} cache write")
        return " / ".join(parts) + " per 1M tokens"


def format_money(value: float | None, currency: str = CURRENCY) -> str:
    """An amount as people read it: ``unknown`` for None, whole units for large sums, cents for
    middling ones, four decimals for small ones."""
    if value is None:
        return "unknown"
    symbol = "$" if currency == "USD" else f"{currency} "
    if value == 0:
        return f"{symbol}0"
    if value >= 100:
        return f"{symbol}{value:,.0f}"
    if value >= 1:
        return f"{symbol}{value:,.2f}"
    if value >= 0.01:
        return f"{symbol}{value:.4f}"
    return f"{symbol}{value:.8f}".rstrip("0")


FREE_PREFIXES = ("local/", "gguf:", "sim/")


def is_free(model: str) -> bool:
    """Local and simulated models: computed on this machine, nothing to pay a provider."""
    return model == "sim" or model.startswith(FREE_PREFIXES)


def _map_path() -> Path | None:
    """The price map inside the installed litellm package, found without importing it."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("litellm")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = Path(location) / MAP_FILE
        if path.is_file():
            return path
    return None


@lru_cache(maxsize=1)
def price_map() -> dict:
    """litellm's price map as data ({} when litellm is not installed)."""
    path = _map_path()
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PsytestError(f"{path}: litellm's price map cannot be read ({exc}); reinstall litellm, or give "
                           "prices with --prices FILE.yaml") from None
    return data if isinstance(data, dict) else {}


def map_version() -> str:
    """Which price map: litellm's version (its map changes with it)."""
    from importlib import metadata

    try:
        return f"litellm {metadata.version('litellm')}"
    except metadata.PackageNotFoundError:
        return "no litellm installed"


def _number(entry: dict, key: str) -> float | None:
    value = entry.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        return None
    return float(value)


def _map_entry(model: str) -> tuple[str, dict] | None:
    """The map's entry for a ``--model`` string: the full name, else the name after the provider when the
    entry belongs to that provider (``openai/gpt-4o-mini`` -> ``gpt-4o-mini``, provider openai)."""
    table = price_map()
    entry = table.get(model)
    if isinstance(entry, dict):
        return model, entry
    provider, sep, name = model.partition("/")
    if sep and name:
        entry = table.get(name)
        if isinstance(entry, dict) and str(entry.get("litellm_provider", "")).split("_")[0] in (provider, ""):
            return name, entry
    return None


def _caching(provider: str | None, cached: float | None) -> str | None:
    if cached is None:
        return None
    return "explicit" if provider in ("anthropic", "bedrock", "vertex_ai") else "automatic"


def map_price(model: str) -> Price | None:
    """The price map's prices for ``model``, or None when it has none (or no input/output price)."""
    found = _map_entry(model)
    if found is None:
        return None
    key, entry = found
    cost_in, cost_out = _number(entry, "input_cost_per_token"), _number(entry, "output_cost_per_token")
    if cost_in is None or cost_out is None:
        return None
    provider = str(entry.get("litellm_provider") or model.partition("/")[0]) or None
    cached = _number(entry, "cache_read_input_token_cost")
    minimum = entry.get("prompt_cache_min_tokens")
    if not isinstance(minimum, int) or isinstance(minimum, bool) or minimum < 0:
        minimum = DEFAULT_MIN_CACHED.get(provider or "", 1024)
        if provider == "anthropic" and "haiku" in key and ("claude-3" in key or "3-5" in key):
            minimum = 2048
    return Price(
        model=model, input=cost_in, output=cost_out, cached_input=cached,
        cache_write=_number(entry, "cache_creation_input_token_cost"),
        batch_input=_number(entry, "input_cost_per_token_batches"),
        batch_output=_number(entry, "output_cost_per_token_batches"),
        cached_input_batch=_number(entry, "cache_read_input_token_cost_batches"),
        min_cached_tokens=minimum, caching=_caching(provider, cached), provider=provider,
        source=f"litellm price map ({map_version()}, entry {key!r})",
    )


_FILE_KEYS = {"input", "output", "cached_input", "cache_write", "batch_input", "batch_output", "cached_input_batch",
              "min_cached_tokens", "caching"}


def load_price_file(path: Path | str) -> dict[str, Price]:
    """A user's price file (see the module docstring), checked field by field: one line naming the
    file, the model and the field on any problem."""
    from psychometrics.yaml_io import load_yaml_file

    path = Path(path)
    where = f"--prices {path}"
    if not path.is_file():
        raise PsytestError(f"{where}: no such file; give a YAML file with a 'models:' mapping of model -> prices")
    data = load_yaml_file(path)
    if not isinstance(data, dict) or not isinstance(data.get("models"), dict) or set(data) - {"models", "currency"}:
        raise PsytestError(f"{where}: expected a mapping with one key 'models' (model -> prices per 1M tokens); "
                           "see psytest administer --help")
    currency = data.get("currency", CURRENCY)
    if currency != CURRENCY:
        raise PsytestError(f"{where}: currency: {str(currency)[:20]!r}; prices must be in {CURRENCY}, the currency "
                           "of litellm's price map, so that models can be added up")
    prices: dict[str, Price] = {}
    for model, entry in data["models"].items():
        name = str(model)[:80]
        if not isinstance(entry, dict):
            raise PsytestError(f"{where}: models.{name}: expected a mapping of prices (input, output, ...)")
        unknown = sorted(str(k) for k in set(entry) - _FILE_KEYS)
        if unknown:
            raise PsytestError(f"{where}: models.{name}.{unknown[0][:40]}: unknown field; use "
                               f"{', '.join(sorted(_FILE_KEYS))}")
        values: dict[str, float | None] = {}
        for key in sorted(_FILE_KEYS - {"min_cached_tokens", "caching"}):
            value = entry.get(key)
            if value is None:
                if key in ("input", "output"):
                    raise PsytestError(f"{where}: models.{name}.{key}: missing; give the price in {CURRENCY} per 1M "
                                       "tokens (0 for a free model)")
                values[key] = None
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise PsytestError(f"{where}: models.{name}.{key}: {str(value)[:40]!r} is not a price; give a "
                                   f"number >= 0 ({CURRENCY} per 1M tokens)")
            values[key] = float(value) / 1e6
        minimum = entry.get("min_cached_tokens", 1024)
        if isinstance(minimum, bool) or not isinstance(minimum, int) or minimum < 0:
            raise PsytestError(f"{where}: models.{name}.min_cached_tokens: {str(minimum)[:40]!r}; give a whole "
                               "number of tokens >= 0")
        caching = entry.get("caching", "automatic" if values["cached_input"] is not None else None)
        if caching not in ("automatic", "explicit", None):
            raise PsytestError(f"{where}: models.{name}.caching: {str(caching)[:40]!r}; use automatic (the provider "
                               "caches repeated prefixes) or explicit (the prefix is marked, as for Anthropic)")
        cost_in, cost_out = values["input"], values["output"]
        assert cost_in is not None and cost_out is not None  # required above
        prices[str(model)] = Price(
            model=str(model), input=cost_in, output=cost_out, cached_input=values["cached_input"],
            cache_write=values["cache_write"], batch_input=values["batch_input"], batch_output=values["batch_output"],
            cached_input_batch=values["cached_input_batch"], min_cached_tokens=minimum, caching=caching,
            provider=str(model).partition("/")[0] if "/" in str(model) else None, source=f"price file {path}",
        )
    return prices


def price_for(model: str, user_prices: dict[str, Price] | None = None) -> Price | None:
    """``model``'s prices: the user's file first (by the full name, then without the provider), free for
    local and simulated models, then the price map; None when unknown."""
    user_prices = user_prices or {}
    name = model.partition("/")[2]
    for key in (model, name):
        if key and key in user_prices:
            return replace(user_prices[key], model=model)
    if is_free(model):
        return Price(model=model, input=0.0, output=0.0, source="computed on this machine: free")
    return map_price(model)
