"""StableDiffusionPipeline: its own save / load round trip, and round trips with diffusers' pipeline in
both directions, offline.

Tiny random components; the tokenizer is trained by minisd on a few captions and written as CLIP's
vocab.json + merges.txt, which transformers' CLIPTokenizer reads. The diffusers tests skip when
diffusers or transformers is not installed; the others need neither.
"""

import inspect
import json

import pytest
import torch

import minisd.pipeline as P
from minisd.configuration import DIFFUSERS_VERSION
from minisd.sampling import DDIMScheduler
from minisd.text_encoder import CLIPTextConfig, CLIPTextModel
from minisd.tokenizer import CLIPTokenizer
from minisd.unet import UNet2DConditionModel
from minisd.vae import AutoencoderKL

CAPTIONS = ["a large red circle in the top left", "a small cyan triangle at the bottom right",
            "a white square in the center", "there is a small blue square in the top right"]
PROMPTS = ["a red circle in the top left", "a small green triangle at the bottom left"]
VAE = dict(block_out_channels=[8, 16], norm_num_groups=4, latent_channels=4, sample_size=16,
           down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
           scaling_factor=0.5)
UNET = dict(sample_size=8, in_channels=4, out_channels=4, block_out_channels=[8, 16], layers_per_block=1,
            norm_num_groups=4, cross_attention_dim=16, attention_head_dim=2,
            down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"],
            up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"])
SD_SCHEDULER = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                    set_alpha_to_one=False, steps_offset=1)


def _perturb(model, seed):
    "Random weights everywhere (fresh inits leave some zero), so every path matters."
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return model.eval()


def minisd_pipeline(seed=0):
    torch.manual_seed(seed)
    tok = CLIPTokenizer.train(CAPTIONS * 5, num_merges=40)
    te = CLIPTextModel(CLIPTextConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                      num_attention_heads=2, bos_token_id=tok.bos_token_id,
                                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id))
    return P.StableDiffusionPipeline(_perturb(AutoencoderKL(**VAE), seed + 1), _perturb(te, seed + 2), tok,
                                     _perturb(UNet2DConditionModel(**UNET), seed + 3), DDIMScheduler(**SD_SCHEDULER))


def diffusers_images(pipe, latents, guidance_scale=7.5, steps=4, negative_prompt=None, **kwargs):
    out = pipe(PROMPTS, num_inference_steps=steps, guidance_scale=guidance_scale, latents=latents.clone(),
               negative_prompt=negative_prompt, **{"output_type": "pt", **kwargs})
    return out.images


def test_minisd_pipeline_loads_in_diffusers_and_agrees(tmp_path):
    diffusers = pytest.importorskip("diffusers")
    ours = minisd_pipeline()
    ours.save_pretrained(tmp_path / "pipe")
    index = json.loads((tmp_path / "pipe" / "model_index.json").read_text())
    assert index["unet"] == ["diffusers", "UNet2DConditionModel"] and index["scheduler"][1] == "DDIMScheduler"
    theirs = diffusers.StableDiffusionPipeline.from_pretrained(tmp_path / "pipe", safety_checker=None)
    theirs.set_progress_bar_config(disable=True)
    latents = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    for scale, negative in ((7.5, None), (1.0, None), (3.0, ["a blue circle", "a white square"])):
        a = ours(PROMPTS, num_inference_steps=4, guidance_scale=scale, latents=latents.clone(),
                 negative_prompt=negative, progress=False)
        b = diffusers_images(theirs, latents, scale, negative_prompt=negative)
        assert a.shape == b.shape == (2, 3, 16, 16)
        torch.testing.assert_close(a, b, atol=1e-4, rtol=0)
    # chapter 07's other samplers and guidance rescale: diffusers' scheduler of the same class, from our config.
    # The final latents are compared (the random VAE would shrink differences); w = 1 applies no rescale, in both
    for name, rescale, spacing, scale in (("ddim", 0.7, "leading", 7.5), ("euler", 0.7, "leading", 7.5),
                                          ("euler_a", 0.7, "trailing", 7.5), ("heun", 0.7, "linspace", 7.5),
                                          ("euler", 0.7, "linspace", 1.0)):
        ours.scheduler = P.get_scheduler(name, dict(ours.scheduler.config, timestep_spacing=spacing))
        theirs.scheduler = getattr(diffusers, type(ours.scheduler).__name__).from_config(dict(ours.scheduler.config))
        seen = []
        ours(PROMPTS, num_inference_steps=4, guidance_scale=scale, latents=latents.clone(), progress=False,
             guidance_rescale=rescale, generator=torch.Generator().manual_seed(7),
             callback=lambda i, t, z: seen.append(z))
        z = diffusers_images(theirs, latents, scale, guidance_rescale=rescale, output_type="latent",
                             generator=torch.Generator().manual_seed(7))
        torch.testing.assert_close(seen[-1], z, atol=1e-4, rtol=0, msg=f"{name}, guidance_rescale {rescale}, w {scale}")
    final = {}
    for rescale in (0.0, 0.7):  # the option does something
        ours(PROMPTS, num_inference_steps=4, guidance_scale=7.5, latents=latents.clone(), progress=False,
             guidance_rescale=rescale, callback=lambda i, t, z: final.update({rescale: z}))
    assert (final[0.7] - final[0.0]).abs().max() > 1e-2


