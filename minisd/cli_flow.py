"""The command line's Stable Diffusion 3 commands (chapters 11d and 11e), for `minisd.__main__` and `minisd.cli_train`.

Hand-written (not exported from a notebook); a command's errors are exceptions with a one-line message.
"""
# Keep the docstring to three lines: a longer one makes nbdev-export list this module in __init__.py's docstring.

import json
import os
import time

SD3 = "StableDiffusion3Pipeline"
GUIDANCE, STUDENT_GUIDANCE = 4.0, 1.0  # sample's and eval's default scale; a reflowed student's (chapter 11e)


def _train_report(folder):
    "The train_report.json that `train` or `reflow` wrote into `folder`, as a dict; {} when there is none."
    path = os.path.join(folder, "train_report.json")
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        return json.load(f)


def default_guidance(args):
    """`--guidance` left out (None): 1 for a student of `reflow`, whose train_report.json has a `reflow` entry, else
    4. The student learned the teacher's *guided* paths, so guiding it again overshoots; chapter 11e samples it at 1.
    Sets and returns args.guidance."""
    if args.guidance is None:
        args.guidance = STUDENT_GUIDANCE if "reflow" in _train_report(args.checkpoint) else GUIDANCE
    return args.guidance


def train_mmdit_command(args, load_data):
    """`train --model mmdit`: chapter 11d's VAE, mini CLIP and MMDiT into a StableDiffusion3Pipeline folder, one
    process. `load_data(args, cfg)` -> (splits, cfg) is the `--dataset`'s loader (see `minisd.cli_train.DATASETS`)."""
    from minisd import flow_training
    from minisd.recipes import RECIPE_DEFAULTS

    if args.stage != "all":
        raise ValueError(f"--model mmdit trains all stages (--resume keeps finished ones); got --stage {args.stage}")
    given = [k.replace("_", "-") for k in RECIPE_DEFAULTS if getattr(args, k, None) is not None]
    if given:
        raise ValueError(f"--{', --'.join(given)}: the recipe flags are for --model unet (DDPM); --model mmdit "
                         "trains rectified flow with chapter 11d's recipe")
    if args.dataset == "scenes":
        raise ValueError("--model mmdit has no recipe for the scenes yet; use --dataset shapes or your own data")
    if args.init_from:
        raise ValueError("--init-from fine-tunes a UNet pipeline (--model unet); --model mmdit trains from scratch")
    if args.text_encoder_lr is not None:
        raise ValueError("--text-encoder-lr applies to --model unet; --model mmdit keeps its text encoders frozen")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError("--model mmdit trains in one process; run it with python, not torchrun")
    cfg = flow_training.mmdit_config(args.profile)
    splits, cfg = load_data(args, cfg)
    _, report = flow_training.train_mmdit(cfg, args.out, resume=args.resume, splits=splits, stop_after=args.stop_after)
    print(f"trained vae, text, transformer into {args.out}")
    print(json.dumps({k: v for k, v in report.items() if k != "config"}, indent=2))


def load_sd3(folder, what="checkpoint"):
    "The StableDiffusion3Pipeline saved in `folder`, or a one-line error naming the folder and what is wrong."
    from minisd.cli_train import pipeline_class
    from minisd.sd3_pipeline import StableDiffusion3Pipeline

    found = pipeline_class(folder)
    if found != SD3:
        raise ValueError(f"{what} {folder} is not an SD3 folder (its model_index.json names {found}); train one with "
                         "`python -m minisd train --model mmdit`")
    try:
        return StableDiffusion3Pipeline.from_pretrained(folder)
    except Exception as e:
        raise ValueError(f"{what} {folder} could not be read ({type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''})") from e


def _check_sampler(args):
    "An SD3 folder samples with rectified flow's Euler steps: refuse the DDPM-only options."
    if args.scheduler not in ("ddim", "euler"):  # ddim is the default: it stands for the folder's own sampler
        raise ValueError(f"an SD3 folder samples with its FlowMatchEulerDiscreteScheduler; --scheduler "
                         f"{args.scheduler} does not apply")
    if getattr(args, "guidance_rescale", 0):
        raise ValueError("--guidance-rescale is not supported for SD3 folders")


