"""The command line: `python -m minisd {train,sample,eval,demo,bench,edit,finetune} --help`.

Hand-written (not exported from a notebook). It wraps `minisd.train` (chapter 08b),
`minisd.evaluate` (chapter 08c), `minisd.pipeline` (chapter 08a), `minisd.scene_benchmark` (chapter 10b),
`minisd.scene_training` (chapter 10c), `minisd.flow_training` (chapter 11d), `minisd.editing` (chapter 12a),
and `minisd.personalise` with `minisd.dreambooth` (chapters 13a and 13b).
Bad arguments and unreadable checkpoints end with one line on stderr and exit status 2; set MINISD_DEBUG=1 to see
the full traceback instead.
"""

import argparse
import json
import math
import os
import sys
from pathlib import Path

SCHEDULER_NAMES = ("ddim", "ddpm", "dpm++", "euler", "euler_a", "heun")


def _at_least(cast, minimum, what):
    "An argparse type: `cast(text)`, refused with a clear message when not finite or below `minimum`."
    def parse(text):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what} >= {minimum}, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value
    return parse


_positive_int = _at_least(int, 1, "an integer")
_non_negative = _at_least(float, 0, "a number")


def _fraction(text):
    "An argparse type: a finite number in [0, 1]."
    value = _non_negative(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be <= 1, got {value}")
    return value


def _profile(text):
    from minisd.core import PROFILE_NAMES

    if text not in PROFILE_NAMES:
        raise argparse.ArgumentTypeError(f"must be one of {', '.join(PROFILE_NAMES)}, got {text!r}")
    return text


def _sampling_options(p):
    "The options that sample, eval and bench share: --steps, --guidance and --scheduler."
    p.add_argument("--steps", type=_positive_int, default=20, help="denoising steps (default: %(default)s)")
    p.add_argument("--guidance", type=_non_negative, default=4.0,
                   help="classifier-free guidance scale (default: %(default)s)")
    p.add_argument("--scheduler", choices=SCHEDULER_NAMES, default="ddim", help="sampler (default: %(default)s)")


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m minisd", description="Train and sample minisd, a miniature "
                                     "Stable Diffusion, on the embedded captioned shapes.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{train,sample,eval,demo,bench,edit,finetune}")
    profile_help = "quick, cpu or gpu (default: MINISD_PROFILE, else gpu with CUDA, else cpu)"

    p = sub.add_parser("train", help="train the VAE, the text encoder and the UNet (or one stage)",
                       description="Train into a diffusers-layout pipeline folder. Stages: vae, text (mini CLIP), "
                                   "unet (needs the other two in --out), or all.")
    p.add_argument("--stage", choices=("vae", "text", "unet", "all"), default="all", help="which stage (default: all)")
    p.add_argument("--profile", type=_profile, help=profile_help)
    p.add_argument("--out", type=Path, default=Path("outputs/checkpoint"),
                   help="checkpoint folder (default: %(default)s)")
    p.add_argument("--resume", action="store_true",
                   help="keep finished stages and continue the UNet from its last checkpoint")
    p.add_argument("--dataset", default="shapes",
                   help=f"{' or '.join(DATASETS)} (built in), or your own captioned images: an image folder with "
                        "metadata.jsonl (file_name, text), a .csv, .jsonl or .parquet file, or a hub id in the local "
                        "cache (default: %(default)s)")
    p.add_argument("--image-column", default="image",
                   help="your dataset's image column, or file names relative to a CSV (default: %(default)s)")
    p.add_argument("--caption-column", default="text", help="your dataset's caption column (default: %(default)s)")
    p.add_argument("--stop-after", type=_positive_int, metavar="STEPS",
                   help="end the UNet stage after this many steps (continue later with --resume)")
    p.add_argument("--model", choices=("unet", "mmdit"), default="unet",
                   help="unet: Stable Diffusion 1's UNet and DDPM (chapter 08b); mmdit: SD3's transformer and "
                        "rectified flow, saved as a StableDiffusion3Pipeline folder (chapter 11d; --stage all only) "
                        "(default: %(default)s)")

    p = sub.add_parser("sample", help="generate a captioned grid of images from prompts",
                       description="Sample images from a trained checkpoint and save them as a PNG grid.")
    p.add_argument("--checkpoint", type=Path, default=Path("outputs/checkpoint"),
                   help="pipeline folder (default: %(default)s)")
    p.add_argument("--prompt", action="append", required=True, help="a prompt; repeat for several")
    _sampling_options(p)
    p.add_argument("--guidance-rescale", type=_fraction, default=0.0,
                   help="guidance rescale phi in [0, 1] (Lin et al. 2023; default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    p.add_argument("--height", type=_positive_int, help="image height in pixels, a multiple of the VAE's factor")
    p.add_argument("--width", type=_positive_int, help="image width in pixels, a multiple of the VAE's factor")
    p.add_argument("--out", type=Path, default=Path("outputs/sample.png"),
                   help="PNG grid to write (default: %(default)s)")

    p = sub.add_parser("eval", help="measure prompt adherence on test and held-out prompts",
                       description="Generate images for test-split and held-out prompts and score them with "
                                   "minisd.reader.adherence; write a JSON report.")
    p.add_argument("--checkpoint", type=Path, default=Path("outputs/checkpoint"),
                   help="pipeline folder (default: %(default)s)")
    p.add_argument("--report", type=Path, default=Path("outputs/eval.json"),
                   help="JSON report to write (default: %(default)s)")
    p.add_argument("--profile", type=_profile, help=profile_help + "; chooses the test data")
    p.add_argument("--prompts", type=_positive_int, default=96, help="prompts per split (default: %(default)s)")
    _sampling_options(p)
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")

    p = sub.add_parser("demo", help="the main job: train all stages, then sample, evaluate and sweep",
                       description="Train all three stages for the profile, then write samples.png, denoising.gif, "
                                   "report.json and sweep.png next to the checkpoint folder.")
    p.add_argument("--profile", type=_profile, help=profile_help)
    p.add_argument("--out", type=Path, default=Path("outputs"), help="output folder (default: %(default)s)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted demo from its checkpoints")

    p = sub.add_parser("bench", help="score a checkpoint (or `real`) on the scenes benchmark of chapter 10",
                       description="Sample the scenes benchmark's fixed prompts (64x64, fixed seeds) and score them "
                                   "with the exact scene reader: per task k/n with 95% intervals, the overall mean, "
                                   "held-out splits, and FD/KID on mini CLIP features beside the real floor.")
    p.add_argument("checkpoint", help="pipeline folder, or `real`: real renders (the benchmark's ceiling row)")
    p.add_argument("--profile", type=_profile, help=profile_help + "; chooses the benchmark's size and features")
    _sampling_options(p)
    p.add_argument("--images-per-prompt", type=_positive_int, help="images per prompt (default: the profile's)")
    p.add_argument("--prompts-per-task", type=_positive_int, help="prompts per task (default: the profile's)")
    p.add_argument("--out", type=Path, default=Path("outputs/bench.json"),
                   help="JSON report to write (default: %(default)s)")
    p.add_argument("--name", help="the row's name on the leaderboard (default: the checkpoint)")
    p.add_argument("--leaderboard", type=Path, help="also append the row to this markdown table")

    p = sub.add_parser("edit", help="edit an image: image to image (SDEdit) or inpainting (chapter 12a)",
                       description="Edit one image with a trained pipeline: img2img noises it to --strength and "
                                   "denoises towards --prompt; inpaint repaints only where --mask is white.")
    p.add_argument("mode", choices=("img2img", "inpaint"), help="img2img or inpaint")
    p.add_argument("checkpoint", type=Path, help="pipeline folder")
    p.add_argument("--image", type=Path, required=True,
                   help="the image to edit (PNG; sides multiples of the VAE's factor)")
    p.add_argument("--mask", type=Path, help="inpaint: white where to repaint, black where to keep; the image's size")
    p.add_argument("--prompt", required=True, help="what the edited image should show")
    p.add_argument("--strength", type=float,
                   help="in [0, 1]: how much of the image to noise away (default: 0.8 img2img, 1.0 inpaint)")
    p.add_argument("--steps", type=_positive_int, default=20,
                   help="denoising steps at strength 1 (default: %(default)s)")
    p.add_argument("--guidance", type=_non_negative, default=4.0, help="guidance scale (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    p.add_argument("--out", type=Path, default=Path("outputs/edit.png"), help="PNG to write (default: %(default)s)")

    p = sub.add_parser("finetune", help="teach a pipeline a new concept from a folder of pictures (chapter 13b)",
                       description="LoRA, textual inversion or DreamBooth (with prior preservation) on a folder of "
                                   "PNG/JPEG pictures of the pipeline's image size, captioned by its metadata.jsonl "
                                   "(file_name, text) if present, else 'a TOKEN CLASS_WORD'. Writes files diffusers "
                                   "loads: pytorch_lora_weights.safetensors, learned_embeds.safetensors, or (full "
                                   "DreamBooth) a pipeline folder.")
    p.add_argument("checkpoint", type=Path, help="pipeline folder to start from")
    p.add_argument("--method", choices=("lora", "textual_inversion", "dreambooth"), required=True,
                   help="lora: adapters on the UNet's attention; textual_inversion: one new token's embedding; "
                        "dreambooth: the whole UNet with prior preservation (with --rank: LoRA-DreamBooth)")
    p.add_argument("--images", type=Path, required=True, help="folder of the concept's pictures")
    p.add_argument("--token", required=True, help="the new word, not in the vocabulary (e.g. sks, or <orange>)")
    p.add_argument("--class-word", help="the class the token qualifies, e.g. circle (captions and class prompts)")
    p.add_argument("--steps", type=_positive_int, default=300, help="optimiser steps (default: %(default)s)")
    p.add_argument("--rank", type=_positive_int,
                   help="LoRA rank (lora: default 4; dreambooth: train rank-R adapters instead of the whole UNet)")
    p.add_argument("--lr", type=_non_negative,
                   help="learning rate (default: 3e-3 LoRA, 5e-3 textual inversion, 1e-4 whole UNet)")
    p.add_argument("--prior-weight", type=_non_negative, default=1.0,
                   help="dreambooth: prior_loss_weight, 0 for none (default: %(default)s, as diffusers)")
    p.add_argument("--class-images", type=_positive_int, default=100,
                   help="dreambooth: class images drawn by the frozen pipeline (default: %(default)s, as diffusers)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    p.add_argument("--out", type=Path, default=Path("outputs/finetune"),
                   help="folder to write (default: %(default)s)")
    return parser


def _bench(args):
    "The `bench` command: run the benchmark, print the scores and a leaderboard row, write the report."
    from minisd import scene_benchmark
    from minisd.core import get_profile

    profile = get_profile(args.profile)
    command = f"python -m minisd bench {args.checkpoint} --profile {profile.name}"
    if args.checkpoint == "real":
        generate = "real"
    else:
        pipe = load_pipeline(Path(args.checkpoint))
        generate = scene_benchmark.pipeline_generator(pipe, args.steps, args.guidance, args.scheduler)
        command += f" --steps {args.steps} --guidance {args.guidance:g} --scheduler {args.scheduler}"
    for flag, value in (("--images-per-prompt", args.images_per_prompt), ("--prompts-per-task", args.prompts_per_task)):
        if value is not None:
            command += f" {flag} {value}"
    report = scene_benchmark.run_benchmark(generate, profile, args.prompts_per_task, args.images_per_prompt)
    row = scene_benchmark.leaderboard_row(report, args.name or str(args.checkpoint), command)
    report |= {"command": command, "checkpoint": str(args.checkpoint), "row": row}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print("\n".join(scene_benchmark.format_report(report)))
    print(f"wrote {args.out}; leaderboard row:\n{row}")
    if args.leaderboard is not None:
        if not args.leaderboard.exists():
            args.leaderboard.write_text(scene_benchmark.LEADERBOARD_HEADER + "\n")
        with args.leaderboard.open("a") as f:
            f.write(row + "\n")
        print(f"appended the row to {args.leaderboard}")


def _read_png(path, flag, mode):
    "An image file as a uint8 array (H, W, 3) or (H, W), or a one-line error naming the `flag`."
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise FileNotFoundError(f"{flag}: no file at {path}")
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert(mode))
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"{flag}: cannot read {path} as an image ({type(e).__name__})") from None


