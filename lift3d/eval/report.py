"""The report of an evaluation folder: ``report.md`` and ``report.html`` with plots and image grids.

Built from ``results.jsonl`` alone (``lift3d eval report <folder>`` rebuilds it at any time):

- a table per metric, methods x hyperparameter settings; each cell is the mean over prompts
  of a seed, then mean ± standard deviation over seeds (just the mean with one seed);
- per swept hyperparameter, a plot (matplotlib) of each metric against its values, one line
  per method (averaged over the other settings, prompts and seeds; for a one-at-a-time grid,
  over that key's runs and the preset's settings only);
- per prompt, an image grid of test-turntable frames, a row per method and setting;
- a table of every run with links to its turntable video and exported mesh, and the failures.
"""

from __future__ import annotations

import html
import json
import os
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from lift3d.eval.runner import SUITE, read_results
from lift3d.utils.io import atomic_path, atomic_write_text

METRICS: dict[str, tuple[str, str]] = {
    "r_precision": ("R-precision (classifier)", "higher"),
    "psnr": ("novel-view PSNR (dB)", "higher"),
    "ssim": ("novel-view SSIM", "higher"),
    "psnr_back": ("back-view PSNR (dB)", "higher"),
    "silhouette_iou": ("silhouette IoU", "higher"),
    "chamfer": ("Chamfer distance", "lower"),
    "volume_iou": ("volume IoU", "higher"),
    "janus": ("Janus rate", "lower"),
    "clip_score": ("CLIP score", "higher"),
    "wall_seconds": ("wall time (s)", "lower"),
    "steps_per_second": ("steps/s", "higher"),
    "peak_memory_mb": ("peak memory (MB)", "lower"),
}
"""Metric key -> (title, which direction is better)."""

FRAMES_PER_ROW = 6


def metric_value(row: dict, key: str) -> float | None:
    value = row.get("metrics", {}).get(key, row.get(key))
    return float(value) if isinstance(value, (int, float)) and value is not None and np.isfinite(value) else None


def setting_label(row: dict) -> str:
    """A results row's setting: ``key=value, ...`` of its grid values, or for one-at-a-time grids the
    key it varies (``default``: the preset's settings)."""
    if "varied" in row:
        varied = row["varied"]
        return "default" if varied is None else f"{varied.rsplit('.', 1)[-1]}={row['hparams'][varied]}"
    return ", ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in row["hparams"].items()) or "default"


