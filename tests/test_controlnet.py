"""minisd.controlnet against diffusers: tiny random ControlNets saved by one library and loaded by the other.

Every model here is built offline with random weights; nothing is downloaded.
"""

import json

import pytest
import torch

from minisd import controlnet as mc
from minisd.unet import UNet2DConditionModel

# Tiny configs: one CrossAttn and one plain block; a plain block first with linear projections and two
# layers; three levels with class labels and BGR control images. The embedding halves 1, 1 and 2 times.
CONFIGS = {
    "tiny-4-8": dict(
        in_channels=4, block_out_channels=(4, 8), layers_per_block=1, norm_num_groups=2,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), cross_attention_dim=8, attention_head_dim=2,
        conditioning_embedding_out_channels=(4, 8)),
    "linear-proj": dict(
        in_channels=4, block_out_channels=(8, 16), layers_per_block=2, norm_num_groups=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), cross_attention_dim=12,
        attention_head_dim=(2, 4), use_linear_projection=True, transformer_layers_per_block=2, flip_sin_to_cos=False,
        freq_shift=1, mid_block_scale_factor=1.5, conditioning_channels=1, conditioning_embedding_out_channels=(4, 8)),
    "three-levels-bgr": dict(
        in_channels=3, block_out_channels=(8, 8, 16), layers_per_block=1, norm_num_groups=4,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"), cross_attention_dim=8,
        attention_head_dim=4, num_class_embeds=5, controlnet_conditioning_channel_order="bgr",
        conditioning_embedding_out_channels=(4, 8, 8)),
}
UNET = dict(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(4, 8), layers_per_block=1,
            norm_num_groups=2, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=8, attention_head_dim=2)


def _nudge(model, seed):
    "Random offsets on every weight, zero convolutions included, so that every weight matters."
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    return model.eval()


def _inputs(config, batch=2, text_len=5, size=8, seed=1):
    g = torch.Generator().manual_seed(seed)
    factor = 2 ** (len(config["conditioning_embedding_out_channels"]) - 1)
    sample = torch.randn(batch, config["in_channels"], size, size, generator=g)
    text = torch.randn(batch, text_len, config["cross_attention_dim"], generator=g)
    cond = torch.rand(batch, config.get("conditioning_channels", 3), size * factor, size * factor, generator=g)
    kwargs = {"class_labels": torch.arange(batch) % 5} if config.get("num_class_embeds") else {}
    return sample, text, cond, kwargs


def _compare(ref, ours, config, timesteps=(0, 37, 999), scales=(1.0, 0.5), guess_mode=False):
    sample, text, cond, kwargs = _inputs(config)
    with torch.no_grad():
        for t in timesteps:
            for scale in scales:
                want = ref(sample, t, text, cond, conditioning_scale=scale, guess_mode=guess_mode, return_dict=False,
                           **kwargs)
                got = ours(sample, t, text, cond, conditioning_scale=scale, guess_mode=guess_mode, **kwargs)
                assert isinstance(got[0], tuple) and len(got[0]) == len(want[0]) == len(ours.controlnet_down_blocks)
                for a, b in zip((*got[0], got[1]), (*want[0], want[1])):
                    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_diffusers_to_minisd(name, tmp_path):
    diffusers = pytest.importorskip("diffusers")
    config = CONFIGS[name]
    torch.manual_seed(0)
    ref = _nudge(diffusers.ControlNetModel(**config), 0)
    ref.save_pretrained(tmp_path, safe_serialization=True)
    ours = mc.ControlNetModel.from_pretrained(tmp_path)  # strict keys
    assert set(ours.state_dict()) == set(ref.state_dict())
    _compare(ref, ours, config)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_minisd_to_diffusers(name, tmp_path):
    diffusers = pytest.importorskip("diffusers")
    config = CONFIGS[name]
    ours = _nudge(mc.ControlNetModel(**config), 3)
    ours.save_pretrained(tmp_path)
    assert not list(tmp_path.glob("*.bin")), "weights must be safetensors only"
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["_class_name"] == "ControlNetModel"
    assert {"conditioning_channels", "conditioning_embedding_out_channels",
            "controlnet_conditioning_channel_order", "global_pool_conditions"} <= set(saved)
    ref, info = diffusers.ControlNetModel.from_pretrained(tmp_path, output_loading_info=True)
    assert not any(info.values()), info  # no missing, unexpected or mismatched keys
    _compare(ref.eval(), ours, config, timesteps=(5, 500))
    _compare(ref.eval(), ours, config, timesteps=(5,), guess_mode=True)