def _edit(args):
    "The `edit` command: img2img or inpaint one image, written as a PNG."
    import numpy as np
    import torch
    from PIL import Image

    from minisd.editing import StableDiffusionImg2ImgPipeline, StableDiffusionInpaintPipeline

    strength = args.strength if args.strength is not None else (0.8 if args.mode == "img2img" else 1.0)
    if not 0 <= strength <= 1:  # also refuses nan
        raise ValueError(f"--strength must be in [0, 1]; got {args.strength}")
    image = _read_png(args.image, "--image", "RGB")
    mask = None
    if args.mode == "inpaint":
        if args.mask is None:
            raise ValueError("--mask is required for inpaint")
        mask = _read_png(args.mask, "--mask", "L")
        if mask.shape != image.shape[:2]:
            raise ValueError(f"--mask is {mask.shape[1]}x{mask.shape[0]} pixels but --image is "
                             f"{image.shape[1]}x{image.shape[0]}")
    pipe = load_pipeline(args.checkpoint, "ddim")
    f = pipe.vae_scale_factor
    if image.shape[0] % f or image.shape[1] % f:
        raise ValueError(f"--image is {image.shape[1]}x{image.shape[0]} pixels; its sides must be multiples of {f}")
    cls = StableDiffusionImg2ImgPipeline if mask is None else StableDiffusionInpaintPipeline
    kwargs = {} if mask is None else {"mask_image": mask}
    out = cls(**pipe.components)(args.prompt, image, strength=strength, num_inference_steps=args.steps,
                                 guidance_scale=args.guidance, generator=torch.Generator().manual_seed(args.seed),
                                 progress=False, **kwargs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((out[0].permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)).save(args.out)
    print(f"wrote {args.out} ({args.mode}, strength {strength:g})")


def _finetune(args):
    "The `finetune` command: LoRA, textual inversion or DreamBooth on a folder of pictures (chapter 13b)."
    from minisd import dreambooth, personalise

    pipe = load_pipeline(args.checkpoint)
    if not dreambooth.is_new_word(pipe.tokenizer, args.token):
        raise ValueError(f"--token {args.token!r} is already in the vocabulary (or is not one word): choose a new "
                         "word, e.g. sks")
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    images, captions = dreambooth.read_concept_folder(args.images, args.token, args.class_word, size)
    if args.method == "textual_inversion":
        pipe.unet.requires_grad_(False)
        pipe.text_encoder.requires_grad_(False)
        token_id = personalise.add_token(pipe.tokenizer, pipe.text_encoder, args.token, args.class_word or "a")
        table = pipe.text_encoder.embeddings.token_embedding.weight.requires_grad_(True)
        original = table.detach().clone()
        losses = personalise.finetune(pipe, images, captions, [table], steps=args.steps, lr=args.lr or 5e-3,
                                      seed=args.seed, after_step=lambda: personalise.keep_only_row(table, original,
                                                                                                    token_id))
        path = personalise.save_textual_inversion(args.out, pipe.tokenizer, pipe.text_encoder, args.token)
    else:
        rank = args.rank if args.method == "dreambooth" else (args.rank or 4)
        class_images = class_captions = None
        if args.method == "dreambooth" and args.prior_weight > 0:
            prompts = [dreambooth.class_prompt(c, args.token) for c in captions]
            class_captions = [prompts[i % len(prompts)] for i in range(args.class_images)]
            class_images = dreambooth.generate_class_images(pipe, class_captions, 20, 4.0, seed=args.seed)
        losses, _ = dreambooth.train_dreambooth(pipe, images, captions, class_images, class_captions, rank=rank,
                                                prior_loss_weight=args.prior_weight, steps=args.steps, lr=args.lr,
                                                seed=args.seed)
        path = personalise.save_lora_weights(args.out, pipe.unet) if rank else pipe.save_pretrained(args.out)
    print(f"wrote {path} ({args.method}, {len(images)} pictures, {args.steps} steps, last loss {losses[-1]:.4f})")


def load_pipeline(folder, scheduler=None):
    "A trained pipeline, or a one-line error naming the folder and what is wrong with it."
    from minisd.pipeline import StableDiffusionPipeline

    try:
        return StableDiffusionPipeline.from_pretrained(folder, scheduler=scheduler)
    except FileNotFoundError as e:  # no pipeline there, or part of one missing: from_pretrained names the file
        raise FileNotFoundError(f"{e}; train one with `python -m minisd train --out {folder}`") from None
    except Exception as e:  # corrupt files: say which folder, keep the cause
        raise ValueError(f"checkpoint {folder} could not be read ({type(e).__name__}: {str(e).splitlines()[0]})") from e


def _shapes(args, cfg):
    "The embedded captioned shapes (chapter 00b) at the profile's size."
    from minisd.data import load_captioned_shapes

    return load_captioned_shapes(cfg.profile, seed=cfg.seed), cfg


def _scenes(args, cfg):
    "Chapter 10a's scenes (64x64, one to four shapes) with chapter 10c's recipe for them."
    from minisd.scene_training import scenes_config
    from minisd.scenes import load_scenes

    cfg = scenes_config(cfg.profile, seed=cfg.seed)
    return load_scenes(cfg.profile, seed=cfg.seed), cfg


# `train --dataset NAME`: the built-in datasets, each a function (args, cfg) -> (splits, cfg), since a dataset
# may need its own config. Any other --dataset is a path or a hub id, read by `_own_data`.
DATASETS = {"shapes": _shapes, "scenes": _scenes}


def _own_data(args, cfg):
    "Captioned images of your own, cropped and resized to the profile's size, with a fixed test split held out."
    from dataclasses import replace

    from minisd.core import get_profile
    from minisd.data import captioned_splits

    splits = captioned_splits(args.dataset, get_profile(cfg.profile).image_size, args.image_column,
                              args.caption_column, seed=cfg.seed)
    # the mini CLIP's positives: captions parse_caption cannot read match by their text, not by their meaning
    return splits, replace(cfg, clip={**cfg.clip, "positives": "caption"})


def _train_mmdit(args):
    "`train --model mmdit`: chapter 11d's VAE, mini CLIP and MMDiT into a StableDiffusion3Pipeline folder, one process."
    from minisd import flow_training

    if args.stage != "all":
        raise ValueError(f"--model mmdit trains all stages (--resume keeps finished ones); got --stage {args.stage}")
    if args.dataset == "scenes":
        raise ValueError("--model mmdit has no recipe for the scenes yet; use --dataset shapes or your own data")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError("--model mmdit trains in one process; run it with python, not torchrun")
    cfg = flow_training.mmdit_config(args.profile)
    splits, cfg = DATASETS.get(args.dataset, _own_data)(args, cfg)
    _, report = flow_training.train_mmdit(cfg, args.out, resume=args.resume, splits=splits, stop_after=args.stop_after)
    print(f"trained vae, text, transformer into {args.out}")
    print(json.dumps({k: v for k, v in report.items() if k != "config"}, indent=2))


def _sample_sd3(args):
    "`sample` on a StableDiffusion3Pipeline folder: rectified flow's Euler sampler, the folder's T5 length."
    import torch

    from minisd.core import image_grid
    from minisd.flow_training import trained_max_sequence_length
    from minisd.sd3_pipeline import StableDiffusion3Pipeline

    if args.scheduler not in ("ddim", "euler"):  # ddim is the default: it stands for the folder's own sampler
        raise ValueError(f"an SD3 folder samples with its FlowMatchEulerDiscreteScheduler; --scheduler "
                         f"{args.scheduler} does not apply")
    if args.guidance_rescale:
        raise ValueError("--guidance-rescale is not supported for SD3 folders")
    try:
        pipe = StableDiffusion3Pipeline.from_pretrained(args.checkpoint)
    except Exception as e:
        raise ValueError(f"checkpoint {args.checkpoint} could not be read ({type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''})") from e
    images = pipe(args.prompt, num_inference_steps=args.steps, guidance_scale=args.guidance,
                  generator=torch.Generator().manual_seed(args.seed), height=args.height, width=args.width,
                  max_sequence_length=trained_max_sequence_length(args.checkpoint))
    image_grid(images, captions=args.prompt, path=args.out, show=False)
    print(f"wrote {len(args.prompt)} image(s) to {args.out}")


def _pipeline_class(folder):
    "The `_class_name` in a folder's model_index.json, or None when it cannot be read."
    try:
        return json.loads((Path(folder) / "model_index.json").read_text()).get("_class_name")
    except (OSError, ValueError, AttributeError):
        return None


def _train(args):
    "The `train` command, in one process or in each process that torchrun starts (then rank 0 alone writes and prints)."
    from minisd import train

    if args.model == "mmdit":
        return _train_mmdit(args)
    device = train.init_distributed()  # under torchrun: join the group; under plain python: nothing happens
    try:
        cfg = train.config_for(args.profile)
        with train.main_process_first():  # rank 0 fills the data caches, then the other processes read them
            splits, cfg = DATASETS.get(args.dataset, _own_data)(args, cfg)
        stages = train.STAGES if args.stage == "all" else (args.stage,)
        _, report = train.train(cfg, args.out, stages=stages, device=device, resume=args.resume, splits=splits,
                                stop_after=args.stop_after)
        if train.rank() == 0:
            print(f"trained {', '.join(stages)} into {args.out}")
            print(json.dumps({k: v for k, v in report.items() if k != "config"}, indent=2))
    finally:
        if train.world_size() > 1:
            import torch.distributed

            torch.distributed.destroy_process_group()


def run(args):
    import torch

    from minisd import evaluate
    from minisd.core import get_profile, image_grid

    if args.command == "train":
        _train(args)
    elif args.command == "sample" and _pipeline_class(args.checkpoint) == "StableDiffusion3Pipeline":
        _sample_sd3(args)
    elif args.command == "sample":
        pipe = load_pipeline(args.checkpoint, args.scheduler)
        generator = torch.Generator().manual_seed(args.seed)
        images = pipe(args.prompt, num_inference_steps=args.steps, guidance_scale=args.guidance, generator=generator,
                      height=args.height, width=args.width, guidance_rescale=args.guidance_rescale)
        image_grid(images, captions=args.prompt, path=args.out, show=False)
        print(f"wrote {len(args.prompt)} image(s) to {args.out}")
    elif args.command == "eval":
        from minisd.data import load_captioned_shapes

        pipe = load_pipeline(args.checkpoint)
        splits = load_captioned_shapes(get_profile(args.profile))
        report = evaluate.evaluate(pipe, splits, args.prompts, args.steps, args.guidance, args.seed, args.scheduler)
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(report, indent=2))
        print(json.dumps(report, indent=2))
    elif args.command == "bench":
        _bench(args)
    elif args.command == "edit":
        _edit(args)
    elif args.command == "finetune":
        _finetune(args)
    elif args.command == "demo":
        report = evaluate.demo(args.out, profile=args.profile, resume=args.resume)
        ev = report["eval"]
        print(f"done in {report['total_seconds']:.0f} s; adherence (all attributes) test {ev['test']['all']:.1%}, "
              f"held-out {ev['heldout']['all']:.1%}; see {args.out}/")


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except KeyboardInterrupt:
        print("minisd: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if os.environ.get("MINISD_DEBUG"):
            raise
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"minisd {args.command}: error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
