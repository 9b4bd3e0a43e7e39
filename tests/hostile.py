"""Hostile request bodies shared by the tests of the routes that must refuse them."""

from __future__ import annotations

BOUNDARY = "hostile-boundary"


def non_utf8_multipart(filename: str = "x.csv", file: bytes = b"1,2\n") -> tuple[bytes, dict[str, str]]:
    """A multipart body whose first field name is not UTF-8, then a good ``file`` part, and its headers."""
    body = (
        f"--{BOUNDARY}\r\n".encode()
        + b'Content-Disposition: form-data; name="\xff\xfe\xfd"\r\n\r\nvalue\r\n'
        + f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n\r\n'.encode()
        + file
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )
    return body, {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
