"""BIKE's heads on top of CLIP: the video header (temporal transformer + DP/VCS) and the attributes head."""
from .attributes_head import AttributesHead
from .text_prompt import PROMPT_TEMPLATE, text_prompt
from .video_header import VideoHeader

__all__ = ["AttributesHead", "PROMPT_TEMPLATE", "VideoHeader", "text_prompt"]
