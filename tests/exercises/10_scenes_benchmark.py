"""Right and wrong answers to chapter 10's exercises (see tests/test_exercises.py)."""

SOLUTIONS = {
    "exercise 1": '''
import math
def my_left_of(box_a, box_b, threshold=0.1):
    ax, ay = (box_a[0] + box_a[2]) / 2, (box_a[1] + box_a[3]) / 2
    bx, by = (box_b[0] + box_b[2]) / 2, (box_b[1] + box_b[3]) / 2
    ox, oy = ax - bx, ay - by
    wx = (box_a[2] - box_a[0]) + (box_b[2] - box_b[0])
    wy = (box_a[3] - box_a[1]) + (box_b[3] - box_b[1])
    rx = math.copysign(max(abs(ox) - threshold * wx, 0), ox)
    ry = math.copysign(max(abs(oy) - threshold * wy, 0), oy)
    if abs(rx) < 1e-3 and abs(ry) < 1e-3:
        return False
    return rx / math.hypot(ox, oy) < -0.5
''',
    "exercise 2": '''
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
    "exercise 3": "prediction_3 = (True, False)",
}

WRONG = {
    # no margin: compares the raw offset between the centres, so close objects get a relation
    "exercise 1": (
        "    rx = math.copysign(max(abs(ox) - threshold * wx, 0), ox)\n"
        "    ry = math.copysign(max(abs(oy) - threshold * wy, 0), oy)\n",
        "    rx, ry = ox, oy\n",
    ),
    # four neighbours only: shapes that touch at a corner are counted twice
    "exercise 2": (
        "                for dy in (-1, 0, 1):\n"
        "                    for dx in (-1, 0, 1):\n"
        "                        v, u = y + dy, x + dx\n",
        "                for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):\n"
        "                    if True:\n"
        "                        v, u = y + dy, x + dx\n",
    ),
    "exercise 3": "prediction_3 = (False, False)",  # as if two_object also looked at the colours
}
