"""Self-report against behaviour: statistics, reading runs, the tables of psytest validity."""
