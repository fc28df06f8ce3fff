"""Chapter 13a: the held-out colour and its reader, LoRA maths, merge / unmerge, and the LoRA and
textual-inversion files in both directions with diffusers (skipped without diffusers, or for LoRA
without peft), on a tiny random pipeline."""

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open
from torch import nn

import minisd.concept as C
import minisd.personalise as P
from minisd.data import COLOURS, POSITIONS, SHAPES, SIZES, render
from minisd.pipeline import StableDiffusionPipeline
from test_pipeline import PROMPTS, minisd_pipeline

TI_PROMPTS = ["a <orange> circle in the top left", "a small <orange> square, center"]


def _randomise_lora(unet, seed=5):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in P.lora_layers(unet).values():
            m.lora_B.weight.copy_(torch.randn(m.lora_B.weight.shape, generator=g) * 0.3)


def _unet_out(unet, seed=0):
    g = torch.Generator().manual_seed(seed)
    sample, states = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 77, 16, generator=g)
    with torch.no_grad():
        out = unet(sample, torch.tensor([10, 500]), states)
    return getattr(out, "sample", out)


def _images(pipe, prompts, diffusers_pipe=False):
    latents = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    kwargs = dict(num_inference_steps=4, guidance_scale=3.0, latents=latents)
    if diffusers_pipe:
        return pipe(prompts, output_type="pt", **kwargs).images
    return pipe(prompts, progress=False, **kwargs)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("pipe")
    minisd_pipeline().save_pretrained(path)
    return path


def _diffusers_pipe(folder):
    diffusers = pytest.importorskip("diffusers")
    diffusers.utils.logging.set_verbosity_error()
    theirs = diffusers.StableDiffusionPipeline.from_pretrained(folder, safety_checker=None)
    theirs.set_progress_bar_config(disable=True)
    return theirs


def test_reader_reads_the_new_colour_and_the_old_ones():
    rng = np.random.default_rng(0)
    n = 300
    shapes, sizes, positions = (rng.choice(v, n).tolist() for v in (SHAPES, SIZES, POSITIONS))
    for colours in (["orange"] * n, rng.choice(list(COLOURS), n).tolist()):
        seen = C.read_attributes_extended(C.render_concept(shapes, colours, sizes, positions, 32, seed=1))
        hits = sum(s == dict(shape=a, colour=c, size=z, position=p)
                   for s, a, c, z, p in zip(seen, shapes, colours, sizes, positions))
        assert hits >= 0.99 * n
    old = render(["circle"], ["red"], ["large"], ["center"], 32, seed=3)
    assert np.array_equal(C.render_concept(["circle"], ["red"], ["large"], ["center"], 32, seed=3), old)
    with pytest.raises(ValueError, match="unknown colour"):
        C.render_concept(["circle"], ["mauve"], ["large"], ["center"])
    assert C.parse_caption_extended("a <orange> circle in the center")["colour"] == "orange"
    blank = C.read_attributes_extended(torch.zeros(1, 3, 32, 32))[0]
    assert set(blank.values()) == {"none"}


def test_lora_linear_maths_and_exact_merge():
    torch.manual_seed(0)
    base = nn.Linear(12, 7)
    layer = P.LoRALinear(nn.Linear(12, 7), r=3, lora_alpha=6)
    layer.base_layer.load_state_dict(base.state_dict())
    x = torch.randn(4, 12)
    assert torch.equal(layer(x), base(x))  # B = 0 at the start
    assert not layer.base_layer.weight.requires_grad and layer.lora_A.weight.requires_grad
    with torch.no_grad():
        layer.lora_B.weight.normal_()
    expected = base(x) + 2.0 * x @ layer.lora_A.weight.T @ layer.lora_B.weight.T
    torch.testing.assert_close(layer(x), expected)
    torch.testing.assert_close(layer.delta_weight(), 2.0 * layer.lora_B.weight @ layer.lora_A.weight)
    y = layer(x)
    layer.merge()
    layer.merge()  # twice is once
    torch.testing.assert_close(layer(x), y, atol=1e-5, rtol=0)
    layer.unmerge()
    assert torch.equal(layer.base_layer.weight, base.weight) and not layer.merged
    with pytest.raises(ValueError, match="rank"):
        P.LoRALinear(nn.Linear(3, 3), r=0)


