"""The one exception type users see: a one-line message that names the problem and the fix.

The CLI prints `HftkError` messages on stderr without a traceback (unless `--debug`) and
exits non-zero; any other exception is a bug and keeps its traceback.
"""


class HftkError(Exception):
    """A user-facing error: bad input, missing file, impossible setting."""


class TrainingInterrupted(HftkError):
    """Ctrl-C during training, after a checkpoint was written: the CLI prints the message and exits 130."""
