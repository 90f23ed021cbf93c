"""The training doctor: probes, rules, knowledge base, findings, repair, memory, bench.

Import-light on purpose (``liandan --help`` and ``import liandan`` stay fast): the pieces that
need torch are imported when called.

- :func:`diagnose` — ``liandan.diagnose(RUN_DIR | RECIPE, fix=False)``.
- Live: the ``doctor`` callback (:mod:`liandan.doctor.live`, in the ``CALLBACKS`` registry; added by
  ``liandan.train`` when ``doctor.enabled``).
- Rules: ``liandan/doctor/rules/``, one module per problem code, ``@register_rule``.
- Knowledge: ``liandan/doctor/knowledge.yaml`` (``liandan explain TOPIC``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

CODES = ("nonfinite_loss", "exploding_gradients", "vanishing_gradients", "dead_relu", "saturated_activations",
         "lr_too_high", "lr_too_low", "overfitting", "underfitting", "symmetry", "unnormalized_inputs",
         "loss_output_mismatch", "ood_inputs", "loss_scale_blowup", "over_regularization",
         "catastrophic_forgetting", "sft_prompt_loss", "chat_template_missing",
         "lora_rank_too_low", "adapter_collapse")  # fine-tuning findings: issue 18


def diagnose(target: str | Path | dict | Any, *, fix: bool = False, overrides: list[str] | dict | None = None,
             out: str | Path | None = None, rounds: int | None = None, memory: str | Path | None = None,
             quiet: bool = True, echo: Any = None) -> dict[str, Any]:
    """Diagnose a run directory (post hoc) or a recipe (short probing run + overfit check);
    with ``fix=True``, repair it: apply the top fix, retrain, judge, up to ``rounds`` rounds.

    Returns ``{"healthy": bool, "findings": [...], ...}`` (doctor.json's format), or with
    ``fix`` the repair report (``rounds``, ``healthy``, ``improved``, ``overrides``, ...).
    """
    from liandan.doctor.examine import diagnose as _diagnose

    return _diagnose(target, fix=fix, overrides=overrides, out=out, rounds=rounds, memory=memory, quiet=quiet,
                     echo=echo)


def explain(topic: str) -> str:
    """The knowledge-base page of ``topic`` (a problem code or a concept), as text."""
    from liandan.doctor.knowledge import render

    return render(topic)
