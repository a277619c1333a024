"""Videos streamed from WebDataset tar shards that a manifest lists (tools/make_shards.py writes both).

A shard holds one sample per list entry, in list order: `<key>.json` (the list index, path, line and label),
`<key>.cls` (a single label), and either the video file's own bytes (`<key>.mp4`, the extension kept) or its
frames' image files one after the other in one member (`<key>.frames`; their sizes in the json): one member,
not one per frame, because Python's tar reader spends more on a hundred member headers than the decoding of
the 8 frames a clip samples takes. `manifest.json` names the shards
(relative to itself), their sample counts and sha256, the payload and the class count, so the epoch length
and every rank's share are known without listing a bucket. Shards and the manifest are read through fsspec
(`open_shard`): a local path or any URL it knows (http(s)://, s3://, gs://).

Samples decode from memory through the same readers, frame sampling and transforms as the per-file
dataset, so a sample is the same tensor as `VideoDataset`'s for the same record and random numbers.
"""
import dataclasses
import itertools
import json
import logging
import multiprocessing
import tarfile

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info
from webdataset.tariterators import group_by_keys, tar_file_expander

from datasets.annotations import AnnotationError
from datasets.decoding import EncodedFrames, SampleReadError, open_video
from datasets.storage import ShardReadError, open_stream, redact
from datasets.video import VideoClips, multi_hot

logger = logging.getLogger(__name__)

MANIFEST_FORMAT = "bike-shards"
MANIFEST_VERSION = 2  # 2: a frame sample's frames in one member
PAYLOADS = ("video", "frames")
FRAMES_FIELD = "frames"  # a frame sample's field: its encoded frames concatenated, sizes in json's frame_bytes


def is_manifest(list_file) -> bool:
    """Whether a config's list names shards (a manifest .json, local or a URL) rather than files."""
    return str(list_file).lower().endswith(".json")


def open_shard(url):
    """The one place shards and manifests are opened: a binary file object of a local path or URL, whose
    failed reads are retried (datasets.storage)."""
    return open_stream(url)


def beside(manifest_url, name):
    """The URL or path of `name` relative to the manifest's folder (a manifest may be a URL: no os.path)."""
    folder, separator, _ = str(manifest_url).rpartition("/")
    return f"{folder}/{name}" if separator else name


@dataclasses.dataclass(frozen=True)
class Shard:
    name: str
    samples: int
    sha256: str
    bytes: int


@dataclasses.dataclass(frozen=True)
class Manifest:
    """manifest.json: shards in list order, what their samples hold (payload 'video' or 'frames') and the
    classes the labels index (`num_classes` of `labels_file`, as the list that made them)."""

    payload: str
    num_classes: int
    multi_label: bool
    shards: tuple
    labels_file: str = ""
    source_list: str = ""

    @property
    def num_samples(self):
        return sum(shard.samples for shard in self.shards)

    def to_json(self):
        content = dict(format=MANIFEST_FORMAT, version=MANIFEST_VERSION, num_samples=self.num_samples,
                       **dataclasses.asdict(self))
        return json.dumps(content, indent=1) + "\n"


def read_manifest(url) -> Manifest:
    """The manifest at `url`; ShardReadError naming it when it cannot be read (missing, or failing after the
    retries), AnnotationError when it is not a shard manifest."""
    try:
        with open_shard(url) as handle:
            content = json.load(handle)
    except ValueError as err:
        raise AnnotationError(f"shard manifest {redact(url)} is not JSON: {err}") from None
    if not isinstance(content, dict) or content.get("format") != MANIFEST_FORMAT:
        raise AnnotationError(f"{redact(url)} is not a shard manifest (no \"format\": \"{MANIFEST_FORMAT}\"; "
                              f"tools/make_shards.py writes one)")
    if content.get("version") != MANIFEST_VERSION or content.get("payload") not in PAYLOADS:
        raise AnnotationError(f"shard manifest {redact(url)}: version {content.get('version')!r} / payload "
                              f"{content.get('payload')!r}; this program reads version {MANIFEST_VERSION}, "
                              f"payload {' or '.join(PAYLOADS)} (write the shards again with tools/make_shards.py)")
    try:
        shards = tuple(Shard(**shard) for shard in content["shards"])
        return Manifest(content["payload"], int(content["num_classes"]), bool(content["multi_label"]), shards,
                        content.get("labels_file", ""), content.get("source_list", ""))
    except (KeyError, TypeError) as err:
        raise AnnotationError(f"shard manifest {redact(url)} is incomplete: {err}") from None


