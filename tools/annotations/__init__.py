"""Converters of official dataset annotations into BIKE's list formats (see lists/README.md).

Each converter writes a labels CSV (`id,name`) and, per split, either a video list (`<file> <label>`)
or, given the root of extracted frames, a frame list (`<dir> <num_frames> <label>`, frames counted).
The command line is tools/convert_annotations.py.
"""
from tools.annotations.charades import convert_charades
from tools.annotations.common import ConversionError
from tools.annotations.hmdb51 import convert_hmdb51
from tools.annotations.kinetics import convert_kinetics
from tools.annotations.ucf101 import convert_ucf101

__all__ = ["ConversionError", "convert_charades", "convert_hmdb51", "convert_kinetics", "convert_ucf101"]
