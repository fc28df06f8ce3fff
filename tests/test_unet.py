"""minisd.unet against diffusers: tiny random UNets saved by one library and loaded by the other.

Every model here is built offline with random weights; nothing is downloaded.
"""

import json

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from minisd import unet as mu  # noqa: E402

# Tiny configs in the spirit of the issue: one CrossAttn and one plain block on each side.
CONFIGS = {
    "tiny-4-8": dict(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(4, 8), layers_per_block=1,
        norm_num_groups=2, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=8, attention_head_dim=2),
    "small-32-64": dict(
        sample_size=16, in_channels=3, out_channels=3, block_out_channels=(32, 64), layers_per_block=2,
        norm_num_groups=4, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32, attention_head_dim=8),
    # SD 2.x style: linear projections, a head count per block, two transformer layers, plain block first
    "linear-proj": dict(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 16), layers_per_block=1,
        norm_num_groups=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=(12, 12),
        attention_head_dim=(2, 4), use_linear_projection=True, transformer_layers_per_block=2,
        flip_sin_to_cos=False, freq_shift=1, center_input_sample=True, mid_block_scale_factor=1.5),
}


def _diffusers_unet(config, seed=0):
    torch.manual_seed(seed)
    model = diffusers.UNet2DConditionModel(**config).eval()
    with torch.no_grad():  # random biases and norm affines too, so that every weight matters
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


def _inputs(config, batch, text_len, seed=1):
    g = torch.Generator().manual_seed(seed)
    size = config["sample_size"]
    cross = config["cross_attention_dim"]
    cross = cross if isinstance(cross, int) else cross[0]
    sample = torch.randn(batch, config["in_channels"], size, size, generator=g)
    text = torch.randn(batch, text_len, cross, generator=g)
    return sample, text


def _compare(ref, ours, config, timesteps=(0, 1, 37, 999), batches=(1, 3), text_lens=(1, 5, 77)):
    with torch.no_grad():
        for batch in batches:
            for text_len in text_lens:
                sample, text = _inputs(config, batch, text_len, seed=batch * 100 + text_len)
                for t in timesteps:
                    want = ref(sample, t, encoder_hidden_states=text).sample
                    got = ours(sample, t, encoder_hidden_states=text)
                    assert isinstance(got, torch.Tensor)
                    assert got.shape == sample.shape[:1] + want.shape[1:]
                    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_diffusers_to_minisd(name, tmp_path):
    config = CONFIGS[name]
    ref = _diffusers_unet(config)
    ref.save_pretrained(tmp_path, safe_serialization=True)
    ours = mu.UNet2DConditionModel.from_pretrained(tmp_path)  # strict keys
    assert set(ours.state_dict()) == set(ref.state_dict())
    _compare(ref, ours, config)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_minisd_to_diffusers(name, tmp_path):
    config = CONFIGS[name]
    torch.manual_seed(3)
    ours = mu.UNet2DConditionModel(**config).eval()
    with torch.no_grad():
        for p in ours.parameters():
            p.add_(0.1 * torch.randn_like(p))
    ours.save_pretrained(tmp_path)
    assert not list(tmp_path.glob("*.bin")), "weights must be safetensors only"
    ref, info = diffusers.UNet2DConditionModel.from_pretrained(tmp_path, output_loading_info=True)
    assert not any(info.values()), info  # no missing, unexpected or mismatched keys
    _compare(ref.eval(), ours, config, timesteps=(5, 500), batches=(2,), text_lens=(3,))


def test_timestep_forms_and_fractional_steps():
    config = CONFIGS["tiny-4-8"]
    ref = _diffusers_unet(config)
    ours = mu.UNet2DConditionModel(**config).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    sample, text = _inputs(config, 3, 4)
    with torch.no_grad():
        for t in (torch.tensor(10), torch.tensor([10, 200, 999]), 12.5, torch.tensor([0.5, 1.5, 999.0])):
            want = ref(sample, t, encoder_hidden_states=text).sample
            torch.testing.assert_close(ours(sample, t, text), want, atol=1e-5, rtol=1e-5)


def test_encoder_attention_mask_and_odd_sizes():
    config = CONFIGS["small-32-64"]
    ref = _diffusers_unet(config)
    ours = mu.UNet2DConditionModel(**config).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    g = torch.Generator().manual_seed(5)
    sample = torch.randn(2, 3, 9, 11, generator=g)  # odd sides: the up blocks get the skips' sizes
    text = torch.randn(2, 6, 32, generator=g)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1]])
    with torch.no_grad():
        want = ref(sample, 50, encoder_hidden_states=text, encoder_attention_mask=mask).sample
        got = ours(sample, 50, text, encoder_attention_mask=mask)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
        # the mask matters: the hidden tokens no longer change the output
        text2 = text.clone()
        text2[0, 3:] = torch.randn(3, 32, generator=g)
        torch.testing.assert_close(ours(sample, 50, text2, encoder_attention_mask=mask)[0], got[0])
        assert not torch.allclose(ours(sample, 50, text2)[0], ours(sample, 50, text)[0])


