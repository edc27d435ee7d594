"""Reading raw data set files record by record, as their releases ship them.

- JSON arrays (`[{...}, {...}]`, HotpotQA / 2WikiMultihopQA / CWQ / PopQA-as-JSON) are streamed element by
  element, so a 500 MB training file never sits in memory as one parsed tree.
- JSON Lines (one object per line, Hugging Face exports) are streamed line by line.
- A single JSON object with a `"data"` list (SQuAD) is parsed whole (the official files are 5-40 MB);
  its other keys (`"version"`) are kept in `Source.header`.
- `.tsv` / `.csv` tables (PopQA) are read with a header row; pandas-style quoting (`"[""a"", ""b""]"`) works.
- Any of these may be gzipped (`.gz`).

`Source.pos` is the number of (compressed) bytes consumed so far, for progress bars.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from engine.errors import InputError

CHUNK = 1 << 20
TABLE_SUFFIXES = {".tsv": "\t", ".csv": ","}
CUT_SHORT = "the file may be cut short: download or unpack it again"


class RecordError(Exception):
    """A record that is not in the expected layout (required fields missing, wrong types).

    On the first record this means the whole file is not that format; later it only skips the record.
    """


class Skip(Exception):
    """A well-formed record that cannot become a question (no answer, unanswerable, ...)."""


def plain_suffix(path: Path) -> str:
    """The suffix that names the layout: `dev.json.gz` -> `.json`."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    return suffixes[-1] if suffixes else ""


