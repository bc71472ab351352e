"""Test helpers that ship with psytest: a loopback OpenAI-compatible server backed by any psytest backend
(:mod:`~psychometrics.testing.openai_server`), and waiting for events with only a hang guard as a time
limit (:mod:`~psychometrics.testing.waiting`)."""