def test_inject_fuse_unload_on_the_unet():
    pipe = minisd_pipeline()
    before = _unet_out(pipe.unet)
    names = P.inject_lora(pipe.unet, r=2, lora_alpha=4)
    assert names and all(n.endswith(("to_q", "to_k", "to_v", "to_out.0")) for n in names)
    assert {n for n, p in pipe.unet.named_parameters() if p.requires_grad} == \
        {f"{n}.lora_{ab}.weight" for n in names for ab in "AB"}
    assert torch.equal(_unet_out(pipe.unet), before)
    _randomise_lora(pipe.unet)
    adapted = _unet_out(pipe.unet)
    assert (adapted - before).abs().max() > 1e-3
    P.fuse_lora(pipe.unet)
    torch.testing.assert_close(_unet_out(pipe.unet), adapted, atol=1e-5, rtol=0)
    P.unfuse_lora(pipe.unet)
    P.unload_lora(pipe.unet)
    assert not P.lora_layers(pipe.unet) and torch.equal(_unet_out(pipe.unet), before)


def test_lora_file_loads_in_diffusers_and_back(folder, tmp_path):
    pytest.importorskip("peft")
    ours = StableDiffusionPipeline.from_pretrained(folder)
    P.inject_lora(ours.unet, r=2, lora_alpha=3)  # alpha != r: the metadata must carry it
    _randomise_lora(ours.unet)
    path = P.save_lora_weights(tmp_path / "lora", ours.unet)
    with safe_open(str(path), "pt") as f:
        keys, meta = set(f.keys()), json.loads(f.metadata()["lora_adapter_metadata"])
    assert "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight" in keys
    assert meta["unet.r"] == 2 and meta["unet.lora_alpha"] == 3
    theirs = _diffusers_pipe(folder)
    theirs.load_lora_weights(tmp_path / "lora")
    torch.testing.assert_close(_unet_out(ours.unet), _unet_out(theirs.unet), atol=1e-4, rtol=0)
    torch.testing.assert_close(_images(ours, PROMPTS), _images(theirs, PROMPTS, True), atol=1e-4, rtol=0)
    again = StableDiffusionPipeline.from_pretrained(folder)
    P.load_lora_weights(again.unet, path)
    assert torch.equal(_unet_out(again.unet), _unet_out(ours.unet))


@pytest.mark.parametrize("old_names", [False, True])
def test_diffusers_lora_file_loads_here(folder, tmp_path, old_names):
    pytest.importorskip("peft")
    theirs = _diffusers_pipe(folder)
    import diffusers
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    config = LoraConfig(r=3, lora_alpha=5, init_lora_weights="gaussian",
                        target_modules=["to_q", "to_k", "to_v", "to_out.0"])
    theirs.unet.add_adapter(config)
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, p in theirs.unet.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    state = get_peft_model_state_dict(theirs.unet)
    state = convert_state_dict_to_diffusers(state) if old_names else state  # lora.down / lora.up, as the script writes
    diffusers.StableDiffusionPipeline.save_lora_weights(tmp_path, unet_lora_layers=state,
                                                        unet_lora_adapter_metadata=config.to_dict())
    ours = StableDiffusionPipeline.from_pretrained(folder)
    names = P.load_lora_weights(ours.unet, tmp_path)
    assert names == sorted(P.lora_layers(ours.unet)) and len(names) == 32  # 8 attentions x 4 projections
    assert {m.scaling for m in P.lora_layers(ours.unet).values()} == {5 / 3}
    torch.testing.assert_close(_unet_out(ours.unet), _unet_out(theirs.unet), atol=1e-4, rtol=0)
    torch.testing.assert_close(_images(ours, PROMPTS), _images(theirs, PROMPTS, True), atol=1e-4, rtol=0)


def test_textual_inversion_file_with_diffusers(folder, tmp_path):
    ours = StableDiffusionPipeline.from_pretrained(folder)
    n = len(ours.tokenizer)
    token_id = P.add_token(ours.tokenizer, ours.text_encoder, "<orange>")
    assert token_id == n and ours.text_encoder.config.vocab_size == n + 1
    tok = ours.tokenizer.tokenize
    assert tok("a <orange> circle") == tok("a") + ["<orange>"] + tok("circle")  # kept whole, never split
    with pytest.raises(ValueError, match="already in the vocabulary"):
        P.add_token(ours.tokenizer, ours.text_encoder, "<orange>")
    word = next(k[:-4] for k in ours.tokenizer.encoder if k.endswith("</w>") and k[:-4] not in ours.tokenizer.encoder)
    with pytest.raises(ValueError, match="already in the vocabulary"):  # a whole word, stored as "word</w>"
        P.add_token(ours.tokenizer, ours.text_encoder, word)
    with torch.no_grad():
        ours.text_encoder.embeddings.token_embedding.weight[token_id] = torch.randn(16)
    path = P.save_textual_inversion(tmp_path, ours.tokenizer, ours.text_encoder, "<orange>")
    with safe_open(str(path), "pt") as f:
        assert list(f.keys()) == ["<orange>"] and f.get_tensor("<orange>").shape == (1, 16)
    again = StableDiffusionPipeline.from_pretrained(folder)
    assert P.load_textual_inversion(tmp_path, again.tokenizer, again.text_encoder) == "<orange>"
    torch.testing.assert_close(_images(again, TI_PROMPTS), _images(ours, TI_PROMPTS), atol=0, rtol=0)
    theirs = _diffusers_pipe(folder)
    theirs.load_textual_inversion(path)
    torch.testing.assert_close(_images(ours, TI_PROMPTS), _images(theirs, TI_PROMPTS, True), atol=1e-4, rtol=0)


