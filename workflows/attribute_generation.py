"""Attribute generation (the video-to-text direction's first step): every video of a list is scored
against a lexicon of phrases (prompted like class names) by a retriever, a VideoEncoder + VideoHeader pair:
zero-shot CLIP with the plain header ("None"/"DP": mean of the frame embeddings, normalised, cosine with each
phrase) or a trained BIKE model with its own header. The top-k phrases and their cosine similarities are
written in the original JSON layout (datasets/attributes.py); finished chunks of videos are logged as they
come, so an interrupted run resumes where it stopped.
"""
import contextlib
import json
import logging
import os
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from datasets.annotations import read_names_file
from datasets.attributes import ATTRIBUTES_KEY, SCORES_KEY, AttributesError, read_attributes, write_attributes
from datasets.transforms import normalize_on_device
from modules import text_prompt
from modules.video_clip import class_features
from utils.errors import UnusableFileError
from utils.distributed import barrier, gather_to_main, world_size as world_size_of_group
from workflows.evaluation import ShardSampler
from utils.logger import Progress

logger = logging.getLogger(__name__)

CLASS_LEXICON = "classes"
PHRASE_CHUNK = 1024  # phrases scored at once (VCS memory grows with batch x phrases x 77 x frames)


def read_lexicon(sources, class_names) -> list:
    """The phrases of several lexicons, in order, each phrase once.

    A source is 'classes' (the dataset's class names), a `.csv` labels file (`id,name`) or a text file
    with one phrase per line.
    """
    phrases = []
    for source in sources:
        if source == CLASS_LEXICON:
            phrases += list(class_names)
        elif not Path(source).is_file():
            raise FileNotFoundError(f"lexicon {source} does not exist (give '{CLASS_LEXICON}', a labels CSV "
                                    "or a text file with one phrase per line)")
        else:
            phrases += read_names_file(source, "lexicon")
    phrases = list(dict.fromkeys(phrases))
    if not phrases:
        raise UnusableFileError(f"the lexicons {list(sources)} hold no phrases")
    return phrases


@torch.no_grad()
def phrase_similarity(encoder, header, views, phrase_eot, phrase_tokens) -> torch.Tensor:
    """Cosine similarities [B, P] of clips with several views [B, V, T, 3, H, W] and P phrases, averaged
    over the views."""
    batch, num_views = views.shape[:2]
    frames = encoder.encode_video(views.flatten(0, 1))
    parts = [header(frames, phrase_tokens[i:i + PHRASE_CHUNK], phrase_eot[i:i + PHRASE_CHUNK]).float()
             for i in range(0, len(phrase_eot), PHRASE_CHUNK)]
    return torch.cat(parts, dim=1).view(batch, num_views, -1).mean(dim=1)


def _part_files(output: Path) -> list:
    return sorted(output.parent.glob(f"{output.name}.part*"))


