"""minisd.tokenizer: identical ids to transformers' CLIPTokenizer on files written here, both file formats."""

import random
import warnings

import pytest
import torch

from minisd.tokenizer import BYTE_DECODER, BYTE_ENCODER, CLIPTokenizer, bytes_to_unicode, pre_tokenize, normalize

CORPUS = [
    f"a {size} {colour} {shape} {where}"
    for size in ("small", "large", "")
    for colour in ("red", "green", "blue", "yellow", "cyan", "white")
    for shape in ("circle", "square", "triangle")
    for where in ("in the top left", "at the bottom right", "in the center", "in the top right", "at the bottom left")
] + [
    "The quick brown fox jumps over the lazy dog. It's 12 o'clock, isn't it? We'll see; they've gone.",
    "Stable Diffusion reads a prompt with CLIP's text transformer: 77 tokens, byte-level BPE!",
    "photo of an astronaut riding a horse on mars, highly detailed, 4k, trending on artstation",
] * 3


def _strings(n_random=250):
    fixed = [
        "", " ", "   \t\n ", "a", "A", "a red circle", "A LARGE Red CIRCLE in the TOP left",
        "a small cyan triangle at the bottom right.", "hello, world!!! ...", "it's i'm you're we've they'll he'd don't",
        "'s 't 'S 'T '' ''s !'s", "numbers 0 12 345 6789 3.14159 1,000,000 -7 +8", "x²+y²=z² ½ ⅓ Ⅻ ①",
        "café naïve façade",
        "cafe\u0301 (combining accent, NFC makes it one char)", "Straße ΟΔΟΣ σοφός İstanbul", "汉字 テキスト 한국어",
        "مرحبا بالعالم", "emoji 😀🎨🚀 👩‍👩‍👧 👍🏽 🇫🇷", "tabs\tand\nnewlines\r\nand\xa0nbsp\u3000ideographic\u2009thin",
        "file\x1cseparators\x1d\x1e\x1f and \x00 null \x7f del", "<|startoftext|>a red circle<|endoftext|>",
        "<|ENDOFTEXT|> upper-case specials are plain text", "a<|endoftext|>b<|startoftext|>c", "<|endoftext",
        "__under_scores__ and #hashtags @mentions https://example.com/a?b=c&d=e", "a" * 300, "ab " * 200,
        "word " * 2000, "x" * 10_000, "😀" * 100, "mixed 中文 and English and 123 and émoji 🎉 together",
        "ʼs modifier apostrophe’s curly", "\u200bzero\u200bwidth\u200b space", "trailing space ", " leading space",
    ]
    rng = random.Random(0)
    pool = ("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789    '''!?.,;:-_()[]{}<>|/\\\"#$%&*+=~`^"
            "éèêëàâäîïôöûüçñßæøåÉÀÇΣσςλ汉字テキ😀🎨👍\u0301\t\n\xa0²½")
    words = [w for c in CORPUS for w in c.split()]
    randoms = []
    for i in range(n_random):
        if i % 2:
            randoms.append("".join(rng.choice(pool) for _ in range(rng.randint(1, 60))))
        else:
            ws = [rng.choice(words) for _ in range(rng.randint(1, 25))]
            randoms.append(" ".join(w.upper() if rng.random() < 0.2 else w for w in ws))
    return fixed + randoms


@pytest.fixture(scope="module")
def trained():
    return CLIPTokenizer.train(CORPUS, num_merges=400)


