"""Sending: claims, retries, group commit, reply parsing; the one engine every run goes through."""
