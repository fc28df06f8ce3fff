"""minisd.clip: the mini CLIP of chapter 04d: its loss, its shapes, its training and cache."""

import pytest
import torch

from minisd.clip import MiniCLIP, _cache_folder, clip_loss, mini_clip_config, train_mini_clip, zero_shot_attributes
from minisd.data import attribute_ids, images_to_tensor, load_captioned_shapes
from minisd.text_encoder import CLIPTextConfig, CLIPTextModel

TINY = dict(vocab_size=300, hidden_size=16, intermediate_size=40, num_hidden_layers=2, num_attention_heads=2,
            max_position_embeddings=20, bos_token_id=298, eos_token_id=299, pad_token_id=299)


def _ids(n_pad):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 298, (len(n_pad), 20), generator=g)
    ids[:, 0] = 298
    for row, pad in enumerate(n_pad):
        ids[row, 19 - pad:] = 299
    return ids


def test_clip_loss_counts_identical_captions_as_positives():
    blur = torch.tensor([[5.0, 5.0, -5.0], [5.0, 5.0, -5.0], [-5.0, -5.0, 5.0]])  # 0 and 1 not told apart
    split = torch.tensor([[10.0, -10.0, -5.0], [-10.0, 10.0, -5.0], [-5.0, -5.0, 5.0]])  # 0 and 1 pushed apart
    same = torch.tensor([0, 0, 1])  # pairs 0 and 1 share a caption
    different = torch.tensor([0, 1, 2])
    assert clip_loss(blur, same) < clip_loss(split, same)
    assert clip_loss(split, different) < clip_loss(blur, different)
    assert clip_loss(torch.eye(3) * 20, different) < 1e-6


def test_mini_clip_shapes_and_gradients():
    clip = MiniCLIP(CLIPTextConfig(**TINY), image_size=32, channels=(8, 16, 16), projection_dim=8)
    images, ids = torch.rand(4, 3, 32, 32), _ids(n_pad=(0, 3, 5, 7))
    logits = clip(images, ids)
    assert logits.shape == (4, 4)
    clip_loss(logits, torch.arange(4)).backward()
    assert clip.logit_scale.grad is not None and clip.text_model.embeddings.token_embedding.weight.grad.abs().sum() > 0


def test_cache_folder_is_readable_and_stable():
    cfg = mini_clip_config("quick")
    folder = _cache_folder("quick", 3, cfg)
    assert folder.parent.name == "mini_clip" and folder.name.startswith("quick-seed3-")
    assert all(c.isalnum() or c == "-" for c in folder.name)
    assert _cache_folder("quick", 3, dict(reversed(list(cfg.items())))) == folder  # key order does not matter
    assert _cache_folder("quick", 3, {**cfg, "steps": cfg["steps"] + 1}) != folder
    assert _cache_folder("quick", 4, cfg) != folder


def test_train_mini_clip_runs_caches_and_reloads():
    first = train_mini_clip("quick", steps=3, batch_size=16, progress=False, device=torch.device("cpu"))
    assert len(first.losses) == 3 and all(loss == loss for loss in first.losses)  # finite, not nan
    folder = _cache_folder("quick", 0, {**mini_clip_config("quick"), "steps": 3, "batch_size": 16})
    assert {p.name for p in folder.iterdir()} >= {"tokenizer", "text_encoder", "clip.safetensors", "losses.json"}
    ids = first.tokenizer(["a large red circle in the top left"])
    assert ids.shape == (1, 77)
    states = first.text_model(ids)
    assert states.shape == (1, 77, first.text_model.config.hidden_size)
    again = train_mini_clip("quick", steps=3, batch_size=16, progress=False)  # from the cache, no training
    assert again.losses == first.losses and again.tokenizer.merges == first.tokenizer.merges
    assert not again.text_model.training and not again.clip.training
    assert torch.equal(again.text_model(ids), states)
    frozen = CLIPTextModel.from_pretrained(folder, subfolder="text_encoder")  # what chapter 08 can read
    assert torch.equal(frozen(ids), states)
    test = load_captioned_shapes("quick")["test"].select(range(50))
    acc = zero_shot_attributes(again.clip, again.tokenizer, images_to_tensor(test), attribute_ids(test))
    assert set(acc) == {"shape", "colour", "size", "position", "all"} and all(0 <= v <= 1 for v in acc.values())


def test_train_mini_clip_takes_another_image_size_and_caption_positives():
    ds = load_captioned_shapes("quick")
    scenes_like = {"train": ds["train"].select(range(64)).map(
        lambda r: {"caption": r["caption"] + " and a red circle"})}  # captions parse_caption cannot read
    with pytest.raises(ValueError, match="positives"):
        train_mini_clip("quick", dataset=scenes_like, cache=False, steps=1, positives="words", progress=False)
    result = train_mini_clip("quick", dataset=scenes_like, cache=False, steps=2, batch_size=16, positives="caption",
                             progress=False)
    assert result.clip.vision_model(torch.rand(2, 3, 32, 32)).shape[0] == 2
    with pytest.raises(RuntimeError):  # a 32x32 tower cannot read 64x64 images
        result.clip.vision_model(torch.rand(2, 3, 64, 64))
    big = {"train": scenes_like["train"].map(lambda r: {"image": r["image"].resize((64, 64))})}
    result = train_mini_clip("quick", dataset=big, cache=False, steps=2, batch_size=16, positives="caption",
                             image_size=64, progress=False)
    assert result.clip.vision_model(torch.rand(2, 3, 64, 64)).shape == (2, 64)
