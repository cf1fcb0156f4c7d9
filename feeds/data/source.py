"""A data file's bytes, gunzipped when they are gzip-compressed: told by the gzip magic number at the start of
the file, never by its name. Read whole (candle files) or as numbered lines (captures and recordings, which
can be large).

gzip data that ends early (a recorder killed mid-write) or turns corrupt is read up to that point and the
reason kept in `truncated`, with the last, cut-off line left out: the reader decides whether what came before
is enough. Several gzip members one after the other (a recording appended to) are read as one stream.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from feeds.data.errors import DataError

GZIP_MAGIC = b"\x1f\x8b"
HEAD_BYTES = 64 * 1024  # what format detection looks at
_CHUNK = 1 << 20


class Source:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.truncated: str | None = None  # why the gzip data ended early, once read to there
        with self._open() as fh:
            self.compressed = fh.read(2) == GZIP_MAGIC

    def _open(self) -> BinaryIO:
        try:
            return self.path.open("rb")
        except FileNotFoundError:
            raise DataError(self.path, 0, "no such file") from None
        except IsADirectoryError:
            raise DataError(self.path, 0, "is a directory, not a data file") from None
        except PermissionError:
            raise DataError(self.path, 0, "cannot be read: permission denied") from None
        except OSError as err:
            raise DataError(self.path, 0, f"cannot be read: {err.strerror or err}") from None

    def chunks(self) -> Iterator[bytes]:
        """The file's content, gunzipped, in chunks."""
        with self._open() as fh:
            raw = iter(lambda: fh.read(_CHUNK), b"")
            yield from (self._gunzip(raw) if self.compressed else raw)

    def _gunzip(self, raw: Iterator[bytes]) -> Iterator[bytes]:
        self.truncated = None
        inflate, fed = zlib.decompressobj(wbits=31), False
        for chunk in raw:
            data = chunk
            while data:
                try:
                    out = inflate.decompress(data)
                except zlib.error as err:
                    self.truncated = f"corrupt gzip data ({err})"
                    return
                fed = True
                if out:
                    yield out
                if not inflate.eof:
                    break
                data = inflate.unused_data.lstrip(b"\x00")  # padding after a member, as gzip(1) allows
                inflate, fed = zlib.decompressobj(wbits=31), False
                if data and not data.startswith(GZIP_MAGIC[: len(data)]):
                    self.truncated = "bytes after the end of the gzip data"
                    return
        if fed:
            self.truncated = "the gzip data ends early (the file was cut off)"

    def head(self) -> bytes:
        """The first HEAD_BYTES of the content (less if the file is shorter)."""
        got, size = [], 0
        for chunk in self.chunks():
            got.append(chunk)
            size += len(chunk)
            if size >= HEAD_BYTES:
                break
        return b"".join(got)[:HEAD_BYTES]

    def read(self) -> bytes:
        """The whole content; after a truncation, up to the last complete line."""
        data = b"".join(self.chunks())
        if self.truncated:
            data = data[: data.rfind(b"\n") + 1]
        return data

    def lines(self) -> Iterator[tuple[int, bytes]]:
        """(line number, line without its end of line); after a truncation the cut-off last line is left
        out."""
        number, carry = 0, b""
        for chunk in self.chunks():
            parts = (carry + chunk).split(b"\n")
            carry = parts.pop()
            for line in parts:
                number += 1
                yield number, line[:-1] if line.endswith(b"\r") else line
        if carry and not self.truncated:
            yield number + 1, carry[:-1] if carry.endswith(b"\r") else carry
