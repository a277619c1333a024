"""Small real media files for tests: JPEG frame folders and H.264 MP4s whose frames show their index.

Frame k of a synthetic video has two flat 16x16 patches at the top left whose gray levels encode
k // 16 and k % 16 (steps of 16 levels, so JPEG and H.264 errors cannot change the decoded index) over
a smooth colour gradient. `frame_index` reads the index back from a decoded frame.
"""
import os

import av
import numpy as np
import torch
from torchvision.io import encode_jpeg

HEIGHT, WIDTH = 48, 64
PATCH = 16


def _level(digit):
    return 8 + 16 * digit


def frame_image(index, height=HEIGHT, width=WIDTH):
    """uint8 [H, W, 3] picture of frame `index` (0 <= index < 256)."""
    ys, xs = np.mgrid[0:height, 0:width]
    image = np.stack([xs * 255 // max(width - 1, 1), ys * 255 // max(height - 1, 1),
                      np.full_like(xs, 96)], axis=-1).astype(np.uint8)
    image[:PATCH, :PATCH] = _level(index // 16)
    image[:PATCH, PATCH:2 * PATCH] = _level(index % 16)
    return image


def frame_index(frame):
    """The index shown by a decoded frame [3, H, W] (uint8)."""
    center = slice(4, PATCH - 4)
    coarse = frame[:, center, center].float().mean()
    fine = frame[:, center, PATCH + 4:2 * PATCH - 4].float().mean()
    return int(round((coarse.item() - 8) / 16)) * 16 + int(round((fine.item() - 8) / 16))


def clip_indices(clip):
    """Indices shown by the frames of a clip [T, 3, H, W]."""
    return [frame_index(frame) for frame in clip]


def write_frame_folder(folder, num_frames, image_tmpl="img_{:05d}.jpg", index_bias=1):
    """JPEG frames 0..num_frames-1 named by `image_tmpl` (two-field templates get the folder name)."""
    os.makedirs(folder, exist_ok=True)
    video_id = os.path.basename(os.path.normpath(folder))
    two_fields = image_tmpl.count("{") == 2
    for index in range(num_frames):
        number = index + index_bias
        name = image_tmpl.format(video_id, number) if two_fields else image_tmpl.format(number)
        data = encode_jpeg(torch.from_numpy(frame_image(index)).permute(2, 0, 1).contiguous(), quality=95)
        with open(os.path.join(folder, name), "wb") as handle:
            handle.write(data.numpy().tobytes())
    return folder


def write_video(path, num_frames, fps=25, faststart=False, keyframe_interval=250):
    """H.264 MP4 (yuv420p, near-lossless) of frames 0..num_frames-1; faststart puts the index first."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with av.open(path, "w", options={"movflags": "faststart"} if faststart else {}) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"crf": "8"}
        stream.codec_context.gop_size = keyframe_interval
        for index in range(num_frames):
            frame = av.VideoFrame.from_ndarray(frame_image(index), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def truncate_file(path, keep_fraction=0.5):
    with open(path, "rb") as handle:
        data = handle.read()
    with open(path, "wb") as handle:
        handle.write(data[:int(len(data) * keep_fraction)])
    return path


def write_text(path, lines):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.writelines(f"{line}\n" for line in lines)
    return path


def write_labels_csv(path, names):
    return write_text(path, ["id,name"] + [f"{i},{name}" for i, name in enumerate(names)])
