"""report.html: one self-contained page (inline CSS, images as base64 PNG data URLs, no script).

A Content-Security-Policy of ``default-src 'none'`` lets the browser itself guarantee that the
page loads nothing from anywhere (only ``data:`` images and the inline style are allowed).
"""

from __future__ import annotations

import base64
import json
import math
from datetime import datetime
from html import escape
from typing import Any

from liandan.report.collect import Pieces, ood_sweeps

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
STATUS_COLOUR = {
    "completed": "#2ca02c",
    "stopped_early": "#2ca02c",
    "running": "#1f77b4",
    "diverged": "#d62728",
    "failed": "#d62728",
    "interrupted": "#ff7f0e",
}
SEVERITY_COLOUR = {"error": "#d62728", "warning": "#ff7f0e", "info": "#1f77b4"}

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#222;background:#f6f7f9}
header{background:#20232a;color:#fff;padding:18px 32px}header h1{margin:0;font-size:22px}
header .sub{color:#bbb;font-size:13px;margin-top:4px;word-break:break-all}
nav{padding:8px 32px;background:#fff;border-bottom:1px solid #ddd;position:sticky;top:0}
nav a{margin-right:14px;color:#1f5fa8;text-decoration:none;font-size:13px}
main{padding:8px 32px 40px;max-width:1280px}
section{background:#fff;border:1px solid #e1e4e8;border-radius:6px;padding:14px 20px;margin:16px 0}
h2{font-size:18px;margin:0 0 10px}h3{font-size:15px;margin:14px 0 6px}
.badge{display:inline-block;padding:2px 9px;border-radius:10px;color:#fff;font-size:12px;font-weight:600}
.cards{display:flex;flex-wrap:wrap;gap:10px}
.card{border:1px solid #e1e4e8;border-radius:6px;padding:8px 12px;min-width:110px}
.card .k{color:#666;font-size:12px}.card .v{font-size:17px;font-weight:600}
table{border-collapse:collapse;font-size:13px;margin:4px 0}
th,td{border-bottom:1px solid #eee;padding:4px 10px;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#fafbfc}
.figs{display:flex;flex-wrap:wrap;gap:12px;margin:8px 0;align-items:flex-start}.figs figure{margin:0}
.figs img{max-width:100%;border:1px solid #eee;border-radius:4px}
pre{background:#f6f8fa;padding:10px;border-radius:4px;overflow:auto;font-size:12px}
.finding{border-left:4px solid #ccc;padding:6px 12px;margin:10px 0;background:#fcfcfc}
.muted{color:#777;font-size:12px}code{background:#f0f0f0;padding:0 3px;border-radius:3px}
"""


def _fmt(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return escape(str(v))
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if not math.isfinite(v):
            return escape(str(v))
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:,.0f}"
    if isinstance(v, dict | list):
        return escape(json.dumps(v, default=str))
    return escape(str(v))


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<figure><img alt="{escape(alt)}" src="data:image/png;base64,{data}"></figure>'


def _figs(figs: dict[str, bytes], names: list[str]) -> str:
    imgs = [_img(figs[n], n) for n in names if n in figs]
    return f'<div class="figs">{"".join(imgs)}</div>' if imgs else ""


def _section(id_: str, title: str, body: str) -> str:
    return f'<section id="{id_}"><h2>{escape(title)}</h2>{body}</section>'


def _overview(p: Pieces) -> str:
    s = p.summary
    best = s.get("best") or {}
    cards = [
        ("status", s.get("status", "unknown")),
        ("epochs", s.get("epochs")),
        ("steps", s.get("steps")),
        ("wall time (s)", s.get("wall_s")),
        ("samples / s", s.get("samples_per_s")),
        ("device", s.get("device")),
        ("threads", s.get("threads")),
        ("parameters", s.get("params") or (p.model or {}).get("params")),
        (f"best {best.get('monitor', '')}", best.get("value")),
        ("best epoch", best.get("epoch")),
    ]
    html = (
        '<div class="cards">'
        + "".join(
            f'<div class="card"><div class="k">{escape(k)}</div><div class="v">{_fmt(v)}</div></div>'
            for k, v in cards
            if v is not None
        )
        + "</div>"
    )
    if s.get("stop_reason"):
        html += f"<p>stop reason: {escape(str(s['stop_reason']))}</p>"
    final = s.get("final") or {}
    names = sorted({k for d in final.values() if isinstance(d, dict) for k in d}, key=lambda k: (k != "loss", k))
    if names:
        html += "<h3>Final metrics</h3>" + _table(
            ["split", *names],
            [[sp, *(final[sp].get(n) for n in names)] for sp in final if isinstance(final[sp], dict)],
        )
    return _section("overview", "Overview", html)


def _evaluation(p: Pieces, figs: dict[str, bytes]) -> str:
    ev = p.evaluation
    if not ev:
        note = p.notes.get("evaluation", "not evaluated")
        return _section("evaluation", "Evaluation", f'<p class="muted">{escape(note)}</p>')
    keys = [
        "n",
        "loss",
        "accuracy",
        "top5_accuracy",
        "macro_f1",
        "micro_f1",
        "weighted_f1",
        "macro_precision",
        "macro_recall",
        "nll",
        "ece",
        "mce",
        "mse",
        "rmse",
        "mae",
        "r2",
    ]
    rows = [[k, ev[k]] for k in keys if k in ev]
    if not {k for k in keys if k in ev} - {"n", "loss"}:  # a task that owns its metrics (token accuracy, ...)
        rows += [[k, v] for k, v in ev.items() if k not in keys and isinstance(v, float)]
    rows += [[f"top-{k} accuracy", v] for k, v in (ev.get("top_k") or {}).items()]
    html = f"<p>split <code>{escape(str(ev.get('source')))}</code></p>"
    row1 = [f"<div>{_table(['metric', 'value'], rows)}</div>"] + [_img(figs[n], n) for n in ("confusion",) if n in figs]
    row2 = [_img(figs[n], n) for n in ("calibration",) if n in figs]
    if ev.get("per_class"):
        per = [
            [f"{c['class']}: {c['name']}", c["precision"], c["recall"], c["f1"], c["support"]] for c in ev["per_class"]
        ]
        row2.append(
            "<div><h3>Per class</h3>" + _table(["class", "precision", "recall", "F1", "support"], per) + "</div>"
        )
    row3 = [_img(figs[n], n) for n in ("examples",) if n in figs]
    if p.examples and p.examples.get("rows"):  # text tasks: prompt, expected, what the model wrote
        before = "before" in p.examples["rows"][0]  # a fine-tune shows its base model's answers too
        rows_ = [[r["prompt"], r["expected"], *([r["before"]] if before else []), r["got"],
                  "yes" if r["right"] else "no"] for r in p.examples["rows"]]
        head = ["prompt", "expected", *(["before fine-tuning"] if before else []), "generated", "right"]
        row3.append(f"<div><h3>{escape(p.examples['title'])}</h3>" + _table(head, rows_) + "</div>")
    for row in (row1, row2, row3):
        if row:
            html += f'<div class="figs">{"".join(row)}</div>'
    return _section("evaluation", "Evaluation", html)


def _doctor(p: Pieces) -> str:
    doc = p.doctor
    if doc is None:
        return _section(
            "doctor",
            "Doctor",
            '<p class="muted">no doctor.json (the doctor was off or did not write findings)</p>',
        )
    findings = doc.get("findings") or []
    html = f"<p>healthy: <b>{_fmt(doc.get('healthy', not findings))}</b>, {len(findings)} finding(s)</p>"
    for f in findings:
        if not isinstance(f, dict):
            continue
        sev = str(f.get("severity", "info"))
        where = ", ".join(f"{k} {f[k]}" for k in ("epoch", "step") if f.get(k) is not None)
        html += (
            f'<div class="finding" style="border-color:{SEVERITY_COLOUR.get(sev, "#999")}">'
            f'<span class="badge" style="background:{SEVERITY_COLOUR.get(sev, "#999")}">{escape(sev)}</span> '
            f"<b>{escape(str(f.get('code', '?')))}</b> <span class='muted'>{escape(where)}</span>"
        )
        if f.get("message"):
            html += f"<p>{escape(str(f['message']))}</p>"
        ev = f.get("evidence") or {}
        if isinstance(ev, dict) and ev:
            html += "<h3>Evidence</h3>" + _table(["", "value"], [[k, v] for k, v in ev.items()])
        if f.get("causes"):
            html += "<h3>Likely causes</h3><ul>" + "".join(f"<li>{escape(str(c))}</li>" for c in f["causes"]) + "</ul>"
        if f.get("fixes"):
            items = []
            for fx in f["fixes"]:
                fx = fx if isinstance(fx, dict) else {"say": fx}
                patch = fx.get("patch") or {}
                sets = " ".join(f"--set {k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in patch.items())
                items.append(
                    f"<li>{escape(str(fx.get('say', '')))}"
                    + (f" <code>{escape(sets)}</code>" if sets else "")
                    + (f'<br><span class="muted">{escape(str(fx["why"]))}</span>' if fx.get("why") else "")
                    + "</li>"
                )
            html += "<h3>Fixes</h3><ul>" + "".join(items) + "</ul>"
        html += "</div>"
    return _section("doctor", "Doctor", html)


def _sweep_table(points: list[tuple[float, dict]]) -> str:
    """AUROC ± SE per severity and method, whether each method's AUROC rises within noise, and
    why not when it does not."""
    from liandan.evaluation.ood_metrics import sweep_advice, sweep_verdicts

    def cell(v: dict | None) -> str:
        return f"{v['auroc']:.3f} ± {v.get('auroc_se') or 0:.3f}" if v else ""

    methods = list(points[0][1].get("methods", {}))
    rows = [[sev, *(cell(r["methods"].get(m)) for m in methods)] for sev, r in points]
    verdicts = {}
    for m in methods:
        pts = [(sev, r["methods"][m]) for sev, r in points if m in r["methods"]]
        verdicts[m] = sweep_verdicts([f"{sev:g}" for sev, _ in pts], {m: [v for _, v in pts]})[m]
    rises = [{True: "yes", False: "no", None: ""}[verdicts[m]["rises"]] for m in methods]
    advice = sweep_advice(verdicts)
    return (_table(["severity", *methods], [*rows, ["rises within noise", *rises]])
            + (f'<p class="muted">{escape(advice)}</p>' if advice else ""))


def _ood(p: Pieces, figs: dict[str, bytes]) -> str:
    if not p.ood:
        return ""
    html = (
        '<p class="muted">Scores: larger = in-distribution. FPR@95: share of ID inputs flagged when 95% '
        "of OOD inputs are flagged (OOD positive, as OpenOOD v1.5). Thresholds keep 95% of the "
        "calibration split; “flagged” = score below the threshold.</p>"
    )
    for k, (name, points) in enumerate(ood_sweeps(p.ood).items()):
        html += f"<h3>Severity sweep: {escape(name)}</h3>" + _sweep_table(points) + _figs(figs, [f"ood_sweep_{k}"])
    for i, r in enumerate(p.ood):
        idd, od = r.get("id", {}), r.get("ood", {})
        html += (
            f"<h3>{escape(str(idd.get('source')))} {escape(str(idd.get('split')))} ({_fmt(idd.get('n'))}) vs "
            f"<code>{escape(str(od.get('source')))}</code> ({_fmt(od.get('n'))})</h3>"
        )
        rows = [
            [
                m,
                v.get("auroc"),
                v.get("fpr95"),
                v.get("aupr_in"),
                v.get("aupr_out"),
                v.get("id_flagged"),
                v.get("ood_flagged"),
            ]
            for m, v in r["methods"].items()
        ]
        html += _table(["method", "AUROC", "FPR@95", "AUPR-In", "AUPR-Out", "ID flagged", "OOD flagged"], rows)
        html += _figs(figs, [f"ood_{i}"])
    return _section("ood", "Out-of-distribution detection", html)


def _model(p: Pieces) -> str:
    m = p.model
    if not m:
        return ""
    facts = [
        [k, m[k]]
        for k in ("name", "params", "trainable_params", "macs", "param_bytes", "activation_bytes")
        if m.get(k) is not None
    ]
    html = _table(["", "value"], facts)
    if m.get("layers"):
        rows = [
            [
                "· " * l["depth"] + (l["name"] or "(model)"),
                l["type"],
                "×".join(map(str, l["output_shape"])) if l.get("output_shape") else "-",
                l["params"],
                l["macs"],
            ]
            for l in m["layers"][:200]
        ]
        html += "<details><summary>Layers</summary>" + _table(["layer", "type", "output", "params", "MACs"], rows)
        html += "</details>"
    return _section("model", "Model", html)


def render(p: Pieces, figs: dict[str, bytes]) -> str:
    """The whole page."""
    s = p.summary
    name = s.get("name") or p.run_dir.name
    status = str(s.get("status", "unknown"))
    colour = STATUS_COLOUR.get(status, "#7f7f7f")
    parts = [
        _overview(p),
        _section(
            "training",
            "Training curves",
            _figs(figs, ["loss", "grad_norm", "metrics", "lr"])
            or f'<p class="muted">{escape(p.notes.get("metrics", "no metrics logged"))}</p>',
        ),
        _evaluation(p, figs),
        _doctor(p),
        _ood(p, figs),
        _model(p),
    ]
    if p.recipe_text:
        parts.append(_section("recipe", "Recipe", f"<pre>{escape(p.recipe_text)}</pre>"))
    if p.data:
        keep = ["source", "task", "num_classes", "input_shape", "class_names", "sizes"]
        parts.append(_section("data", "Data", _table(["", "value"], [[k, p.data.get(k)] for k in keep if k in p.data])))
    notes = [[k, v] for k, v in p.notes.items()] + [[f"time: {k}", f"{v:.2f} s"] for k, v in p.timings.items()]
    parts.append(_section("notes", "Notes", _table(["piece", "note"], notes)))
    nav = "".join(
        f'<a href="#{i}">{t}</a>'
        for i, t in [
            ("overview", "Overview"),
            ("training", "Curves"),
            ("evaluation", "Evaluation"),
            ("doctor", "Doctor"),
            ("ood", "OOD"),
            ("model", "Model"),
            ("recipe", "Recipe"),
            ("notes", "Notes"),
        ]
    )
    stamp = datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<link rel="icon" href="data:,"><title>liandan · {escape(str(name))}</title>'
        f"<style>{STYLE}</style></head><body>"
        f'<header><h1>{escape(str(name))} <span class="badge" style="background:{colour}">{escape(status)}</span>'
        f'</h1><div class="sub">{escape(str(p.run_dir))} · report written {stamp}</div></header>'
        f"<nav>{nav}</nav><main>{''.join(parts)}</main></body></html>\n"
    )
