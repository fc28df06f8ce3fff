"""Right and wrong answers to chapter 00e's exercises (see tests/test_exercises.py)."""

SOLUTIONS = {
    "exercise 1": '''
import torch
from minisd.data import POSITION_CENTRES
def my_position(image):
    w = image.amax(0)
    h, wd = w.shape
    x = ((torch.arange(wd) + 0.5) / wd * w.sum(0)).sum() / w.sum()
    y = ((torch.arange(h) + 0.5) / h * w.sum(1)).sum() / w.sum()
    return min(POSITION_CENTRES, key=lambda p: (POSITION_CENTRES[p][0] - x) ** 2 + (POSITION_CENTRES[p][1] - y) ** 2)
''',
    "exercise 2": '''
import math
def my_wilson(k, n, z=1.96):
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)
''',
    "exercise 3": 'prediction_3 = "none"',
}

WRONG = {
    # rows and columns swapped: x taken from the rows, y from the columns
    "exercise 1": (
        '    x = ((torch.arange(wd) + 0.5) / wd * w.sum(0)).sum() / w.sum()\n'
        '    y = ((torch.arange(h) + 0.5) / h * w.sum(1)).sum() / w.sum()\n',
        '    y = ((torch.arange(wd) + 0.5) / wd * w.sum(0)).sum() / w.sum()\n'
        '    x = ((torch.arange(h) + 0.5) / h * w.sum(1)).sum() / w.sum()\n',
    ),
    # the textbook (Wald) interval, clipped: collapses to a point at 0/n and n/n
    "exercise 2": (
        '    centre = (p + z * z / (2 * n)) / (1 + z * z / n)\n'
        '    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)\n'
        '    return max(0.0, centre - half), min(1.0, centre + half)\n',
        '    half = z * math.sqrt(p * (1 - p) / n)\n'
        '    return max(0.0, p - half), min(1.0, p + half)\n',
    ),
    "exercise 3": 'prediction_3 = "yellow"',  # the mean hue's nearest colour, before the purity test
}