def test_from_unet_equals_diffusers():
    diffusers = pytest.importorskip("diffusers")
    theirs_unet = _nudge(diffusers.UNet2DConditionModel(**UNET), 4)
    ours_unet = UNet2DConditionModel(**UNET)
    ours_unet.load_state_dict(theirs_unet.state_dict(), strict=True)
    torch.manual_seed(1)
    want = diffusers.ControlNetModel.from_unet(theirs_unet, conditioning_embedding_out_channels=(4, 8))
    torch.manual_seed(1)
    got = mc.ControlNetModel.from_unet(ours_unet, conditioning_embedding_out_channels=(4, 8))
    assert set(got.state_dict()) == set(want.state_dict())
    for key, value in want.state_dict().items():  # the same seed gives the same fresh embedding too
        assert torch.equal(got.state_dict()[key], value), key
    for key in ("in_channels", "block_out_channels", "down_block_types", "attention_head_dim", "cross_attention_dim",
                "conditioning_embedding_out_channels", "mid_block_type", "layers_per_block"):
        plain = lambda v: list(v) if isinstance(v, (list, tuple)) else v  # noqa: E731
        assert plain(got.config[key]) == plain(want.config[key]), key


def test_from_unet_copies_the_encoder_and_zero_initialises_the_joins():
    unet = _nudge(UNet2DConditionModel(**UNET), 5)
    controlnet = mc.ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(4, 8))
    for name in ("conv_in", "time_embedding", "down_blocks", "mid_block"):
        for key, value in getattr(controlnet, name).state_dict().items():
            assert torch.equal(value, unet.state_dict()[f"{name}.{key}"]), f"{name}.{key}"
    zero = [k for k in controlnet.state_dict()
            if k.startswith(("controlnet_down_blocks", "controlnet_mid_block", "controlnet_cond_embedding.conv_out"))]
    assert len(zero) == 2 * (len(controlnet.controlnet_down_blocks) + 2)
    assert all(controlnet.state_dict()[k].abs().max() == 0 for k in zero)
    fresh = mc.ControlNetModel.from_unet(unet, load_weights_from_unet=False,
                                         conditioning_embedding_out_channels=(4, 8))
    assert not torch.equal(fresh.conv_in.weight, unet.conv_in.weight)


def test_zero_init_leaves_the_base_model_unchanged_and_still_learns():
    unet = _nudge(UNet2DConditionModel(**UNET), 6)
    controlnet = mc.ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(4, 8))
    config = dict(controlnet.config)
    sample, text, cond, _ = _inputs(config, seed=7)
    down, mid = controlnet(sample, 250, text, cond, conditioning_scale=3.0)
    assert all(r.abs().max() == 0 for r in (*down, mid))  # so the UNet's skips + residuals are its skips
    loss = sum((r * torch.randn_like(r)).sum() for r in (*down, mid))
    loss.backward()
    assert controlnet.controlnet_down_blocks[0].weight.grad.abs().max() > 0  # zero weights, non-zero gradient
    assert controlnet.controlnet_mid_block.weight.grad.abs().max() > 0
    assert all(p.grad is None or p.grad.abs().max() == 0 for p in controlnet.down_blocks.parameters())


def test_residuals_have_the_unet_skips_shapes_and_scale_linearly():
    unet = UNet2DConditionModel(**UNET).eval()
    controlnet = _nudge(mc.ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(4, 8)), 8)
    sample, text, cond, _ = _inputs(dict(controlnet.config), batch=3)
    skips = []
    hooks = [unet.conv_in.register_forward_hook(lambda m, i, out: skips.append(out))]
    hooks += [b.register_forward_hook(lambda m, i, out: skips.extend(out[1])) for b in unet.down_blocks]
    with torch.no_grad():
        unet(sample, 10, text)
        down, mid = controlnet(sample, 10, text, cond)
        half = controlnet(sample, 10, text, cond, conditioning_scale=0.5)
    for h in hooks:
        h.remove()
    assert [s.shape for s in skips] == [r.shape for r in down]
    for a, b in zip((*down, mid), (*half[0], half[1])):
        torch.testing.assert_close(b, 0.5 * a)


