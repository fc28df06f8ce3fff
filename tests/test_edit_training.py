"""Chapter 12c: the 9-channel inpainting UNet's start, and what one training step of each model changes.

Tiny random parts from tests/test_pipeline.py; a few steps each, on the CPU.
"""

from dataclasses import replace

import torch

from minisd.diffusion import DDPMScheduler
from minisd.edit_training import (controlnet_from, edit_scenes, finetune_decoder, inpainting_inputs,
                                  inpainting_unet_from, iou, object_map, outside_weight, random_objects, seam_band,
                                  train_controlnet, train_inpainting)
from minisd.unet import SD_NOISE_SCHEDULE
from minisd.train import config_for
from test_pipeline import minisd_pipeline

CFG = replace(config_for("quick"), unet_steps=2, unet_batch=4, warmup=1, unet_lr=1e-3)


def _setup(n=8):
    pipe = minisd_pipeline()
    objects = random_objects(n, seed=0)
    scenes, masks = edit_scenes(objects, 16, pipe.vae_scale_factor, p_other=1.0)
    with torch.no_grad():
        states = pipe.encode_prompt([f"a {a['colour']} {a['shape']}" for a in objects])
        empty = pipe.encode_prompt([""])
    return pipe, scenes, masks, states, empty


def test_finetune_decoder_trains_the_decoder_and_keeps_every_latent():
    pipe, scenes, *_ = _setup()
    vae = pipe.vae
    encoder = {k: v.clone() for k, v in vae.encoder.state_dict().items()}
    quant = vae.quant_conv.weight.clone()
    decoder = {k: v.clone() for k, v in vae.decoder.state_dict().items()}
    with torch.no_grad():
        latents = vae.encode(scenes * 2 - 1).mode()
    history = finetune_decoder(vae, scenes, steps=3, batch_size=4, progress=False)
    assert len(history["loss"]) == 3
    assert all(torch.equal(v, vae.encoder.state_dict()[k]) for k, v in encoder.items())
    assert torch.equal(quant, vae.quant_conv.weight)
    assert any(not torch.equal(v, vae.decoder.state_dict()[k]) for k, v in decoder.items())
    with torch.no_grad():
        torch.testing.assert_close(vae.encode(scenes * 2 - 1).mode(), latents)


def test_nine_channel_init_reproduces_the_four_channel_unet():
    pipe = minisd_pipeline()
    unet9 = inpainting_unet_from(pipe.unet)
    assert unet9.config.in_channels == 9 and unet9.conv_in.weight.shape[1] == 9
    assert unet9.conv_in.weight[:, 4:].abs().max() == 0
    z, text = torch.randn(2, 4, 8, 8), torch.randn(2, 5, 16)
    with torch.no_grad():
        for extra in (torch.zeros(2, 5, 8, 8), torch.randn(2, 5, 8, 8)):  # the extra channels are ignored at first
            torch.testing.assert_close(unet9(torch.cat([z, extra], 1), 37, text), pipe.unet(z, 37, text),
                                       atol=1e-6, rtol=0)
    for k, v in pipe.unet.state_dict().items():  # every other weight copied, and the old UNet untouched
        if k != "conv_in.weight":
            assert torch.equal(v, unet9.state_dict()[k]), k


def test_inpainting_step_trains_the_new_channels_and_leaves_the_source_unet():
    pipe, scenes, masks, states, empty = _setup()
    before = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    unet9 = inpainting_unet_from(pipe.unet)
    latents, mask, masked = inpainting_inputs(pipe.vae, scenes, masks, p_full=0.25)
    assert mask.shape == (8, 1, 8, 8) and latents.shape == masked.shape == (8, 4, 8, 8)
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    ema, losses = train_inpainting(unet9, latents, mask, masked, states, empty, CFG, progress=False)
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))
    assert unet9.conv_in.weight[:, 4:].abs().max() > 0  # the new channels learn
    assert all(torch.equal(v, pipe.unet.state_dict()[k]) for k, v in before.items())
    assert ema is not unet9 and not any(p.requires_grad for p in ema.parameters())


