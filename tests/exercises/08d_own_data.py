"""Right and wrong answers to chapter 08d's exercises (see tests/test_exercises.py)."""

SOLUTIONS = {
    "exercise 1": '''
import json
def write_metadata(folder, captions):
    lines = [json.dumps({"file_name": name, "text": caption}) for name, caption in captions.items()]
    (folder / "metadata.jsonl").write_text("\\n".join(lines) + "\\n")
''',
    "exercise 2": 'prediction_2 = {"train": 48, "test": 2}',
}

WRONG = {
    # the caption under the column name the shapes use, not the one load_captioned is asked for
    "exercise 1": ('{"file_name": name, "text": caption}', '{"file_name": name, "caption": caption}'),
    # rounding 2.5 up, as on paper; Python rounds a half to even
    "exercise 2": 'prediction_2 = {"train": 47, "test": 3}',
}
