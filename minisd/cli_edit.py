"""The command line's edit and finetune commands (chapters 12a, 13a and 13b), for `minisd.__main__`.

Hand-written (not exported from a notebook); a command's errors are exceptions with a one-line message.
"""
# Keep the docstring to three lines: a longer one makes nbdev-export list this module in __init__.py's docstring.

from minisd.cli_train import load_pipeline


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


def edit_command(args):
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


def finetune_command(args):
    "The `finetune` command: LoRA, textual inversion or DreamBooth on a folder of pictures (chapter 13b)."
    from minisd import dreambooth, personalise

    pipe = load_pipeline(args.checkpoint)
    if not dreambooth.is_new_word(pipe.tokenizer, args.token):
        raise ValueError(f"--token {args.token!r} is already in the vocabulary (or is not one word): choose a new "
                         "word, e.g. sks")
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    images, captions = dreambooth.read_concept_folder(args.images, args.token, args.class_word, size)
    if args.method == "textual_inversion":
        table, restore = personalise.trainable_token(pipe, args.token, args.class_word or "a")
        losses = personalise.finetune(pipe, images, captions, [table], steps=args.steps, lr=args.lr or 5e-3,
                                      seed=args.seed, after_step=restore)
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
