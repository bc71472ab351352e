"""The run directory and its owner: manifest, identity, stores, derived outputs."""
