"""Chapter 13b: the prior-preservation loss by hand, the rare identifier, DreamBooth's LoRA file and full
pipeline folder in diffusers (skipped without diffusers, or for LoRA without peft), and the `finetune`
command's errors and one quick run of each method, on the tiny random pipeline of test_personalise."""

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import minisd.dreambooth as D
import minisd.personalise as P
from minisd.__main__ import main
from minisd.pipeline import StableDiffusionPipeline
from test_personalise import _diffusers_pipe, _images, _unet_out, folder  # noqa: F401  (folder is a fixture)
from test_pipeline import CAPTIONS, minisd_pipeline

DB_PROMPTS = ["a sks circle in the top left", "a small sks square, center"]


def _pictures(n=3, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g)


def test_prior_preservation_loss_is_the_formula_by_hand():
    pipe = minisd_pipeline()
    g = torch.Generator().manual_seed(0)
    z, noise = torch.randn(4, 4, 8, 8, generator=g), torch.randn(4, 4, 8, 8, generator=g)
    with torch.no_grad():
        pred = pipe.unet(z, torch.tensor([10, 200, 500, 900]), pipe.text_encoder(pipe.tokenizer(CAPTIONS)))
    w = 0.7
    by_hand = ((pred[:2] - noise[:2]) ** 2).sum() / noise[:2].numel() + w * ((pred[2:] - noise[2:]) ** 2).sum() / \
        noise[2:].numel()
    torch.testing.assert_close(D.prior_preservation_loss(pred, noise, w), by_hand)
    torch.testing.assert_close(D.prior_preservation_loss(pred, noise, 0.0), nn.functional.mse_loss(pred[:2], noise[:2]))
    # finetune builds the batch as the loss expects: instance examples first, then as many class examples
    seen = []

    def loss_fn(pred, noise):
        seen.append((pred.detach().clone(), noise.clone()))
        return D.prior_preservation_loss(pred, noise, w)

    losses = P.finetune(pipe, _pictures(2), ["a sks circle"] * 2, [p for p in pipe.unet.parameters()][:1], steps=1,
                        lr=0.0, batch_size=3, prior_images=_pictures(5, seed=1), prior_captions=["a circle"] * 5,
                        loss_fn=loss_fn, progress=False)
    (pred, noise), = seen
    assert pred.shape[0] == 6
    assert losses[0] == pytest.approx((((pred[:3] - noise[:3]) ** 2).mean() + w * ((pred[3:] - noise[3:]) ** 2).mean())
                                      .item(), rel=1e-6)
    assert D.class_prompt("a large sks circle in the top left") == "a large circle in the top left"


def test_the_identifier_is_new_to_the_vocabulary():
    tok = minisd_pipeline().tokenizer
    assert D.is_new_word(tok, D.IDENTIFIER) and D.is_new_word(tok, "<orange>")
    assert not D.is_new_word(tok, "square") and not D.is_new_word(tok, "the")  # whole tokens of this vocabulary
    assert not D.is_new_word(tok, "two words") and not D.is_new_word(tok, "")
    assert set(D.times_seen(tok, D.IDENTIFIER, CAPTIONS[:3]).values()) == {0}
    assert sum(D.times_seen(tok, D.IDENTIFIER, ["there is a blue square"]).values()) > 0  # "is" ends in s</w>
    assert D.times_seen(tok, "square", CAPTIONS) == {"square</w>": 2}


def test_dreambooth_lora_and_full_folder_load_in_diffusers(folder, tmp_path):  # noqa: F811
    ours = StableDiffusionPipeline.from_pretrained(folder)
    size = ours.unet.config.sample_size * ours.vae_scale_factor
    class_images = D.generate_class_images(ours, ["a circle in the top left"] * 2, 2, 3.0)
    assert class_images.shape == (2, 3, size, size)
    losses, n = D.train_dreambooth(ours, _pictures(2, size), ["a sks circle in the top left"] * 2, class_images,
                                   ["a circle in the top left"] * 2, rank=2, steps=3, lr=0.05, batch_size=2,
                                   progress=False)
    assert len(losses) == 3 and n == sum(m.lora_A.weight.numel() + m.lora_B.weight.numel()
                                         for m in P.lora_layers(ours.unet).values())
    assert all(m.lora_B.weight.abs().max() > 0 for m in P.lora_layers(ours.unet).values())
    P.save_lora_weights(tmp_path / "lora", ours.unet)
    theirs = _diffusers_pipe(folder)
    pytest.importorskip("peft")
    theirs.load_lora_weights(tmp_path / "lora")
    torch.testing.assert_close(_unet_out(ours.unet), _unet_out(theirs.unet), atol=1e-4, rtol=0)
    torch.testing.assert_close(_images(ours, DB_PROMPTS), _images(theirs, DB_PROMPTS, True), atol=1e-4, rtol=0)


