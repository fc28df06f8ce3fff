"""Chapter 12a's editing pipelines: the same images as diffusers' img2img and (4-channel) inpainting pipelines on
the same folder, the edge cases (strength 0 and 1, empty and full masks), DDIM inversion, and the CLI's errors.

Tiny random components from tests/test_pipeline.py; the diffusers tests skip when diffusers is not installed.
"""

import numpy as np
import pytest
import torch
from PIL import Image

from minisd import __main__ as cli
from minisd.editing import (StableDiffusionImg2ImgPipeline, StableDiffusionInpaintPipeline, ddim_invert,
                            preprocess_mask)
from test_pipeline import PROMPTS, minisd_pipeline

IMAGE = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(5))
MASK = torch.zeros(1, 1, 16, 16)
MASK[..., 4:12, 2:9] = 0.8  # binarised to 1


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("editing") / "pipe"
    minisd_pipeline().save_pretrained(path)
    return path


def _g(seed=0):
    return torch.Generator().manual_seed(seed)


def _load(diffusers, cls, folder, scheduler):
    pipe = getattr(diffusers, cls).from_pretrained(folder, safety_checker=None)
    pipe.scheduler = getattr(diffusers, type(scheduler).__name__).from_config(dict(scheduler.config))
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.mark.parametrize("scheduler", ["ddim", "euler_a", "ddpm"])
def test_img2img_equals_diffusers(folder, scheduler):
    diffusers = pytest.importorskip("diffusers")
    ours = StableDiffusionImg2ImgPipeline.from_pretrained(folder, scheduler=scheduler)
    theirs = _load(diffusers, "StableDiffusionImg2ImgPipeline", folder, ours.scheduler)
    for strength, scale in ((0.6, 7.5), (1.0, 1.0), (0.3, 3.0)):
        kwargs = dict(strength=strength, num_inference_steps=5, guidance_scale=scale)
        a = ours(PROMPTS, IMAGE, generator=_g(), progress=False, **kwargs)
        b = theirs(PROMPTS, IMAGE, generator=_g(), output_type="pt", **kwargs).images
        assert a.shape == b.shape == (2, 3, 16, 16)
        torch.testing.assert_close(a, b, atol=1e-4, rtol=0)
        if scheduler != "ddim":  # the random VAE shrinks differences: compare the latents too
            a = ours(PROMPTS, IMAGE, generator=_g(), progress=False, output_type="latent", **kwargs)
            b = theirs(PROMPTS, IMAGE, generator=_g(), output_type="latent", **kwargs).images
            torch.testing.assert_close(a, b, atol=1e-4, rtol=0)


@pytest.mark.parametrize("scheduler", ["ddim", "euler_a"])
def test_inpaint_4_channel_equals_diffusers(folder, scheduler):
    diffusers = pytest.importorskip("diffusers")
    ours = StableDiffusionInpaintPipeline.from_pretrained(folder, scheduler=scheduler)
    theirs = _load(diffusers, "StableDiffusionInpaintPipeline", folder, ours.scheduler)
    for strength, scale in ((1.0, 7.5), (0.6, 1.0), (0.75, 3.0)):
        kwargs = dict(strength=strength, num_inference_steps=5, guidance_scale=scale)
        for output_type in ("pt", "latent"):
            a = ours(PROMPTS, IMAGE, MASK, generator=_g(), progress=False, output_type=output_type, **kwargs)
            b = theirs(PROMPTS, IMAGE, MASK, generator=_g(), output_type=output_type, height=16, width=16,
                       **kwargs).images
            torch.testing.assert_close(a, b, atol=1e-4, rtol=0)


@pytest.fixture(scope="module")
def folder_9(tmp_path_factory):
    "The tiny pipeline with a random 9-channel UNet (latents + mask + masked-image latents), as SD-inpainting's."
    path = tmp_path_factory.mktemp("editing9") / "pipe"
    pipe = minisd_pipeline()
    torch.manual_seed(7)
    unet = type(pipe.unet).from_config(pipe.unet.config, in_channels=9)
    with torch.no_grad():  # random but not small: every input channel matters
        for p in unet.parameters():
            p.add_(0.05 * torch.randn_like(p))
    type(pipe)(**{**pipe.components, "unet": unet}).save_pretrained(path)
    return path


