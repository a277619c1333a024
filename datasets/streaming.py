"""A long video read once, front to back, keeping only the frames a caller still needs.

`open_video` seeks to each sampled frame, which is right for short clips; a timeline along an hour-long
video wants every window's frames, and windows overlap. `StreamingVideo` counts the frames first (the
packets, without decoding, as `PyAVVideo` does, so frame k is the same frame for both readers), then
decodes the video once and yields only the requested frames, so memory does not grow with its length.
"""
import logging
import os

import av

from datasets.decoding import SampleReadError, rgb_frame

logger = logging.getLogger(__name__)


class StreamingVideo:
    """A video file opened with PyAV: its frame count and frame rate, and a single forward decode."""

    def __init__(self, path):
        self.path = str(path)
        if not os.path.isfile(self.path):
            raise SampleReadError(f"video {self.path} does not exist")
        try:
            with av.open(self.path) as container:
                if not container.streams.video:
                    raise SampleReadError(f"video {self.path} has no video stream")
                stream = container.streams.video[0]
                rate = stream.average_rate or stream.guessed_rate
                self.num_frames = sum(1 for packet in container.demux(stream) if packet.pts is not None)
        except (av.FFmpegError, OSError) as err:
            raise SampleReadError(f"cannot open video {self.path}: {getattr(err, 'strerror', None) or err}") from err
        if not rate or self.num_frames < 1:
            raise SampleReadError(f"video {self.path} has no frames or no frame rate")
        self.fps = float(rate)

    def __len__(self):
        return self.num_frames

    @property
    def duration(self) -> float:
        """Seconds, at the average frame rate (frame k is shown from k / fps)."""
        return self.num_frames / self.fps

    def frames(self, wanted):
        """(index, uint8 [3, H, W]) of every index in `wanted` (a set), in increasing order, decoding each frame once."""
        last = max(wanted, default=-1)
        index = -1
        try:
            with av.open(self.path) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                for frame in container.decode(stream):
                    index += 1
                    if index in wanted:
                        yield index, rgb_frame(frame).permute(2, 0, 1)
                    if index >= last:
                        return
        except (av.FFmpegError, OSError) as err:
            raise SampleReadError(f"cannot decode video {self.path} (truncated or corrupt?) after frame {index}: "
                                  f"{getattr(err, 'strerror', None) or err}") from err
        if index < last:
            raise SampleReadError(f"video {self.path}: decoding stopped at frame {index} of {self.num_frames} "
                                  "(truncated or corrupt?)")
