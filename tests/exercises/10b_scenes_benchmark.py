"""Right and wrong answers to chapter 10b's exercises (see tests/test_exercises.py)."""

SOLUTIONS = {
    "exercise 1": '''
def my_count(mask):
    h, w = mask.shape
    seen = [[False] * w for _ in range(h)]
    count = 0
    for i in range(h):
        for j in range(w):
            if not mask[i, j] or seen[i][j]:
                continue
            count += 1
            seen[i][j] = True
            stack = [(i, j)]
            while stack:
                y, x = stack.pop()
                for dy in (-1, 0, 1):
                    for dx in (-1, 0, 1):
                        v, u = y + dy, x + dx
                        if 0 <= v < h and 0 <= u < w and mask[v, u] and not seen[v][u]:
                            seen[v][u] = True
                            stack.append((v, u))
    return count
''',
    "exercise 2": "prediction_2 = (True, False)",
}

WRONG = {
    # four neighbours only: shapes that touch at a corner are counted twice
    "exercise 1": (
        "                for dy in (-1, 0, 1):\n"
        "                    for dx in (-1, 0, 1):\n"
        "                        v, u = y + dy, x + dx\n",
        "                for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):\n"
        "                    if True:\n"
        "                        v, u = y + dy, x + dx\n",
    ),
    "exercise 2": "prediction_2 = (False, False)",  # as if two_object also looked at the colours
}
