"""Decodes and converts frames in this process, then forks workers that decode again: one site per run.

    python -m tests.fork_after_decode FOLDER SITE [BACKEND]

FFmpeg keeps thread pools (swscale's slice threads, frame-threaded decoders); a forked child has none of
its parent's threads, and waits forever on a pool it inherited. Each site does what its program does: the
tools' process pools, DataLoader workers over the project's dataset, timeline streaming in a forked child.
Exits 0 when every worker finished; a hang is the caller's timeout. Frames are 640x480: smaller ones may
not be split into slices at all.
"""
import multiprocessing
import sys
from pathlib import Path

import numpy as np
import torch

from datasets.synthetic import write_mp4

SIZE = (480, 640)


def write_videos(folder, count=3, frames=12):
    rng = np.random.default_rng(0)
    names = []
    for number in range(count):
        name = f"clip{number}.mp4"
        write_mp4(folder / "videos" / name, rng.integers(0, 256, (frames, *SIZE, 3), dtype=np.uint8), fps=12)
        names.append(name)
    return names


def tool_pool(folder, tool):
    """One process, then two worker processes: the tools' `run_per_video`."""
    names = write_videos(folder)
    if tool == "extract_frames":
        from tools.extract_frames import FrameOptions, extract_all as run
        options = FrameOptions(short_side=320)  # 427 wide: rows are padded, so frames are copied
    else:
        from tools.prepare_videos import EncodeOptions, prepare_all as run
        options = EncodeOptions(short_side=320)
    for workers in (1, 2):
        outcomes = run(names, folder / "videos", folder / f"out{workers}", options, workers=workers, progress=False)
        assert all(outcome.status != "failed" for outcome in outcomes), outcomes


def loader(folder, backend):
    """The dataset's first sample in this process, then every sample in two forked DataLoader workers."""
    from datasets.video import VideoDataset
    names = write_videos(folder)
    (folder / "list.txt").write_text("".join(f"{name} {i}\n" for i, name in enumerate(names)))
    (folder / "labels.csv").write_text("id,name\n" + "".join(f"{i},class{i}\n" for i in range(len(names))))
    dataset = VideoDataset(str(folder / "list.txt"), str(folder / "labels.csv"), str(folder / "videos"),
                           num_segments=4, mode="val", video_backend=backend)
    dataset[0]
    batches = torch.utils.data.DataLoader(dataset, batch_size=1, num_workers=2, multiprocessing_context="fork")
    assert len(list(batches)) == len(names)


def timeline(folder):
    """Streamed frames in this process, then in a forked child, as the timeline reads a video."""
    from datasets.streaming import StreamingVideo
    path = folder / "videos" / write_videos(folder, count=1)[0]
    assert len(list(StreamingVideo(path).frames({0, 5}))) == 2
    child = multiprocessing.get_context("fork").Process(target=_stream, args=(path,))
    child.start()
    child.join()
    assert child.exitcode == 0, child.exitcode


def _stream(path):
    from datasets.streaming import StreamingVideo
    assert len(list(StreamingVideo(path).frames({1, 7}))) == 2


if __name__ == "__main__":
    folder, site = Path(sys.argv[1]), sys.argv[2]
    if site in ("extract_frames", "prepare_videos"):
        tool_pool(folder, site)
    elif site == "loader":
        loader(folder, sys.argv[3])
    elif site == "timeline":
        timeline(folder)
    else:
        sys.exit(f"unknown site {site}")
    print("finished")
