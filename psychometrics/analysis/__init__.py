"""Tables derived from runs, comparisons, baselines and drift checks, reproduction."""
