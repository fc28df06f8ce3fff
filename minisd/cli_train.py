"""The command line's train, sample, eval, demo and bench commands (chapters 08a to 10c), for `minisd.__main__`.

Hand-written (not exported from a notebook); a command's errors are exceptions with a one-line message.
"""
# Keep the docstring to three lines: a longer one makes nbdev-export list this module in __init__.py's docstring.

import json
from pathlib import Path


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

    cfg = scenes_config(cfg.profile, init_from=args.init_from, seed=cfg.seed)
    return load_scenes(cfg.profile, seed=cfg.seed), cfg


# `train --dataset NAME`: the built-in datasets, each a function (args, cfg) -> (splits, cfg), since a dataset
# may need its own config. Any other --dataset is a path or a hub id, read by `_own_data`.
DATASETS = {"shapes": _shapes, "scenes": _scenes}


def _own_data(args, cfg):
    "Captioned images of your own, cropped and resized to the profile's size, with a fixed test split held out."
    from dataclasses import replace

    from minisd.core import get_profile
    from minisd.own_data import captioned_splits

    splits = captioned_splits(args.dataset, get_profile(cfg.profile).image_size, args.image_column,
                              args.caption_column, seed=cfg.seed)
    # the mini CLIP's positives: captions parse_caption cannot read match by their text, not by their meaning
    return splits, replace(cfg, clip={**cfg.clip, "positives": "caption"})


def recipe_overrides(args, cfg):
    """The recipe fields that `train`'s flags set (those given), checked against `cfg`: a one-line ValueError if bad.

    A density parameter without its density (e.g. --logit-std with uniform timesteps) is refused, not ignored.
    """
    from minisd.recipes import RECIPE_DEFAULTS, check_recipe, recipe_of

    given = {k: getattr(args, k) for k in RECIPE_DEFAULTS if getattr(args, k, None) is not None}
    recipe = {**recipe_of(cfg), **given}
    for flag, density in (("logit_mean", "logit_normal"), ("logit_std", "logit_normal"), ("mode_scale", "mode")):
        if flag in given and recipe["timestep_sampling"] != density:
            raise ValueError(f"--{flag.replace('_', '-')} applies to --timestep-sampling {density}; "
                             f"timestep_sampling is {recipe['timestep_sampling']!r}")
    for flag in ("edm_p_mean", "edm_p_std"):
        if flag in given and not recipe["edm_sigma_data"]:
            raise ValueError(f"--{flag.replace('_', '-')} applies to EDM: give --edm-sigma-data > 0 too")
    try:
        check_recipe(recipe)
    except ValueError as e:  # name the flags as well as the fields
        raise ValueError(f"{e} (flags: --{'/--'.join(k.replace('_', '-') for k in given) or 'none'})") from None
    return given


def _check_pipeline_folder(folder):
    "--init-from's folder must hold a whole pipeline: a one-line error naming what is missing."
    from minisd.pipeline import COMPONENTS

    missing = [part for part in COMPONENTS if not (folder / part).is_dir()]
    if missing:
        raise ValueError(f"--init-from {folder}: not a trained pipeline folder (no {', '.join(missing)})")


def train_command(args):
    "The `train` command, in one process or in each process that torchrun starts (then rank 0 alone writes and prints)."
    from dataclasses import replace

    from minisd import train, training_utils

    if args.model == "mmdit":
        from minisd.cli_flow import train_mmdit_command

        return train_mmdit_command(args, DATASETS.get(args.dataset, _own_data))
    recipe_overrides(args, train.config_for(args.profile))  # bad flags fail before any work
    if args.init_from:
        _check_pipeline_folder(args.init_from)
        if args.init_from.resolve() == args.out.resolve():
            raise ValueError(f"--init-from and --out are both {args.out}: fine-tune into another folder")
    device = training_utils.init_distributed()  # under torchrun: join the group; under plain python: nothing happens
    try:
        cfg = train.config_for(args.profile)
        with training_utils.main_process_first():  # rank 0 fills the data caches, then the other processes read them
            splits, cfg = DATASETS.get(args.dataset, _own_data)(args, cfg)
        if args.init_from and not cfg.init_from:  # scenes_config has its own fine-tuning recipe
            cfg = training_utils.fine_tune_config(cfg, args.init_from)
        cfg = replace(cfg, **recipe_overrides(args, cfg))  # after the dataset, whose config (scenes) may differ
        if args.text_encoder_lr is not None:
            cfg = replace(cfg, text_encoder_lr=args.text_encoder_lr)
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