def test_finetune_trains_only_the_token_row(folder):
    pipe = StableDiffusionPipeline.from_pretrained(folder)
    unet_before = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    table, restore = P.trainable_token(pipe, "<orange>", initializer="red yellow")
    token_id = pipe.tokenizer.encoder["<orange>"]
    start = table[pipe.tokenizer.encode("red yellow", add_special_tokens=False)].mean(0)
    torch.testing.assert_close(table[token_id], start)  # the new row starts at the initializer's mean
    assert [n for n, p in [*pipe.unet.named_parameters(), *pipe.text_encoder.named_parameters()] if p.requires_grad] \
        == ["embeddings.token_embedding.weight"]
    original = table.detach().clone()
    images = torch.rand(4, 3, 16, 16)
    losses = P.finetune(pipe, images, ["a <orange> circle"] * 4, [table], steps=3, batch_size=2, after_step=restore,
                        progress=False)
    assert len(losses) == 3 and all(np.isfinite(losses))
    changed = (table != original).any(1)
    assert changed[token_id] and changed.sum() == 1
    assert all(torch.equal(v, pipe.unet.state_dict()[k]) for k, v in unet_before.items())


def test_text_state_basis_is_the_top_of_the_second_moment(folder):
    pipe = StableDiffusionPipeline.from_pretrained(folder)
    captions = [*PROMPTS, "a small red circle", ""]
    basis, left = P.text_state_basis(pipe, captions, k=5, batch_size=2)  # batches must not change the answer
    with torch.no_grad():
        states = pipe.text_encoder(pipe.tokenizer(captions)).flatten(0, 1).double()  # (N * 77, d)
    eigenvalues, eigenvectors = torch.linalg.eigh(states.T @ states / len(states))
    width = states.shape[1]
    assert basis.shape == (width, 5)
    torch.testing.assert_close(basis.T @ basis, torch.eye(5), atol=1e-5, rtol=0)
    top = eigenvectors[:, -5:].float()  # the same span as the hand-computed top five
    torch.testing.assert_close(basis @ basis.T, top @ top.T, atol=1e-5, rtol=0)
    assert left == pytest.approx((eigenvalues[:-5].sum() / eigenvalues.sum()).item(), rel=1e-9) and 0 < left < 1
    assert P.text_state_basis(pipe, captions, k=width)[1] == 0
    for bad in (0, width + 1, 2.5):
        with pytest.raises(ValueError, match="k must be"):
            P.text_state_basis(pipe, captions, k=bad)


def test_null_space_projection_keeps_the_adapters_off_the_span():
    torch.manual_seed(0)
    base = nn.Linear(16, 8)
    model = nn.ModuleDict({"attn2": nn.ModuleDict({"to_k": base})})
    with pytest.raises(ValueError, match="no LoRA adapters"):
        P.null_space_projection(model, torch.eye(16)[:, :4])
    P.inject_lora(model, r=4, lora_alpha=4, targets=("to_k",))
    layer = model["attn2"]["to_k"]
    _randomise_lora(model)
    basis = torch.linalg.qr(torch.randn(16, 10))[0]  # orthonormal (16, 10)
    inside, outside = torch.randn(6, 10) @ basis.T, torch.randn(6, 16)
    project = P.null_space_projection(model, basis)  # projects once at once
    torch.testing.assert_close(layer(inside), base(inside), atol=1e-5, rtol=0)  # blind to the span
    assert (layer(outside) - base(outside)).abs().max() > 1e-2  # and not to the rest
    optimizer = torch.optim.SGD(layer.lora_A.parameters(), lr=0.5)
    for _ in range(3):  # a gradient step moves A back into the span; the after-step takes it out again
        optimizer.zero_grad()
        (layer(inside) - base(inside) - 1).square().mean().backward()
        optimizer.step()
        assert (layer(inside) - base(inside)).abs().max() > 1e-3
        project()
        torch.testing.assert_close(layer(inside), base(inside), atol=1e-5, rtol=0)
