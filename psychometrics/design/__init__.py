"""The factorial design: design options, option orders, templates, personas, and the planned requests."""