@pytest.mark.parametrize("bad, match", [
    (dict(down_block_types=("AttnDownBlock2D", "DownBlock2D")), "down_block_types"),
    (dict(mid_block_type="UNetMidBlock2D"), "mid_block_type"),
    (dict(controlnet_conditioning_channel_order="rbg"), "controlnet_conditioning_channel_order"),
    (dict(block_out_channels=(4, 8, 16)), "same length"),
    (dict(layers_per_block=(1, 1)), "layers_per_block"),
    (dict(attention_head_dim=(2, 2, 2)), "attention_head_dim"),
    (dict(num_attention_heads=2), "num_attention_heads"),
    (dict(conditioning_embedding_out_channels=()), "conditioning_embedding_out_channels"),
])
def test_unsupported_configs_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        mc.ControlNetModel(**{**CONFIGS["tiny-4-8"], **bad})


def test_diffusers_options_are_accepted_only_when_off():
    model = mc.ControlNetModel(**CONFIGS["tiny-4-8"], global_pool_conditions=False)
    assert model.config.global_pool_conditions is False
    with pytest.raises(NotImplementedError, match="addition_embed_type"):
        mc.ControlNetModel(**CONFIGS["tiny-4-8"], addition_embed_type="text_time")
    with pytest.raises(TypeError, match="not_a_key"):
        mc.ControlNetModel(**CONFIGS["tiny-4-8"], not_a_key=1)


def test_bad_inputs_are_refused():
    config = CONFIGS["three-levels-bgr"]
    model = mc.ControlNetModel(**config)
    sample, text, cond, kwargs = _inputs(config)
    with pytest.raises(ValueError, match="class_labels"):
        model(sample, 1, text, cond)
    with pytest.raises(ValueError, match="controlnet_cond"):
        model(sample, 1, text, cond[..., :16, :16], **kwargs)  # a control image of the latents' size, not the image's


def test_save_load_roundtrip(tmp_path):
    model = _nudge(mc.ControlNetModel(**CONFIGS["linear-proj"]), 9)
    back = mc.ControlNetModel.from_pretrained(model.save_pretrained(tmp_path / "controlnet"))
    assert dict(back.config) == dict(model.config)
    for key, value in model.state_dict().items():
        assert torch.equal(back.state_dict()[key], value)


# --- the pipeline (needs the UNet's residual arguments) ---

from test_pipeline import PROMPTS, _perturb, minisd_pipeline  # noqa: E402

CONTROL = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(5))


def _controlnet_pipeline(seed=0):
    pipe = minisd_pipeline(seed)
    cn = _perturb(mc.ControlNetModel.from_unet(pipe.unet, conditioning_embedding_out_channels=(4, 8)), seed + 7)
    return mc.StableDiffusionControlNetPipeline(**pipe.components, controlnet=cn)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("controlnet") / "pipe"
    _controlnet_pipeline().save_pretrained(path)
    return path


