"""Right and wrong answers to chapter 01's exercises (see tests/test_exercises.py)."""

SOLUTIONS = {
    "exercise 1": '''
def my_bayes(prior, likelihood):
    joint = likelihood * prior[:, None]  # P(a, b) = P(b | a) P(a)
    return joint / joint.sum(0, keepdim=True)  # divide each column by P(b)
''',
    # the blob with the largest std (class 1, std 1.0) decays slowest far away
    "exercise 2": "prediction_2 = 1",
    "exercise 3": '''
import math
def kl_normal(m1, s1, m2, s2):
    return math.log(s2 / s1) + (s1 ** 2 + (m1 - m2) ** 2) / (2 * s2 ** 2) - 0.5
kl_pq = kl_normal(0.0, 1.0, 1.0, 2.0)
kl_qp = kl_normal(1.0, 2.0, 0.0, 1.0)
''',
}

WRONG = {
    # the joint P(a, b), not normalised by P(b): Bayes' numerator without its denominator
    "exercise 1": (
        '    joint = likelihood * prior[:, None]  # P(a, b) = P(b | a) P(a)\n'
        '    return joint / joint.sum(0, keepdim=True)  # divide each column by P(b)\n',
        '    return likelihood * prior[:, None]\n',
    ),
    # the class with the largest weight: right near the data, wrong far from it
    "exercise 2": "prediction_2 = 0",
    # standard deviations used where the formula wants variances
    "exercise 3": (
        '    return math.log(s2 / s1) + (s1 ** 2 + (m1 - m2) ** 2) / (2 * s2 ** 2) - 0.5\n',
        '    return math.log(s2 / s1) + (s1 + (m1 - m2) ** 2) / (2 * s2) - 0.5\n',
    ),
}
