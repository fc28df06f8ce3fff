"""Right and wrong answers to chapter 10a's exercises (see tests/test_exercises.py)."""

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
}

WRONG = {
    # no margin: compares the raw offset between the centres, so close objects get a relation
    "exercise 1": (
        '    rx = math.copysign(max(abs(ox) - threshold * wx, 0), ox)\n'
        '    ry = math.copysign(max(abs(oy) - threshold * wy, 0), oy)\n',
        '    rx, ry = ox, oy\n',
    ),
}
