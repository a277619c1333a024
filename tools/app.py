"""A local web page to try a model on any video with any class names (Gradio; pip install -r requirements-app.txt).

    python tools/app.py --config CFG [--weights CKPT] [--classes labels.csv|classes.txt|"a,b,c"]
        [--examples FOLDER] [--port 7860] [--host 127.0.0.1] [--max_upload_mb 50] [--keep_uploads FOLDER]

Without --weights the model is zero-shot CLIP of network.arch. The page binds to localhost unless
--host says otherwise, sends nothing anywhere (Gradio's analytics are off), and keeps no upload after
it stops (Ctrl+C, or SIGTERM from systemd, Docker or Kubernetes) unless --keep_uploads names a folder for
copies: uploads live in a temporary folder of the process's own, the only one it removes. --examples: a
folder of videos (searched recursively; the first of each subfolder) offered as one-click examples.
"""
import argparse
import logging
import os
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository's packages importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


from datasets.decoding import VIDEO_EXTENSIONS  # noqa: E402
from utils.distributed import run_program  # noqa: E402
from utils.errors import UsageError  # noqa: E402
from workflows.app import upload_folder  # noqa: E402
from workflows.prediction import Predictor, parse_class_names  # noqa: E402
from workflows.options import (ProgramParser, add_config_argument, add_override_arguments,  # noqa: E402
                               add_precision_argument)
from workflows.startup import start_program  # noqa: E402

logger = logging.getLogger(__name__)
MAX_EXAMPLES = 8


def parse_args(argv=None):
    parser = ProgramParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_argument(parser)
    parser.add_argument("--weights", default=None, help="BIKE checkpoint; default: zero-shot CLIP of network.arch")
    parser.add_argument("--classes", default=None,
                        help="the page's initial class names: labels CSV, text file or comma-separated; "
                             "default data.label_list")
    parser.add_argument("--examples", default=None, metavar="FOLDER", help="videos offered as examples")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: this machine only)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--max_upload_mb", type=float, default=50.0)
    parser.add_argument("--keep_uploads", default=None, metavar="FOLDER", help="keep a copy of every analysed video")
    add_precision_argument(parser)
    parser.add_argument("--cpu", action="store_true", help="run on the CPU even where a GPU exists")
    add_override_arguments(parser, positional=False)
    return parser.parse_args(argv)


def example_videos(folder):
    """Up to MAX_EXAMPLES videos of `folder`: the first (by name) of each subfolder, or of the folder itself."""
    videos = sorted(path for path in Path(folder).rglob("*") if path.suffix.lower() in VIDEO_EXTENSIONS)
    if not videos:
        raise UsageError(f"--examples {folder} holds no videos ({', '.join(VIDEO_EXTENSIONS)})")
    first = {}
    for path in videos:
        first.setdefault(path.parent, path)
    return list(first.values())[:MAX_EXAMPLES]


def create_page(args):
    """The page and its model, every file checked first."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from workflows.app import build_page

    started = start_program(args, given_files={"weights": args.weights}, local=True)
    if args.examples and not Path(args.examples).is_dir():
        raise FileNotFoundError(f"--examples {args.examples} is not a folder")
    examples = example_videos(args.examples) if args.examples else []
    class_names = parse_class_names(args.classes or started.config.data.label_list)
    logger.info("precision %s", started.precision_label)
    predictor = Predictor(started.config, class_names, args.weights, started.ctx.device, started.precision)
    return build_page(predictor, examples, int(args.max_upload_mb * 2**20), args.keep_uploads)


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    with upload_folder() as uploads:  # removed, uploads and all, when the app stops (Ctrl+C or SIGTERM)
        logger.info("uploads are kept in %s until the app stops", uploads)
        page = create_page(args)
        logger.info("open http://%s:%d in a browser (Ctrl+C or SIGTERM stops the app)", args.host, args.port)
        page.launch(server_name=args.host, server_port=args.port, max_file_size=int(args.max_upload_mb * 2**20),
                    allowed_paths=[args.examples] if args.examples else None, footer_links=[], quiet=True)


if __name__ == "__main__":
    run_program(main)
