"""Tables of an image-to-3D study, split by held-out and training inputs, from ``results.jsonl`` alone.

``lift3d eval report`` averages every input together; a study of generalisation needs the held-out
objects (never seen by a bundled prior) apart from the training ones. ``docs/image-to-3d-study.md``
holds these tables verbatim, and a test rebuilds them from the stored results file.

    python -m lift3d.eval.study_tables bench_runs/image_study/results.jsonl
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

from lift3d.eval.report import aggregate, setting_label

COLUMNS = (("psnr", "PSNR", ".2f"), ("psnr_back", "back PSNR", ".2f"), ("ssim", "SSIM", ".3f"),
           ("silhouette_iou", "sil. IoU", ".3f"), ("volume_iou", "vol. IoU", ".3f"), ("chamfer", "Chamfer", ".3f"),
           ("janus", "Janus", ".2f"), ("r_precision", "R-prec.", ".2f"), ("wall_seconds", "wall (s)", ".0f"))
"""Metric key, column title, format."""


def read_rows(path: str | Path) -> list[dict]:
    """The finished runs of a results file (the last row of each run id)."""
    rows: dict[str, dict] = {}
    for line in Path(path).read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            rows[row["run_id"]] = row
    return [r for r in rows.values() if r.get("status") == "ok"]


EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "images"


def held_out(row: dict) -> bool | None:
    """Whether the run's input image is a held-out example (from its JSON sidecar; a results file
    from another checkout finds it by name in ``examples/images``), None without one."""
    if not row.get("image"):
        return None
    for sidecar in (Path(row["image"]).with_suffix(".json"), EXAMPLES / Path(row["image"]).with_suffix(".json").name):
        if sidecar.is_file():
            return bool(json.loads(sidecar.read_text()).get("held_out"))
    return None


def split_table(rows: list[dict], which_held_out: bool) -> str:
    """Markdown: a row per method and setting over the held-out (or training) inputs."""
    chosen = [r for r in rows if held_out(r) is which_held_out]
    head = "| method | setting | " + " | ".join(c[1] for c in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (2 + len(COLUMNS))]
    cells = defaultdict(list)
    for r in chosen:
        cells[(r["method"], setting_label(r))].append(r)
    for (method, setting), group in cells.items():
        values = []
        for key, _, fmt in COLUMNS:
            m = aggregate(group, key).get((method, setting))  # the report's cell: mean over inputs per seed, then over seeds
            values.append("–" if m is None else (f"{m[0]:{fmt}} ± {m[1]:{fmt}}" if m[2] > 1 else f"{m[0]:{fmt}}"))
        lines.append(f"| {method} | {setting} | " + " | ".join(values) + " |")
    return "\n".join(lines)


PER_OBJECT = (("psnr", "PSNR", ".2f"), ("psnr_back", "back PSNR", ".2f"), ("r_precision", "R-precision", ".2f"))
"""The per-object table's metrics: a column each, the methods' values side by side."""


def object_table(rows: list[dict]) -> str:
    """Markdown: a row per held-out image, each method's value at its ``default`` setting (mean over seeds)."""
    chosen = [r for r in rows if held_out(r) and setting_label(r) == "default"]
    methods = list(dict.fromkeys(r["method"] for r in chosen))
    images = list(dict.fromkeys(r["image"] for r in chosen))
    head = [f"{title} {' / '.join(methods)}" if i == 0 else title for i, (_, title, _) in enumerate(PER_OBJECT)]
    lines = ["| held-out image | " + " | ".join(head) + " |", "|" + "---|" * (1 + len(PER_OBJECT))]
    for image in images:
        of_image = [r for r in chosen if r["image"] == image]
        cells = []
        for key, _, fmt in PER_OBJECT:
            cell = aggregate(of_image, key)  # one input: the report's cell is the mean over seeds
            values = [f"{cell[(m, 'default')][0]:{fmt}}" if (m, "default") in cell else "–" for m in methods]
            cells.append(" / ".join(values))
        caption = Path(image).stem.replace("_", " ")
        lines.append(f"| {caption} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def study_tables(path: str | Path) -> str:
    rows = read_rows(path)
    n_in = len({r["image"] for r in rows if held_out(r)})
    n_tr = len({r["image"] for r in rows if held_out(r) is False})
    return (f"Held-out objects ({n_in} images; mean over images per seed, then mean ± std over seeds):\n\n{split_table(rows, True)}\n\n"
            f"Training objects ({n_tr} image{'s' if n_tr != 1 else ''}):\n\n{split_table(rows, False)}\n\n"
            f"Per held-out object (default settings, mean over seeds):\n\n{object_table(rows)}\n")


if __name__ == "__main__":
    print(study_tables(sys.argv[1] if len(sys.argv) > 1 else "bench_runs/image_study/results.jsonl"))
