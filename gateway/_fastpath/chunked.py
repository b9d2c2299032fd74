"""HTTP/1.1 chunked transfer encoding, for bytes written to uvicorn's transport directly."""


def frame_chunk(chunk: bytes) -> bytes:
    """``chunk`` in chunked framing: the bytes uvicorn's httptools protocol writes for it."""
    return b"%x\r\n%s\r\n" % (len(chunk), chunk)
