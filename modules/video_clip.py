"""CLIP applied to clips: frame embeddings per video, class text features, class scores."""
import torch
from torch import nn

from clip import CLIP_MEAN, CLIP_STD, tokenize
from clip.model import CLIP
from modules.video_header import VideoHeader


class VideoEncoder(nn.Module):
    """Wraps CLIP so that one `forward` (the unit DDP synchronises) encodes a batch of clips and texts.

    frames: normalised floats [B, T, 3, H, W] -> frame embeddings [B, T, D] ([B, 1, D] with joint
    space-time attention, which embeds the whole clip at once). The data pipeline normalises with OpenAI's
    constants; a backbone with other ones (`image_mean`/`image_std`, open_clip models) gets its own through
    one affine map here. `tokenize` is the backbone's tokenizer (OpenAI's for OpenAI's models), picklable for
    data workers.
    """

    def __init__(self, clip_model: CLIP):
        super().__init__()
        self.clip = clip_model
        self.tokenize = getattr(clip_model, "tokenizer", tokenize)
        mean = torch.tensor(getattr(clip_model, "image_mean", CLIP_MEAN))
        std = torch.tensor(getattr(clip_model, "image_std", CLIP_STD))
        self.renormalize = not (torch.equal(mean, torch.tensor(CLIP_MEAN)) and torch.equal(std, torch.tensor(CLIP_STD)))
        if self.renormalize:  # x_model = (x_clip * std_clip + mean_clip - mean) / std, per channel
            self.register_buffer("input_scale", (torch.tensor(CLIP_STD) / std).view(3, 1, 1), persistent=False)
            self.register_buffer("input_shift", ((torch.tensor(CLIP_MEAN) - mean) / std).view(3, 1, 1),
                                 persistent=False)

    def encode_video(self, frames: torch.Tensor) -> torch.Tensor:
        batch = frames.shape[0]
        if self.renormalize:
            frames = frames * self.input_scale.to(frames.dtype) + self.input_shift.to(frames.dtype)
        return self.clip.encode_image(frames.flatten(0, 1)).view(batch, -1, self.clip.config.embed_dim)

    def encode_text(self, texts: torch.Tensor):
        """(EOT embeddings [N, D], per-token features [N, context_length, D])."""
        return self.clip.encode_text(texts, return_token=True)

    def forward(self, frames: torch.Tensor, texts: torch.Tensor = None):
        """(frame embeddings, text EOT embeddings or None, text token features or None, logit scale)."""
        video = self.encode_video(frames)
        eot, tokens = self.encode_text(texts) if texts is not None else (None, None)
        return video, eot, tokens, self.clip.logit_scale.exp()


@torch.no_grad()
def class_features(encoder: VideoEncoder, prompts: torch.Tensor, batch_size: int = 256):
    """Text features of all class prompts, in batches (computed once when the text tower is frozen)."""
    parts = [encoder.encode_text(prompts[i:i + batch_size]) for i in range(0, len(prompts), batch_size)]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def view_similarities(encoder: VideoEncoder, header: VideoHeader, views: torch.Tensor,
                      class_eot: torch.Tensor, class_tokens: torch.Tensor) -> torch.Tensor:
    """Cosine similarities [B, V, C] between each view of clips [B, V, T, 3, H, W] and each class."""
    batch, num_views = views.shape[:2]
    frames = encoder.encode_video(views.flatten(0, 1))
    return header(frames, class_tokens, class_eot).float().view(batch, num_views, -1)


def view_scores(encoder: VideoEncoder, header: VideoHeader, views: torch.Tensor,
                class_eot: torch.Tensor, class_tokens: torch.Tensor) -> torch.Tensor:
    """Class probabilities [B, C] of clips with several views [B, V, T, 3, H, W].

    As the original: per view, softmax over the class cosine similarities (no logit scale), then the
    mean over views.
    """
    return view_similarities(encoder, header, views, class_eot, class_tokens).softmax(dim=-1).mean(dim=1)