def test_full_dreambooth_folder_loads_in_diffusers(folder, tmp_path):  # noqa: F811
    ours = StableDiffusionPipeline.from_pretrained(folder)
    before = _unet_out(ours.unet)
    _, n = D.train_dreambooth(ours, _pictures(2), ["a sks circle"] * 2, _pictures(2, seed=3), ["a circle"] * 2,
                              steps=2, lr=1e-2, batch_size=2, progress=False)
    assert n == sum(p.numel() for p in ours.unet.parameters()) and (_unet_out(ours.unet) - before).abs().max() > 0
    ours.save_pretrained(tmp_path / "full")
    theirs = _diffusers_pipe(tmp_path / "full")
    torch.testing.assert_close(_images(ours, DB_PROMPTS), _images(theirs, DB_PROMPTS, True), atol=1e-4, rtol=0)


def _write_pictures(path, n=3, size=16):
    path.mkdir()
    for i, image in enumerate(_pictures(n, size)):
        Image.fromarray((image.permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(path / f"{i}.png")
    return path


def _cli(args, capsys):
    code = main(["finetune", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_finetune_command_errors(folder, tmp_path, capsys):  # noqa: F811
    (tmp_path / "empty").mkdir()
    pictures = _write_pictures(tmp_path / "pictures")
    base = ["--method", "lora", "--token", "sks", "--steps", "1", folder]
    code, _, err = _cli(["--images", tmp_path / "empty", *base], capsys)
    assert code == 2 and "no PNG or JPEG pictures" in err and len(err.strip().splitlines()) == 1
    (pictures / "broken.png").write_bytes(b"not an image")
    code, _, err = _cli(["--images", pictures, *base], capsys)
    assert code == 2 and "broken.png" in err and len(err.strip().splitlines()) == 1
    (pictures / "broken.png").unlink()
    for token in ("square", "small"):
        code, _, err = _cli(["--images", pictures, "--method", "textual_inversion", "--token", token, folder], capsys)
        assert code == 2 and "already in the vocabulary" in err and len(err.strip().splitlines()) == 1
    Image.new("RGB", (24, 24)).save(pictures / "big.png")
    code, _, err = _cli(["--images", pictures, *base], capsys)
    assert code == 2 and "big.png is 24x24" in err


@pytest.mark.parametrize("method", ["lora", "textual_inversion", "dreambooth", "dreambooth-lora"])
def test_finetune_command_runs(folder, tmp_path, capsys, method):  # noqa: F811
    pictures = _write_pictures(tmp_path / "pictures")
    out = tmp_path / "out"
    token = "<sks>" if method == "textual_inversion" else "sks"
    extra = ["--rank", "2"] if method == "dreambooth-lora" else []
    code, stdout, err = _cli(["--method", method.removesuffix("-lora"), "--images", pictures, "--token", token,
                              "--class-word", "circle", "--steps", "2", "--class-images", "2", "--out", out, *extra,
                              folder], capsys)
    assert code == 0, err
    assert "wrote" in stdout
    again = StableDiffusionPipeline.from_pretrained(folder)
    if method == "textual_inversion":
        assert P.load_textual_inversion(out, again.tokenizer, again.text_encoder) == "<sks>"
    elif method == "dreambooth":
        full = StableDiffusionPipeline.from_pretrained(out)
        assert not torch.equal(_unet_out(full.unet), _unet_out(again.unet))
    else:
        assert P.load_lora_weights(again.unet, out) and len(P.lora_layers(again.unet)) == 32


def test_lora_dreambooth_starts_from_its_seed_whatever_ran_before(folder):  # noqa: F811
    runs = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)  # what earlier cells left in the global generator
        pipe = StableDiffusionPipeline.from_pretrained(folder)
        D.train_dreambooth(pipe, _pictures(2), ["a sks circle"] * 2, rank=2, steps=1, batch_size=2, progress=False)
        runs.append({k: v.clone() for k, v in pipe.unet.state_dict().items() if "lora" in k})
    assert runs[0].keys() == runs[1].keys() and len(runs[0]) > 0
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
