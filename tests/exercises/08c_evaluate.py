"""Right and wrong answers to chapter 08c's exercises (see tests/test_exercises.py)."""

SOLUTIONS = {
    "exercise 1": '''
import torch
def pairwise_rms(images):
    k, flat = len(images), images.reshape(len(images), -1)
    d = torch.cdist(flat, flat) / flat.shape[1] ** 0.5  # (k, k) RMS distances, 0 on the diagonal
    return (d.sum() / (k * (k - 1))).item()
''',
    "exercise 2": "prediction_2 = False",
    "exercise 3": '''
from minisd.reader import wilson_interval
def prompts_needed(rate, half_width):
    n = 1
    while True:
        low, high = wilson_interval(round(rate * n), n)
        if (high - low) / 2 <= half_width:
            return n
        n += 1
''',
}

WRONG = {
    # averages over all k * k pairs, the k zero distances of each sample with itself included
    "exercise 1": (
        '    k, flat = len(images), images.reshape(len(images), -1)\n'
        '    d = torch.cdist(flat, flat) / flat.shape[1] ** 0.5  # (k, k) RMS distances, 0 on'
        ' the diagonal\n'
        '    return (d.sum() / (k * (k - 1))).item()\n',
        '    flat = images.reshape(len(images), -1)\n'
        '    return (torch.cdist(flat, flat) / flat.shape[1] ** 0.5).mean().item()\n',
    ),
    # as if each prompt's noise came from its own generator seeded alike
    "exercise 2": "prediction_2 = True",
    # the normal approximation n = z^2 p (1 - p) / h^2, which is too small near 0% and 100%
    "exercise 3": '''
import math
def prompts_needed(rate, half_width):
    return max(1, math.ceil(1.96 ** 2 * rate * (1 - rate) / half_width ** 2))
''',
}
