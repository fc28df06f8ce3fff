"""StableDiffusion3Pipeline and CLIPTextModelWithProjection: transformers' and diffusers' files and numbers.

Tiny random components, offline. The text encoder is checked against transformers' class of the same name
(strict keys, both directions, through the files); the pipeline against diffusers' StableDiffusion3Pipeline
without T5 (text_encoder_3=None), both directions: the folder minisd writes is read by diffusers and the
folder diffusers writes by minisd, and the images from the same latents agree to 1e-4. The diffusers and
transformers tests skip when those libraries are not installed; the others need neither.
"""

import json

import pytest
import torch

from minisd.flow import FlowMatchEulerDiscreteScheduler
from minisd.mmdit import SD3Transformer2DModel
from minisd.sd3_pipeline import CLIPTextModelWithProjection, StableDiffusion3Pipeline
from minisd.tokenizer import CLIPTokenizer
from minisd.vae import AutoencoderKL
from test_pipeline import _perturb

CAPTIONS = ["a large red circle in the top left", "a small cyan triangle at the bottom right",
            "a white square in the center", "there is a small blue square in the top right"]
PROMPTS = ["a red circle in the top left", "a small green triangle at the bottom left"]
CLIP = dict(vocab_size=50, hidden_size=16, intermediate_size=32, projection_dim=12, num_hidden_layers=3,
            num_attention_heads=2, max_position_embeddings=10, bos_token_id=48, eos_token_id=49, pad_token_id=49)
VAE = dict(block_out_channels=[8, 16], norm_num_groups=4, latent_channels=4, sample_size=16,
           down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
           scaling_factor=1.5, shift_factor=0.1)
MMDIT = dict(sample_size=8, patch_size=2, in_channels=4, num_layers=2, attention_head_dim=8, num_attention_heads=2,
             joint_attention_dim=48, caption_projection_dim=16, pooled_projection_dim=16 + 24, out_channels=4,
             pos_embed_max_size=8, qk_norm="rms_norm")
WIDTHS = (16, 24)  # the two CLIP encoders' hidden sizes (= projection dims): 40 features, padded to 48


def _clip_config(tok, width):
    return dict(vocab_size=len(tok), hidden_size=width, intermediate_size=2 * width, projection_dim=width,
                num_hidden_layers=2, num_attention_heads=2, bos_token_id=tok.bos_token_id,
                eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)


def _tokenizer():
    return CLIPTokenizer.train(CAPTIONS * 5, num_merges=40)


def minisd_pipeline(seed=0, scheduler=None):
    torch.manual_seed(seed)
    tok = _tokenizer()
    encoders = [_perturb(CLIPTextModelWithProjection(**_clip_config(tok, w)), seed + i)
                for i, w in enumerate(WIDTHS)]
    return StableDiffusion3Pipeline(_perturb(SD3Transformer2DModel(**MMDIT), seed + 3),
                                    scheduler or FlowMatchEulerDiscreteScheduler(shift=3.0),
                                    _perturb(AutoencoderKL(**VAE), seed + 4), encoders[0], tok, encoders[1], tok)


def _ids(n=3):
    ids = torch.randint(0, 48, (n, 10), generator=torch.Generator().manual_seed(0))
    ids[:, 0], ids[:, -1] = 48, 49
    return ids


def _assert_same_encoder(ours, theirs, ids, mask=None):
    with torch.no_grad():
        a, b = ours(ids, mask), theirs(ids, attention_mask=mask, output_hidden_states=True)
    assert len(a.hidden_states) == len(b.hidden_states) == CLIP["num_hidden_layers"] + 1
    torch.testing.assert_close(a.text_embeds, b.text_embeds, atol=1e-5, rtol=0)
    torch.testing.assert_close(a.last_hidden_state, b.last_hidden_state, atol=1e-5, rtol=0)
    for x, y in zip(a.hidden_states, b.hidden_states, strict=True):
        torch.testing.assert_close(x, y, atol=1e-5, rtol=0)
    torch.testing.assert_close(a[0], b[0], atol=1e-5, rtol=0)  # out[0] is the pooled projection, as diffusers reads


