"""Right and wrong answers to chapter 10c's exercises (see tests/test_exercises.py)."""

SOLUTIONS = {
    "exercise 1": '''
def my_attention_share(word_map, box_right, box_wrong):
    def mean_in(box):
        x0, y0, x1, y1 = (int(v) for v in box)
        return word_map[y0:y1, x0:x1].mean()

    right, wrong = mean_in(box_right), mean_in(box_wrong)
    return float(right / (right + wrong))
''',
    "exercise 2": "prediction_2 = 4",
}

WRONG = {
    # sums instead of means: the bigger object wins whatever the word means
    "exercise 1": '''
def my_attention_share(word_map, box_right, box_wrong):
    def total_in(box):
        x0, y0, x1, y1 = (int(v) for v in box)
        return word_map[y0:y1, x0:x1].sum()

    right, wrong = total_in(box_right), total_in(box_wrong)
    return float(right / (right + wrong))
''',
    "exercise 2": "prediction_2 = 2",  # the ratio of the sides, not of the pixel counts
}
