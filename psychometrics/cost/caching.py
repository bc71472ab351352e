"""Provider prompt caching: which part of a prompt is the fixed prefix, how much of it a provider caches,
and how it is marked for providers that need a mark.

psytest puts the fixed part of every prompt first: the system message (persona, then the inventory's
instructions), then the template's introduction, the options and the answer rules; the statement comes
last. Requests of one design cell differ only in that last part, so their prefix repeats.

- OpenAI (and providers that cache by themselves) cache the longest repeated prefix once it reaches a
  minimum (1,024 tokens), in steps of 128 tokens; nothing needs marking.
- Anthropic caches what is marked with ``cache_control`` (here: the system block) when it is at least
  the model's minimum cacheable length; a first request writes the cache at a higher price, later ones
  read it at a tenth of the input price.
"""

from __future__ import annotations

from typing import Any

OPENAI_STEP = 128  # OpenAI caches prefixes in steps of this many tokens beyond the minimum


def needs_cache_mark(model: str) -> bool:
    """Whether requests to ``model`` (a litellm model string) must mark their cacheable prefix."""
    provider = model.partition("/")[0]
    return provider in ("anthropic", "bedrock", "vertex_ai") and "claude" in model or (
        "/" not in model and model.startswith("claude"))


def mark_system_cacheable(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages with the last system message's text turned into one text block carrying
    ``cache_control: ephemeral`` (Anthropic's mark, passed on by litellm); the text itself is unchanged."""
    last = max((i for i, m in enumerate(messages) if m.get("role") == "system" and isinstance(m.get("content"), str)),
               default=None)
    if last is None:
        return messages
    marked = list(messages)
    marked[last] = {**messages[last], "content": [
        {"type": "text", "text": messages[last]["content"], "cache_control": {"type": "ephemeral"}}]}
    return marked


def cached_length(prefix_tokens: int, minimum: int, caching: str | None) -> int:
    """How many of a repeated prefix's tokens a provider serves from its cache."""
    if caching is None or prefix_tokens < max(1, minimum):
        return 0
    if caching == "automatic":
        return minimum + OPENAI_STEP * ((prefix_tokens - minimum) // OPENAI_STEP)
    return prefix_tokens