class ChunkLog:
    """A process's finished chunks, appended to `<output>.part<rank>of<world>` as one JSON line each.

    Appending costs only the new chunk (rewriting the whole file every chunk would be quadratic), and a
    chunk is either complete or, when a kill interrupted its line, ignored when read back.
    """

    def __init__(self, output: Path, rank: int, world_size: int):
        self.path = output.with_name(f"{output.name}.part{rank}of{world_size}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.needs_newline = self.path.exists() and not self.path.read_bytes().endswith(b"\n")

    def append(self, entries: dict):
        with open(self.path, "a", encoding="utf-8") as file:
            file.write(("\n" if self.needs_newline else "") + json.dumps(entries, ensure_ascii=False) + "\n")
            file.flush()
            os.fsync(file.fileno())
        self.needs_newline = False

    @staticmethod
    def read(path: Path) -> dict:
        entries = {}
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            try:
                entries.update(json.loads(line))
            except json.JSONDecodeError:
                logger.warning("%s:%d: ignoring a chunk whose saving was interrupted", path, number)
        return entries


def _done_entries(output: Path, videos: dict) -> dict:
    """Entries already made: the output file and the chunk logs of interrupted runs."""
    done = read_attributes(output) if output.exists() else {}
    for part in _part_files(output):
        done.update(ChunkLog.read(part))
    unknown = [video for video in done if video not in videos]
    if unknown:
        raise AttributesError(f"{output} holds attributes of {len(unknown)} videos that are not in the list "
                              f"(e.g. {unknown[0]!r}); write to another --output")
    return done


def _batches(chunks: list, videos: dict, batch_size: int):
    """Dataset-index batches that never cross a chunk, and whether each one ends its chunk."""
    batches, ends = [], []
    for chunk in chunks:
        for start in range(0, len(chunk), batch_size):
            batches.append([videos[video] for video in chunk[start:start + batch_size]])
            ends.append(start + batch_size >= len(chunk))
    return batches, ends


@torch.no_grad()
def generate_attributes(encoder, header, dataset, phrases, output, *, topk=5, batch_size=8, workers=0, device="cpu",
                        autocast=contextlib.nullcontext, save_every=256, rank=0, world_size=1, progress=True):
    """Writes the top-`topk` phrases of every video of `dataset` (an evaluation-mode VideoDataset) to `output`.

    Videos are split, in list order, into chunks of `save_every`; chunk c goes to process c mod
    `world_size`, and each finished chunk is saved to the process's ChunkLog. The processes' entries
    reach rank 0 through the process group (nodes need not share a file system), which writes `output`
    (atomically, keys in list order, repeated paths once); then the logs are removed. Videos already in
    `output` or in logs are skipped, and since batches never cross chunks, a resumed run computes
    exactly the batches an uninterrupted one would: the file comes out the same. Returns the entries
    (on rank 0; None elsewhere). Without a process group, `rank` and `world_size` only pick the share,
    and rank 0 reads the others' shares from their logs.
    """
    output = Path(output)
    videos = {}  # path -> index of its first occurrence in the dataset, in list order
    for index, record in enumerate(dataset.records):
        videos.setdefault(record.path, index)
    done = _done_entries(output, videos)
    log, chunk_entries = ChunkLog(output, rank, world_size), {}
    keys = list(videos)
    chunks = [keys[start:start + save_every] for start in range(0, len(keys), save_every)]
    my_chunks = [chunks[c] for c in ShardSampler(len(chunks), rank, world_size)]
    mine = [[video for video in chunk if video not in done] for chunk in my_chunks]
    batches, ends = _batches([chunk for chunk in mine if chunk], videos, batch_size)
    logger.info("%s: %d of %d videos done; this process scores %d against %d phrases", output, len(done),
                len(keys), sum(map(len, batches)), len(phrases))

    with autocast():
        prompts = text_prompt(phrases, tokenizer=encoder.tokenize).to(device)
        phrase_eot, phrase_tokens = class_features(encoder, prompts)
    topk = min(topk, len(phrases))
    loader = DataLoader(dataset, batch_sampler=batches, num_workers=workers,
                        pin_memory=torch.device(device).type == "cuda")
    bar = Progress(loader, len(batches), "attributes", bars=progress)
    for batch, ((views, _), ends_chunk) in enumerate(zip(bar, ends)):
        with autocast():
            similarity = phrase_similarity(encoder, header, normalize_on_device(views, device), phrase_eot,
                                           phrase_tokens)
        scores, indices = similarity.cpu().topk(topk, dim=1)
        for index, row_scores, row_indices in zip(batches[batch], scores.tolist(), indices.tolist()):
            chunk_entries[dataset.records[index].path] = {ATTRIBUTES_KEY: [phrases[i] for i in row_indices],
                                                          SCORES_KEY: [round(s, 6) for s in row_scores]}
        if ends_chunk:
            log.append(chunk_entries)
            done.update(chunk_entries)
            chunk_entries = {}
        bar.update()
    shares = gather_to_main({video: done[video] for chunk in my_chunks for video in chunk if video in done})
    if rank != 0:
        barrier()  # until rank 0 has written `output`: only then is this process's log no longer needed
        if world_size_of_group() > 1:
            log.path.unlink(missing_ok=True)
        return None
    entries = _done_entries(output, videos)
    for share in shares:
        entries.update(share)
    missing = [video for video in keys if video not in entries]
    if missing:
        raise AttributesError(f"{output}: {len(missing)} videos have no attributes after generation "
                              f"(e.g. {missing[0]!r}); the other processes' logs {output.name}.part*of{world_size} "
                              f"were not found in {output.parent}")
    entries = {video: entries[video] for video in keys}
    write_attributes(entries, output)
    for part in _part_files(output):
        part.unlink()
    barrier()
    return entries
