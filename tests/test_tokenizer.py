"""The tokenizer must give OpenAI's token ids for every string: compared against OpenAI's own module."""
import csv
import gzip
import random
import subprocess
import sys

import pytest
import torch

from clip.simple_tokenizer import DEFAULT_BPE_PATH, SimpleTokenizer, tokenize
from tests.equivalence import reference_tokenize

LABEL_CSVS = [
    "k400/kinetics_400_labels.csv",
    "k600/k160_labels_split1.csv",
    "k600/k160_labels_split2.csv",
    "k600/k160_labels_split3.csv",
    "ucf101/ucf_labels.csv",
    "hmdb51/hmdb51_labels.csv",
    "anet/anet1.3_labels.csv",
]
CHARADES_CLASSES = "charades/Charades_v1_classes.txt"

HANDWRITTEN = [
    "",
    "   ",
    "a",
    "A Photo Of A Cat.",
    "This is a video about playing guitar",
    # accents, CJK, Arabic, Cyrillic, Greek, combining marks (NFC and decomposed)
    "café crème brûlée naïve façade",
    "cafe\u0301 e\u0300 n\u0303 A\u030a",
    "日本語のテキスト 中文字符 한국어",
    "مرحبا بالعالم",
    "Привет мир Ωμέγα",
    "Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319algo",
    # emoji, including skin tones, ZWJ sequences and flags
    "I love it 😀👍🏽👨‍👩‍👧‍👦 🇯🇵",
    "🔥🔥🔥",
    # HTML entities, double escaped
    "fish &amp; chips",
    "&lt;b&gt;bold&lt;/b&gt; rock &#39;n&#39; roll",
    "&amp;amp; &amp;lt;tag&amp;gt; &amp;#39;quoted&amp;#39;",
    "&quot;quotes&quot; &nbsp;spaces&nbsp; &eacute;",
    # with a "<" present ftfy leaves entities alone, so both html.unescape passes matter
    "<b> &amp;amp; x",
    "<b>&amp;lt;i&amp;gt; &amp;#39;",
    # mojibake that ftfy repairs
    "The Mona Lisa doesnÃ¢â‚¬â„¢t have eyebrows.",
    "cafÃ© Ã¼ber schÃ¶n",
    "âœ” No problems",
    # contractions, in both cases
    "it's don't we're they've I'm you'll he'd",
    "IT'S DON'T WE'RE THEY'VE I'M YOU'LL HE'D",
    "rock'n'roll o'clock 'quoted'",
    "it’s curly ‘quotes’",
    # numbers and punctuation runs
    "3.14159 1,000,000 42nd 2024-01-01 ½ ² ٣",
    "!!! ??? ... --- *** ;-) :-( <<>> ((( )))",
    "wood burning (art) / pole vault & high-jump",
    "e-mail@example.com https://example.org/path?q=1#frag",
    # whitespace variety
    "tabs\tand\nnewlines\r\nand   multiple    spaces",
    "\u00a0non-breaking\u2003em space\u3000ideographic\u200bzero width",
    "  leading and trailing  \n",
    # the special tokens spelled out in text
    "<|startoftext|>hello<|endoftext|>",
    "<|ENDOFTEXT|> upper",
    # control characters and rare symbols
    "bell\x07 null\x00 escape\x1b",
    "∑∫√∞ ≠ ≤ ≥ → ⇒ ♠♣♥♦ ©®™",
]


def read_class_names(shared_lists):
    names = []
    for relative in LABEL_CSVS:
        with open(shared_lists / relative, newline="", encoding="utf-8") as handle:
            names.extend(row["name"] for row in csv.DictReader(handle))
    with open(shared_lists / CHARADES_CLASSES, encoding="utf-8") as handle:
        names.extend(line.strip().split(" ", 1)[1] for line in handle if line.strip())
    return names


def random_strings(count, seed=0):
    """Mixtures of ASCII, accents, CJK, emoji, apostrophes, entities and odd whitespace."""
    pieces = [
        "a", "Z", "q", "7", "0", " ", "  ", "\t", "\n", "'", "'s", "'ll", "&amp;", "&#39;", "-", ".", "!?",
        "é", "ß", "Ø", "ñ", "\u0301", "中", "語", "ق", "я", "😀", "🏽", "\u200d", "ﬁ", "Ⅻ", "¾", "<|endoftext|>",
    ]
    rng = random.Random(seed)
    return ["".join(rng.choice(pieces) for _ in range(rng.randint(1, 30))) for _ in range(count)]


@pytest.fixture(scope="module")
def reference_tokenizer(openai_reference):
    return openai_reference.simple_tokenizer.SimpleTokenizer()


@pytest.fixture(scope="module")
def class_names(shared_lists):
    names = read_class_names(shared_lists)
    assert len(names) == 400 + 3 * 160 + 101 + 51 + 200 + 157
    return names


