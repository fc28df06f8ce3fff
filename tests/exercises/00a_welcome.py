"""Right and wrong answers to chapter 00a's exercises (see tests/test_exercises.py)."""

SOLUTIONS = {
    "exercise 1": '''
import math
def my_warmup_cosine(step, total_steps, warmup, final=0.1):
    if step < warmup:
        return (step + 1) / warmup
    return final + (1 - final) * (1 + math.cos(math.pi * (step - warmup) / max(1, total_steps - warmup))) / 2
''',
    "exercise 2": '''
import torch
def same_noise(seed):
    return torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(seed))
''',
    "exercise 3": "prediction_3 = ValueError",
}

WRONG = {
    # warm-up that reaches 1 one step late (step / warmup), the classic off-by-one
    "exercise 1": ('        return (step + 1) / warmup\n', '        return step / warmup\n'),
    # repeatable, but by reseeding everyone's global generator
    "exercise 2": '''
import torch
from minisd.core import seed_everything
def same_noise(seed):
    seed_everything(seed)
    return torch.randn(4, 3, 8, 8)
''',
    "exercise 3": "prediction_3 = KeyError",
}
