"""Test helpers that ship with psytest: a loopback OpenAI-compatible server backed by any psytest backend."""
