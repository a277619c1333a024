"""Class prompts: every class name becomes "This is a video about {name}" for CLIP's text tower."""
from typing import Sequence

import torch

from clip import tokenize

PROMPT_TEMPLATE = "This is a video about {}"


def text_prompt(class_names: Sequence[str], template: str = PROMPT_TEMPLATE, tokenizer=tokenize) -> torch.Tensor:
    """Token ids [num_classes, context_length] of the prompted class names, in class-id order.

    `tokenizer`: the model's (`VideoEncoder.tokenize`); OpenAI's by default.
    """
    if len(class_names) == 0:
        raise ValueError("the class list is empty: there is nothing to build prompts for")
    return tokenizer([template.format(name) for name in class_names])
