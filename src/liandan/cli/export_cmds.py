"""``liandan export``: a trained run to ONNX or GGUF (thin over :func:`liandan.export.export`)."""

from __future__ import annotations

from pathlib import Path

import typer

from liandan.cli.app import app, print_json


@app.command("export")
def export_cmd(
    run_dir: Path = typer.Argument(..., help="Run directory of a trained model, or (for --format gguf) a "
                                   "save_pretrained directory of a LLaMA or Qwen2 model."),
    format_: str = typer.Option("onnx", "--format", "-f", help="onnx (classifiers, regressors, language models) "
                                "or gguf (LLaMA-style LM runs; LLaMA/Qwen2 save_pretrained directories)."),
    out: Path = typer.Option(None, "--out", help="File to write (default DIR/export/model.onnx or "
                             "model-OUTTYPE.gguf); its directory must exist and be writable."),
    outtype: str = typer.Option(None, "--outtype", help="GGUF weights: f32 (default), f16, q8_0 or q4_0."),
    no_check: bool = typer.Option(False, "--no-check", help="Skip the onnxruntime / transformers comparison."),
    static_batch: bool = typer.Option(False, "--static-batch", help="ONNX: fix the batch axis at 1."),
    opset: int = typer.Option(None, "--opset", help="ONNX opset (default: the exporter's, 18); a lower one is "
                              "converted, or refused when torch cannot convert the graph."),
    json_: bool = typer.Option(False, "--json", help="Print the export.json entry as one JSON document."),
) -> None:
    """Export a run for deployment: one .onnx file taking raw inputs, or a .gguf file for llama.cpp.

    The file is checked against PyTorch before it is renamed into place (ONNX: onnxruntime at
    batch 1 and 5, max |Δ| ≤ 1e-4, and single-thread latency; GGUF: llama.cpp's tokenizer rebuilt
    from the file must give the model's ids, and transformers reads it back: max |Δlogit|);
    the numbers go to export.json beside it."""
    from liandan.export import export

    res = export(run_dir, format_, out, outtype=outtype, check=not no_check, dynamic_batch=not static_batch,
                 opset=opset)
    if json_:
        print_json(res)
        return
    typer.echo(f"wrote {res['path']} "
               f"({res['bytes'] / 1024:.1f} KiB, {res['format']}"
               + (f" {res['outtype']})" if res["format"] == "gguf" else f" opset {res['opset']})"))
    chk = res.get("check")
    if not chk:
        typer.echo("not checked (--no-check)")
    elif res["format"] == "onnx":
        lat = chk["latency_ms"]
        typer.echo(f"onnxruntime vs torch: max |Δ| {chk['max_abs_diff']:.2e} on inputs {chk['input_shapes']}; "
                   f"batch-1 latency torch {lat['torch_eager']:.3f} ms, onnxruntime {lat['onnxruntime']:.3f} ms "
                   f"(ratio {chk['latency_ratio_ort_over_torch']:.2f})")
    else:
        lc = res["llamacpp_tokenizer"]
        typer.echo(f"read back by transformers: max |Δlogit| {chk['max_abs_diff']:.2e} (logits up to "
                   f"{chk['logit_scale']:.2f}), greedy agreement {chk['greedy_agreement']:.3f}; llama.cpp "
                   f"tokenizer ({lc['model']}, pre {lc['pre']}): {lc['same_ids']}/{lc['texts']} sample texts "
                   f"give the model's ids")
