"""Instruments: the inventory data model, the shipped library, and item data from files."""