class Source:
    """One raw file; iterate `records()` once. Records are `(where, value)`, where `where` names the spot."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path).expanduser()
        if not self.path.exists():
            raise InputError(f"input file {self.path} does not exist", "check the path of the raw release file")
        if not self.path.is_file():
            raise InputError(f"{self.path} is not a file", "pass the release file itself (unpack archives first)")
        with open(self.path, "rb") as fh:
            magic = fh.read(4)
        if magic.startswith(b"PK\x03\x04"):
            raise InputError(f"{self.path} is a zip archive", "unzip it and pass the .json file inside")
        self.gzipped = magic.startswith(b"\x1f\x8b")
        self.size = self.path.stat().st_size
        self.pos = 0
        self.header: dict[str, Any] = {}
        """Top-level keys beside `data` of a wrapped file (SQuAD's `version`)."""
        self.state: dict[str, Any] = {}
        """Scratch space a reader keeps across records (NQ-Swap's question groups)."""
        self.suffix = plain_suffix(self.path)
        self.is_table = self.suffix in TABLE_SUFFIXES

    # -- opening -----------------------------------------------------------------------------------------
    def _open(self) -> tuple[IO[bytes], IO[bytes]]:
        """(raw file for positions, stream to read from)."""
        raw = open(self.path, "rb")  # noqa: SIM115 (closed by records())
        return raw, (gzip.open(raw, "rb") if self.gzipped else raw)  # type: ignore[return-value]

    def _bad(self, what: str, hint: str = "pass the release file unchanged (UTF-8 JSON, JSON Lines, or TSV/CSV for PopQA)") -> InputError:
        return InputError(f"{self.path} {what}", hint)

    # -- records -----------------------------------------------------------------------------------------
    def records(self) -> Iterator[tuple[str, Any]]:
        raw, stream = self._open()
        try:
            if self.is_table:
                yield from self._table(raw, stream)
                return
            first = self._first_char(stream)
            if first == "[":
                yield from self._array(raw, stream)
            elif first == "{":
                yield from self._object_or_lines(raw, stream)
            elif first == "":
                raise self._bad("is empty")
            else:
                raise self._bad(f"is not JSON (it starts with {first!r})")
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise self._bad(f"cannot be read ({exc})") from None
        except UnicodeDecodeError as exc:
            raise self._bad(f"is not UTF-8 text ({exc.reason})") from None
        finally:
            stream.close()
            raw.close()

    def _first_char(self, stream: IO[bytes]) -> str:
        head = stream.read(4096)
        stream.seek(0)
        if b"\x00" in head:
            raise self._bad("looks binary, not text")
        text = head.decode("utf-8", errors="ignore").lstrip("\ufeff \t\r\n")
        return text[:1]

    def _table(self, raw: IO[bytes], stream: IO[bytes]) -> Iterator[tuple[str, Any]]:
        import io
        import sys

        csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
        text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
        reader = csv.DictReader(text, delimiter=TABLE_SUFFIXES[self.suffix])
        if not reader.fieldnames:
            raise self._bad("has no header row")
        try:
            for number, row in enumerate(reader, start=2):
                self.pos = raw.tell()
                row.pop(None, None)  # cells beyond the header
                yield f"{self.path.name}:{number}", {k.strip(): v for k, v in row.items() if k is not None}
        except csv.Error as exc:
            raise self._bad(f"is not a valid {self.suffix[1:].upper()} file (line {reader.line_num}: {exc})") from None

    def _lines(self, raw: IO[bytes], stream: IO[bytes], start: int = 1) -> Iterator[tuple[str, str]]:
        for number, line in enumerate(stream, start=start):
            self.pos = raw.tell()
            text = line.decode("utf-8").lstrip("\ufeff").strip()
            if text:
                yield f"{self.path.name}:{number}", text

    def _object_or_lines(self, raw: IO[bytes], stream: IO[bytes]) -> Iterator[tuple[str, Any]]:
        lines = self._lines(raw, stream)
        where, first = next(lines)
        try:
            value = json.loads(first)
        except json.JSONDecodeError:
            value = None
        if value is None:  # a pretty-printed object spanning lines: parse it whole
            stream.seek(0)
            try:
                value = json.loads(stream.read().decode("utf-8").lstrip("\ufeff"))
            except json.JSONDecodeError as exc:
                raise self._bad(f"is not valid JSON or JSON Lines (line {exc.lineno}: {exc.msg})") from None
            self.pos = self.size
            yield from self._unwrap(value)
            return
        if isinstance(value, dict) and isinstance(value.get("data"), list):  # a one-line wrapper (SQuAD)
            yield from self._unwrap(value)
            return
        yield where, value
        for where, text in lines:
            try:
                yield where, json.loads(text)
            except json.JSONDecodeError as exc:
                yield where, RecordError(f"invalid JSON ({exc.msg})")

    def _unwrap(self, value: Any) -> Iterator[tuple[str, Any]]:
        if isinstance(value, dict) and isinstance(value.get("data"), list):
            self.header = {k: v for k, v in value.items() if k != "data"}
            total = len(value["data"])
            for index, item in enumerate(value["data"]):
                self.pos = self.size * index // max(1, total)  # parsed whole: progress by items instead
                yield f"{self.path.name} data[{index}]", item
        else:
            yield self.path.name, value

    def _array(self, raw: IO[bytes], stream: IO[bytes]) -> Iterator[tuple[str, Any]]:
        """Stream the elements of a top-level JSON array."""
        decoder = json.JSONDecoder()
        utf8 = codecs.getincrementaldecoder("utf-8")()
        buf, i, eof = "", 0, False

        def fill(size: int = CHUNK) -> bool:
            nonlocal buf, i, eof
            chunk = stream.read(size)
            self.pos = raw.tell()
            if not chunk:
                eof = True
                buf, i = buf[i:] + utf8.decode(b"", final=True), 0
                return False
            buf, i = buf[i:] + utf8.decode(chunk), 0
            return True

        def skip_space() -> str:
            nonlocal i
            while True:
                while i < len(buf) and buf[i] in " \t\r\n\ufeff":
                    i += 1
                if i < len(buf):
                    return buf[i]
                if not fill():
                    return ""

        skip_space()
        i += 1  # the "["
        index = 0
        if skip_space() == "]":
            return
        while True:
            size = CHUNK
            while True:
                try:
                    value, end = decoder.raw_decode(buf, i)
                    break
                except json.JSONDecodeError as exc:
                    if eof:
                        raise self._bad(f"is not valid JSON (element {index}: {exc.msg})", CUT_SHORT) from None
                    fill(size)
                    size *= 2  # a long element: read ahead geometrically, so retries stay linear
            yield f"{self.path.name}[{index}]", value
            index += 1
            i = end
            sep = skip_space()
            if sep == ",":
                i += 1
                skip_space()
            elif sep == "]":
                return
            else:
                raise self._bad(f"is not valid JSON (after element {index - 1}: expected ',' or ']')", CUT_SHORT)