@pytest.mark.parametrize("scheduler", ["ddim", "euler_a"])
def test_inpaint_9_channel_equals_diffusers(folder_9, scheduler):
    diffusers = pytest.importorskip("diffusers")
    ours = StableDiffusionInpaintPipeline.from_pretrained(folder_9, scheduler=scheduler)
    assert ours.unet.config.in_channels == 9
    theirs = _load(diffusers, "StableDiffusionInpaintPipeline", folder_9, ours.scheduler)
    for strength, scale in ((1.0, 7.5), (0.6, 1.0), (0.75, 3.0)):  # strength 1 draws no image latents
        kwargs = dict(strength=strength, num_inference_steps=5, guidance_scale=scale)
        for output_type in ("pt", "latent"):
            a = ours(PROMPTS, IMAGE, MASK, generator=_g(), progress=False, output_type=output_type, **kwargs)
            b = theirs(PROMPTS, IMAGE, MASK, generator=_g(), output_type=output_type, height=16, width=16,
                       **kwargs).images
            torch.testing.assert_close(a, b, atol=1e-4, rtol=0)


def test_inpaint_9_channel_does_not_blend(folder_9):
    "Without blending, the kept region is the UNet's own work: it differs from the image's latents there."
    pipe = StableDiffusionInpaintPipeline.from_pretrained(folder_9)
    kwargs = dict(strength=0.7, num_inference_steps=5, guidance_scale=3.0, progress=False, output_type="latent")
    keep = pipe(PROMPTS, IMAGE, torch.zeros(16, 16), generator=_g(), **kwargs)
    with torch.no_grad():
        latents = pipe.vae.encode(IMAGE * 2 - 1).sample(_g()) * pipe.vae.config.scaling_factor
    assert (keep - latents).abs().max() > 1e-3


def test_strength_zero_gives_the_image_back_through_the_vae(folder):
    pipe = StableDiffusionImg2ImgPipeline.from_pretrained(folder)
    out = pipe(PROMPTS[:1], IMAGE, strength=0.0, num_inference_steps=5, generator=_g(), progress=False)
    with torch.no_grad():
        expected = ((pipe.vae.decode(pipe.vae.encode(IMAGE * 2 - 1).sample(_g())) + 1) / 2).clamp(0, 1)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    inpaint = StableDiffusionInpaintPipeline(**pipe.components)
    torch.testing.assert_close(inpaint(PROMPTS[:1], IMAGE, MASK, strength=0.0, num_inference_steps=5,
                                       generator=_g(), progress=False), expected, atol=1e-5, rtol=0)


def test_strength_one_runs_every_step_and_forgets_the_image(folder):
    pipe = StableDiffusionImg2ImgPipeline.from_pretrained(folder)
    pipe.scheduler.set_timesteps(5)
    timesteps, n = pipe.get_timesteps(5, 1.0)
    assert n == 5 and torch.equal(timesteps, pipe.scheduler.timesteps)
    # DDIM's first timestep keeps sqrt(abar) of the image: tiny, but not zero; the text-to-image pipeline starts
    # from the noise alone, so the two differ, and by little
    steps = dict(num_inference_steps=5, guidance_scale=1.0, progress=False)
    a = pipe(PROMPTS[:1], IMAGE, strength=1.0, generator=_g(), output_type="latent", **steps)
    b = pipe(PROMPTS[:1], torch.zeros_like(IMAGE) + 0.5, strength=1.0, generator=_g(), output_type="latent", **steps)
    assert (a - b).abs().max() < 0.5 * a.abs().max()


def test_masks_all_zero_and_all_one(folder):
    pipe = StableDiffusionInpaintPipeline.from_pretrained(folder)
    kwargs = dict(strength=0.7, num_inference_steps=5, guidance_scale=3.0, progress=False, output_type="latent")
    keep = pipe(PROMPTS, IMAGE, torch.zeros(16, 16), generator=_g(), **kwargs)
    with torch.no_grad():  # an all-black mask keeps everything: the image's own latents come back
        latents = pipe.vae.encode(IMAGE * 2 - 1).sample(_g()) * pipe.vae.config.scaling_factor
    torch.testing.assert_close(keep, latents.expand_as(keep), atol=1e-5, rtol=0)
    # an all-white mask repaints everything: image to image with the same random numbers
    full = pipe(PROMPTS, IMAGE, torch.ones(16, 16), generator=_g(), **kwargs)
    img2img = StableDiffusionImg2ImgPipeline(**pipe.components)(PROMPTS, IMAGE, generator=_g(), **kwargs)
    torch.testing.assert_close(full, img2img, atol=1e-5, rtol=0)


