"""Tiny videos of the codecs and containers users download, written with PyAV's bundled encoders.

Frames show their index as `tests.data_factory.frame_image` draws it, so a decoded frame says which
frame it is. No system ffmpeg is needed.
"""
import struct
from fractions import Fraction
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from tests.data_factory import frame_image


@dataclass(frozen=True)
class CodecCase:
    name: str
    encoder: str
    pix_fmt: str
    container: str
    width: int = 64
    height: int = 48
    frames: int = 16
    audio: str = ""  # an audio encoder: the file gets a sound track too
    options: tuple = ()

    @property
    def file_name(self):
        return f"{self.name}.{self.container}"

    @property
    def exact(self):
        """Whether TorchCodec and PyAV convert this file's pixels identically: 8-bit 4:2:0 of even size.

        Otherwise the two FFmpeg builds interpolate chroma (odd edges, 10-bit dithering) differently."""
        return "10" not in self.pix_fmt and self.width % 2 == 0 and self.height % 2 == 0


# x264/x265 need even sizes for 4:2:0; the other encoders take odd ones.
CASES = (
    CodecCase("h264_aac", "libx264", "yuv420p", "mp4", audio="aac", options=(("crf", "8"),)),
    CodecCase("h264_10bit", "libx264", "yuv420p10le", "mkv", options=(("crf", "8"),)),
    CodecCase("h264_mov", "libx264", "yuv420p", "mov", options=(("crf", "8"),)),
    CodecCase("hevc", "libx265", "yuv420p", "mp4", options=(("crf", "8"), ("x265-params", "log-level=error"))),
    CodecCase("vp8_opus", "libvpx", "yuv420p", "webm", audio="libopus"),
    CodecCase("vp9_odd", "libvpx-vp9", "yuv420p", "webm", width=65, height=47),
    CodecCase("av1_odd", "libsvtav1", "yuv420p", "mkv", width=65, height=47, options=(("svtav1-params", "log-level=0"),)),
    CodecCase("mpeg4_odd", "mpeg4", "yuv420p", "avi", width=65, height=47),
    CodecCase("mjpeg", "mjpeg", "yuvj420p", "avi"),
    CodecCase("mjpeg_odd_mov", "mjpeg", "yuvj420p", "mov", width=65, height=47),
    CodecCase("h264_two_frames", "libx264", "yuv420p", "mp4", frames=2, options=(("crf", "8"),)),
    CodecCase("h264_720p", "libx264", "yuv420p", "mp4", width=1280, height=720, frames=3,
              options=(("crf", "8"), ("preset", "ultrafast"))),
)


def write_case(path, case):
    """Writes `case` to `path`: frames 0..frames-1 at 25 fps, with a silent sound track if it has audio."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        video = container.add_stream(case.encoder, rate=25)
        video.width, video.height, video.pix_fmt = case.width, case.height, case.pix_fmt
        video.options = dict(case.options)
        if case.encoder in ("mpeg4", "mjpeg"):
            video.codec_context.qmax = 3  # near-lossless, so the frame index patches stay readable
        audio = container.add_stream(case.audio, rate=48000) if case.audio else None
        for index in range(case.frames):
            frame = av.VideoFrame.from_ndarray(frame_image(index, case.height, case.width), format="rgb24")
            container.mux(video.encode(frame))
        if audio is not None:
            _write_silence(container, audio, seconds=case.frames / 25)
        container.mux(video.encode())
    return path


def _write_silence(container, stream, seconds):
    samples = stream.codec_context.frame_size or 1024
    for start in range(0, int(seconds * stream.rate) + samples, samples):
        frame = av.AudioFrame.from_ndarray(np.zeros((1, samples), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = stream.rate, start
        container.mux(stream.encode(frame))
    container.mux(stream.encode())


def write_audio_only(path):
    """An M4A file with a sound track and no video stream."""
    with av.open(str(path), "w") as container:
        _write_silence(container, container.add_stream("aac", rate=16000), seconds=0.5)
    return path


def set_mp4_rotation(path, degrees_clockwise=90):
    """Gives the first track of an MP4 a display matrix that turns it clockwise when played (as phones
    write portrait videos): the 3x3 matrix of the `tkhd` box, 16.16 fixed point, w in 2.30."""
    data = bytearray(open(path, "rb").read())
    matrix_at = data.index(b"tkhd") + 4 + 40  # version/flags, times, track id, duration, layer, volume
    one = 0x10000
    matrices = {90: (0, one, 0, -one, 0, 0, 0, 0, 0x40000000), 180: (-one, 0, 0, 0, -one, 0, 0, 0, 0x40000000)}
    data[matrix_at:matrix_at + 36] = struct.pack(">9i", *matrices[degrees_clockwise])
    with open(path, "wb") as handle:
        handle.write(data)
    return path


def over_report_avi_frames(path, announced=1000):
    """Sets an AVI's frame counts (main header and stream header) to `announced`, more than it holds."""
    data = bytearray(open(path, "rb").read())
    main = data.index(b"avih") + 8
    stream = data.index(b"strh") + 8
    data[main + 16:main + 20] = struct.pack("<I", announced)  # dwTotalFrames
    data[stream + 32:stream + 36] = struct.pack("<I", announced)  # dwLength
    with open(path, "wb") as handle:
        handle.write(data)
    return path


def write_bframe_avi(path, fourcc="DX50", frames=150):
    """An MPEG-4 Part 2 AVI with two B-frames between references, tagged as DivX 5 (DX50) or Xvid (XVID), as
    the DivX/Xvid era wrote them. AVI keeps the decoding order only: FFmpeg derives the presentation times,
    and a seek by time lands a frame late."""
    with av.open(str(path), "w") as container:
        video = container.add_stream("mpeg4", rate=24)
        video.width, video.height, video.pix_fmt, video.codec_tag = 64, 48, "yuv420p", fourcc
        video.codec_context.max_b_frames, video.codec_context.qmax = 2, 3
        for index in range(frames):
            container.mux(video.encode(av.VideoFrame.from_ndarray(frame_image(index), format="rgb24")))
        container.mux(video.encode())
    return str(path)


VFR_TICKS = (0, 7, 14, 15, 16, 30, 50, 51, 70, 100, 101, 102, 130, 190)


def write_vfr_avi(path):
    """A Cinepak AVI whose 14 frames stand at irregular ticks of 1/15 s (VFR_TICKS): its header's frame
    count is the last tick (191), not the number of frames, as in variable-rate AVIs from old cameras."""
    with av.open(str(path), "w") as container:
        video = container.add_stream("cinepak", rate=15)
        video.width, video.height, video.pix_fmt = 64, 48, "rgb24"
        video.codec_context.time_base = Fraction(1, 15)
        for index, tick in enumerate(VFR_TICKS):
            frame = av.VideoFrame.from_ndarray(frame_image(index), format="rgb24")
            frame.pts, frame.time_base = tick, Fraction(1, 15)
            container.mux(video.encode(frame))
        container.mux(video.encode())
    return str(path)


def decoded_with_pyav(path, skip_frame="DEFAULT"):
    """Every frame PyAV's decoder outputs, as RGB arrays, front to back without seeking: the plain decode the
    readers are compared with. One conversion thread: a threaded swscale context left in the test process
    would hang its later forks."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.skip_frame = skip_frame
        return [frame.to_ndarray(format="rgb24", threads=1) for frame in container.decode(stream)]
