"""The video header: temporal modelling of frame embeddings and the video-text interaction.

`sim_header`: "Transf" (a 6-layer temporal transformer with learned frame position embeddings, added to
its input) or "None". `interaction`: "DP" (mean pooling, cosine with the class embedding) or "VCS" (Video
Concept Spotting: each class's tokens attend over the frames, and the class-specific weighted frame
average is compared with the class embedding). Parameter names match the original `video_header`, so
checkpoints' `fusion_model_state_dict` load strictly.
"""
import torch
import torch.nn.functional as F
from torch import nn

from clip.model import CLIP, Transformer

SIM_HEADERS = ("None", "Transf")
INTERACTIONS = ("DP", "VCS")
TEMPORAL_LAYERS = 6
VCS_TEMPERATURE = 0.01
# The original temporal transformer uses TF-style LayerNorm with this epsilon (not torch's 1e-5).
TEMPORAL_LAYER_NORM_EPS = 1e-12


class VideoHeader(nn.Module):
    def __init__(self, sim_header: str, interaction: str, embed_dim: int, max_frames: int = 77, heads: int = 8):
        super().__init__()
        if sim_header not in SIM_HEADERS:
            raise ValueError(f"network.sim_header must be one of {SIM_HEADERS}, got {sim_header!r}")
        if interaction not in INTERACTIONS:
            raise ValueError(f"network.interaction must be one of {INTERACTIONS}, got {interaction!r}")
        self.sim_header = sim_header
        self.interaction = interaction
        if sim_header == "Transf":
            self.frame_position_embeddings = nn.Embedding(max_frames, embed_dim)
            self.transformer = Transformer(embed_dim, TEMPORAL_LAYERS, heads, layer_norm_eps=TEMPORAL_LAYER_NORM_EPS)
            for module in self.modules():
                if isinstance(module, (nn.Linear, nn.Embedding)):
                    nn.init.normal_(module.weight, std=0.02)
                if isinstance(module, nn.Linear):
                    nn.init.zeros_(module.bias)

    @classmethod
    def for_clip(cls, sim_header: str, interaction: str, clip_model: CLIP) -> "VideoHeader":
        """Sized like the original: frame positions up to the text context length, heads = text width / 64."""
        config = clip_model.config
        return cls(sim_header, interaction, embed_dim=config.embed_dim, max_frames=config.context_length,
                   heads=config.transformer_width // 64)

    def aggregate(self, frames: torch.Tensor) -> torch.Tensor:
        """Temporal modelling of frame embeddings [B, T, D] -> [B, T, D]."""
        if self.sim_header == "None":
            return frames
        positions = self.frame_position_embeddings.weight[: frames.shape[1]]
        return self.transformer(frames + positions).to(frames.dtype) + frames

    @staticmethod
    def concept_weights(frames: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """VCS temporal saliency [A, B, T]: per class, softmax over frames of token-frame cosine
        similarities (temperature 0.01), averaged over the class's tokens.

        `frames` [B, T, D] (after temporal modelling), `tokens` [A, W, D]; both are normalised here.
        """
        return VideoHeader.unit_concept_weights(F.normalize(frames, dim=-1), F.normalize(tokens, dim=-1))

    @staticmethod
    def unit_concept_weights(frames: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """`concept_weights` of frames and tokens that are unit vectors already (the exported recognizer's
        class tokens are constants, normalised once when it is built)."""
        similarity = torch.einsum("awd,btd->abwt", tokens, frames)
        return F.softmax(similarity / VCS_TEMPERATURE, dim=-1).mean(dim=2)

    @staticmethod
    def spotted_logits(weights: torch.Tensor, frames: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """VCS cosine logits [B, A]: unit frames [B, T, D] pooled by each class's weights [A, B, T] (from
        `unit_concept_weights`), against the unit class embeddings [A, D]."""
        spotted = torch.einsum("abt,btd->abd", weights, frames)
        return torch.einsum("abd,ad->ba", spotted, classes)

    def forward(self, frames: torch.Tensor, tokens: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """Cosine logits [B, A] of videos against class texts (no logit scale).

        `frames` [B, T, D] frame embeddings, `tokens` [A, W, D] per-token text features (VCS only),
        `classes` [A, D] EOT text embeddings.
        """
        return self.interact(self.aggregate(frames), tokens, classes)

    def interact(self, frames: torch.Tensor, tokens: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """`forward` after the temporal modelling: `frames` [B, T, D] from `aggregate`, so that a caller
        that also shows the VCS weights of those frames (the exported recognizer) aggregates once."""
        classes = F.normalize(classes, dim=-1)
        if self.interaction == "DP":
            return F.normalize(frames.mean(dim=1), dim=-1) @ classes.t()
        frames = F.normalize(frames, dim=-1)
        weights = self.unit_concept_weights(frames, F.normalize(tokens, dim=-1))
        return self.spotted_logits(weights, frames, classes)
