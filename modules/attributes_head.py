"""The video-to-text branch's head: matches an attribute sentence with the class texts."""
import torch
import torch.nn.functional as F
from torch import nn


def _two_layer_mlp(width: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(width, width), nn.ReLU(inplace=True), nn.Linear(width, width))


class AttributesHead(nn.Module):
    """Cosine logits between projected attribute-sentence features and projected class (query) features.

    Parameter names (`query_fc.*`, `sentence_fc.*`) are those of the original implementation.
    """

    def __init__(self, embed_dim: int):
        super().__init__()
        self.query_fc = _two_layer_mlp(embed_dim)
        self.sentence_fc = _two_layer_mlp(embed_dim)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def forward(self, query_features: torch.Tensor, sentence_features: torch.Tensor) -> torch.Tensor:
        """[num_sentences, num_queries] cosine similarities (no logit scale)."""
        query = F.normalize(self.query_fc(query_features), dim=-1)
        sentence = F.normalize(self.sentence_fc(sentence_features), dim=-1)
        return sentence @ query.t()