def sample_sd3(args):
    "`sample` on a StableDiffusion3Pipeline folder: rectified flow's Euler sampler, the folder's T5 length."
    import torch

    from minisd.core import image_grid
    from minisd.flow_training import trained_max_sequence_length

    _check_sampler(args)
    pipe = load_sd3(args.checkpoint)
    images = pipe(args.prompt, num_inference_steps=args.steps, guidance_scale=args.guidance,
                  generator=torch.Generator().manual_seed(args.seed), height=args.height, width=args.width,
                  max_sequence_length=trained_max_sequence_length(args.checkpoint))
    image_grid(images, captions=args.prompt, path=args.out, show=False)
    print(f"wrote {len(args.prompt)} image(s) to {args.out}")


def eval_sd3(args):
    """`eval` on a StableDiffusion3Pipeline folder: adherence on the test and held-out prompts as chapters 11d and 11e
    measure it (one generator seeded once, batches of 64), written as a JSON report."""
    import torch

    from minisd.core import get_profile
    from minisd.data import load_captioned_shapes
    from minisd.flow_training import trained_max_sequence_length
    from minisd.reader import adherence

    _check_sampler(args)
    pipe = load_sd3(args.checkpoint)
    splits = load_captioned_shapes(get_profile(args.profile))
    msl = trained_max_sequence_length(args.checkpoint)
    report = {"steps": args.steps, "guidance": args.guidance, "scheduler": "FlowMatchEulerDiscreteScheduler"}
    for name, split in (("test", "test"), ("heldout", "test_heldout")):
        prompts = splits[split]["caption"][:args.prompts]
        generator = torch.Generator().manual_seed(args.seed)
        images = torch.cat([pipe(prompts[i:i + 64], num_inference_steps=args.steps, guidance_scale=args.guidance,
                                 max_sequence_length=msl, generator=generator, progress=False).cpu()
                            for i in range(0, len(prompts), 64)])
        report[name] = adherence(images, prompts)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


def reflow_command(args):
    """The `reflow` command: one round of reflow (chapter 11e) on an SD3 folder, the teacher. Its sampler carries
    `--pairs` noises to latents for the first training captions of the profile's shapes; a copy of its transformer
    learns the straight lines between them; the student is saved as a new SD3 folder with the teacher's other
    parts, and its train_report.json keeps the teacher's report with a `reflow` entry."""
    from dataclasses import replace

    from minisd.core import get_profile
    from minisd.data import load_captioned_shapes
    from minisd.flow_training import mmdit_config, trained_max_sequence_length
    from minisd.modeling import claim_folder
    from minisd.reflow import reflow_pairs, train_reflow

    if args.out.resolve() == args.teacher.resolve():
        raise ValueError(f"--out is the teacher's folder {args.teacher}: write the student into another folder")
    teacher = load_sd3(args.teacher, "teacher")
    report = _train_report(args.teacher)
    profile = get_profile(args.profile or report.get("profile"))
    msl = trained_max_sequence_length(args.teacher)
    cfg = replace(mmdit_config(profile), max_sequence_length=msl)  # chapter 11d's clipping and EMA
    captions = load_captioned_shapes(profile)["train"]["caption"][:args.pairs]
    if len(captions) < args.pairs:
        raise ValueError(f"--pairs {args.pairs}: the {profile.name} profile's training split has {len(captions)} "
                         "captions")
    args.out.mkdir(parents=True, exist_ok=True)
    with claim_folder(args.out):
        t0 = time.time()
        noise, latents = reflow_pairs(teacher, captions, args.teacher_steps, args.guidance, msl, seed=args.seed + 1)
        pairs_seconds, t0 = time.time() - t0, time.time()
        student, losses = train_reflow(cfg, teacher, captions, noise, latents, steps=args.steps, lr=args.lr,
                                       batch_size=args.batch_size, warmup=min(50, args.steps // 10), seed=args.seed)
        report = {**report, "profile": profile.name, "reflow": {
            "teacher": str(args.teacher), "pairs": len(captions), "teacher_steps": args.teacher_steps,
            "guidance": args.guidance, "steps": args.steps, "lr": args.lr, "batch_size": args.batch_size,
            "seed": args.seed, "first_loss": losses[0], "final_loss": sum(losses[-50:]) / len(losses[-50:]),
            "pairs_seconds": pairs_seconds, "reflow_seconds": time.time() - t0}}
        (args.out / "reflow_losses.json").write_text(json.dumps([round(x, 5) for x in losses]))
        (args.out / "train_report.json").write_text(json.dumps(report, indent=2))
        student.save_pretrained(args.out)  # model_index.json last: it marks the folder complete
    print(f"reflowed {args.teacher} into {args.out}; sample it in 1 to 4 steps: python -m minisd sample "
          f"--checkpoint {args.out} --steps 2 --prompt ...")
    print(json.dumps(report["reflow"], indent=2))