def _theirs(diffusers, folder):
    pipe = diffusers.StableDiffusionControlNetPipeline.from_pretrained(folder, safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.mark.parametrize("guidance, scale, control", [(7.5, 1.0, CONTROL), (1.0, 0.6, CONTROL),
                                                      (3.0, 0.8, torch.rand(2, 3, 16, 16))])
def test_minisd_folder_in_diffusers_same_images(folder, guidance, scale, control):
    diffusers = pytest.importorskip("diffusers")
    ours = mc.StableDiffusionControlNetPipeline.from_pretrained(folder)
    theirs = _theirs(diffusers, folder)
    latents = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    a = ours(PROMPTS, control, num_inference_steps=4, guidance_scale=guidance, controlnet_conditioning_scale=scale,
             latents=latents.clone(), progress=False)
    b = theirs(PROMPTS, control, num_inference_steps=4, guidance_scale=guidance, controlnet_conditioning_scale=scale,
               latents=latents.clone(), output_type="pt").images
    torch.testing.assert_close(a, b, atol=1e-4, rtol=0)
    g = lambda: torch.Generator().manual_seed(9)  # noqa: E731  the same random numbers from a seed
    a = ours(PROMPTS, control, num_inference_steps=3, guidance_scale=guidance, generator=g(), progress=False)
    b = theirs(PROMPTS, control, num_inference_steps=3, guidance_scale=guidance, generator=g(), output_type="pt").images
    torch.testing.assert_close(a, b, atol=1e-4, rtol=0)


def test_diffusers_folder_in_minisd_same_images(folder, tmp_path):
    diffusers = pytest.importorskip("diffusers")
    theirs = _theirs(diffusers, folder)
    theirs.save_pretrained(tmp_path / "back", safe_serialization=True)
    ours = mc.StableDiffusionControlNetPipeline.from_pretrained(tmp_path / "back")
    latents = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    a = ours(PROMPTS, CONTROL, num_inference_steps=4, latents=latents.clone(), progress=False)
    b = theirs(PROMPTS, CONTROL, num_inference_steps=4, latents=latents.clone(), output_type="pt").images
    torch.testing.assert_close(a, b, atol=1e-4, rtol=0)


def test_zero_scale_and_fresh_controlnet_give_the_base_pipeline(folder):
    ours = mc.StableDiffusionControlNetPipeline.from_pretrained(folder)
    base = minisd_pipeline().__class__(**{k: v for k, v in ours.components.items() if k != "controlnet"})
    latents = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(4))
    want = base(PROMPTS, num_inference_steps=3, latents=latents.clone(), progress=False)
    got = ours(PROMPTS, CONTROL, num_inference_steps=3, controlnet_conditioning_scale=0.0, latents=latents.clone(),
               progress=False)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
    fresh = mc.StableDiffusionControlNetPipeline(**{**ours.components, "controlnet": mc.ControlNetModel.from_unet(
        ours.unet, conditioning_embedding_out_channels=(4, 8))})
    torch.testing.assert_close(fresh(PROMPTS, CONTROL, num_inference_steps=3, latents=latents.clone(), progress=False),
                               want, atol=1e-6, rtol=0)
    changed = ours(PROMPTS, CONTROL, num_inference_steps=3, latents=latents.clone(), progress=False)
    assert (changed - want).abs().max() > 1e-3  # a trained (here: random) ControlNet does change the images


def test_unet_residual_arguments_match_diffusers():
    pytest.importorskip("diffusers")
    from test_unet import CONFIGS, _diffusers_unet, _inputs
    config = CONFIGS["small-32-64"]
    ref = _diffusers_unet(config)
    ours = UNet2DConditionModel(**config).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    sample, text = _inputs(config, 2, 5)
    cn = _perturb(mc.ControlNetModel.from_unet(ours, conditioning_embedding_out_channels=(4, 8)), 1)
    down, mid = cn(sample, 10, text, torch.rand(2, 3, 32, 32))
    with torch.no_grad():
        want = ref(sample, 10, text, down_block_additional_residuals=down, mid_block_additional_residual=mid).sample
        got = ours(sample, 10, text, down_block_additional_residuals=down, mid_block_additional_residual=mid)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="come together"):
        ours(sample, 10, text, down_block_additional_residuals=down)
    with pytest.raises(ValueError, match="one tensor per skip"):
        ours(sample, 10, text, down_block_additional_residuals=down[:-1], mid_block_additional_residual=mid)


def test_bad_arguments(folder):
    ours = mc.StableDiffusionControlNetPipeline.from_pretrained(folder)
    with pytest.raises(ValueError, match="channels"):
        ours(PROMPTS, torch.rand(1, 1, 16, 16), num_inference_steps=1, progress=False)
    with pytest.raises(ValueError, match="multiples"):
        ours(PROMPTS, torch.rand(1, 3, 15, 15), num_inference_steps=1, progress=False)
    with pytest.raises(ValueError, match="control images"):
        ours(PROMPTS, torch.rand(3, 3, 16, 16), num_inference_steps=1, progress=False)
    with pytest.raises(ValueError, match="controlnet_conditioning_scale"):
        ours(PROMPTS, CONTROL, num_inference_steps=1, controlnet_conditioning_scale=-1, progress=False)
    with pytest.raises(FileNotFoundError, match="controlnet"):
        mc.StableDiffusionControlNetPipeline.from_pretrained(minisd_pipeline().save_pretrained(folder.parent / "plain"))