def test_class_conditioning_matches_diffusers():
    config = dict(CONFIGS["tiny-4-8"], num_class_embeds=5)
    ref = _diffusers_unet(config)
    ours = mu.UNet2DConditionModel(**config).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    sample, text = _inputs(config, 2, 3)
    labels = torch.tensor([0, 4])
    with torch.no_grad():
        want = ref(sample, 7, encoder_hidden_states=text, class_labels=labels).sample
        torch.testing.assert_close(ours(sample, 7, text, class_labels=labels), want, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="class_labels"):
        ours(sample, 7, text)


def test_plain_unet_without_text():
    config = dict(CONFIGS["tiny-4-8"], down_block_types=("DownBlock2D", "DownBlock2D"),
                  up_block_types=("UpBlock2D", "UpBlock2D"), mid_block_type=None)
    ref = _diffusers_unet(config)
    ours = mu.UNet2DConditionModel(**config).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    sample, text = _inputs(config, 2, 3)
    with torch.no_grad():
        torch.testing.assert_close(ours(sample, 3), ref(sample, 3, encoder_hidden_states=text).sample,
                                   atol=1e-5, rtol=1e-5)


def test_timestep_embedding_matches_diffusers():
    from diffusers.models.embeddings import get_timestep_embedding
    t = torch.tensor([0.0, 1.0, 17.5, 999.0])
    for dim in (4, 7, 32):
        for flip in (False, True):
            for shift in (0, 1):
                torch.testing.assert_close(mu.get_timestep_embedding(t, dim, flip, shift),
                                           get_timestep_embedding(t, dim, flip, shift), atol=1e-6, rtol=0)


def test_attention_head_dim_is_the_head_count():
    model = mu.UNet2DConditionModel(**CONFIGS["small-32-64"])
    attn = model.down_blocks[0].attentions[0].transformer_blocks[0].attn1
    assert (attn.heads, attn.dim_head) == (8, 32 // 8)
    with pytest.raises(ValueError, match="num_attention_heads"):
        mu.UNet2DConditionModel(**CONFIGS["small-32-64"], num_attention_heads=8)


@pytest.mark.parametrize("bad, match", [
    (dict(down_block_types=("AttnDownBlock2D", "DownBlock2D")), "down_block_types"),
    (dict(up_block_types=("UpBlock2D", "SimpleCrossAttnUpBlock2D")), "up_block_types"),
    (dict(mid_block_type="UNetMidBlock2DSimpleCrossAttn"), "mid_block_type"),
    (dict(act_fn="tanh"), "act_fn"),
    (dict(block_out_channels=(4, 8, 16)), "same length"),
    (dict(layers_per_block=(1, 1, 1)), "layers_per_block"),
])
def test_unsupported_configs_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        mu.UNet2DConditionModel(**{**CONFIGS["tiny-4-8"], **bad})


def test_diffusers_options_are_accepted_only_when_off():
    assert mu.UNet2DConditionModel(**CONFIGS["tiny-4-8"], addition_embed_type=None).config.addition_embed_type is None
    with pytest.raises(NotImplementedError, match="addition_embed_type"):
        mu.UNet2DConditionModel(**{**CONFIGS["tiny-4-8"], "addition_embed_type": "text_time"})


def test_unknown_key_and_missing_inputs(tmp_path):
    with pytest.raises(TypeError, match="not_a_key"):
        mu.UNet2DConditionModel(**CONFIGS["tiny-4-8"], not_a_key=1)
    model = mu.UNet2DConditionModel(**CONFIGS["tiny-4-8"])
    with pytest.raises(ValueError, match="encoder_hidden_states"):
        model(torch.randn(1, 4, 8, 8), 1)
    with pytest.raises(FileNotFoundError, match="safetensors"):
        (tmp_path / "config.json").write_text(json.dumps(CONFIGS["tiny-4-8"]))
        mu.UNet2DConditionModel.from_pretrained(tmp_path)


def test_save_load_roundtrip_keeps_config_and_weights(tmp_path):
    model = mu.UNet2DConditionModel(**CONFIGS["linear-proj"]).eval()
    model.save_pretrained(tmp_path / "unet")
    again = mu.UNet2DConditionModel.from_pretrained(tmp_path, subfolder="unet")
    assert again.config == model.config
    assert again.config.block_out_channels == [8, 16]
    for k, v in model.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), k
