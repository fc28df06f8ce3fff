"""Right and wrong answers to chapter 04a's exercises (see tests/test_exercises.py)."""

SOLUTIONS = {
    "exercise 1": '''
my_merges = [("r", "e"), ("re", "d</w>"), ("c", "i"), ("ci", "r"), ("cir", "c"), ("circ", "l"), ("circl", "e</w>")]
''',
    "exercise 2": "prediction_2 = [515, 513, 514, 100, 101, 370, 516]",
    "exercise 3": '''
import torch
def attention_mask_from_ids(input_ids, eos_token_id):
    first_eos = (input_ids == eos_token_id).int().argmax(1, keepdim=True)  # (B, 1)
    return torch.arange(input_ids.shape[1])[None, :] <= first_eos
''',
}

WRONG = {
    # forgets the end-of-word marker: "red" and "circle" end in d</w> and e</w>, so nothing merges with them
    "exercise 1": '''
my_merges = [("r", "e"), ("re", "d"), ("c", "i"), ("ci", "r"), ("cir", "c"), ("circ", "l"), ("circl", "e")]
''',
    # the last r of "cider" ends the word: it is r</w> (id 256 + 114), not the plain byte r (114)
    "exercise 2": "prediction_2 = [515, 513, 514, 100, 101, 114, 516]",
    # hides every <|endoftext|>, the real end token as well as the padding
    "exercise 3": '''
def attention_mask_from_ids(input_ids, eos_token_id):
    return input_ids != eos_token_id
''',
}
