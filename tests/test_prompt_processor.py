import pytest
import torch

from lift3d.errors import PriorError
from lift3d.prompts.diffusers_prompt_processor import DiffusersPromptProcessor, default_cache_dir
from lift3d.prompts.view_dependent import VIEW_NAMES, view_index


def test_view_buckets_follow_thresholds():
    elev = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0, 70.0, 59.0])
    azim = torch.tensor([10.0, -44.0, 90.0, 179.0, -150.0, 0.0, 170.0])
    names = [VIEW_NAMES[i] for i in view_index(elev, azim)]
    assert names == ["front", "front", "side", "back", "back", "overhead", "back"]


def test_embeddings_per_view_and_cache(latent_prior, monkeypatch):
    cfg = DiffusersPromptProcessor.Config(prompt="a red cube", pretrained_model_name_or_path=str(latent_prior))
    proc = DiffusersPromptProcessor(cfg)
    emb = proc.embeddings
    assert emb.views.shape[0] == 4 and emb.views.shape[1:] == emb.cond.shape
    # the view embeddings differ from each other and from the plain prompt
    assert not torch.allclose(emb.views[0], emb.views[2])
    cond, uncond = emb.for_cameras(torch.tensor([0.0, 0.0]), torch.tensor([0.0, 180.0]))
    torch.testing.assert_close(cond[0], emb.views[0])
    torch.testing.assert_close(cond[1], emb.views[2])
    torch.testing.assert_close(uncond[1], emb.uncond)
    files = list(default_cache_dir().glob("*.safetensors"))
    assert len(files) == 6  # prompt, negative, four views

    # a second processor reads the cache and never loads the text encoder
    def fail(*args, **kwargs):
        raise AssertionError("text encoder loaded despite the cache")

    monkeypatch.setattr(DiffusersPromptProcessor, "_embed", fail)
    again = DiffusersPromptProcessor(cfg).embeddings
    torch.testing.assert_close(again.views, emb.views)


def test_cache_is_keyed_by_prior(latent_prior, pixel_prior):
    a = DiffusersPromptProcessor(DiffusersPromptProcessor.Config(prompt="a red cube", pretrained_model_name_or_path=str(latent_prior)))
    b = DiffusersPromptProcessor(DiffusersPromptProcessor.Config(prompt="a red cube", pretrained_model_name_or_path=str(pixel_prior)))
    assert a.embeddings.cond.shape[-1] == b.embeddings.cond.shape[-1] == 16
    assert not torch.allclose(a.embeddings.cond, b.embeddings.cond)
    assert len(list(default_cache_dir().glob("*.safetensors"))) == 12


def test_cache_is_not_stale_after_the_text_encoder_is_replaced(latent_prior, tmp_path):
    import shutil

    from transformers import CLIPTextModel

    prior = tmp_path / "retrained"
    shutil.copytree(latent_prior, prior)  # its text encoder is a CLIPTextModel
    cfg = DiffusersPromptProcessor.Config(prompt="a red cube", pretrained_model_name_or_path=str(prior))
    before = DiffusersPromptProcessor(cfg).embeddings.cond
    encoder = CLIPTextModel.from_pretrained(prior / "text_encoder")
    with torch.no_grad():
        for p in encoder.parameters():
            p.add_(0.5)
    encoder.save_pretrained(prior / "text_encoder")  # retrained weights, same directory
    after = DiffusersPromptProcessor(cfg).embeddings.cond
    fresh = DiffusersPromptProcessor(DiffusersPromptProcessor.Config(prompt="a red cube", pretrained_model_name_or_path=str(prior), use_cache=False))
    torch.testing.assert_close(after, fresh.embeddings.cond)
    assert not torch.allclose(after, before)


def test_unknown_words_are_named(pixel_prior):
    cfg = DiffusersPromptProcessor.Config(prompt="a shiny red teapot", pretrained_model_name_or_path=str(pixel_prior))
    with pytest.raises(PriorError, match=r"cannot read the word\(s\) 'shiny', 'teapot'"):
        DiffusersPromptProcessor(cfg)


def test_non_view_dependent_uses_plain_prompt(pixel_prior):
    cfg = DiffusersPromptProcessor.Config(prompt="a blue sphere", pretrained_model_name_or_path=str(pixel_prior), use_view_dependent_prompt=False)
    emb = DiffusersPromptProcessor(cfg).embeddings
    cond, _ = emb.for_cameras(torch.tensor([0.0]), torch.tensor([180.0]))
    torch.testing.assert_close(cond[0], emb.cond)


def test_cache_key_includes_how_embeddings_are_made(latent_prior, pixel_prior, monkeypatch):
    """Same prior files, same text: a different recipe (mask, format version) must not reuse the cache."""
    from lift3d.prompts import diffusers_prompt_processor as dpp

    cfg = DiffusersPromptProcessor.Config(prompt="a red cube", pretrained_model_name_or_path=str(latent_prior))
    plain = DiffusersPromptProcessor(cfg)
    assert "attention_mask=False" in plain._recipe() and "max_length=16" in plain._recipe()
    t5 = DiffusersPromptProcessor(DiffusersPromptProcessor.Config(prompt="a red cube", pretrained_model_name_or_path=str(pixel_prior)))
    assert "attention_mask=True" in t5._recipe() and "encoder=T5EncoderModel" in t5._recipe()

    # the CLIP encoder with an attention mask gives other embeddings: they must be computed, not read back
    monkeypatch.setattr(DiffusersPromptProcessor, "_uses_attention_mask", lambda self: True)
    masked = DiffusersPromptProcessor(cfg)
    assert masked._cache_file("a red cube") != plain._cache_file("a red cube")
    fresh = DiffusersPromptProcessor(DiffusersPromptProcessor.Config(prompt="a red cube", pretrained_model_name_or_path=str(latent_prior), use_cache=False))
    torch.testing.assert_close(masked.embeddings.cond, fresh.embeddings.cond)
    assert not torch.allclose(masked.embeddings.cond, plain.embeddings.cond)
    monkeypatch.undo()

    # a new format version moves every key
    monkeypatch.setattr(dpp, "EMBEDDING_FORMAT", dpp.EMBEDDING_FORMAT + 1)
    assert DiffusersPromptProcessor(cfg)._cache_file("a red cube") != plain._cache_file("a red cube")