def epoch_shard_order(num_shards, seed, epoch, shuffle):
    """The shards' order in an epoch: the manifest's, or (training) a permutation drawn from seed and epoch."""
    if not shuffle:
        return np.arange(num_shards)
    return np.random.default_rng([seed, epoch]).permutation(num_shards)


def worker_batches(num_batches, worker, num_workers):
    """The batches [first, end) of a rank's epoch that loader worker `worker` reads: consecutive ones, the
    first `num_batches % num_workers` workers one more. The loader takes one batch from each worker in turn,
    so batch j of the rank's epoch comes from worker j % num_workers."""
    per_worker, extra = divmod(num_batches, num_workers)
    first = worker * per_worker + min(worker, extra)
    return first, first + per_worker + (worker < extra)


class ShardDataset(VideoClips, IterableDataset):
    """The samples of the shards a manifest lists, streamed; items `(frames, label)` in training, `(frames,
    label, list index)` in evaluation (workflows.evaluation puts the scores in list order).

    The loader calls `split(rank, replicas, batch_size)`; `set_epoch(epoch, batches_done)` starts an epoch.
    Training (mode 'train'): the shards are put in an order drawn from (seed, epoch), the samples in that
    order are cut into `replicas` equal consecutive ranges of whole batches, one per rank, so every rank
    runs the same number of steps (DDP) and no sample is read twice; the remainder (fewer than
    `replicas * batch_size` samples, the end of that epoch's order, a different set every epoch) is not
    read that epoch. A rank's range is cut again between its loader workers (`worker_batches`), each of
    which streams its own shards through a shuffle buffer of `shuffle_buffer` samples seeded by (seed,
    epoch, rank, worker); every sample's random numbers (frames, augmentation) come from a seed drawn for
    its place in the rank's epoch. The order is therefore a function of seed, epoch, rank and the worker
    count only, and a resumed epoch (`batches_done`) skips the consumed samples without decoding them.
    Evaluation: the manifest's order, split into `replicas` consecutive ranges (sizes differ by at most one),
    nothing dropped.
    skip_unreadable (training only): a shard that cannot be read (after datasets.storage's retries) or is
    not a tar file is logged and skipped, and its missing samples replaced by the readable samples of the
    worker's range read again, so every rank still runs the same number of steps; the count is logged at
    the end of the epoch and summed in `num_skipped`. Otherwise ShardReadError names the shard.
    """

    def __init__(self, manifest_url, labels_file, *, seed=0, shuffle_buffer=64, tsn_train=False,
                 skip_unreadable=False, **clips):
        self.tsn_train = tsn_train  # before VideoClips builds the sampler
        super().__init__(labels_file, **clips)
        if skip_unreadable and not self.training:
            raise ValueError("skip_unreadable is for training only; evaluation never substitutes samples")
        self.skip_unreadable = skip_unreadable
        self.manifest_url, self.seed, self.shuffle_buffer = str(manifest_url), seed, shuffle_buffer
        self.manifest = read_manifest(manifest_url)
        if self.manifest.num_classes != self.num_classes:
            raise AnnotationError(f"{redact(manifest_url)}: its labels index {self.manifest.num_classes} classes "
                                  f"({self.manifest.labels_file}), the labels file {labels_file} has "
                                  f"{self.num_classes}")
        self._check_readers("RGB" if self.manifest.payload == "frames" else "video")
        self.rank, self.replicas, self.batch_size = 0, 1, 1
        # Shared with the loader's workers, persistent ones included (they keep their copy of the dataset).
        context = multiprocessing.get_context("spawn")
        self._epoch, self._batches_done = context.Value("q", 0), context.Value("q", 0)
        logger.info("%s: %d videos in %d shards, %d classes, %s, mode %s", redact(manifest_url),
                    self.manifest.num_samples, len(self.manifest.shards), self.num_classes, self.manifest.payload,
                    self.mode)

    @property
    def training(self):
        return self.mode == "train"

    @property
    def multi_label(self):
        return self.manifest.multi_label

    @property
    def list_size(self):
        """Samples in the whole list (all ranks); len() is this rank's share of an epoch."""
        return self.manifest.num_samples

    def split(self, rank, replicas, batch_size):
        """This process reads the share of rank `rank` of `replicas`, in batches of `batch_size`."""
        self.rank, self.replicas, self.batch_size = rank, replicas, batch_size

    def set_epoch(self, epoch, batches_done=0):
        """The next iteration reads `epoch`, from its batch `batches_done` on (a resumed epoch)."""
        self._epoch.value, self._batches_done.value = epoch, batches_done

    def _rank_range(self):
        total = self.manifest.num_samples
        if self.training:
            per_rank = total // (self.replicas * self.batch_size) * self.batch_size
            return self.rank * per_rank, (self.rank + 1) * per_rank
        return self.rank * total // self.replicas, (self.rank + 1) * total // self.replicas

    def __len__(self):
        first, end = self._rank_range()
        return end - first

    def __iter__(self):
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info else (0, 1)
        epoch, batches_done = self._epoch.value, self._batches_done.value
        # The loader takes one batch from each worker in turn, from worker 0 on: after `batches_done` batches the
        # next one came from worker `batches_done % num_workers` of the epoch read from its start, so this worker
        # goes on with the stream of that one (its `role`), past the batches that one had yielded.
        role, skipped_batches = (batches_done + worker) % num_workers, (batches_done + worker) // num_workers
        rank_first, rank_end = self._rank_range()
        num_batches = -(-(rank_end - rank_first) // self.batch_size)
        first_batch, end_batch = worker_batches(num_batches, role, num_workers)
        first, end = rank_first + first_batch * self.batch_size, min(rank_first + end_batch * self.batch_size, rank_end)
        samples = self._readable(epoch, first, end) if self.skip_unreadable else self._stream(epoch, first, end)
        if self.training:
            buffer_seed = [self.seed, epoch, self.rank, role, num_workers]
            samples = shuffled(samples, self.shuffle_buffer, np.random.default_rng(buffer_seed))
            generator = torch.Generator().manual_seed(self.seed + 1000 * epoch + self.rank)
            sample_seeds = torch.randint(2**62, (rank_end - rank_first,), generator=generator).tolist()
        for position, (shard, sample) in enumerate(samples):
            if position < skipped_batches * self.batch_size:  # read, not decoded
                continue
            if not self.training:
                yield self._item(shard, sample)
                continue
            batch, slot = divmod(position, self.batch_size)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(sample_seeds[(batch * num_workers + role) * self.batch_size + slot])
                item = self._item(shard, sample)
            yield item

    def _stream(self, epoch, first, end, skipped=None):
        """(shard name, raw sample) of positions [first, end) of the epoch's sample order, read in order; given
        a `skipped` list, the shards that cannot be read are left out and recorded there."""
        order = epoch_shard_order(len(self.manifest.shards), self.seed, epoch, self.training)
        start = 0
        for shard in (self.manifest.shards[i] for i in order):
            if start >= end:
                return
            if start + shard.samples > first:
                yield from self._shard_samples(shard, max(first - start, 0), min(end - start, shard.samples),
                                               skipped)
            start += shard.samples

    def _readable(self, epoch, first, end):
        """`_stream(epoch, first, end)` without the shards that cannot be read, the samples they held replaced
        by those of the range read again from its start (skip_unreadable)."""
        wanted, skipped, count = end - first, [], 0
        for item in self._stream(epoch, first, end, skipped):
            count += 1
            yield item
        missing = wanted - count
        while count < wanted:
            again = 0
            for item in itertools.islice(self._stream(epoch, first, end, skipped), wanted - count):
                again += 1
                yield item
            if not again:
                raise ShardReadError(f"epoch {epoch}: no shard of samples [{first}, {end}) of "
                                     f"{redact(self.manifest_url)} can be read: {', '.join(skipped)}")
            count += again
        if skipped:
            with self._skipped.get_lock():
                self._skipped.value += missing
            logger.warning("epoch %d: %d unreadable shard(s) skipped (%s), their %d samples replaced; %d in this run",
                           epoch, len(skipped), ", ".join(skipped), missing, self.num_skipped)

    def _shard_samples(self, shard, first, end, skipped):
        """(shard name, sample) of `_read_shard`; given a `skipped` list, a shard that cannot be read ends
        early, recorded there, instead of raising."""
        try:
            for sample in self._read_shard(shard, first, end):
                yield shard.name, sample
        except ShardReadError as err:
            if skipped is None:
                raise
            if shard.name not in skipped:
                logger.warning("skipping unreadable shard: %s", err)
                skipped.append(shard.name)

    def _read_shard(self, shard, first, end):
        """Samples [first, end) of `shard`, read front to back (the ones before `first` are not decoded);
        ShardReadError naming it when it cannot be read (after the retries) or is not a tar file."""
        url = beside(self.manifest_url, shard.name)
        count = 0
        try:
            with open_shard(url) as stream:
                for sample in group_by_keys(tar_file_expander([{"stream": stream, "url": url}])):
                    if count >= end:
                        return
                    if count >= first:
                        yield sample
                    count += 1
        except tarfile.TarError as err:  # webdataset appends ' @ <stream>' to the message, the stream and URL to args
            reason = str(err.args[0]).rpartition(" @ ")[0] or err.args[0]
            raise ShardReadError(f"shard {redact(url)} is not a readable tar file ({reason} after {count} "
                                 f"samples)") from None
        if count < end:
            raise ShardReadError(f"shard {redact(url)} holds {count} samples, its manifest "
                                 f"{redact(self.manifest_url)} says {shard.samples}")

    def _item(self, shard, sample):
        meta = json.loads(sample["json"])
        name = f"{shard}:{sample['__key__']} ({meta['path']})"
        try:
            if self.manifest.payload == "video":
                frames = open_video(meta["path"], self.video_backend, self.decode_device, data=sample[meta["ext"]])
            else:
                frames = EncodedFrames(name, split_frames(sample[FRAMES_FIELD], meta["frame_bytes"]),
                                       self.decode_device)
            clips = self._output(self.sample_clips(frames, name))
        except (SampleReadError, KeyError) as err:
            raise SampleReadError(f"{name}: {err}") from err
        label = multi_hot(meta["label"], self.num_classes) if self.multi_label else meta["label"]
        return (clips, label) if self.training else (clips, label, meta["index"])


def split_frames(data, sizes):
    """The encoded frames of a frame sample: its `frames` field cut at the sizes its json lists (views, no copy)."""
    if sum(sizes) != len(data):
        raise SampleReadError(f"its frames field holds {len(data)} bytes, its json lists {sum(sizes)}")
    view, ends = memoryview(data), list(itertools.accumulate(sizes))
    return [view[end - size:end] for size, end in zip(sizes, ends)]


def shuffled(items, size, rng):
    """`items` through a shuffle buffer of `size`: each item out is drawn from the `size` last read."""
    buffer = []
    for item in items:
        if len(buffer) < size:
            buffer.append(item)
            continue
        pick = int(rng.integers(size))
        buffer[pick], item = item, buffer[pick]
        yield item
    rng.shuffle(buffer)
    yield from buffer