def aggregate(rows: list[dict], key: str) -> dict[tuple[str, str], tuple[float, float, int]]:
    """(method, setting) -> (mean, std over seeds, seeds) of the per-seed mean over prompts."""
    per_seed: dict[tuple[str, str], dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        v = metric_value(r, key)
        if r.get("status") == "ok" and v is not None:
            per_seed[(r["method"], setting_label(r))][r["seed"]].append(v)
    out = {}
    for cell, seeds in per_seed.items():
        means = np.array([np.mean(v) for v in seeds.values()])
        out[cell] = (float(means.mean()), float(means.std(ddof=1)) if len(means) > 1 else 0.0, len(means))
    return out


def format_cell(mean: float, std: float, n: int) -> str:
    digits = 3 if abs(mean) < 100 else 0
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if n > 1 else f"{mean:.{digits}f}"


def _order(rows: list[dict]) -> tuple[list[str], list[str]]:
    methods = list(dict.fromkeys(r["method"] for r in rows))
    settings = list(dict.fromkeys(setting_label(r) for r in rows))
    return methods, settings


def metric_tables(rows: list[dict]) -> list[tuple[str, str, list[str], list[list[str]]]]:
    """(metric key, title, header, body rows) for every metric some run has."""
    methods, settings = _order(rows)
    tables = []
    for key, (title, better) in METRICS.items():
        agg = aggregate(rows, key)
        if not agg:
            continue
        body = [[m] + [format_cell(*agg[(m, s)]) if (m, s) in agg else "–" for s in settings] for m in methods]
        tables.append((key, f"{title} ({better} is better)", ["method"] + settings, body))
    return tables


def swept(rows: list[dict]) -> dict[str, list]:
    values: dict[str, list] = defaultdict(list)
    for r in rows:
        for k, v in r["hparams"].items():
            if v not in values[k]:
                values[k].append(v)
    return {k: v for k, v in values.items() if len(v) > 1}


def plot_sweeps(rows: list[dict], folder: Path) -> list[Path]:
    """One PNG per swept hyperparameter: each metric against its values, a line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if r.get("status") == "ok"]
    keys = [k for k in METRICS if any(metric_value(r, k) is not None for r in ok)]
    paths = []
    for hp, values in swept(ok).items():
        cols = min(4, len(keys))
        nrows = -(-len(keys) // cols)
        fig, axes = plt.subplots(nrows, cols, figsize=(3.2 * cols, 2.6 * nrows), squeeze=False)
        for ax in axes.flat[len(keys):]:
            ax.axis("off")
        for ax, key in zip(axes.flat, keys):
            for method in dict.fromkeys(r["method"] for r in ok):
                xs, ys, es = [], [], []
                for v in sorted(values, key=lambda x: (isinstance(x, str), x)):
                    per_seed = defaultdict(list)
                    for r in ok:
                        if r.get("varied", hp) not in (None, hp):
                            continue  # one-at-a-time: another key's variation, not on this key's curve
                        if r["method"] == method and r["hparams"].get(hp) == v and metric_value(r, key) is not None:
                            per_seed[r["seed"]].append(metric_value(r, key))
                    if per_seed:
                        means = [np.mean(s) for s in per_seed.values()]
                        xs.append(str(v)), ys.append(np.mean(means)), es.append(np.std(means))
                ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=method)
            ax.set_title(METRICS[key][0], fontsize=9)
            ax.set_xlabel(hp.rsplit(".", 1)[-1], fontsize=8)
            ax.tick_params(labelsize=7)
        axes.flat[0].legend(fontsize=7)
        fig.tight_layout()
        path = folder / "plots" / f"{re.sub(r'[^A-Za-z0-9]+', '-', hp)}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=90, format="png")
        plt.close(fig)
        paths.append(path)
    return paths


def turntable_strip(frames_dir: str | None, n: int = FRAMES_PER_ROW) -> np.ndarray | None:
    """``n`` evenly spaced RGB panels of a test turntable folder (frames are rgb | normal | opacity)."""
    import imageio.v3 as iio

    if not frames_dir or not Path(frames_dir).is_dir():
        return None
    files = sorted(Path(frames_dir).glob("*.png"))
    if not files:
        return None
    picks = [files[int(i * len(files) / n)] for i in range(n)]
    panels = []
    for f in picks:
        img = iio.imread(f)[..., :3]
        panels.append(img[:, : img.shape[0]])
    return np.concatenate(panels, axis=1)


def image_grids(rows: list[dict], folder: Path) -> dict[str, Path]:
    """Per prompt, a PNG with a row of turntable frames per method and setting (first seed)."""
    import imageio.v3 as iio

    grids = {}
    for prompt in dict.fromkeys(r["prompt"] for r in rows):
        strips = []
        seen = set()
        for r in sorted((r for r in rows if r["prompt"] == prompt and r.get("status") == "ok"), key=lambda r: r["seed"]):
            label = (r["method"], setting_label(r))
            if label in seen:
                continue
            strip = turntable_strip(r.get("artefacts", {}).get("turntable_frames"))
            if strip is not None:
                seen.add(label)
                strips.append(strip)
        if not strips:
            continue
        width = max(s.shape[1] for s in strips)
        strips = [np.pad(s, ((0, 2), (0, width - s.shape[1]), (0, 0)), constant_values=255) for s in strips]
        path = folder / "grids" / f"{re.sub(r'[^A-Za-z0-9]+', '-', prompt).strip('-')}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            iio.imwrite(tmp, np.concatenate(strips), extension=".png")
        grids[prompt] = path
    return grids


def grid_rows(ok: list[dict], prompt: str) -> str:
    """The row labels of a prompt's image grid, in order (first seed of each method and setting)."""
    rows = sorted((r for r in ok if r["prompt"] == prompt and r.get("artefacts", {}).get("turntable_frames")), key=lambda r: r["seed"])
    return "; ".join(dict.fromkeys(f"{r['method']} {setting_label(r)}" for r in rows))


def _rel(path: str | None, folder: Path) -> str | None:
    return os.path.relpath(path, folder) if path else None


def _md_table(header: list[str], body: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in body]


def _html_table(header: list[str], body: list[list[str]], raw: bool = False) -> str:
    esc = (lambda s: s) if raw else html.escape
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    rows = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in body)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def build_report(folder: str | Path) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` (with ``plots/`` and ``grids/``) into ``folder``."""
    from lift3d.errors import InputError

    folder = Path(folder)
    if not (folder / SUITE).is_file():
        raise InputError(f"{folder} is not a lift3d eval folder (no {SUITE}); pass the --out folder of 'lift3d eval'")
    name = json.loads((folder / SUITE).read_text())["name"]
    rows = read_results(folder)
    ok = [r for r in rows if r.get("status") == "ok"]
    failed = [r for r in rows if r.get("status") != "ok"]
    tables = metric_tables(rows)
    plots = plot_sweeps(rows, folder)
    grids = image_grids(rows, folder)
    run_rows = []
    for r in sorted(ok, key=lambda r: r["run_id"]):
        art = r.get("artefacts", {})
        run_rows.append((r, _rel(art.get("turntable_video"), folder), _rel(art.get("mesh"), folder)))

    md = [f"# Evaluation report: {name}", "", f"{len(ok)} runs finished, {len(failed)} failed. "
          "Cells: mean over prompts per seed, then mean ± std over seeds.", ""]
    for _, title, header, body in tables:
        md += [f"## {title}", "", *_md_table(header, body), ""]
    for p in plots:
        md += [f"![{p.stem}]({_rel(str(p), folder)})", ""]
    if grids:
        md += ["## Turntables", ""]
        for prompt, p in grids.items():
            md += [f"**{prompt}** (rows: {grid_rows(ok, prompt)})", "",
                   f"![{prompt}]({_rel(str(p), folder)})", ""]
    md += ["## Runs", "", *_md_table(["run", "video", "mesh"], [[r["run_id"], f"[mp4]({v})" if v else "–", f"[mesh]({m})" if m else "–"] for r, v, m in run_rows]), ""]
    if failed:
        md += ["## Failed runs", "", *_md_table(["run", "error"], [[r["run_id"], r.get("error", "")] for r in failed]), ""]
    md_path = folder / "report.md"
    atomic_write_text(md_path, "\n".join(md))

    parts = [f"<h1>Evaluation report: {html.escape(name)}</h1>",
             f"<p>{len(ok)} runs finished, {len(failed)} failed. Cells: mean over prompts per seed, then mean ± std over seeds.</p>"]
    parts.append('<div class="tables">' + "".join(
        f'<section id="{key}"><h2>{html.escape(title)}</h2>{_html_table(header, body)}</section>' for key, title, header, body in tables) + "</div>")
    for p in plots:
        parts.append(f'<figure><img src="{html.escape(_rel(str(p), folder))}" alt="{html.escape(p.stem)}"></figure>')
    if grids:
        parts.append("<h2>Turntables</h2>")
        for prompt, p in grids.items():
            parts.append(f'<figure><figcaption><b>{html.escape(prompt)}</b> (rows: {html.escape(grid_rows(ok, prompt))})</figcaption><img class="grid" src="{html.escape(_rel(str(p), folder))}" alt="{html.escape(prompt)}"></figure>')
    links = [[html.escape(r["run_id"]), f'<a href="{html.escape(v)}">mp4</a>' if v else "–", f'<a href="{html.escape(m)}">mesh</a>' if m else "–"] for r, v, m in run_rows]
    parts.append("<h2>Runs</h2>" + _html_table(["run", "video", "mesh"], links, raw=True))
    if failed:
        parts.append("<h2>Failed runs</h2>" + _html_table(["run", "error"], [[r["run_id"], r.get("error", "")] for r in failed]))
    style = ("body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:0.5em 0 1.5em}"
             "td,th{border:1px solid #bbb;padding:4px 8px;font-size:14px}th{background:#eee}h2{font-size:17px}"
             ".tables{display:flex;flex-wrap:wrap;gap:0 2em}img{max-width:100%}img.grid{image-rendering:pixelated;width:720px}")
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(name)}</title>'
            f'<link rel="icon" href="data:,"><style>{style}</style></head><body>{"".join(parts)}</body></html>\n')
    html_path = folder / "report.html"
    atomic_write_text(html_path, page)
    return md_path, html_path
