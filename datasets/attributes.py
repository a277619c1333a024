"""Generated video attributes: the JSON file that holds them and the dataset the attributes branch reads.

JSON layout (the original implementation's, so its released files load):
`{"<video path as written in the list>": {"classname_topk": ["best phrase", "second", ...], ...}, ...}`.
Phrases are ranked best first. Other keys of an entry are ignored when reading; the generator of this
project also writes `"classname_topk_scores"` (the phrases' cosine similarities with the video).

The attribute sentence of a video is the class prompt template filled with its first k phrases,
"This is a video about a1, a2, ..., ak" (the original joins with "," alone, which CLIP tokenizes
identically).
"""
import functools
import json
import logging
from pathlib import Path

from torch.utils.data import Dataset

from clip import tokenize
from modules.text_prompt import PROMPT_TEMPLATE
from datasets.files import atomic_file

logger = logging.getLogger(__name__)

ATTRIBUTES_KEY = "classname_topk"
SCORES_KEY = "classname_topk_scores"
DEFAULT_TOPK = 5  # the original dataset's default for data.select_topk_attributes


class AttributesError(ValueError):
    """An attributes file that cannot be used; the message names the file and the video."""


def read_attributes(path) -> dict:
    """The parsed attributes file, with errors that name the file (and the position of a JSON error)."""
    path = Path(path)
    if not path.is_file():
        raise AttributesError(f"attributes file {path} does not exist (make it with tools/generate_attributes.py)")
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as error:
        raise AttributesError(f"{path}: not valid JSON at line {error.lineno}, column {error.colno}: "
                              f"{error.msg}") from None
    if not isinstance(data, dict):
        raise AttributesError(f"{path}: expected an object mapping video paths to their attributes, "
                              f"got a JSON {type(data).__name__}")
    return data


def write_attributes(entries: dict, path) -> None:
    """Writes `entries` (in their order, one video per line) to a temporary file, then renames it over `path`:
    an interrupted writer never leaves a truncated file."""
    lines = [f"{json.dumps(video, ensure_ascii=False)}: {json.dumps(entry, ensure_ascii=False)}"
             for video, entry in entries.items()]
    text = "{\n" + ",\n".join(lines) + "\n}\n" if lines else "{}\n"
    with atomic_file(path, "w", encoding="utf-8") as file:
        file.write(text)


def video_phrases(attributes: dict, video: str, source) -> list:
    """The ranked phrases of `video`, checked; `source` (the file) is named in errors."""
    if video not in attributes:
        raise AttributesError(f"video {video!r} has no attributes in {source}")
    entry = attributes[video]
    phrases = entry.get(ATTRIBUTES_KEY) if isinstance(entry, dict) else None
    if not (isinstance(phrases, list) and phrases and all(isinstance(p, str) for p in phrases)):
        raise AttributesError(f"{source}: the entry of video {video!r} must hold '{ATTRIBUTES_KEY}', a non-empty "
                              f"list of phrases; got {entry!r}")
    return phrases


def attribute_sentence(phrases) -> str:
    return PROMPT_TEMPLATE.format(", ".join(phrases))


class AttributesDataset(Dataset):
    """The attribute sentences of the videos of a video dataset, in its list order.

    `videos`: a VideoDataset (its records give the paths looked up in the JSON and the labels).
    Items are `(token ids [77], label)`: the branch reads no frames. Every video must have attributes;
    one that has none is an error naming the video, its list line and the JSON file, raised here
    rather than in the middle of training.
    """

    def __init__(self, videos, attributes_file, topk: int = DEFAULT_TOPK, tokenizer=None):
        """`tokenizer`: the CLIP model's (open_clip models have their own); default OpenAI's, truncating."""
        self.tokenizer = tokenizer or functools.partial(tokenize, truncate=True)
        if topk < 1:
            raise ValueError(f"data.select_topk_attributes must be at least 1, got {topk}")
        attributes = read_attributes(attributes_file)
        self.attributes_file, self.class_names = attributes_file, videos.class_names
        self.sentences, self.labels = [], []
        for record in videos.records:
            if not isinstance(record.label, int):
                raise AttributesError(f"{record.where}: the attributes branch needs single-label lists, "
                                      f"got labels {record.label}")
            try:
                phrases = video_phrases(attributes, record.path, attributes_file)
            except AttributesError as error:
                raise AttributesError(f"{record.where}: {error}") from None
            self.sentences.append(attribute_sentence(phrases[:topk]))
            self.labels.append(record.label)
        logger.info("%s: attribute sentences of %d videos (top %d phrases)", attributes_file, len(self), topk)

    def __len__(self):
        return len(self.sentences)

    def __getitem__(self, index):
        return self.tokenizer([self.sentences[index]])[0], self.labels[index]
