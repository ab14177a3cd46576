"""CLIP score from a local CLIP directory, with a tiny random CLIP built here (never downloaded)."""

import json

import pytest
import torch
from transformers import AutoTokenizer, CLIPConfig, CLIPModel

from lift3d.eval.clip_score import clip_score
from lift3d.eval.turntable import Turntable
from lift3d.priors import BUNDLED


FRAMES = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
PROMPTS = ["a red house", "a blue sphere"]


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("clip") / "tiny-clip"
    tok = AutoTokenizer.from_pretrained(BUNDLED["text"] / "tokenizer")  # a real tokenizer folder, word level
    cfg = CLIPConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                         max_position_embeddings=16, pad_token_id=0, bos_token_id=0, eos_token_id=2),  # 2: pool at the highest token id (no EOS in this vocabulary)
        vision_config=dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2),
        projection_dim=16,
    )
    frames = FRAMES * 2 - 1
    for seed in range(100):  # a random init whose cosines are positive for these frames, so the clamp at 0 is not all there is
        torch.manual_seed(seed)
        model = CLIPModel(cfg).eval()
        with torch.no_grad():
            ids = tok(PROMPTS, padding=True, return_tensors="pt")
            out = model(input_ids=ids["input_ids"], attention_mask=ids["attention_mask"], pixel_values=frames)
        if (out.logits_per_image > 0).all():
            break
    model.save_pretrained(path)
    tok.save_pretrained(path)
    (path / "preprocessor_config.json").write_text(json.dumps({"image_mean": [0.5, 0.5, 0.5], "image_std": [0.25, 0.25, 0.25], "crop_size": 32}))
    return path


def test_clip_score_matches_the_model_forward(tiny_clip):
    frames = FRAMES
    score = clip_score(frames, "a red house", tiny_clip)
    model = CLIPModel.from_pretrained(tiny_clip).eval()
    tok = AutoTokenizer.from_pretrained(tiny_clip)
    with torch.no_grad():
        out = model(input_ids=tok(["a red house"], return_tensors="pt")["input_ids"], pixel_values=(frames - 0.5) / 0.25)
    cosine = out.logits_per_image[:, 0] / model.logit_scale.exp()
    assert score == pytest.approx(float(100 * cosine.clamp(min=0).mean()), rel=1e-4)
    assert 0.0 < score <= 100.0


def test_clip_score_depends_on_prompt_and_image(tiny_clip):
    a = clip_score(FRAMES, PROMPTS[0], tiny_clip)
    b = clip_score(FRAMES, PROMPTS[1], tiny_clip)
    bigger = torch.nn.functional.interpolate(FRAMES, (64, 64), mode="nearest")  # resized back to the model's 32
    assert a > 0 and b > 0 and a != pytest.approx(b, abs=1e-4)
    assert clip_score(bigger, PROMPTS[0], tiny_clip) == pytest.approx(a, abs=1.0)
    assert clip_score(FRAMES.flip(-1).roll(9, -2), PROMPTS[0], tiny_clip) != pytest.approx(a, abs=1e-4)


def test_turntable_scores_add_clip_for_any_prompt(tiny_clip):
    from lift3d.eval.scores import turntable_scores

    n = 3
    tt = Turntable(rgb=torch.rand(n, 3, 32, 32), opacity=torch.ones(n, 32, 32), elevation=torch.zeros(n), azimuth=torch.zeros(n),
                   distance=torch.full((n,), 2.5), fovy=torch.full((n,), 45.0), light_position=torch.ones(n, 3))
    scores = turntable_scores(tt, "a photo of a dog", clip_model=str(tiny_clip))
    assert list(scores) == ["clip_score"]  # not a world caption: no ground-truth metrics


def test_missing_clip_directory_is_a_clear_error(tmp_path):
    from lift3d.errors import ConfigError

    with pytest.raises(ConfigError, match="no config.json"):
        clip_score(torch.rand(1, 3, 32, 32), "a red house", tmp_path)
