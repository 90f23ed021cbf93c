"""Doctor rules, one module per problem, each registered with ``@register_rule``.

A rule is ``fn(view: RunView) -> Finding | None`` (see :mod:`liandan.doctor.engine` for the
registration options ``phase``, ``suppresses``, ``generic``, ``modes``). Adding a problem is
adding a module here, an entry in ``knowledge.yaml`` and bench cases in
``liandan/doctor/bench/`` — the tests require all three.

``ood_inputs`` is not a rule yet: out-of-distribution inputs are judged by the OOD detector of
:mod:`liandan.evaluation.ood`, which writes its finding into doctor.json through
:func:`liandan.doctor.findings.add_finding`; ``liandan doctor RUN_DIR`` keeps such findings.
"""

from __future__ import annotations

import importlib
import pkgutil

for _m in pkgutil.iter_modules(__path__):
    if not _m.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_m.name}")
