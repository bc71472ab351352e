"""Model backends behind one async interface (:class:`~psychometrics.models.base.ModelBackend`).

``resolve_model`` turns a ``--model`` string into a backend. Backends import their heavy libraries
only when constructed, so listing or validating never pays for them.
"""

from __future__ import annotations

from psychometrics.errors import ModelSpecError
from psychometrics.models.base import ModelBackend


def resolve_model(model: str) -> ModelBackend:
    """Build the backend named by ``model`` (``sim/...`` for a simulated respondent)."""
    if model.startswith("sim/") or model == "sim":
        from psychometrics.models.simulated import SimulatedRespondent

        return SimulatedRespondent(model)
    raise ModelSpecError(
        f"--model {model}: unknown model kind; this version supports simulated respondents "
        "('sim/default', 'sim/extraversion=1.5,acquiescence=0.5', ...)"
    )