def test_vocabulary_and_special_ids_match_reference(reference_tokenizer):
    tokenizer = SimpleTokenizer()
    assert tokenizer.vocab_size == len(reference_tokenizer.encoder) == 49408
    assert tokenizer.encoder == reference_tokenizer.encoder
    assert tokenizer.bpe_ranks == reference_tokenizer.bpe_ranks
    assert (tokenizer.sot_token, tokenizer.eot_token) == (49406, 49407)
    assert reference_tokenizer.encoder["<|startoftext|>"] == 49406
    assert reference_tokenizer.encoder["<|endoftext|>"] == 49407


def test_vocab_file_is_openai_copy(openai_reference):
    with open(openai_reference.simple_tokenizer.default_bpe(), "rb") as reference_file:
        assert DEFAULT_BPE_PATH.read_bytes() == reference_file.read()


@pytest.mark.parametrize("kind", ["class names", "prompts"])
def test_dataset_class_names_match_reference(reference_tokenizer, class_names, kind):
    texts = class_names if kind == "class names" else [f"This is a video about {name}" for name in class_names]
    assert torch.equal(tokenize(texts), reference_tokenize(reference_tokenizer, texts))


def test_handwritten_strings_match_reference(reference_tokenizer):
    assert torch.equal(tokenize(HANDWRITTEN), reference_tokenize(reference_tokenizer, HANDWRITTEN))


def test_random_strings_match_reference(reference_tokenizer):
    texts = random_strings(300)
    assert torch.equal(tokenize(texts), reference_tokenize(reference_tokenizer, texts))


@pytest.mark.parametrize("context_length", [5, 77])
def test_truncation_matches_reference(reference_tokenizer, context_length):
    texts = [
        " ".join(HANDWRITTEN),
        "word " * 200,
        "a b c",
        "数字" * 100,
    ]
    expected = reference_tokenize(reference_tokenizer, texts, context_length, truncate=True)
    actual = tokenize(texts, context_length=context_length, truncate=True)
    assert torch.equal(actual, expected)
    long_rows = [0, 1, 3]
    assert (actual[long_rows, -1] == 49407).all()


def test_text_that_exactly_fits_is_kept_whole():
    fits = tokenize("a " * 75)  # 75 word tokens + start + end = 77
    assert fits[0, 0] == 49406 and fits[0, 76] == 49407 and (fits[0, 1:76] == fits[0, 1]).all()
    with pytest.raises(ValueError, match="context length 77"):
        tokenize("a " * 76)


def test_too_long_text_error_names_text_and_context_length():
    with pytest.raises(ValueError, match=r"'playing guitar playing guitar.*context length 8"):
        tokenize(["fine", "playing guitar " * 5], context_length=8)
    very_long = "abseiling " * 1000
    with pytest.raises(ValueError) as error:
        tokenize(very_long)
    message = str(error.value)
    assert "abseiling abseiling" in message and "77" in message
    assert len(message) < 300


def test_single_string_gives_one_row_of_longs():
    tokens = tokenize("a photo of a dog", context_length=10)
    assert tokens.dtype == torch.long and tokens.shape == (1, 10)
    assert tokens[0, 0] == 49406 and (tokens[0, 7:] == 0).all()


def test_bad_arguments_are_rejected():
    with pytest.raises(TypeError, match="position 1"):
        tokenize(["ok", 3])
    with pytest.raises(ValueError, match="context_length"):
        tokenize("ok", context_length=1)


@pytest.mark.parametrize(
    "text, decoded",
    [
        ("a photo of a cat", "a photo of a cat "),
        ("  Playing   GUITAR\n", "playing guitar "),
        ("playing guitar, fast!", "playing guitar , fast ! "),
        ("it's 日本 🙂", "it 's 日本 🙂 "),
    ],
)
def test_decode_inverts_encode(text, decoded):
    """Decoding gives the cleaned text with a space after each word (OpenAI's convention)."""
    tokenizer = SimpleTokenizer()
    assert tokenizer.decode(tokenizer.encode(text)) == decoded


def test_bad_vocab_file_error_names_the_file(tmp_path):
    short = tmp_path / "short.txt.gz"
    with gzip.open(short, "wt", encoding="utf-8") as handle:
        handle.write("#version: 0.2\ni n\nt h\n")
    with pytest.raises(ValueError, match="short.txt.gz"):
        SimpleTokenizer(short)
    malformed = tmp_path / "malformed.txt.gz"
    with gzip.open(malformed, "wt", encoding="utf-8") as handle:
        handle.write("#version: 0.2\ni n\nthree parts here\n")
    with pytest.raises(ValueError, match="malformed.txt.gz, line 3"):
        SimpleTokenizer(malformed)


@pytest.mark.slow
def test_default_tokenizer_is_not_built_at_import():
    code = "import clip.simple_tokenizer as m; assert m.default_tokenizer.cache_info().currsize == 0"
    subprocess.run([sys.executable, "-c", code], check=True)
