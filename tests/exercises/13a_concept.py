"""Right and wrong answers to chapter 13a_concept's exercises (see tests/test_exercises.py)."""

SOLUTIONS = {
    "exercise 1": '''
import torch
def recolour(white, rgb):
    scale = torch.tensor(rgb, dtype=torch.float32) / 235
    return (torch.from_numpy(white).float() * scale).round().clamp(0, 255).to(torch.uint8).numpy()
''',
    "exercise 2": 'prediction_2 = "yellow"',
}

WRONG = {
    # scales by 255, the largest possible value, instead of the white's 235
    "exercise 1": ("    scale = torch.tensor(rgb, dtype=torch.float32) / 235\n",
                   "    scale = torch.tensor(rgb, dtype=torch.float32) / 255\n"),
    # "half way" read literally: red is as close, but not closer
    "exercise 2": 'prediction_2 = "red"',
}