def test_clip_with_projection_matches_transformers_both_ways(tmp_path):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    theirs = _perturb(transformers.CLIPTextModelWithProjection(transformers.CLIPTextConfig(**CLIP)), 1)
    ours = CLIPTextModelWithProjection(**CLIP).eval()
    assert set(ours.state_dict()) == set(theirs.state_dict())
    assert "text_projection.weight" in ours.state_dict() and ours.text_projection.bias is None
    ours.load_state_dict(theirs.state_dict(), strict=True)
    mask = torch.ones(3, 10, dtype=torch.long)
    mask[0, 6:] = 0
    for m in (None, mask):
        _assert_same_encoder(ours, theirs, _ids(), m)
    theirs.save_pretrained(tmp_path / "theirs")  # transformers' files -> minisd
    _assert_same_encoder(CLIPTextModelWithProjection.from_pretrained(tmp_path / "theirs"), theirs, _ids())
    mine = _perturb(CLIPTextModelWithProjection(**CLIP), 2)
    mine.save_pretrained(tmp_path / "ours")  # minisd's files -> transformers
    config = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert config["architectures"] == ["CLIPTextModelWithProjection"] and config["projection_dim"] == 12
    loaded = transformers.CLIPTextModelWithProjection.from_pretrained(tmp_path / "ours").eval()
    _assert_same_encoder(mine, loaded, _ids())


def test_clip_with_projection_files_and_config_policy(tmp_path):
    enc = _perturb(CLIPTextModelWithProjection(**CLIP), 3)
    enc.save_pretrained(tmp_path / "enc")
    back = CLIPTextModelWithProjection.from_pretrained(tmp_path / "enc")
    with torch.no_grad():
        torch.testing.assert_close(back(_ids()).text_embeds, enc(_ids()).text_embeds, atol=0, rtol=0)
    assert len(enc(_ids()).hidden_states) == CLIP["num_hidden_layers"] + 1
    with pytest.raises(TypeError, match="no_such_key"):
        CLIPTextModelWithProjection(**CLIP, no_such_key=1)
    enc.register_to_config(layer_norm_eps=1e-6)
    assert enc.config.layer_norm_eps == 1e-6 and enc.text_model.config.layer_norm_eps == 1e-6
    other = CLIPTextModelWithProjection(**{**CLIP, "projection_dim": 8})
    other.save_pretrained(tmp_path / "other")
    (tmp_path / "enc" / "config.json").write_text((tmp_path / "other" / "config.json").read_text())
    with pytest.raises(ValueError, match="text_projection.weight"):  # the weights do not fit the config
        CLIPTextModelWithProjection.from_pretrained(tmp_path / "enc")


