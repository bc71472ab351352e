"""Counting a prompt's tokens for a cost estimate: the model's tokenizer where one is at hand offline.

OpenAI's encodings (``o200k_base`` for GPT-4o and later, ``cl100k_base`` for GPT-4/3.5) ship inside
litellm's package as tiktoken cache files; they are used for OpenAI models, read from there and never
downloaded. Other providers' tokenizers are not available offline (litellm itself falls back to an
OpenAI encoding for them, which is not the model's), so their tokens are estimated at four characters
per token, and the estimate says so. Counts are memoised per text: a plan repeats the same system
messages and instructions many times.
"""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path

CHARS_PER_TOKEN = 4  # the rule of thumb for English text with BPE tokenizers
TOKENS_PER_MESSAGE = 4  # what a chat template adds around each message (role, separators), roughly
_BLOB = "https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"


def _tokenizer_dir() -> Path | None:
    import importlib.util

    try:
        spec = importlib.util.find_spec("litellm")
    except (ImportError, ValueError):
        return None
    for location in (spec.submodule_search_locations or []) if spec else []:
        path = Path(location) / "litellm_core_utils" / "tokenizers"
        if path.is_dir():
            return path
    return None


@lru_cache(maxsize=8)
def _encoding(name: str):
    """A tiktoken encoding read from litellm's bundled cache file, or None when it is not there (no
    download is ever attempted)."""
    directory = _tokenizer_dir()
    if directory is None:
        return None
    cached = directory / hashlib.sha1(_BLOB.format(name=name).encode()).hexdigest()
    if not cached.is_file():
        return None
    try:
        import tiktoken
    except ImportError:
        return None
    previous = os.environ.get("TIKTOKEN_CACHE_DIR")
    os.environ["TIKTOKEN_CACHE_DIR"] = str(directory)
    try:
        return tiktoken.get_encoding(name)
    except Exception:  # noqa: BLE001 - any failure means: no tokenizer, use the stated rule
        return None
    finally:
        if previous is None:
            os.environ.pop("TIKTOKEN_CACHE_DIR", None)
        else:
            os.environ["TIKTOKEN_CACHE_DIR"] = previous


def _openai_encoding_name(model: str) -> str | None:
    """The encoding of an OpenAI model name (without the provider), else None."""
    name = model.partition("/")[2] if model.startswith("openai/") else model
    if name.startswith(("gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4", "chatgpt-4o")):
        return "o200k_base"
    if name.startswith(("gpt-4", "gpt-3.5")):
        return "cl100k_base"
    return None


class TokenCounter:
    """Tokens of a text for one model: ``basis`` says how they are counted."""

    def __init__(self, model: str, provider: str | None = None):
        name = None
        if provider in ("openai", "azure", None) or model.startswith(("openai/", "azure/")):
            name = _openai_encoding_name(model.partition("/")[2] if "/" in model else model)
        self.encoding = _encoding(name) if name else None
        self.basis = (f"{name} tokenizer (tiktoken, bundled with litellm)" if self.encoding is not None
                      else f"estimated at {CHARS_PER_TOKEN} characters per token (no tokenizer for this model offline)")
        self._memo: dict[str, int] = {}

    def count(self, text: str) -> int:
        known = self._memo.get(text)
        if known is not None:
            return known
        if self.encoding is not None:
            value = len(self.encoding.encode(text, disallowed_special=()))
        else:
            value = len(text) // CHARS_PER_TOKEN
        if len(self._memo) < 200_000:
            self._memo[text] = value
        return value
