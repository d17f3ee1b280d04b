"""The JSON-lines results file: one record per line, crash-safe appends, resumable.

The parent process appends each record as it completes with a single ``os.write`` of the whole
line (newline included) on an ``O_APPEND`` descriptor, then ``fsync``: a SIGKILL at any moment
leaves complete lines plus at most one partial last line, which reading ignores and opening for
append truncates.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from solver.instance import InputError


def encode_record(record: dict[str, Any]) -> bytes:
    """One line of JSON (no NaN/inf, which JSON lacks) plus the newline, as bytes."""
    return (json.dumps(_finite(record), separators=(",", ":"), allow_nan=False) + "\n").encode()


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


@dataclass
class ReadResult:
    records: list[dict[str, Any]]
    partial_tail: bool = False  # the file ended in a torn (unterminated) line
    bad_lines: list[int] = field(default_factory=list)  # complete lines that did not parse


def read_records(path: Path) -> ReadResult:
    """Every complete, parseable record line. A last line without its newline is a torn write
    and is ignored; a complete line that is not a JSON object is skipped and reported."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return ReadResult([])
    except OSError as exc:
        raise InputError(f"--out: cannot read {path} ({exc.strerror})", "out") from None
    out = ReadResult([])
    body, sep, tail = data.rpartition(b"\n")
    if not sep:  # no newline at all: everything is a torn line
        body, tail = b"", data
    out.partial_tail = bool(tail)
    for number, line in enumerate(body.split(b"\n") if body else [], start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except (UnicodeDecodeError, json.JSONDecodeError):
            out.bad_lines.append(number)
            continue
        if isinstance(rec, dict) and isinstance(rec.get("path"), str):
            out.records.append(rec)
        else:
            out.bad_lines.append(number)
    return out


class ResultsFile:
    """An append-only JSON-lines file written by one process.

    Opening truncates a torn last line (what a kill during a write can leave), so the next line
    starts clean. :meth:`append` writes a record with one ``os.write`` of the whole line on an
    ``O_APPEND`` descriptor and ``fsync``s it before returning.
    """

    def __init__(self, path: Path, *, truncate: bool = False):
        self.path = path
        if path.is_dir():
            raise InputError(f"--out: {path} is a directory, expected a file name", "out")
        if not path.parent.is_dir():
            raise InputError(f"--out: directory {path.parent} does not exist", "out")
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | (os.O_TRUNC if truncate else 0)
        try:
            self.fd = os.open(path, flags, 0o644)
        except OSError as exc:
            raise InputError(f"--out: cannot open {path} ({exc.strerror})", "out") from None
        self.repaired = self._drop_torn_tail()

    def _drop_torn_tail(self) -> int:
        """Truncate after the last newline; returns the bytes dropped."""
        size = os.fstat(self.fd).st_size
        if size == 0:
            return 0
        with open(self.path, "rb") as f:
            chunk = 1 << 16
            pos = size
            while pos > 0:
                start = max(0, pos - chunk)
                f.seek(start)
                block = f.read(pos - start)
                i = block.rfind(b"\n")
                if i >= 0:
                    keep = start + i + 1
                    break
                pos = start
            else:
                keep = 0
        if keep < size:
            os.ftruncate(self.fd, keep)
            os.fsync(self.fd)
        return size - keep

    def append(self, record: dict[str, Any]) -> None:
        data = encode_record(record)
        written = os.write(self.fd, data)
        while written < len(data):  # only on exotic filesystems; still one line, in order
            written += os.write(self.fd, data[written:])
        os.fsync(self.fd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> ResultsFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
