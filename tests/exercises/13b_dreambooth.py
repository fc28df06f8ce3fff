"""Right and wrong answers to chapter 13b's exercises (see tests/test_exercises.py)."""

SOLUTIONS = {
    "exercise 1": '''
import torch
def dreambooth_loss(model_pred, target, prior_loss_weight):
    pred, pred_prior = model_pred.chunk(2)
    target, target_prior = target.chunk(2)
    mse = torch.nn.functional.mse_loss
    return mse(pred, target) + prior_loss_weight * mse(pred_prior, target_prior)
''',
    "exercise 2": '''
def is_rare(tokenizer, word, captions):
    if word in tokenizer.encoder or word + "</w>" in tokenizer.encoder:
        return False
    seen = {piece for caption in captions for piece in tokenizer.tokenize(caption)}
    return not any(piece in seen for piece in tokenizer.tokenize(word))
''',
    "exercise 3": "prediction_3 = 16",
}

WRONG = {
    # weights the instance half instead of the class half
    "exercise 1": ("    return mse(pred, target) + prior_loss_weight * mse(pred_prior, target_prior)\n",
                   "    return prior_loss_weight * mse(pred, target) + mse(pred_prior, target_prior)\n"),
    # checks only the vocabulary: pieces already seen in the captions pass as rare
    "exercise 2": ("    return not any(piece in seen for piece in tokenizer.tokenize(word))\n", "    return True\n"),
    # counts only the instance examples
    "exercise 3": "prediction_3 = 8",
}
