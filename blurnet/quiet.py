"""Quiet start-up for the command line: TensorFlow's C++ and absl start-up lines stay off the screen.

Importing TensorFlow 2.21 writes, straight to file descriptor 2 and before any
log level applies, `All log messages before absl::InitializeLog() ...`, the
oneDNN notice and `Could not find cuda drivers` (twice: two shared libraries),
and the first device query on a machine without a GPU logs `failed call to
cuInit: ... (303)`. None of them asks anything of the user. `import_tensorflow`
therefore sends descriptor 2 to a temporary file while TensorFlow is imported
and its devices are listed (what was written there is replayed if that fails),
and `configure` sets `TF_CPP_MIN_LOG_LEVEL` and `GRPC_VERBOSITY` so that the C++
runtime logs only fatal errors afterwards; Python exceptions still carry every
real error. `configure(verbose=True)` (`blurnet -v`) leaves all of it on screen.

This module imports nothing heavy: the command line imports it before it knows
whether a command needs TensorFlow at all.
"""
from __future__ import annotations

import collections
import contextlib
import os
import sys
import tempfile

# Set (unless already set in the environment) before TensorFlow is imported.
QUIET_ENVIRONMENT = {
    "TF_CPP_MIN_LOG_LEVEL": "3",  # C++ INFO/WARNING/ERROR lines, e.g. cuInit's error without a GPU
    "GRPC_VERBOSITY": "ERROR",  # gRPC's start-up lines (multi-worker runs)
    "OPENCV_LOG_LEVEL": "ERROR",  # OpenCV's warnings, e.g. `PNG input buffer is incomplete` for a file an error names
}

_verbose = False


def configure(verbose: bool = False) -> None:
    """Quiet (default) or verbose start-up; call before TensorFlow is imported."""
    global _verbose
    _verbose = bool(verbose)
    if _verbose:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
    else:
        for name, value in QUIET_ENVIRONMENT.items():
            os.environ.setdefault(name, value)
        if "cv2" in sys.modules and os.environ["OPENCV_LOG_LEVEL"] == "ERROR":  # imported already: it read the variable
            logging = sys.modules["cv2"].utils.logging
            logging.setLogLevel(logging.LOG_LEVEL_ERROR)


def is_verbose() -> bool:
    """Whether `configure(verbose=True)` (`blurnet -v`) asked for TensorFlow's own output."""
    return _verbose


@contextlib.contextmanager
def stderr_silenced():
    """Inside the block, file descriptor 2 (what C and C++ code write to) goes to a temporary file.

    If the block raises, the captured bytes are written back to stderr before the
    exception propagates, so a failure still shows its diagnostics. Does nothing
    when verbose.
    """
    if _verbose:
        yield
        return
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no descriptor 2 at all: nothing to silence
        yield
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        failed = False
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            if failed:
                sink.seek(0)
                captured = sink.read().decode("utf-8", "replace")
                if captured:
                    sys.stderr.write(captured)
                    sys.stderr.flush()


def import_tensorflow():
    """Import TensorFlow and Keras and list the devices, with their start-up output silenced; returns `tensorflow`."""
    already = sys.modules.get("tensorflow")
    if already is not None and hasattr(already, "config"):
        return already
    with stderr_silenced():
        import keras  # noqa: F401 - its TensorFlow backend loads the same libraries
        import tensorflow as tf

        tf.config.list_physical_devices()  # the driver query (cuInit) happens here, still silenced
    return tf


def cpu_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def format_device_line(gpu_names: list[str], cores: int) -> str:
    """`device: CPU (2 cores), no GPU` or `device: GPU (1 x NVIDIA H100), CPU (16 cores)`."""
    cpu = f"CPU ({cores} core{'' if cores == 1 else 's'})"
    if not gpu_names:
        return f"device: {cpu}, no GPU"
    counts = collections.Counter(gpu_names)
    gpus = ", ".join(f"{n} x {name}" for name, n in counts.items())
    return f"device: GPU ({gpus}), {cpu}"


def gpu_names(gpus=None) -> list[str]:
    """Names of the physical GPUs (e.g. `NVIDIA H100 80GB HBM3`), or their TensorFlow names."""
    tf = import_tensorflow()
    if gpus is None:
        with stderr_silenced():
            gpus = tf.config.list_physical_devices("GPU")
    names = []
    for gpu in gpus:
        try:
            names.append(tf.config.experimental.get_device_details(gpu).get("device_name") or gpu.name)
        except (ValueError, RuntimeError):
            names.append(gpu.name)
    return names


def device_line(gpus=None) -> str:
    """The device line for this process (imports TensorFlow quietly if needed)."""
    return format_device_line(gpu_names(gpus), cpu_cores())
