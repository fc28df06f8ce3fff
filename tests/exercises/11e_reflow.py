"""Right and wrong answers to chapter 11e's exercises (see tests/test_exercises.py)."""

SOLUTIONS = {
    "exercise 1": '''
def path_straightness(points, sigmas):
    dt = sigmas[:-1] - sigmas[1:]
    chord = points[0] - points[-1]
    v = (points[:-1] - points[1:]) / dt[:, None, None]
    return ((v - chord).square().sum(-1) * dt[:, None]).sum(0) / chord.square().sum(-1)
''',
    "exercise 2": "prediction_2 = (40, 2)",
}

WRONG = {
    # every step weighted alike instead of by its length in sigma: right only for uniform steps
    "exercise 1": '''
def path_straightness(points, sigmas):
    dt = sigmas[:-1] - sigmas[1:]
    chord = points[0] - points[-1]
    v = (points[:-1] - points[1:]) / dt[:, None, None]
    return (v - chord).square().sum(-1).mean(0) / chord.square().sum(-1)
''',
    # guidance forgotten: one pass per teacher step
    "exercise 2": "prediction_2 = (20, 2)",
}
