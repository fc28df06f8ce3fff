"""Right and wrong answers to chapter 12c's exercises (see tests/test_exercises.py)."""

SOLUTIONS = {
    "exercise 1": '''
import torch


def extend_conv_in(weight, extra_channels):
    zeros = weight.new_zeros(weight.shape[0], extra_channels, *weight.shape[2:])
    return torch.cat([weight, zeros], dim=1)
''',
    "exercise 2": '''
import torch


def masked_image_for_training(scenes, masks):
    return torch.where(masks >= 0.5, 0.5, scenes)
''',
    "exercise 3": '''
import torch


def my_iou(a, b):
    inter = (a * b).sum((1, 2, 3))
    union = torch.maximum(a, b).sum((1, 2, 3))
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))
''',
}

WRONG = {
    # puts the new channels first: conv_in would read the mask with the weights meant for the latents
    "exercise 1": ("    return torch.cat([weight, zeros], dim=1)\n", "    return torch.cat([zeros, weight], dim=1)\n"),
    # blacks the masked pixels out in [0, 1]; the pipeline zeroes them in [-1, 1], which is grey
    "exercise 2": ("    return torch.where(masks >= 0.5, 0.5, scenes)\n", "    return scenes * (masks < 0.5)\n"),
    # divides by the sum of both areas (counts the overlap twice) instead of by the union
    "exercise 3": ("    union = torch.maximum(a, b).sum((1, 2, 3))\n", "    union = (a + b).sum((1, 2, 3))\n"),
}
