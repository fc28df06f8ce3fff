"""Right and wrong answers to chapter 08b_resume_and_scale's exercises (see tests/test_exercises.py)."""

SOLUTIONS = {
    "exercise 1": '''
def my_slice(batch_size, rank, world_size):
    if batch_size % world_size:
        raise ValueError(f"a batch of {batch_size} does not split into {world_size} equal slices")
    per = batch_size // world_size
    return slice(rank * per, (rank + 1) * per)
''',
    "exercise 2": '''
def image_weights(slice_sizes):
    w = len(slice_sizes)
    return [1 / (w * n) for n in slice_sizes for _ in range(n)]
''',
}

WRONG = {
    # the slices overlap by one row: the last row of each slice is also the first of the next
    "exercise 1": ("    return slice(rank * per, (rank + 1) * per)\n", "    return slice(rank * per, (rank + 1) * per + 1)\n"),
    # the whole batch's mean: what equal slices give, not what unequal ones do
    "exercise 2": '''
def image_weights(slice_sizes):
    return [1 / sum(slice_sizes)] * sum(slice_sizes)
''',
}