def sample_command(args):
    "The `sample` command: a captioned PNG grid from a Stable Diffusion folder, or from an SD3 one."
    import torch

    from minisd.cli_flow import default_guidance
    from minisd.core import image_grid

    default_guidance(args)
    if pipeline_class(args.checkpoint) == "StableDiffusion3Pipeline":
        from minisd.cli_flow import sample_sd3

        return sample_sd3(args)
    pipe = load_pipeline(args.checkpoint, _sampler(args.checkpoint, args.scheduler))
    generator = torch.Generator().manual_seed(args.seed)
    images = pipe(args.prompt, num_inference_steps=args.steps, guidance_scale=args.guidance, generator=generator,
                  height=args.height, width=args.width, guidance_rescale=args.guidance_rescale)
    image_grid(images, captions=args.prompt, path=args.out, show=False)
    print(f"wrote {len(args.prompt)} image(s) to {args.out}")


def eval_command(args):
    "The `eval` command: prompt adherence on the test and held-out prompts, written as a JSON report."
    from minisd import evaluate
    from minisd.cli_flow import default_guidance
    from minisd.core import get_profile
    from minisd.data import load_captioned_shapes

    default_guidance(args)
    if pipeline_class(args.checkpoint) == "StableDiffusion3Pipeline":
        from minisd.cli_flow import eval_sd3

        return eval_sd3(args)
    pipe = load_pipeline(args.checkpoint)
    splits = load_captioned_shapes(get_profile(args.profile))
    report = evaluate.evaluate(pipe, splits, args.prompts, args.steps, args.guidance, args.seed,
                               _sampler(args.checkpoint, args.scheduler))
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


def demo_command(args):
    "The `demo` command: train all stages, then sample, evaluate and sweep (chapter 08c's main job)."
    from minisd import evaluate

    report = evaluate.demo(args.out, profile=args.profile, resume=args.resume)
    ev = report["eval"]
    print(f"done in {report['total_seconds']:.0f} s; adherence (all attributes) test {ev['test']['all']:.1%}, "
          f"held-out {ev['heldout']['all']:.1%}; see {args.out}/")


def _model_index(folder):
    "A folder's model_index.json as a dict, or {} when it cannot be read."
    try:
        index = json.loads((Path(folder) / "model_index.json").read_text())
    except (OSError, ValueError):
        return {}
    return index if isinstance(index, dict) else {}


def pipeline_class(folder):
    "The `_class_name` in a folder's model_index.json, or None when it cannot be read."
    return _model_index(folder).get("_class_name")


def _sampler(folder, name):
    """`--scheduler` NAME for `folder`: its default, ddim, stands for an EDM folder's own sampler (edm_euler), and a
    sampler of the other parametrisation is refused (`check_parametrisation`) in one line that names the fix."""
    from minisd.pipeline import check_parametrisation, saved_scheduler_class, scheduler_class

    try:
        saved = saved_scheduler_class(folder)  # what from_pretrained will load
    except (OSError, ValueError, AttributeError, IndexError, TypeError):  # load_pipeline says what is wrong
        return name
    edm = "sigma_data" in saved._config_keys()  # the saved sampler's parametrisation
    if edm and name == "ddim":
        return "edm_euler"
    wanted = scheduler_class(name)  # an unknown name: its own one-line error
    try:
        check_parametrisation(wanted, edm)
    except ValueError as e:
        raise ValueError(f"--scheduler {name} cannot sample {folder}: " + (
            "its model was trained with EDM's preconditioning; use --scheduler edm_euler" if edm else
            f"its model was trained on SD's DDPM schedule (its sampler is {saved.__name__}); edm_euler is for folders "
            "trained with --edm-sigma-data")) from e
    return name


def bench_command(args):
    "The `bench` command: run the benchmark, print the scores and a leaderboard row, write the report."
    from minisd import scene_benchmark
    from minisd.core import get_profile

    profile = get_profile(args.profile)
    command = f"python -m minisd bench {args.checkpoint} --profile {profile.name}"
    if args.checkpoint == "real":
        generate = "real"
    else:
        pipe = load_pipeline(Path(args.checkpoint))
        generate = scene_benchmark.pipeline_generator(pipe, args.steps, args.guidance,
                                                      _sampler(args.checkpoint, args.scheduler))
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
