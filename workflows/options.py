"""The command-line options several programs share, defined once: the config and its overrides, the test
views, the precision, the process options, and the parser of every program (`ProgramParser`): options are
spelled in snake_case (as the original's), and the dashed spelling of a multi-word option is accepted as an
alias, so both `--test_crops` and `--test-crops` work.
"""
import argparse

from datasets.transforms import TEST_CROPS
from utils.distributed import add_distributed_arguments
from utils.precision import PRECISION_HELP, PRECISIONS


class ProgramParser(argparse.ArgumentParser):
    """An ArgumentParser whose every multi-word option also answers to its other spelling: `--test_crops`
    and `--test-crops`, `--video-root` and `--video_root`. The snake_case spelling comes first (it is the one
    the help shows first and the programs document); `dest` is the snake_case name, as argparse makes it."""

    def add_argument(self, *names, **kwargs):
        spellings = []
        for name in names:
            if name.startswith("--") and ("_" in name or "-" in name[2:]):
                snake, dashed = "--" + name[2:].replace("-", "_"), "--" + name[2:].replace("_", "-")
                spellings += [spelling for spelling in (snake, dashed) if spelling not in spellings]
            elif name not in spellings:
                spellings.append(name)
        return super().add_argument(*spellings, **kwargs)

    def error(self, message):
        """One `error:` line, as every other mistake (argparse would print the whole usage block first)."""
        self.exit(2, f"error: {message} (--help lists the options)\n")


def add_config_argument(parser, help="YAML config (see configs/)", **kwargs):
    """--config/-cfg, the config every program starts from."""
    return parser.add_argument("--config", "-cfg", required=True, help=help, **kwargs)


def add_override_arguments(parser, positional: bool = True, example: str = "data.batch_size=8"):
    """Config overrides `key.sub=value`: `--set KEY=VALUE ...` in every program, and as trailing positional
    arguments in the programs that take no other positional ones; `overrides(args)` returns them all."""
    parser.add_argument("--set", dest="set_overrides", nargs="*", action="extend", default=[], metavar="KEY=VALUE",
                        help=f"config overrides such as {example}")
    if positional:
        parser.add_argument("overrides", nargs="*", help=f"config overrides such as {example}")
    return parser


def overrides(args) -> list:
    """Every config override of the command line: the positional ones, then those after --set."""
    return list(getattr(args, "overrides", None) or []) + list(getattr(args, "set_overrides", None) or [])


def add_training_arguments(parser):
    """The options of train.py (and train_co.py, which adds its own): the config, --log_time, the program
    options and the overrides."""
    add_config_argument(parser)
    parser.add_argument("--log_time", default=None,
                        help="name of the run folder under output_path/dataset/arch/ (default: the start time)")
    add_program_arguments(parser)
    add_override_arguments(parser, example="solver.epochs=5")
    return parser


def add_view_arguments(parser, dense_help="dense (I3D-style) sampling instead of segments"):
    """--test_clips, --test_crops (the crop counts of datasets.transforms) and --dense; each defaults to the
    config's data.test_clips, data.test_crops, data.dense."""
    parser.add_argument("--test_clips", type=positive_int, default=None,
                        help="temporal clips per video, scores averaged (default: data.test_clips)")
    parser.add_argument("--test_crops", type=int, default=None, choices=TEST_CROPS,
                        help="spatial crops per clip (default: data.test_crops)")
    parser.add_argument("--dense", action="store_true", help=dense_help)
    return parser


def add_precision_argument(parser, choices=PRECISIONS, default=None, help=PRECISION_HELP):
    return parser.add_argument("--precision", choices=choices, default=default, help=help)


def add_program_arguments(parser, distributed: bool = True):
    """--precision, the process options (--cpu; --dist_timeout under torchrun) and --no_progress."""
    add_precision_argument(parser)
    if distributed:
        add_distributed_arguments(parser)
    else:
        parser.add_argument("--cpu", action="store_true", help="run on the CPU even where a GPU exists")
    parser.add_argument("--no_progress", action="store_true", help="log lines instead of progress bars")
    return parser


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value