def test_diffusers_pipeline_loads_in_minisd_and_agrees(tmp_path):
    diffusers = pytest.importorskip("diffusers")
    transformers = pytest.importorskip("transformers")
    src = minisd_pipeline(seed=10)
    src.tokenizer.save_pretrained(tmp_path / "tok")  # the local vocab/merges files diffusers' tokenizer reads
    d = diffusers
    te = transformers.CLIPTextModel(transformers.CLIPTextConfig(
        vocab_size=len(src.tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
        bos_token_id=src.tokenizer.bos_token_id, eos_token_id=src.tokenizer.eos_token_id,
        pad_token_id=src.tokenizer.pad_token_id))
    theirs = d.StableDiffusionPipeline(
        vae=_perturb(d.AutoencoderKL(**VAE), 11), text_encoder=_perturb(te, 12),
        tokenizer=transformers.CLIPTokenizer.from_pretrained(tmp_path / "tok"),
        unet=_perturb(d.UNet2DConditionModel(**UNET), 13), scheduler=d.DDIMScheduler(**SD_SCHEDULER),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    theirs.set_progress_bar_config(disable=True)
    theirs.save_pretrained(tmp_path / "pipe", safe_serialization=True)
    ours = P.StableDiffusionPipeline.from_pretrained(tmp_path / "pipe")
    assert isinstance(ours.scheduler, DDIMScheduler)
    latents = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    a = ours(PROMPTS, num_inference_steps=4, guidance_scale=7.5, latents=latents.clone(), progress=False)
    torch.testing.assert_close(a, diffusers_images(theirs, latents), atol=1e-4, rtol=0)


def test_schedulers_swap_and_sample():
    pipe = minisd_pipeline()
    g = torch.Generator().manual_seed(0)
    steps = []
    for name in ("ddpm", "ddim", "dpm++", "euler", "euler_a", "heun", "HeunDiscreteScheduler"):
        pipe.scheduler = P.get_scheduler(name, pipe.scheduler.config)
        images = pipe(PROMPTS, num_inference_steps=3, guidance_scale=2.0, generator=g, progress=False,
                      callback=lambda i, t, z: steps.append(i), guidance_rescale=0.5)
        assert images.shape == (2, 3, 16, 16) and 0 <= images.min() and images.max() <= 1
        assert torch.isfinite(images).all()
    assert steps == [0, 1, 2] * 5 + [0, 1, 2, 3, 4] * 2  # Heun: 2N - 1 model calls for N steps
    assert type(P.scheduler_class("euler_a")).__name__ == "type" and P.scheduler_class("euler_a").__name__ == \
        "EulerAncestralDiscreteScheduler"
    with pytest.raises(ValueError, match="scheduler must be one of"):
        P.get_scheduler("plms", pipe.scheduler.config)


def test_bad_arguments_name_themselves():
    pipe = minisd_pipeline()
    with pytest.raises(ValueError, match="height must be a positive multiple of the VAE's factor 2; got 15"):
        pipe("a red circle", height=15, progress=False)
    with pytest.raises(ValueError, match="num_inference_steps must be an int >= 1"):
        pipe("a red circle", num_inference_steps=0, progress=False)
    with pytest.raises(ValueError, match="guidance_scale must be a finite number >= 0; got -1"):
        pipe("a red circle", guidance_scale=-1, progress=False)
    for bad in (-0.1, 1.5, float("nan"), float("inf"), True, "0.7"):
        with pytest.raises(ValueError, match="guidance_rescale must be a finite number in"):
            pipe("a red circle", guidance_rescale=bad, progress=False)
    with pytest.raises(ValueError, match="latents must have shape"):
        pipe("a red circle", latents=torch.zeros(1, 4, 4, 4), progress=False)
    with pytest.raises(FileNotFoundError, match="no model_index.json"):
        P.StableDiffusionPipeline.from_pretrained("/nonexistent")


def _images(pipe, steps=3, guidance_scale=3.0):
    return pipe(PROMPTS, num_inference_steps=steps, guidance_scale=guidance_scale,
                generator=torch.Generator().manual_seed(5), progress=False)


def test_the_pipeline_is_one_class():
    """Every method lives in a class body (the pipeline's or one of the steps it is built from), where IDEs,
    type checkers and inspect.getsource see it; nothing is attached to the class afterwards."""
    bodies = [inspect.getsource(c) for c in P.StableDiffusionPipeline.__mro__ if c.__module__ == P.__name__]
    source = "\n".join(bodies)
    for name in ("def __call__", "def save_pretrained", "def from_pretrained", "def components"):
        assert name in source, name
    assert "def __call__" in bodies[0]


def test_components_rebuild_the_same_pipeline():
    pipe = minisd_pipeline()
    parts = pipe.components
    assert list(parts) == ["vae", "text_encoder", "tokenizer", "unet", "scheduler"]
    assert all(parts[name] is getattr(pipe, name) for name in parts)
    twin = P.StableDiffusionPipeline(**parts)
    torch.testing.assert_close(_images(twin), _images(pipe), atol=0, rtol=0)


def test_save_and_load_round_trip_without_diffusers(tmp_path):
    pipe = minisd_pipeline(seed=3)
    assert pipe.save_pretrained(tmp_path / "pipe") == tmp_path / "pipe"
    index = json.loads((tmp_path / "pipe" / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline" and index["_diffusers_version"] == DIFFUSERS_VERSION
    loaded = P.StableDiffusionPipeline.from_pretrained(tmp_path / "pipe")
    assert not any(m.training for m in (loaded.vae, loaded.text_encoder, loaded.unet))  # from_pretrained: eval mode
    public = lambda config: {k: v for k, v in config.items() if not k.startswith("_")}  # noqa: E731
    assert type(loaded.scheduler) is DDIMScheduler and public(loaded.scheduler.config) == public(pipe.scheduler.config)
    torch.testing.assert_close(_images(loaded), _images(pipe), atol=0, rtol=0)
    other = P.StableDiffusionPipeline.from_pretrained(tmp_path / "pipe", scheduler="dpm++")
    assert type(other.scheduler).__name__ == "DPMSolverMultistepScheduler"
    assert other.scheduler.config.beta_schedule == "scaled_linear"  # the saved config, another sampler


def test_the_scheduler_file_is_the_one_its_class_names(tmp_path, monkeypatch):
    "from_pretrained reads the scheduler's `config_name`, not a fixed file name."
    class RenamedDDIM(DDIMScheduler):
        config_name = "renamed_config.json"

    monkeypatch.setitem(P.SCHEDULERS, "RenamedDDIM", RenamedDDIM)
    pipe = minisd_pipeline()
    pipe.scheduler = RenamedDDIM.from_config(pipe.scheduler.config)
    pipe.save_pretrained(tmp_path / "pipe")
    assert (tmp_path / "pipe" / "scheduler" / "renamed_config.json").is_file()
    assert not (tmp_path / "pipe" / "scheduler" / "scheduler_config.json").exists()
    loaded = P.StableDiffusionPipeline.from_pretrained(tmp_path / "pipe")
    assert type(loaded.scheduler) is RenamedDDIM
