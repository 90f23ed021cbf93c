"""``liandan serve-adapters``: complete a batch of prompts, each through its own LoRA adapter of one
base run, in mixed batches (S-LoRA style; :func:`liandan.llm.serving.serve_adapters`). A batch
command, not a network server."""

from __future__ import annotations

from pathlib import Path

import typer

from liandan.cli.app import app, print_json
from liandan.errors import LiandanError


def _split(items: list[str] | None, sep: str, what: str) -> list[tuple[str, str]]:
    out = []
    for item in items or []:
        name, found, rest = item.partition(sep)
        if not found or not name.strip():
            raise LiandanError(f"serve-adapters: {what} {item!r} is not NAME{sep}...")
        out.append((name.strip(), rest))
    return out


@app.command("serve-adapters")
def serve_adapters(
    base_run: Path = typer.Argument(..., help="Run directory of the base language model."),
    adapter: list[str] = typer.Option(None, "--adapter", help="NAME=RUN_DIR: a LoRA fine-tune of the base run "
                                      "(repeatable)."),
    prompt: list[str] = typer.Option(None, "--prompt", help="NAME:TEXT: complete TEXT with adapter NAME "
                                     "(__base__: the base model); repeatable, one batch."),
    max_new_tokens: int = typer.Option(32, "--max-new-tokens", help="Most tokens to add per prompt."),
    max_active: int = typer.Option(8, "--max-active", help="Most adapters resident at once (LRU)."),
    temperature: float = typer.Option(0.0, "--temperature", help="0: greedy; > 0 samples."),
    seed: int = typer.Option(0, "--seed", help="Seed of the sampling."),
    json_: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Complete prompts through many LoRA adapters of one frozen base model, batches mixing adapters."""
    from liandan.llm.serving import serve_adapters as serve

    adapters = dict(_split(adapter, "=", "--adapter"))
    res = serve(base_run, adapters, _split(prompt, ":", "--prompt"), max_new_tokens=max_new_tokens,
                max_active=max_active, temperature=temperature, seed=seed)
    if json_:
        print_json(res)
        return
    for r in res["results"]:
        typer.echo(f"[{r['adapter']}] {r['prompt']}{r['completion']}")
    s = res["stats"]
    typer.echo(f"{len(res['results'])} prompts, {res['tokens']} tokens in {res['wall_s']:.2f} s; "
               f"{len(s['pooled'])} adapters, loads {s['loads']}, evictions {s['evictions']}")
