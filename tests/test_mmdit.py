"""minisd.mmdit: SD3Transformer2DModel against diffusers' (tiny random models, both directions, strict keys)."""

import json

import pytest
import torch

from minisd.mmdit import PatchEmbed, SD3Transformer2DModel, get_2d_sincos_pos_embed

diffusers = pytest.importorskip("diffusers")

BASE = dict(sample_size=8, patch_size=1, in_channels=4, num_layers=2, attention_head_dim=8, num_attention_heads=2,
            joint_attention_dim=12, caption_projection_dim=16, pooled_projection_dim=10, out_channels=4,
            pos_embed_max_size=10)
CONFIGS = {
    "plain": {},
    "one_layer": dict(num_layers=1),  # the only block is context_pre_only
    "qk_norm": dict(qk_norm="rms_norm"),
    "dual": dict(num_layers=3, dual_attention_layers=(0, 1), qk_norm="rms_norm"),
    "patch2_crop": dict(patch_size=2, sample_size=16, pos_embed_max_size=12, in_channels=3, out_channels=5),
    "patch2_exact": dict(patch_size=2, pos_embed_max_size=4, attention_head_dim=4, num_attention_heads=4),
}
SIZES = {"patch2_exact": (8, 8)}


def _inputs(c, size=(6, 8), seed=0):
    "Latents of `size` (smaller than the position table unless the config says otherwise), text, pooled, t."
    g = torch.Generator().manual_seed(seed)
    h, w = size
    return (torch.randn(2, c["in_channels"], h, w, generator=g),
            torch.randn(2, 5, c["joint_attention_dim"], generator=g),
            torch.randn(2, c["pooled_projection_dim"], generator=g), torch.tensor([3.0, 870.0]))


def _randomise(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.2 * torch.randn(p.shape, generator=g))
    return model


@pytest.mark.parametrize("name", CONFIGS)
def test_diffusers_to_minisd(name, tmp_path):
    c = {**BASE, **CONFIGS[name]}
    theirs = _randomise(diffusers.SD3Transformer2DModel(**c), 1).eval()
    theirs.save_pretrained(tmp_path)
    ours = SD3Transformer2DModel.from_pretrained(tmp_path)
    args = _inputs(c, SIZES.get(name, (6, 8)))
    with torch.no_grad():
        torch.testing.assert_close(ours(*args), theirs(*args).sample, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", CONFIGS)
def test_minisd_to_diffusers(name, tmp_path):
    c = {**BASE, **CONFIGS[name]}
    ours = _randomise(SD3Transformer2DModel(**c), 2).eval()
    ours.save_pretrained(tmp_path)
    theirs = diffusers.SD3Transformer2DModel.from_pretrained(tmp_path).eval()
    assert set(theirs.state_dict()) == set(ours.state_dict())
    args = _inputs(c, SIZES.get(name, (6, 8)))
    with torch.no_grad():
        torch.testing.assert_close(ours(*args), theirs(*args).sample, atol=1e-5, rtol=0)


def test_state_dict_keys_match_strictly():
    c = {**BASE, **CONFIGS["dual"]}
    ours, theirs = SD3Transformer2DModel(**c), diffusers.SD3Transformer2DModel(**c)
    theirs.load_state_dict(ours.state_dict(), strict=True)
    ours.load_state_dict(theirs.state_dict(), strict=True)


def test_round_trip(tmp_path):
    c = {**BASE, **CONFIGS["qk_norm"]}
    model = _randomise(SD3Transformer2DModel(**c), 3).train()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "diffusion_pytorch_model.safetensors").is_file()
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["_class_name"] == "SD3Transformer2DModel" and config["qk_norm"] == "rms_norm"
    back = SD3Transformer2DModel.from_pretrained(tmp_path)
    assert not back.training
    args = _inputs(c)
    with torch.no_grad():
        assert torch.equal(back(*args), model.eval()(*args))


def test_scalar_timestep_and_shape():
    model = SD3Transformer2DModel(**BASE).eval()
    x, e, p, _ = _inputs({**BASE})
    with torch.no_grad():
        a, b = model(x, e, p, 500.0), model(x, e, p, torch.tensor([500.0, 500.0]))
    assert a.shape == x.shape and torch.equal(a, b)


def test_pos_embed_table_and_crop():
    embed = PatchEmbed(height=8, width=8, patch_size=2, in_channels=1, embed_dim=8, pos_embed_max_size=6)
    table = get_2d_sincos_pos_embed(8, 6, base_size=4)
    assert torch.allclose(embed.pos_embed[0], table.float())
    crop = embed.cropped_pos_embed(4, 8)  # a 2 x 4 grid: rows 2-3, columns 1-4 of the 6 x 6 table
    assert torch.equal(crop[0].reshape(2, 4, 8), table.float().reshape(6, 6, 8)[2:4, 1:5])
    with pytest.raises(ValueError, match="pos_embed_max_size"):
        embed.cropped_pos_embed(14, 4)
    with pytest.raises(ValueError, match="patch_size"):
        embed(torch.randn(1, 1, 5, 4))


@pytest.mark.parametrize("change, key", [
    (dict(qk_norm="layer_norm"), "qk_norm"),
    (dict(caption_projection_dim=24), "caption_projection_dim"),
    (dict(dual_attention_layers=(5,)), "dual_attention_layers"),
    (dict(pos_embed_max_size=4), "pos_embed_max_size"),
    (dict(patch_size=0), "patch_size"),
])
def test_bad_config_named(change, key):
    with pytest.raises(ValueError, match=key):
        SD3Transformer2DModel(**{**BASE, **change})


def test_bad_config_type_named():
    with pytest.raises(TypeError, match="num_layers"):
        SD3Transformer2DModel(**{**BASE, "num_layers": 2.5})