def test_bad_inputs_are_refused(folder):
    pipe = StableDiffusionInpaintPipeline.from_pretrained(folder)
    for strength in (-0.1, 1.5, True):
        with pytest.raises(ValueError, match="strength"):
            pipe(PROMPTS, IMAGE, MASK, strength=strength, progress=False)
    with pytest.raises(ValueError, match="mask is 8x8 but the image is 16x16"):
        pipe(PROMPTS, IMAGE, torch.ones(8, 8), progress=False)
    with pytest.raises(ValueError, match="multiples of 2"):  # the tiny VAE halves once
        pipe(PROMPTS, torch.rand(1, 3, 15, 16), torch.ones(15, 16), progress=False)
    assert preprocess_mask(torch.tensor([[0.49, 0.5]]), (1, 2)).tolist() == [[[[0.0, 1.0]]]]
    pipe.unet.register_to_config(in_channels=5)  # neither a 4- nor a 9-channel UNet: refused, said clearly
    with pytest.raises(ValueError, match="4 input channels .* or 9"):
        pipe(PROMPTS, IMAGE, MASK, progress=False)


def test_ddim_inversion_reconstructs_with_many_steps(folder):
    pipe = StableDiffusionImg2ImgPipeline.from_pretrained(folder)
    with torch.no_grad():
        z0 = pipe.vae.encode(IMAGE * 2 - 1).mode() * pipe.vae.config.scaling_factor
    errors = []
    for steps in (5, 50):
        z_T = ddim_invert(pipe, IMAGE, PROMPTS[0], steps)
        pipe.scheduler.set_timesteps(steps)
        z = z_T
        for t in pipe.scheduler.timesteps:  # DDIM back down with the same prompt
            z = pipe.scheduler.step(pipe.unet(z, t, pipe.encode_prompt(PROMPTS[:1])), t, z)
        errors.append((z - z0).abs().mean().item())
    assert errors[1] < errors[0] / 3 and errors[1] < 0.2 * z0.abs().mean().item()  # a random UNet: rough


def _png(path, array):
    Image.fromarray(array).save(path)
    return str(path)


def test_cli_edits_and_refuses_bad_arguments(folder, tmp_path, capsys):
    image = _png(tmp_path / "in.png", (np.random.default_rng(0).random((16, 16, 3)) * 255).astype(np.uint8))
    mask = _png(tmp_path / "mask.png", np.pad(np.full((8, 8), 255, np.uint8), 4))
    common = ["--prompt", PROMPTS[0], "--steps", "3"]
    assert cli.main(["edit", "img2img", str(folder), "--image", image, "--strength", "0.5",
                     "--out", str(tmp_path / "a.png"), *common]) == 0
    assert Image.open(tmp_path / "a.png").size == (16, 16)
    assert cli.main(["edit", "inpaint", str(folder), "--image", image, "--mask", mask,
                     "--out", str(tmp_path / "b.png"), *common]) == 0
    capsys.readouterr()
    small = _png(tmp_path / "small.png", np.zeros((8, 8), np.uint8))
    (tmp_path / "bad.png").write_text("not a picture")
    for args, expected in (
        (["img2img", "--image", str(tmp_path / "missing.png")], "--image"),
        (["img2img", "--image", str(tmp_path / "bad.png")], "--image"),
        (["inpaint", "--image", image, "--mask", small], "--mask"),
        (["inpaint", "--image", image], "--mask"),
        (["img2img", "--image", image, "--strength", "1.5"], "--strength"),
        (["img2img", "--image", image, "--strength", "-0.2"], "--strength"),
    ):
        assert cli.main(["edit", args[0], str(folder), *args[1:], *common]) == 2, args
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and expected in err, (args, err)
