"""Read a report's embedded files without trusting their sizes.

A PDF attachment is usually a Flate-compressed stream; a 1 MB file can
inflate to gigabytes. Each attachment is therefore inflated incrementally with
a per-name cap, so memory is bounded by the caps, not by what the file's
author chose. Only the encodings uc_attest reports use (none, or Flate without
predictors) are accepted. Errors speak of the user's file, never of Python
objects.
"""

from __future__ import annotations

import io
import re
import zlib

from ..errors import UnreadableInputError, VerificationError

CHUNK = 1 << 16
DEFAULT_CAP = 1 << 20
"""Bytes an attachment without a cap of its own may inflate to."""

_PYTHON_REPR = re.compile(r"(stream )?<_io\.\w+ object at 0x[0-9a-fA-F]+>:?\s*")


def _clean(message: str, source: str) -> str:
    """pikepdf's message with its Python stream repr replaced by the user's file name, on one line."""
    return " ".join(_PYTHON_REPR.sub("", str(message)).split())[:200] or "unreadable"


def _inflate_capped(raw: bytes, cap: int, name: str, source: str) -> bytes:
    inflater = zlib.decompressobj()
    out = bytearray()
    view = memoryview(raw)
    try:
        for start in range(0, len(view), CHUNK):
            out += inflater.decompress(view[start : start + CHUNK], cap + 1 - len(out))
            while inflater.unconsumed_tail and len(out) <= cap:
                out += inflater.decompress(inflater.unconsumed_tail, cap + 1 - len(out))
            if len(out) > cap:
                raise VerificationError(f"{source}: attachment {name} inflates to more than {cap} bytes (a report's {name} is never that large)")
        out += inflater.flush()
    except zlib.error:
        raise VerificationError(f"{source}: attachment {name} is not valid Flate data") from None
    if len(out) > cap:
        raise VerificationError(f"{source}: attachment {name} inflates to more than {cap} bytes (a report's {name} is never that large)")
    return bytes(out)


def _stream_bytes(stream, name: str, cap: int, source: str) -> bytes:  # type: ignore[no-untyped-def]
    import pikepdf

    filters = stream.get("/Filter")
    names = [] if filters is None else ([filters] if isinstance(filters, pikepdf.Name) else list(filters))
    if stream.get("/DecodeParms") is not None and names:
        raise VerificationError(f"{source}: attachment {name} uses decode parameters, which uc_attest reports never do")
    raw = stream.read_raw_bytes()
    if not names:
        if len(raw) > cap:
            raise VerificationError(f"{source}: attachment {name} is larger than {cap} bytes")
        return bytes(raw)
    if names != [pikepdf.Name.FlateDecode]:
        raise VerificationError(f"{source}: attachment {name} uses the filter {names}, which uc_attest reports never use")
    return _inflate_capped(bytes(raw), cap, name, source)


def _open_pdf(pdf_bytes: bytes, source: str):  # type: ignore[no-untyped-def]
    try:
        import pikepdf
    except ImportError:
        raise UnreadableInputError("reading a report's attachments needs pikepdf: pip install pikepdf") from None
    if not pdf_bytes.lstrip(b"\x00\t\n\f\r ").startswith(b"%PDF-"):
        raise UnreadableInputError(f"{source} is not a PDF file (it does not start with %PDF-)")
    try:
        return pikepdf.open(io.BytesIO(pdf_bytes))
    except pikepdf.PdfError as exc:
        raise UnreadableInputError(f"{source} is a damaged or truncated PDF: {_clean(str(exc), source)}") from None
    except (ValueError, OSError) as exc:
        raise UnreadableInputError(f"{source} cannot be read as a PDF: {_clean(str(exc), source)}") from None


def read_attachments(pdf_bytes: bytes, caps: dict[str, int], source: str = "report") -> dict[str, bytes]:
    """Every embedded file by name, each inflated under its cap (``caps`` by name, else :data:`DEFAULT_CAP`).

    Also refuses a file listed in the document's associated files (/AF) but
    not in its embedded-files tree, or the other way round: a report has one
    list of evidence.
    """
    import pikepdf

    with _open_pdf(pdf_bytes, source) as pdf:
        try:
            out: dict[str, bytes] = {}
            for name, spec in pdf.attachments.items():
                key = str(name)
                if key in out:
                    raise VerificationError(f"{source}: attachment {key} appears twice")
                out[key] = _stream_bytes(spec.get_file().obj, key, caps.get(key, DEFAULT_CAP), source)
            associated = {str(spec.get("/F", "")) for spec in pdf.Root.get("/AF", [])}
        except pikepdf.PdfError as exc:
            raise UnreadableInputError(f"{source}: damaged attachments: {_clean(str(exc), source)}") from None
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise VerificationError(f"{source}: malformed attachment entries ({type(exc).__name__})") from None
    if associated != set(out):
        raise VerificationError(f"{source}: the embedded files ({', '.join(sorted(out))}) and the associated files ({', '.join(sorted(associated))}) differ")
    return out
