"""Reading the logs a training run writes: `training_log.csv` (Keras's `CSVLogger`, one row per epoch) and
`stages.jsonl` (the stage of each epoch). A process killed while it appended a line leaves that line cut short:
every reader here leaves such a line out."""
from __future__ import annotations

import csv
from pathlib import Path


def whole_lines(path: Path) -> list[str]:
    """The lines of a text file that end with a newline: a last line a kill cut short is left out."""
    text = path.read_text()
    lines = text.splitlines()
    return lines if text.endswith("\n") else lines[:-1]


def drop_cut_line(path: Path) -> None:
    """Cut a log back to its last newline, before a resumed run appends to it: a line a kill cut short would
    otherwise run into the first line the resumed run writes, and both would be lost to the readers."""
    if not path.is_file():
        return
    with open(path, "rb+") as f:
        data = f.read()
        if data and not data.endswith(b"\n"):
            f.truncate(data.rfind(b"\n") + 1)


def read_log_rows(path: Path) -> list[dict[str, float]]:
    """The rows of a CSV training log as `{column: value}` ([] without the file): empty or missing cells left out
    of a row; a row with a cell that is not a number, or with more cells than the header, left out; a last line cut
    short left out."""
    if not path.is_file():
        return []
    rows = []
    for row in csv.DictReader(whole_lines(path)):
        if None in row:  # more cells than the header names: which value is which cannot be told
            continue
        try:
            rows.append({k: float(v) for k, v in row.items() if v not in (None, "")})
        except ValueError:
            continue
    return rows
