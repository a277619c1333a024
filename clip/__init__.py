"""CLIP for BIKE: OpenAI-compatible model, loading and tokenizer (see clip.clip and clip.model)."""
from .clip import (CLIP_MEAN, CLIP_STD, WeightsUnavailableError, arch_folder_name, available_models, create_model,
                   load, random_init_models)
from .model import CLIP, CLIPConfig, build_model
from .simple_tokenizer import SimpleTokenizer, tokenize

__all__ = ["CLIP", "CLIPConfig", "CLIP_MEAN", "CLIP_STD", "SimpleTokenizer", "WeightsUnavailableError",
           "arch_folder_name", "available_models", "build_model", "create_model", "load", "random_init_models",
           "tokenize"]