def test_save_and_load_round_trip_and_model_index(tmp_path):
    pipe = minisd_pipeline()
    pipe.save_pretrained(tmp_path / "pipe")
    index = json.loads((tmp_path / "pipe" / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusion3Pipeline"
    assert index["transformer"] == ["diffusers", "SD3Transformer2DModel"]
    assert index["scheduler"] == ["diffusers", "FlowMatchEulerDiscreteScheduler"]
    assert index["vae"] == ["diffusers", "AutoencoderKL"]
    for n in ("", "_2"):
        assert index[f"text_encoder{n}"] == ["transformers", "CLIPTextModelWithProjection"]
        assert index[f"tokenizer{n}"] == ["transformers", "CLIPTokenizer"]
    assert index["text_encoder_3"] == index["tokenizer_3"] == [None, None]
    assert {p.name for p in (tmp_path / "pipe").iterdir() if p.is_dir()} == {
        "transformer", "scheduler", "vae", "text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2"}
    back = StableDiffusion3Pipeline.from_pretrained(tmp_path / "pipe")
    latents = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    a = pipe(PROMPTS, num_inference_steps=3, guidance_scale=4.0, latents=latents.clone(), progress=False)
    b = back(PROMPTS, num_inference_steps=3, guidance_scale=4.0, latents=latents.clone(), progress=False)
    assert a.shape == (2, 3, 16, 16) and torch.equal(a, b)


def test_encode_prompt_layout():
    pipe = minisd_pipeline()
    embeds, pooled = pipe.encode_prompt(PROMPTS, max_sequence_length=20)
    assert embeds.shape == (2, 77 + 20, 48) and pooled.shape == (2, 40)
    assert not embeds[:, 77:].any() and not embeds[:, :, 40:].any()  # T5's rows and the padding are zeros
    ids = pipe.tokenizer(PROMPTS, padding="max_length", truncation=True)
    with torch.no_grad():
        first, second = pipe.text_encoder(ids), pipe.text_encoder_2(ids)
    torch.testing.assert_close(embeds[:, :77, :16], first.hidden_states[-2], atol=0, rtol=0)
    torch.testing.assert_close(embeds[:, :77, 16:40], second.hidden_states[-2], atol=0, rtol=0)
    torch.testing.assert_close(pooled, torch.cat([first.text_embeds, second.text_embeds], -1), atol=0, rtol=0)


def _their_images(pipe, latents, **kwargs):
    return pipe(PROMPTS, latents=latents.clone(), **{"output_type": "pt", "num_inference_steps": 4, **kwargs}).images


def test_minisd_pipeline_loads_in_diffusers_and_agrees(tmp_path):
    diffusers = pytest.importorskip("diffusers")
    transformers = pytest.importorskip("transformers")
    ours = minisd_pipeline()
    ours.save_pretrained(tmp_path / "pipe")
    for name in ("tokenizer", "tokenizer_2"):  # the minisd tokenizer folders are transformers' CLIPTokenizer's
        theirs_tok = transformers.CLIPTokenizer.from_pretrained(tmp_path / "pipe" / name)
        assert theirs_tok(PROMPTS[0]).input_ids == ours.tokenizer.encode(PROMPTS[0])
    theirs = diffusers.StableDiffusion3Pipeline.from_pretrained(tmp_path / "pipe", text_encoder_3=None,
                                                               tokenizer_3=None)
    theirs.set_progress_bar_config(disable=True)
    e, _, p, _ = theirs.encode_prompt(PROMPTS, None, None, do_classifier_free_guidance=False, device="cpu")
    embeds, pooled = ours.encode_prompt(PROMPTS)
    assert e.shape == embeds.shape == (2, 333, 48)
    torch.testing.assert_close(embeds, e, atol=1e-5, rtol=0)
    torch.testing.assert_close(pooled, p, atol=1e-5, rtol=0)
    latents = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    for scale, negative, seq in ((7.0, None, 256), (1.0, None, 256), (3.0, ["a blue circle", "a white square"], 32)):
        a = ours(PROMPTS, num_inference_steps=4, guidance_scale=scale, latents=latents.clone(),
                 negative_prompt=negative, max_sequence_length=seq, progress=False)
        b = _their_images(theirs, latents, guidance_scale=scale, negative_prompt=negative, max_sequence_length=seq)
        assert a.shape == b.shape == (2, 3, 16, 16)
        torch.testing.assert_close(a, b, atol=1e-4, rtol=0, msg=f"guidance {scale}, negative {negative}")
    # the scheduler's dynamic shift (mu from the number of image tokens), compared on the final latents
    config = dict(use_dynamic_shifting=True, base_image_seq_len=4, max_image_seq_len=64, base_shift=0.3, max_shift=1.2)
    ours.scheduler = FlowMatchEulerDiscreteScheduler(**config)
    theirs.scheduler = diffusers.FlowMatchEulerDiscreteScheduler(**config)
    a = ours(PROMPTS, num_inference_steps=5, guidance_scale=5.0, latents=latents.clone(), output_type="latent",
             progress=False)
    b = _their_images(theirs, latents, num_inference_steps=5, guidance_scale=5.0, output_type="latent")
    torch.testing.assert_close(a, b, atol=1e-4, rtol=0)
    # given sigmas (two even steps instead of the default spacing's 1 -> 1/1000 -> 0), shifted as diffusers shifts them
    ours.scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    theirs.scheduler = diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0)
    a = ours(PROMPTS, guidance_scale=5.0, latents=latents.clone(), output_type="latent", sigmas=[1.0, 0.5],
             progress=False)
    b = _their_images(theirs, latents, guidance_scale=5.0, output_type="latent", sigmas=[1.0, 0.5])
    torch.testing.assert_close(ours.scheduler.sigmas, theirs.scheduler.sigmas)
    assert len(ours.scheduler.sigmas) == 3 and ours.scheduler.sigmas[1] == 0.75  # 3 x 0.5 / (1 + 2 x 0.5)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=0)


def test_diffusers_pipeline_loads_in_minisd_and_agrees(tmp_path):
    diffusers = pytest.importorskip("diffusers")
    transformers = pytest.importorskip("transformers")
    tok = _tokenizer()
    tok.save_pretrained(tmp_path / "tok")
    their_tok = transformers.CLIPTokenizer.from_pretrained(tmp_path / "tok")
    encoders = [_perturb(transformers.CLIPTextModelWithProjection(transformers.CLIPTextConfig(**_clip_config(tok, w))),
                         11 + i) for i, w in enumerate(WIDTHS)]
    theirs = diffusers.StableDiffusion3Pipeline(
        transformer=_perturb(diffusers.SD3Transformer2DModel(**MMDIT), 13),
        scheduler=diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=_perturb(diffusers.AutoencoderKL(**VAE), 14),
        text_encoder=encoders[0], tokenizer=their_tok, text_encoder_2=encoders[1], tokenizer_2=their_tok,
        text_encoder_3=None, tokenizer_3=None)
    theirs.set_progress_bar_config(disable=True)
    theirs.save_pretrained(tmp_path / "pipe", safe_serialization=True)
    ours = StableDiffusion3Pipeline.from_pretrained(tmp_path / "pipe")
    assert isinstance(ours.text_encoder_2, CLIPTextModelWithProjection)
    latents = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    for scale in (1.0, 6.0):
        a = ours(PROMPTS, num_inference_steps=4, guidance_scale=scale, latents=latents.clone(), progress=False)
        torch.testing.assert_close(a, _their_images(theirs, latents, guidance_scale=scale), atol=1e-4, rtol=0)


def test_errors(tmp_path):
    pipe = minisd_pipeline()
    parts = pipe.components
    with pytest.raises(NotImplementedError, match="T5"):
        StableDiffusion3Pipeline(**parts, text_encoder_3=object())
    with pytest.raises(ValueError, match="shift_factor"):
        StableDiffusion3Pipeline(**{**parts, "vae": AutoencoderKL(**{**VAE, "shift_factor": None})})
    small = SD3Transformer2DModel(**{**MMDIT, "joint_attention_dim": 32})  # 16 + 24 features do not fit in 32
    with pytest.raises(ValueError, match="joint_attention_dim"):
        StableDiffusion3Pipeline(**{**parts, "transformer": small}).encode_prompt("a red circle")
    for kwargs, match in ((dict(height=10), "height"), (dict(width=10), "width"),
                          (dict(num_inference_steps=0), "steps"), (dict(guidance_scale=float("nan")), "guidance_scale"),
                          (dict(output_type="pil"), "output_type"),
                          (dict(latents=torch.zeros(2, 4, 4, 4)), "latents"),
                          (dict(negative_prompt=["a", "b", "c"]), "negative_prompt")):
        with pytest.raises(ValueError, match=match):
            pipe(PROMPTS, num_inference_steps=kwargs.pop("num_inference_steps", 2), progress=False, **kwargs)
    with pytest.raises(ValueError, match="prompts"):
        pipe([], progress=False)
    with pytest.raises(FileNotFoundError, match="model_index.json"):
        StableDiffusion3Pipeline.from_pretrained(tmp_path)
    pipe.save_pretrained(tmp_path / "pipe")
    index_path = tmp_path / "pipe" / "model_index.json"
    index = json.loads(index_path.read_text())
    for change, error in (({"_class_name": "StableDiffusionPipeline"}, ValueError),
                          ({"text_encoder_3": ["transformers", "T5EncoderModel"]}, NotImplementedError),
                          ({"scheduler": ["diffusers", "DDIMScheduler"]}, ValueError)):
        index_path.write_text(json.dumps({**index, **change}))
        with pytest.raises(error):
            StableDiffusion3Pipeline.from_pretrained(tmp_path / "pipe")
