"""Right and wrong answers to chapter 00b's exercises (see tests/test_exercises.py)."""

SOLUTIONS = {
    "exercise 1": '''
import torch
def pixel_coverage(x0, x1, y0, y1, image_size):
    lo = torch.arange(image_size, dtype=torch.float64) / image_size  # each pixel's left (or top) side
    def overlap(a, b):  # covered fraction of each pixel's width along one axis
        inside = torch.minimum(lo + 1 / image_size, torch.tensor(b)) - torch.maximum(lo, torch.tensor(a))
        return (inside * image_size).clamp(0, 1)
    return overlap(y0, y1)[:, None] * overlap(x0, x1)[None, :]
''',
    "exercise 2": '''
from minisd.data import COLOURS
def colour_name(rgb):
    def direction(c):  # brightness divided out: the channel ratios
        return [v / max(max(c), 1) for v in c]
    d = direction(rgb)
    return min(COLOURS, key=lambda name: sum((a - b) ** 2 for a, b in zip(d, direction(COLOURS[name]))))
''',
    "exercise 3": "prediction_3 = {'shape': 'circle', 'colour': None, 'size': 'small', 'position': 'top left'}",
}

WRONG = {
    # the 0.5 - d rule of `coverage` with the square's distance max(|x|, |y|): right along the sides,
    # wrong in the corner pixels
    "exercise 1": '''
import torch
def pixel_coverage(x0, x1, y0, y1, image_size):
    u = (torch.arange(image_size, dtype=torch.float64) + 0.5) / image_size
    dx = torch.maximum(x0 - u, u - x1)[None, :]
    dy = torch.maximum(y0 - u, u - y1)[:, None]
    return (0.5 - torch.maximum(dx, dy) * image_size).clamp(0, 1)
''',
    # the nearest palette colour by plain RGB distance: a dim white edge pixel comes out green
    "exercise 2": '''
from minisd.data import COLOURS
def colour_name(rgb):
    return min(COLOURS, key=lambda name: sum((a - b) ** 2 for a, b in zip(rgb, COLOURS[name])))
''',
    # takes the first colour word, as if parse_caption guessed
    "exercise 3": "prediction_3 = {'shape': 'circle', 'colour': 'red', 'size': 'small', 'position': 'top left'}",
}