def test_outside_weight_adds_the_capped_x0_error_weight_outside_the_mask_only():
    mask = torch.zeros(3, 1, 4, 4)
    mask[:, :, :2] = 1  # the top half is repainted
    t = torch.tensor([0, 500, 999])
    alphas_cumprod = DDPMScheduler(**SD_NOISE_SCHEDULE).alphas_cumprod
    w = outside_weight(t, mask, alphas_cumprod, cap=20.0)
    alpha_bar = alphas_cumprod[t]
    inverse_snr = ((1 - alpha_bar) / alpha_bar).clamp(max=20.0)
    assert w.shape == mask.shape and torch.equal(w[:, :, :2], torch.ones(3, 1, 2, 4))  # inside: the plain loss
    torch.testing.assert_close(w[:, 0, 3, 0], 1 + inverse_snr)
    assert w[2, 0, 3, 0] == 21.0 and w[0, 0, 3, 0] < 1.01  # capped at high t, ~1 at t = 0
    uncapped = outside_weight(t, mask, alphas_cumprod, cap=1e9)
    assert torch.equal(uncapped[2, 0, 3, 0], 1 + (1 - alpha_bar[2]) / alpha_bar[2])


def _first_step_of_new_channels(conv_in_lr_scale, cap):
    pipe, scenes, masks, states, empty = _setup()
    torch.manual_seed(0)
    unet9 = inpainting_unet_from(pipe.unet)
    latents, mask, masked = inpainting_inputs(pipe.vae, scenes, masks, p_full=0.0)
    _, losses = train_inpainting(unet9, latents, mask, masked, states, empty, replace(CFG, unet_steps=1),
                                 progress=False, cap=cap, conv_in_lr_scale=conv_in_lr_scale)
    return unet9.conv_in.weight[:, 4:].detach(), losses[0]  # the new channels started at zero: what one step moved


def test_conv_in_learns_at_its_lr_scale_and_the_weight_raises_the_loss_outside():
    (plain, plain_loss), (scaled, _) = _first_step_of_new_channels(1.0, None), _first_step_of_new_channels(10.0, None)
    full = plain.abs() > 0.9 * plain.abs().max()  # Adam's first step: lr * sign(gradient) where |gradient| >> eps
    assert full.any()
    torch.testing.assert_close(scaled[full] / plain[full], torch.full_like(plain[full], 10.0), rtol=1e-3, atol=0)
    _, weighted_loss = _first_step_of_new_channels(1.0, 20.0)
    assert weighted_loss > plain_loss  # same model, same batch: weights >= 1, and > 1 outside the mask for t > 0


def test_masked_image_is_grey_under_the_mask_as_the_pipeline_makes_it():
    pipe, scenes, masks, _, _ = _setup(4)
    _, _, masked = inpainting_inputs(pipe.vae, scenes, masks, p_full=0.0)
    with torch.no_grad():  # the pipeline's masked image: image * (mask < 0.5) in [-1, 1]
        theirs = pipe.vae.encode((scenes * 2 - 1) * (masks < 0.5)).latent_dist.mode() * pipe.vae.config.scaling_factor
    torch.testing.assert_close(masked, theirs, atol=1e-5, rtol=0)


def test_controlnet_step_leaves_the_unet_frozen():
    pipe, scenes, masks, states, empty = _setup()
    controlnet = controlnet_from(pipe.unet, pipe.vae_scale_factor)
    assert controlnet.config.conditioning_channels == 1
    before_unet = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    before_cn = {k: v.clone() for k, v in controlnet.state_dict().items()}
    latents, _, _ = inpainting_inputs(pipe.vae, scenes, masks, p_full=0.0)
    ema, losses = train_controlnet(controlnet, pipe.unet, latents, object_map(scenes), states, empty, CFG,
                                   progress=False)
    assert len(losses) == 2
    assert all(torch.equal(v, pipe.unet.state_dict()[k]) for k, v in before_unet.items())
    assert not any(p.requires_grad for p in pipe.unet.parameters())
    moved = [k for k, v in controlnet.state_dict().items() if not torch.equal(v, before_cn[k])]
    assert any(k.startswith("controlnet_down_blocks") for k in moved)  # the zero convolutions leave zero
    assert any(k.startswith("controlnet_cond_embedding") for k in moved)


def test_scenes_masks_and_scores():
    objects = random_objects(20, seed=1)
    scenes, masks = edit_scenes(objects, 32, 4, p_other=1.0, seed=1)
    first, _ = edit_scenes(objects, 32, 4, p_other=0.0, seed=1)
    assert ((object_map(first) - masks).clamp_min(0)).sum() == 0  # the mask covers the object
    cells = masks[:, :, ::4, ::4].repeat_interleave(4, 2).repeat_interleave(4, 3)
    assert torch.equal(cells, masks)  # whole latent cells
    band = seam_band(masks, 2)
    assert (band * masks).sum() == 0 and band.sum() > 0
    assert torch.allclose(iou(masks, masks), torch.ones(20))
    assert iou(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4)).item() == 1.0
    assert all((a["colour"], a["shape"]) not in (("green", "triangle"), ("blue", "square"), ("yellow", "circle"))
               for a in objects)
