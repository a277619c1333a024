"""Logging set-up and progress reporting: tqdm on a terminal, periodic log lines otherwise."""
import logging
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Optional

from tqdm import tqdm

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(output_dir=None, is_main=True, filename="log.txt"):
    """Console (main process only) and `output_dir/log.txt` handlers on the root logger: every module's
    logger (`logging.getLogger(__name__)`) reaches them."""
    root = logging.getLogger()
    root.setLevel(logging.INFO if is_main else logging.WARNING)
    for handler in list(root.handlers):
        root.removeHandler(handler)
    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(logging.Formatter(FORMAT, "%H:%M:%S"))
    root.addHandler(console)
    if output_dir is not None and is_main:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(Path(output_dir) / filename)
        file_handler.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(file_handler)


def counted(number: int, noun: str, plural: Optional[str] = None) -> str:
    """'1 process', '2 processes': a count with its noun in the right number."""
    return f"{number} {noun if number == 1 else plural or noun + 's'}"


def epoch_label(epoch: int, total: Optional[int] = None) -> str:
    """How people count epochs: the loop's 0-based `epoch` 11 of 12 is 'epoch 12/12' in every log line
    and tool (checkpoints keep the original's 0-based field 'epoch', so released ones load and resume)."""
    return f"epoch {epoch + 1}/{total}" if total else f"epoch {epoch + 1}"


class Progress:
    """Iterates `iterable`, showing a tqdm bar when `bars` is set and stderr is a terminal, and otherwise
    logging a line every `print_freq` steps with the values `update` received and an ETA (processes other
    than the main one log only warnings, so their lines are dropped). `done`: steps already done before
    `iterable` (a resumed epoch), counted in the position shown."""

    def __init__(self, iterable, total: int, description: str, print_freq: int = 10, bars: bool = True,
                 logger: logging.Logger = None, done: int = 0):
        self.iterable, self.total, self.description = iterable, total, description
        self.print_freq = max(print_freq, 1)
        self.logger = logger or logging.getLogger(__name__)
        self.interactive = bars and sys.stderr.isatty()
        self.values = {}
        self.step = self.done = done
        self.start = time.monotonic()

    def __iter__(self):
        if self.interactive:
            self.bar = tqdm(self.iterable, total=self.total, initial=self.done, desc=self.description,
                            dynamic_ncols=True)
            yield from self.bar
            return
        for item in self.iterable:
            yield item

    def update(self, **values):
        """Records this step's values; shown in the bar or logged every `print_freq` steps."""
        self.step += 1
        self.values = values
        text = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items())
        if self.interactive:
            self.bar.set_postfix_str(text, refresh=False)
        elif self.step % self.print_freq == 0 or self.step == self.total:
            elapsed = time.monotonic() - self.start
            eta = timedelta(seconds=int(elapsed / (self.step - self.done) * (self.total - self.step)))
            self.logger.info("%s [%d/%d]%s, eta %s", self.description, self.step, self.total,
                             f" {text}" if text else "", eta)


def track(iterable, total: int, description: str, lines: int = 10, bars: bool = True):
    """Yields the items of `iterable`: a progress bar on a terminal, else about `lines` log lines in all
    (a bar written to a log file would become one very long line)."""
    progress = Progress(iterable, total, description, max(total // lines, 1), bars)
    for item in progress:
        progress.update()
        yield item
