"""What a run costs: prices per model, token counts, the estimate before sending, the actual cost after.

- :mod:`~psychometrics.cost.prices`: a model's prices from litellm's bundled price map (read offline,
  without importing litellm) or a user's price file (``--prices FILE.yaml``); local and simulated
  models are free, a model priced nowhere is *unknown* (never a silent 0).
- :mod:`~psychometrics.cost.tokens`: counting prompt tokens with the model's own tokenizer where one
  ships offline (OpenAI's encodings inside litellm), else four characters per token, said so.
- :mod:`~psychometrics.cost.estimate`: a plan's cost per model and per design factor, with the
  provider's cached-prefix discount and the batch discount applied where they apply.
- :mod:`~psychometrics.cost.actual`: one reply's cost from the provider's usage fields, and a run's
  total with what prompt caching saved.
- :mod:`~psychometrics.cost.caching`: which part of a prompt a provider caches and how it is marked.
"""
