"""CLIP's byte-level BPE tokenizer, producing exactly the token ids of OpenAI's CLIP.

The text encoder was trained on these ids, so any difference (clean-up, splitting, merge order)
silently degrades zero-shot accuracy. The merge table `bpe_simple_vocab_16e6.txt.gz` is OpenAI's
file, copied unchanged from the openai-clip package (MIT licence, Copyright (c) 2021 OpenAI;
see LICENSE-openai-clip.txt). The code here is an independent implementation of the same algorithm.
"""
import functools
import gzip
import html
from pathlib import Path
from typing import Dict, Iterable, List, Sequence, Tuple, Union

import ftfy
import regex
import torch

DEFAULT_BPE_PATH = Path(__file__).resolve().parent / "bpe_simple_vocab_16e6.txt.gz"
START_OF_TEXT = "<|startoftext|>"
END_OF_TEXT = "<|endoftext|>"
END_OF_WORD = "</w>"
# CLIP's vocabulary has 49152 BPE entries: 256 bytes, their 256 end-of-word forms and the merges.
NUM_MERGES = 49152 - 256 - 2
# Special tokens, contractions, letter runs, single digits, runs of other non-space characters.
PRE_TOKENIZER = regex.compile(
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^\s\p{L}\p{N}]+",
    regex.IGNORECASE,
)
WHITESPACE_RUN = regex.compile(r"\s+")


@functools.lru_cache(maxsize=None)
def byte_to_unicode() -> Dict[int, str]:
    """Map every byte to a printable character so that BPE works on strings without spaces or controls.

    Printable Latin-1 bytes map to themselves; the remaining bytes, in increasing order,
    map to the code points 256, 257, ... The dict's order (printable bytes first) fixes the
    first 256 vocabulary ids, so it must not be sorted.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    mapping = {byte: chr(byte) for byte in printable}
    others = (byte for byte in range(256) if byte not in mapping)
    for offset, byte in enumerate(others):
        mapping[byte] = chr(256 + offset)
    return mapping


def clean_text(text: str) -> str:
    """Repair mojibake, resolve (doubly) escaped HTML entities, fold whitespace and lower-case."""
    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return WHITESPACE_RUN.sub(" ", text).strip().lower()


def read_merges(bpe_path: Union[str, Path]) -> List[Tuple[str, str]]:
    """The first NUM_MERGES merge rules of a gzipped BPE file (its first line is a version header)."""
    with gzip.open(bpe_path, "rt", encoding="utf-8") as handle:
        lines = handle.read().split("\n")[1:NUM_MERGES + 1]
    merges = []
    for line_number, line in enumerate(lines, start=2):
        pair = tuple(line.split())
        if len(pair) != 2:
            raise ValueError(f"{bpe_path}, line {line_number}: expected a merge 'left right', got {line!r}")
        merges.append(pair)
    if len(merges) != NUM_MERGES:
        raise ValueError(f"{bpe_path}: expected {NUM_MERGES} merge lines, found only {len(merges)}")
    return merges


def merge_pair(symbols: Sequence[str], left: str, right: str) -> List[str]:
    """Replace every non-overlapping occurrence of (left, right), scanning left to right, by one symbol."""
    merged = []
    i = 0
    while i < len(symbols):
        if i + 1 < len(symbols) and symbols[i] == left and symbols[i + 1] == right:
            merged.append(left + right)
            i += 2
        else:
            merged.append(symbols[i])
            i += 1
    return merged


class SimpleTokenizer:
    """Text <-> CLIP token ids. BPE results are cached per word, so repeated class names are cheap."""

    def __init__(self, bpe_path: Union[str, Path] = DEFAULT_BPE_PATH):
        self.byte_encoder = byte_to_unicode()
        self.byte_decoder = {char: byte for byte, char in self.byte_encoder.items()}
        merges = read_merges(bpe_path)
        byte_chars = list(self.byte_encoder.values())
        vocab = [
            *byte_chars,
            *(char + END_OF_WORD for char in byte_chars),
            *(left + right for left, right in merges),
            START_OF_TEXT,
            END_OF_TEXT,
        ]
        self.encoder = {token: index for index, token in enumerate(vocab)}
        self.decoder = dict(enumerate(vocab))
        self.bpe_ranks = {pair: rank for rank, pair in enumerate(merges)}
        self.sot_token = self.encoder[START_OF_TEXT]
        self.eot_token = self.encoder[END_OF_TEXT]
        self._word_cache: Dict[str, Tuple[str, ...]] = {START_OF_TEXT: (START_OF_TEXT,), END_OF_TEXT: (END_OF_TEXT,)}

    @property
    def vocab_size(self) -> int:
        return len(self.encoder)

    def bpe(self, word: str) -> Tuple[str, ...]:
        """Split one byte-encoded word into vocabulary symbols by applying merges in rank order."""
        cached = self._word_cache.get(word)
        if cached is not None:
            return cached
        symbols = [*word[:-1], word[-1] + END_OF_WORD]
        while len(symbols) > 1:
            ranked = [(self.bpe_ranks[pair], pair) for pair in zip(symbols, symbols[1:]) if pair in self.bpe_ranks]
            if not ranked:
                break
            _, (left, right) = min(ranked)
            symbols = merge_pair(symbols, left, right)
        result = tuple(symbols)
        self._word_cache[word] = result
        return result

    def encode(self, text: str) -> List[int]:
        """Token ids of `text`, without start/end tokens."""
        ids = []
        for word in PRE_TOKENIZER.findall(clean_text(text)):
            byte_word = "".join(self.byte_encoder[byte] for byte in word.encode("utf-8"))
            ids.extend(self.encoder[symbol] for symbol in self.bpe(byte_word))
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        """Text of token ids; each end of word becomes a space, invalid UTF-8 becomes U+FFFD."""
        chars = "".join(self.decoder[int(index)] for index in ids)
        data = bytes(self.byte_decoder[char] for char in chars)
        return data.decode("utf-8", errors="replace").replace(END_OF_WORD, " ")


@functools.lru_cache(maxsize=1)
def default_tokenizer() -> SimpleTokenizer:
    """The shared tokenizer on the bundled vocabulary, built on first use rather than at import."""
    return SimpleTokenizer()


def _shorten(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


def tokenize(texts: Union[str, Sequence[str]], context_length: int = 77, truncate: bool = False) -> torch.LongTensor:
    """Token ids [N, context_length] of `texts`: start token, text, end token, zero padding.

    Text that does not fit raises ValueError, or with `truncate=True` keeps the first
    `context_length` tokens and ends them with the end token.
    """
    if isinstance(texts, str):
        texts = [texts]
    if context_length < 2:
        raise ValueError(f"context_length must be at least 2 (start and end tokens), got {context_length}")
    tokenizer = default_tokenizer()
    result = torch.zeros(len(texts), context_length, dtype=torch.long)
    for row, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"tokenize expects strings, got {type(text).__name__} at position {row}: {text!r}")
        ids = [tokenizer.sot_token, *tokenizer.encode(text), tokenizer.eot_token]
        if len(ids) > context_length:
            if not truncate:
                raise ValueError(
                    f"Text {_shorten(text)!r} has {len(ids)} tokens, more than the context length {context_length}; "
                    "pass truncate=True to cut it"
                )
            ids = ids[:context_length]
            ids[-1] = tokenizer.eot_token
        result[row, :len(ids)] = torch.tensor(ids, dtype=torch.long)
    return result
