"""The shipped evaluation classifier, and the figures the model cards quote."""

import json

import torch

from lift3d.eval.world_classifier import CLASSIFIER_DIR, COLOUR_NAMES, load_classifier
from lift3d.priors import BUNDLED
from lift3d.priors.world.catalog import KINDS
from lift3d.priors.world.render import render_objects, sample_views


def test_classifier_names_fresh_world_renders():
    g = torch.Generator().manual_seed(777)
    n = 128
    kinds = [KINDS[i] for i in torch.randint(len(KINDS), (n,), generator=g)]
    colours = [COLOUR_NAMES[i] for i in torch.randint(len(COLOUR_NAMES), (n,), generator=g)]
    images = render_objects(kinds, colours, sample_views(n, g)).rgb.permute(0, 3, 1, 2)
    pred = load_classifier().predict(images)
    kind_acc = sum(a == b for a, b in zip(pred["kind"], kinds)) / n
    colour_acc = sum(a == b for a, b in zip(pred["colour"], colours)) / n
    assert kind_acc >= 0.95 and colour_acc >= 0.95


def test_model_cards_quote_the_measured_figures():
    card = (BUNDLED["text"] / "README.md").read_text()
    ev = json.loads((BUNDLED["text"] / "eval.json").read_text())
    for name in ("training captions", "held-out captions"):
        r = ev[name]
        assert f"{r['colour']:.3f} | {r['kind']:.3f} | {r['both']:.3f} | {r['samples']}" in card
    metrics = json.loads((CLASSIFIER_DIR / "metrics.json").read_text())["held_out_render_accuracy"]
    clf_card = (CLASSIFIER_DIR / "README.md").read_text()
    assert f"object {metrics['kind']}" in clf_card and f"colour {metrics['colour']}" in clf_card


def test_view_prior_card_quotes_its_measured_figures_and_the_prior_beats_returning_its_input():
    card = (BUNDLED["view"] / "README.md").read_text()
    ev = json.loads((BUNDLED["view"] / "eval.json").read_text())
    rows = {name: r for name, r in ev.items() if isinstance(r, dict) and "psnr" in r}
    assert "baseline (reference view)" in rows and len(rows) >= 2
    for name, r in rows.items():
        assert f"| {name} | {r['psnr']:.2f} | {r['ssim']:.3f} | {r['mask_iou']:.3f} | {r['views']} |" in card
    for name, use in ev["reference_use"].items():
        assert f"| {name.replace('_', '-')} | {use['right']:.3f} | {use['wrong']:.3f} |" in card
        assert use["right"] < 0.5 * use["wrong"]  # the prior reads its reference
    base, prior = rows["baseline (reference view)"], rows["prior, guidance 1"]  # the shipped setting
    assert prior["psnr"] > base["psnr"] and prior["ssim"] > base["ssim"] and prior["mask_iou"] > base["mask_iou"]


def test_shipped_weights_fit_the_budget_and_are_safetensors():
    from lift3d.priors import WEIGHTS_DIR

    files = [p for p in WEIGHTS_DIR.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= 40 * 2**20
    weights = [p for p in files if p.suffix in (".bin", ".pt", ".pth", ".ckpt", ".safetensors")]
    assert weights and all(p.suffix == ".safetensors" for p in weights)
