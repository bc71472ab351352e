"""Providers' batch APIs (``--batch``): submit a run's requests as one job, collect the answers later.

:mod:`.ledger` keeps the ``batches`` table of the run store (every submission recorded before each step
that talks to the provider); :mod:`.http` is the small JSON client with retries both providers share;
:mod:`.openai_api` speaks OpenAI's ``/v1/files`` + ``/v1/batches`` (also OpenAI-compatible servers),
:mod:`.anthropic_api` Anthropic's message batches. The run itself is :mod:`psychometrics.engine.batch`.
"""
