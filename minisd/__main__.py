"""The command line: `python -m minisd {train,sample,eval,demo,bench,reflow,edit,finetune} --help`.

Hand-written (not exported from a notebook). This file holds the arguments (their types and `build_parser`)
and `main`; the commands themselves live in `minisd.cli_train` (train, sample, eval, demo, bench: chapters
08a to 10c), `minisd.cli_flow` (SD3 folders and reflow: chapters 11d and 11e) and `minisd.cli_edit` (edit, finetune:
chapters 12a to 13b).
Bad arguments and unreadable checkpoints end with one line on stderr and exit status 2; set MINISD_DEBUG=1 to see
the full traceback instead.
"""

import argparse
import math
import os
import sys
from pathlib import Path

from minisd.cli_edit import edit_command, finetune_command
from minisd.cli_flow import reflow_command
from minisd.cli_train import DATASETS, bench_command, demo_command, eval_command, sample_command, train_command

SCHEDULER_NAMES = ("ddim", "ddpm", "dpm++", "euler", "euler_a", "heun", "edm_euler")


def _finite_value(cast, text, what):
    "`cast(text)`, refused with a clear argparse message when it does not parse or is not finite."
    try:
        value = cast(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _at_least(cast, minimum, what):
    "An argparse type: `cast(text)`, refused with a clear message when not finite or below `minimum`."
    def parse(text):
        value = _finite_value(cast, text, f"{what} >= {minimum}")
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


def _sampling_options(p, reflow_aware=False):
    """The options that sample, eval and bench share: --steps, --guidance and --scheduler. With `reflow_aware`,
    --guidance left out is None, for `cli_flow.default_guidance` to choose by the folder (1 for a reflowed one)."""
    p.add_argument("--steps", type=_positive_int, default=20, help="denoising steps (default: %(default)s)")
    p.add_argument("--guidance", type=_non_negative, default=None if reflow_aware else 4.0,
                   help="classifier-free guidance scale (default: 4.0" + (
                       "; 1.0 for a student of `reflow`, whose paths are already guided)" if reflow_aware else ")"))
    p.add_argument("--scheduler", choices=SCHEDULER_NAMES, default="ddim",
                   help="sampler (default: %(default)s, or edm_euler for a folder trained with --edm-sigma-data)")


def _finite(text):
    "An argparse type: any finite number."
    return _finite_value(float, text, "a number")


def _recipe_options(p):
    "`train`'s recipe flags (chapter 08b_recipes), each a TrainConfig field; left out, the profile's value holds."
    g = p.add_argument_group("training recipe (--model unet; see chapter 08b_recipes)")
    g.add_argument("--prediction-type", choices=("epsilon", "v_prediction", "sample"),
                   help="the UNet's target: eps, v or x_0 (default: the profile's, epsilon)")
    g.add_argument("--zero-terminal-snr", action="store_true", default=None,
                   help="rescale the schedule to SNR 0 at t = T and sample with trailing steps (Lin et al. 2024); "
                        "needs --prediction-type v_prediction or sample")
    g.add_argument("--min-snr-gamma", type=_non_negative, metavar="G",
                   help="min-SNR-gamma loss weighting (Hang et al. 2023; the paper uses 5); 0: off")
    g.add_argument("--timestep-sampling", choices=("uniform", "logit_normal", "mode"),
                   help="how training draws t (default: the profile's, uniform)")
    g.add_argument("--logit-mean", type=_finite, help="logit_normal's mean (default 0)")
    g.add_argument("--logit-std", type=_finite, help="logit_normal's std, > 0 (default 1)")
    g.add_argument("--mode-scale", type=_finite, help="the mode density's scale, in [-1, 1.75] (default 1.29)")
    g.add_argument("--offset-noise", type=_non_negative, metavar="S",
                   help="offset noise: eps + S N(0, 1) per sample and channel (Guttenberg 2023); 0: off")
    g.add_argument("--edm-sigma-data", type=_non_negative, metavar="S",
                   help="EDM's preconditioning (Karras et al. 2022) for data of std S (1 for minisd's scaled latents) "
                        "and an EDMEulerScheduler folder (sample it with --scheduler edm_euler); 0: off")
    g.add_argument("--edm-p-mean", type=_finite, help="EDM's training noise levels: log sigma's mean (default -1.2)")
    g.add_argument("--edm-p-std", type=_finite, help="EDM's training noise levels: log sigma's std, > 0 (default 1.2)")


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m minisd", description="Train and sample minisd, a miniature "
                                     "Stable Diffusion, on the embedded captioned shapes.")
    sub = parser.add_subparsers(dest="command", required=True,
                                metavar="{train,sample,eval,demo,bench,reflow,edit,finetune}")
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
    p.add_argument("--init-from", type=Path, metavar="FOLDER",
                   help="fine-tune this pipeline folder rather than train from scratch: its VAE and UNet trained on, "
                        "its text encoder kept (trained on with --text-encoder-lr; with --dataset scenes, chapter "
                        "10c's fine-tuning recipe, which trains it)")
    p.add_argument("--text-encoder-lr", type=_non_negative, metavar="LR",
                   help="> 0: the text encoder trains with the UNet at this peak learning rate (diffusers' "
                        "--train_text_encoder); 0: frozen (default: the recipe's, 0 except --dataset scenes)")
    p.add_argument("--model", choices=("unet", "mmdit"), default="unet",
                   help="unet: Stable Diffusion 1's UNet and DDPM (chapter 08b); mmdit: SD3's transformer and "
                        "rectified flow, saved as a StableDiffusion3Pipeline folder (chapter 11d; --stage all only) "
                        "(default: %(default)s)")
    _recipe_options(p)

    p = sub.add_parser("sample", help="generate a captioned grid of images from prompts",
                       description="Sample images from a trained checkpoint and save them as a PNG grid.")
    p.add_argument("--checkpoint", type=Path, default=Path("outputs/checkpoint"),
                   help="pipeline folder (default: %(default)s)")
    p.add_argument("--prompt", action="append", required=True, help="a prompt; repeat for several")
    _sampling_options(p, reflow_aware=True)
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
    _sampling_options(p, reflow_aware=True)
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

    p = sub.add_parser("reflow", help="straighten an SD3 folder's paths for 1-4 step sampling (chapter 11e)",
                       description="One round of reflow: the teacher's sampler carries --pairs noises to latents for "
                                   "the first captions of the profile's training split, and a copy of its transformer "
                                   "learns the straight line of each pair; the student is written as a new SD3 folder. "
                                   "The defaults are chapter 11e's cpu run.")
    p.add_argument("teacher", type=Path, help="SD3 pipeline folder (from `train --model mmdit`)")
    p.add_argument("--out", type=Path, default=Path("outputs/reflow"), help="folder to write (default: %(default)s)")
    p.add_argument("--profile", type=_profile, help=profile_help + "; chooses the captions (default: the teacher's)")
    p.add_argument("--pairs", type=_positive_int, default=4000, help="noise-latent pairs (default: %(default)s)")
    p.add_argument("--teacher-steps", type=_positive_int, default=20,
                   help="the teacher's Euler steps per pair (default: %(default)s)")
    p.add_argument("--guidance", type=_non_negative, default=4.0,
                   help="the teacher's guidance scale; the student learns guided paths (default: %(default)s)")
    p.add_argument("--steps", type=_positive_int, default=600, help="reflow optimiser steps (default: %(default)s)")
    p.add_argument("--lr", type=_non_negative, default=2e-4, help="peak learning rate (default: %(default)s)")
    p.add_argument("--batch-size", type=_positive_int, default=128, help="pairs per step (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0,
                   help="the student's draws; the pairs' noise uses seed + 1, as chapter 11e (default: %(default)s)")

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


COMMANDS = {"train": train_command, "sample": sample_command, "eval": eval_command, "demo": demo_command,
            "bench": bench_command, "reflow": reflow_command, "edit": edit_command, "finetune": finetune_command}


def run(args):
    "Run the parsed command: each lives in `minisd.cli_train`, `minisd.cli_flow` or `minisd.cli_edit`."
    COMMANDS[args.command](args)


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
