"""Checks every firm endpoint shares: the firm is in the served snapshot, and it is performing."""

from __future__ import annotations

from serving.problems import ProblemError
from serving.state import Loaded


def require_known(loaded: Loaded, usc_code: str) -> None:
    """404 when the firm is not in the served snapshot."""
    if not loaded.has(usc_code):
        raise ProblemError(
            404, f"firm {usc_code} is not in the snapshot as of {loaded.as_of}", kind="unknown-firm"
        )


_CURE = {">=": "below", ">": "at most", "<=": "above", "<": "at least", "==": "not"}


def require_performing(loaded: Loaded, usc_code: str) -> None:
    """409 when the firm is in default: the model's grade (and any change to it) does not apply.

    The detail names each triggered rule with the firm's value and what curing it means, e.g.
    ``firm ... is in default as of 2024-07-01 (current_dpd = 120 >= 90); cure the default
    (current_dpd below 90) first``.
    """
    if not loaded.in_default(usc_code):
        return
    reasons = loaded.default_reasons_of(usc_code)
    met = "; ".join(f"{r['feature']} = {r['value']} {r['op']} {r['threshold']:g}" for r in reasons)
    cure = ", ".join(f"{r['feature']} {_CURE[r['op']]} {r['threshold']:g}" for r in reasons)
    raise ProblemError(
        409,
        f"firm {usc_code} is in default as of {loaded.as_of} ({met}); "
        f"cure the default ({cure}) first",
        kind="firm-in-default",
    )