@pytest.fixture(scope="module")
def hf_from_ours(trained, tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    folder = trained.save_pretrained(tmp_path_factory.mktemp("ours"))
    assert {"vocab.json", "merges.txt", "tokenizer_config.json"} <= {p.name for p in folder.iterdir()}
    return transformers.CLIPTokenizer.from_pretrained(str(folder))


def test_byte_table_is_a_bijection_on_printables():
    table = bytes_to_unicode()
    assert len(set(table.values())) == 256
    assert all(c.isprintable() and not c.isspace() for c in table.values())
    assert table[ord("a")] == "a" and table[ord(" ")] == "Ġ"  # GPT-2's famous space
    assert all(BYTE_DECODER[BYTE_ENCODER[b]] == b for b in range(256))


def test_pre_tokenize_follows_clips_regex():
    assert pre_tokenize(normalize("It's 12 o'clock!!  A red-circle")) == \
        ["it", "'s", "1", "2", "o", "'", "clock", "!!", "a", "red", "-", "circle"]


def test_training_is_deterministic_and_learns_whole_words(trained):
    again = CLIPTokenizer.train(CORPUS, num_merges=400)
    assert again.merges == trained.merges and again.encoder == trained.encoder
    for word in ("red", "circle", "triangle", "yellow", "cyan", "bottom"):
        assert trained.tokenize(word) == [word + "</w>"], word
    assert trained.vocab_size == len(trained.encoder) == 512 + len({a + b for a, b in trained.merges}) + 2
    assert trained.bos_token_id == trained.vocab_size - 2 and trained.eos_token_id == trained.vocab_size - 1


@pytest.mark.filterwarnings("ignore:a text of .* tokens was truncated:UserWarning")  # long strings are cut on purpose
def test_same_ids_as_transformers_on_our_files(trained, hf_from_ours):
    strings = _strings()
    assert len(strings) >= 250
    ours = trained(strings)
    ref = hf_from_ours(strings, padding="max_length", max_length=77, truncation=True, return_tensors="pt")["input_ids"]
    assert ours.shape == ref.shape == (len(strings), 77) and ours.dtype == torch.long
    bad = [s for s, a, b in zip(strings, ours, ref) if not torch.equal(a, b)]
    assert not bad, f"{len(bad)} strings differ, e.g. {bad[:3]!r}"


def test_same_ids_without_padding_or_truncation(trained, hf_from_ours):
    for s in _strings(40):
        if len(s) < 200:
            assert trained.encode(s, truncation=False) == hf_from_ours(s)["input_ids"], repr(s)


def test_decode_matches_transformers(trained, hf_from_ours):
    for s in _strings(40)[:60]:
        ids = trained.encode(s)
        ours_text = trained.decode(ids, skip_special_tokens=True)
        assert ours_text == hf_from_ours.decode(ids, skip_special_tokens=True), repr(s)
        assert trained.decode(ids) == hf_from_ours.decode(ids), repr(s)


@pytest.mark.filterwarnings("ignore:a text of .* tokens was truncated:UserWarning")  # long strings are cut on purpose
def test_reads_transformers_tokenizer_json(trained, hf_from_ours, tmp_path):
    hf_from_ours.save_pretrained(tmp_path)
    assert (tmp_path / "tokenizer.json").exists() and not (tmp_path / "merges.txt").exists()
    ours = CLIPTokenizer.from_pretrained(tmp_path)
    assert ours.merges == trained.merges and ours.encoder == trained.encoder
    strings = _strings(60)
    assert torch.equal(ours(strings, max_length=77), trained(strings))


@pytest.mark.filterwarnings("ignore:a text of .* tokens was truncated:UserWarning")  # long strings are cut on purpose
def test_reads_a_handwritten_clip_folder(tmp_path):
    """A tiny hand-made vocab.json + merges.txt, like the hub's SD tokenizer folders (with pad '!', as SD 2)."""
    transformers = pytest.importorskip("transformers")
    import json

    tokens = list(BYTE_ENCODER.values()) + [t + "</w>" for t in BYTE_ENCODER.values()]
    merges = [("r", "e"), ("re", "d</w>"), ("c", "i"), ("ci", "r"), ("l", "e</w>"), ("cir", "c"), ("circ", "le</w>")]
    tokens += [a + b for a, b in merges] + ["<|startoftext|>", "<|endoftext|>"]
    (tmp_path / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}), encoding="utf-8")
    lines = "\n".join(f"{a} {b}" for a, b in merges)
    (tmp_path / "merges.txt").write_text("#version: 0.2\n" + lines + "\n", encoding="utf-8")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 16}), encoding="utf-8")
    ours = CLIPTokenizer.from_pretrained(tmp_path)
    ref = transformers.CLIPTokenizer.from_pretrained(str(tmp_path))
    assert ours.model_max_length == 16
    assert ours.tokenize("a red circle") == ["a</w>", "red</w>", "circle</w>"]
    for s in _strings(60):
        assert ours(s)[0].tolist() == ref(s, padding="max_length", max_length=16, truncation=True)["input_ids"], repr(s)


def test_truncation_is_reported_once(trained):
    trained = CLIPTokenizer(trained.encoder, trained.merges)  # a fresh one: not yet warned
    long = "a red circle " * 40
    with pytest.warns(UserWarning, match="truncated"):
        ids = trained(long)
    assert ids.shape == (1, 77) and ids[0, 0] == trained.bos_token_id and ids[0, -1] == trained.eos_token_id
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trained(long)  # second time: silent
        trained("short")


def test_padding_longest_and_errors(trained):
    ids = trained(["a red circle", "a"], padding="longest")
    assert ids.shape == (2, 5) and ids[1, -1] == trained.pad_token_id
    assert trained([], padding="longest").shape == (0, 0)
    with pytest.raises(ValueError, match="padding"):
        trained("a", padding="max")
    with pytest.raises(TypeError, match="text"):
        trained.encode(3)
    with pytest.raises(FileNotFoundError):
        CLIPTokenizer.from_pretrained("/nonexistent-folder")
