"""The exact byte layout of a uc_attest report, checked before anything in it is believed.

A report is either the rendered bytes alone (one revision: one
cross-reference stream, one trailer, one ``%%EOF``), or the rendered bytes
followed by exactly one incremental update that our signer wrote. That update
holds, and may hold only:

* the new signature dictionary, the new signature field (merged with its
  invisible widget) and the new AcroForm dictionary, each defined once;
* new definitions of the two rendered objects the signer must touch: the
  document catalog (it gains ``/AcroForm``, and pyHanko's ``/Extensions`` and
  ``/Version`` declarations) and the page that carries the widget (it gains
  the widget in ``/Annots``); every other key of both stays as rendered;
* its own cross-reference stream, whose ``/Prev`` is the rendered one, then
  ``startxref`` and ``%%EOF`` as the last bytes of the file.

The signature's ``/ByteRange`` must be ``[0 a b N-b]`` with ``N`` the file's
length, and ``[a, b)`` must be exactly the signature's ``/Contents`` hex
string: a canonical DER CMS object followed by zero bytes only. Every object
of the update is parsed at the offset its cross-reference entry gives, and the
objects must tile the update with nothing between them. Anything else (a
later revision, a redefined signature dictionary, an object the signer never
writes, bytes after ``%%EOF``) is a :class:`LayoutError` that says what was
found. This does not trust any PDF library's idea of which revision counts.
"""

from __future__ import annotations

import io
import re
import zlib
from dataclasses import dataclass

from .pdf_syntax import HexString, IndirectObject, Name, PdfSyntaxError, PdfValue, Ref, parse_indirect_object, parse_value

SIGNATURE_FIELD = "CustomerVerdictSignature"
CATALOG_KEYS_THE_SIGNER_ADDS = frozenset({"AcroForm", "Extensions", "Version"})
PAGE_KEYS_THE_SIGNER_ADDS = frozenset({"Annots"})
MAX_REVISIONS_DESCRIBED = 64
MAX_XREF_ENTRIES = 1 << 20

_TAIL = re.compile(rb"\n?startxref\r?\n(\d{1,12})\r?\n%%EOF\r?\n?\Z")
_CONTENTS_TEXT = re.compile(rb"<[0-9A-F]*>")
"""The signer writes /Contents as upper-case hex without whitespace: exactly one spelling of each value."""


class LayoutError(ValueError):
    """The file is not laid out as our renderer and signer write a report; the message says what was found."""


class DamagedPdfError(LayoutError):
    """Not a whole PDF at all (no end marker): unreadable input rather than a report laid out otherwise."""


@dataclass(frozen=True)
class XrefSection:
    """One cross-reference stream: where it is, its entries and the trailer keys it carries."""

    start: int
    end: int
    entries: dict[int, tuple[int, int, int]]
    """Object number -> (type, field 2, field 3): type 1 = (1, offset, generation), type 2 = in an object stream."""
    trailer: dict[str, PdfValue]

    @property
    def prev(self) -> int | None:
        value = self.trailer.get("Prev")
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    @property
    def size(self) -> int:
        value = self.trailer.get("Size")
        if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= MAX_XREF_ENTRIES:
            raise LayoutError("a cross-reference stream has no usable /Size")
        return value


@dataclass(frozen=True)
class SignatureUpdate:
    """The one incremental update holding the customer's PDF signature, as found."""

    byte_range: tuple[int, int, int, int]
    cms: bytes
    """The DER CMS object, without the zero padding that fills the rest of /Contents."""
    signing_time: str | None
    """The signature dictionary's /M, the signer's own claim."""
    signature_object: int
    field_object: int
    touched: tuple[int, ...]
    """The rendered objects the update redefines (the catalog and the widget's page)."""

    def signed_bytes(self, pdf: bytes) -> bytes:
        """The bytes the signature covers: everything but the /Contents hex string."""
        _zero, a, b, c = self.byte_range
        return pdf[:a] + pdf[b : b + c]


@dataclass(frozen=True)
class ReportLayout:
    """The rendered revision (``pdf[:rendered_end]``) and, when present, the one signature update after it."""

    rendered_end: int
    signature: SignatureUpdate | None

    def rendered(self, pdf: bytes) -> bytes:
        return pdf[: self.rendered_end]


def _last_startxref(pdf: bytes) -> int:
    tail = _TAIL.search(pdf, max(0, len(pdf) - 64))
    if tail:
        return int(tail.group(1))
    eof = pdf.rfind(b"%%EOF")
    if eof < 0:
        raise DamagedPdfError("the file has no %%EOF marker: it is truncated, or not a whole PDF")
    after = pdf[eof + len(b"%%EOF") :]
    rest = len(after) - len(re.match(rb"\r?\n?", after).group())  # type: ignore[union-attr]
    raise LayoutError(f"{rest} byte(s) follow the last %%EOF and its end of line (a report ends there)" if rest else "the file does not end with startxref and %%EOF as a report does")


def _decode_xref_rows(obj: IndirectObject) -> bytes:
    data = obj.value
    assert isinstance(data, dict) and obj.stream is not None
    if "DecodeParms" in data:
        raise LayoutError(f"the cross-reference stream at offset {obj.start} uses decode parameters, which our writers never do")
    filters = data.get("Filter")
    if filters is None:
        return obj.stream
    if filters != Name("FlateDecode"):
        raise LayoutError(f"the cross-reference stream at offset {obj.start} uses filter {filters!r}, not FlateDecode")
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(obj.stream, MAX_XREF_ENTRIES * 24)
    except zlib.error:
        raise LayoutError(f"the cross-reference stream at offset {obj.start} is not valid Flate data") from None
    if inflater.unconsumed_tail:
        raise LayoutError(f"the cross-reference stream at offset {obj.start} is too large")
    return out


def _ints(value: PdfValue) -> list[int] | None:
    """The value as a list of integers (booleans are not integers here), or None."""
    if not isinstance(value, list):
        return None
    ints = [v for v in value if isinstance(v, int) and not isinstance(v, bool)]
    return ints if len(ints) == len(value) else None


def read_xref_section(pdf: bytes, offset: int) -> XrefSection:
    """The cross-reference stream object at exactly ``offset`` (our renderer and signer write streams, never tables)."""
    if not 0 < offset < len(pdf):
        raise LayoutError(f"startxref points outside the file (offset {offset})")
    if pdf.startswith(b"xref", offset):
        raise LayoutError(f"a cross-reference table at offset {offset}: our renderer and signer write only cross-reference streams, so it was added by something else")
    try:
        obj = parse_indirect_object(pdf, offset)
    except PdfSyntaxError as exc:
        raise LayoutError(f"no cross-reference stream at offset {offset} ({exc})") from None
    data = obj.value
    if not isinstance(data, dict) or data.get("Type") != Name("XRef") or obj.stream is None or obj.gen != 0:
        raise LayoutError(f"the object at offset {offset} is not a cross-reference stream")
    widths = _ints(data.get("W"))
    if widths is None or len(widths) != 3 or not all(0 <= w <= 8 for w in widths) or not widths[1]:
        raise LayoutError(f"the cross-reference stream at offset {offset} has an unusable /W")
    section = XrefSection(offset, obj.end, {}, {k: v for k, v in data.items() if k in ("Size", "Prev", "Root", "Info", "ID")})
    index = _ints(data.get("Index", [0, section.size]))
    if index is None or len(index) % 2 or any(i < 0 for i in index):
        raise LayoutError(f"the cross-reference stream at offset {offset} has an unusable /Index")
    rows = _decode_xref_rows(obj)
    row_len, count = sum(widths), sum(index[1::2])
    if count > MAX_XREF_ENTRIES or len(rows) != count * row_len:
        raise LayoutError(f"the cross-reference stream at offset {offset} holds {len(rows)} bytes, not {count} entries")
    pos = 0
    for first, n in zip(index[::2], index[1::2], strict=True):
        for num in range(first, first + n):
            fields = []
            for width in widths:
                fields.append(int.from_bytes(rows[pos : pos + width], "big") if width else 1)
                pos += width
            if num in section.entries:
                raise LayoutError(f"the cross-reference stream at offset {offset} lists object {num} twice")
            section.entries[num] = (fields[0], fields[1], fields[2])
    if any(num >= section.size for num in section.entries):
        raise LayoutError(f"the cross-reference stream at offset {offset} lists an object beyond its /Size")
    return section


def _count_revisions(pdf: bytes, last: XrefSection) -> int:
    """How many revisions the /Prev chain names (for the message only; bounded)."""
    count, section, seen = 1, last, {last.start}
    while section.prev is not None and count < MAX_REVISIONS_DESCRIBED:
        if section.prev in seen:
            break
        seen.add(section.prev)
        try:
            section = read_xref_section(pdf, section.prev)
        except LayoutError:
            break
        count += 1
    return count


def _rendered_revision(pdf: bytes, xref_offset: int) -> tuple[XrefSection, int]:
    """The rendered revision's cross-reference section and the offset just past its %%EOF."""
    if not pdf.startswith(b"%PDF-"):
        raise LayoutError("the file does not start with %PDF-")
    section = read_xref_section(pdf, xref_offset)
    if section.prev is not None:
        raise LayoutError("the rendered part itself has more than one revision")
    tail = b"startxref\n%d\n%%%%EOF\n" % xref_offset
    if pdf[section.end : section.end + len(tail)] != tail:
        raise LayoutError(f"the rendered part does not end with startxref {xref_offset} and %%EOF right after its cross-reference stream")
    for num, (kind, offset, _gen) in section.entries.items():
        if kind == 1 and not pdf.startswith(b"%d 0 obj" % num, offset):
            raise LayoutError(f"the cross-reference entry of object {num} does not point at that object (offset {offset})")
    return section, section.end + len(tail)


def _rendered_object(rendered: bytes, num: int) -> dict[str, PdfValue]:
    """A rendered object as our parser reads it (through pikepdf: the rendered part may use object streams)."""
    import pikepdf

    with pikepdf.open(io.BytesIO(rendered)) as pdf:
        text = pdf.get_object(num, 0).unparse(resolved=True)
    value, _end = parse_value(bytes(text), 0)
    if not isinstance(value, dict):
        raise LayoutError(f"rendered object {num} is not a dictionary")
    return value


def _plain(value: PdfValue) -> object:
    """The value with hex strings as plain bytes: one writer's ``<656e>`` is another's ``(en)``."""
    if isinstance(value, HexString):
        return value.data
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _expect_same_but(what: str, before: dict[str, PdfValue], after: dict[str, PdfValue], added: frozenset[str], may_change: frozenset[str] = frozenset()) -> None:
    """``after`` is ``before`` plus only the ``added`` keys (``may_change`` keys are checked by the caller)."""
    old, new = _plain(before), _plain(after)
    assert isinstance(old, dict) and isinstance(new, dict)
    removed = set(old) - set(new)
    extra = set(new) - set(old) - added
    changed = {k for k in set(old) & set(new) if old[k] != new[k]} - may_change
    if removed | extra | changed:
        keys = ", ".join(f"/{k}" for k in sorted(removed | extra | changed))
        raise LayoutError(f"the signature update changes the {what}'s {keys}, which the signer never changes")


def _ref(value: PdfValue, what: str) -> Ref:
    if not isinstance(value, Ref):
        raise LayoutError(f"{what} is not an indirect reference")
    return value


def _signature_update(pdf: bytes, update: XrefSection, rendered: XrefSection, rendered_end: int) -> SignatureUpdate:
    if update.trailer.get("Root") != rendered.trailer.get("Root") or update.trailer.get("Info") != rendered.trailer.get("Info"):
        raise LayoutError("the signature update's trailer names another catalog or document information")
    objects: dict[int, IndirectObject] = {}
    for num, (kind, offset, gen) in update.entries.items():
        if kind == 0 and num == 0:
            continue
        if kind != 1 or gen != 0:
            raise LayoutError(f"the signature update's entry for object {num} is not a plain in-file object")
        if not rendered_end <= offset <= update.start:
            raise LayoutError(f"the signature update's entry for object {num} points outside the update (offset {offset})")
        try:
            obj = parse_indirect_object(pdf, offset)
        except PdfSyntaxError as exc:
            raise LayoutError(f"object {num} of the signature update cannot be read ({exc})") from None
        if obj.num != num or obj.gen != 0:
            raise LayoutError(f"the signature update's entry for object {num} points at object {obj.num}")
        objects[num] = obj
    position = rendered_end
    for obj in sorted(objects.values(), key=lambda o: o.start):
        if obj.start != position:
            raise LayoutError(f"{obj.start - position} byte(s) at offset {position} of the signature update belong to no listed object")
        position = obj.end
    if position != update.end or update.start not in {o.start for o in objects.values()} or not _TAIL.fullmatch(pdf, update.end):
        raise LayoutError("the signature update does not end with its own cross-reference stream, startxref and %%EOF")
    catalog_ref = _ref(update.trailer.get("Root"), "the trailer's /Root")
    catalog = objects.get(catalog_ref.num)
    if catalog is None or not isinstance(catalog.value, dict):
        raise LayoutError("the signature update does not redefine the catalog (where the signer adds its form)")
    form_ref = _ref(catalog.value.get("AcroForm"), "the catalog's /AcroForm")
    form = objects.get(form_ref.num)
    if form is None or form_ref.num < rendered.size or not isinstance(form.value, dict):
        raise LayoutError("the catalog's form (/AcroForm) is not a new object of the signature update")
    fields = form.value.get("Fields")
    if set(form.value) != {"Fields", "SigFlags"} or form.value.get("SigFlags") != 3 or not (isinstance(fields, list) and len(fields) == 1):
        raise LayoutError("the form is not the signer's: exactly one field and /SigFlags 3")
    field_ref = _ref(fields[0], "the form's field")
    field = objects.get(field_ref.num)
    if field is None or field_ref.num < rendered.size or not isinstance(field.value, dict):
        raise LayoutError("the signature field is not a new object of the signature update")
    f = field.value
    expected_field = {"FT": Name("Sig"), "T": SIGNATURE_FIELD.encode(), "Type": Name("Annot"), "Subtype": Name("Widget"), "F": 132, "Rect": [0, 0, 0, 0]}
    if set(f) != set(expected_field) | {"P", "V"} or any(f[k] != v for k, v in expected_field.items()):
        raise LayoutError(f"the signature field is not the signer's invisible field {SIGNATURE_FIELD}")
    page_ref, sig_ref = _ref(f["P"], "the field's page"), _ref(f["V"], "the field's signature")
    signature = objects.get(sig_ref.num)
    if signature is None or sig_ref.num < rendered.size or not isinstance(signature.value, dict):
        raise LayoutError("the signature dictionary is not a new object of the signature update")
    new = {n for n in objects if n not in rendered.entries or n >= rendered.size}
    if new != {form_ref.num, field_ref.num, sig_ref.num, update_object_number(objects, update)}:
        raise LayoutError(f"the signature update adds object(s) {sorted(new)}; the signer adds only its form, field, signature and cross-reference stream")
    touched = {n for n in objects if n not in new}
    if touched != {catalog_ref.num, page_ref.num}:
        raise LayoutError(f"the signature update redefines rendered object(s) {sorted(touched)}; the signer redefines only the catalog and the widget's page")
    rendered_bytes = pdf[:rendered_end]
    _expect_same_but("catalog", _rendered_object(rendered_bytes, catalog_ref.num), catalog.value, CATALOG_KEYS_THE_SIGNER_ADDS)
    page_before = _rendered_object(rendered_bytes, page_ref.num)
    page_after = objects[page_ref.num].value
    assert isinstance(page_after, dict)
    annots_before = page_before.get("Annots", [])
    if not isinstance(annots_before, list) or page_after.get("Annots") != [*annots_before, field_ref]:
        raise LayoutError("the signature update changes the page's annotations beyond adding the signature widget")
    _expect_same_but("page", page_before, page_after, PAGE_KEYS_THE_SIGNER_ADDS, may_change=PAGE_KEYS_THE_SIGNER_ADDS)
    return _signature_dictionary(pdf, signature, field_ref.num, tuple(sorted(touched)))


def update_object_number(objects: dict[int, IndirectObject], update: XrefSection) -> int:
    """The object number of the update's own cross-reference stream."""
    return next(n for n, o in objects.items() if o.start == update.start)


def _signature_dictionary(pdf: bytes, obj: IndirectObject, field_num: int, touched: tuple[int, ...]) -> SignatureUpdate:
    from asn1crypto import cms

    sig = obj.value
    assert isinstance(sig, dict)
    allowed = {"Type", "Filter", "SubFilter", "ByteRange", "Contents", "M", "Name", "Reason"}
    if not set(sig) <= allowed or sig.get("Type") != Name("Sig") or sig.get("Filter") != Name("Adobe.PPKLite") or sig.get("SubFilter") != Name("ETSI.CAdES.detached"):
        raise LayoutError(f"the signature dictionary is not the signer's (keys {', '.join(sorted(sig))})")
    contents, byte_range = sig.get("Contents"), sig.get("ByteRange")
    if not isinstance(contents, HexString):
        raise LayoutError("the signature's /Contents is not a hex string")
    ints = _ints(byte_range)
    if ints is None or len(ints) != 4:
        raise LayoutError("the signature's /ByteRange is not four integers")
    zero, a, b, c = ints
    if (zero, a, b, b + c) != (0, contents.start, contents.end, len(pdf)):
        raise LayoutError(
            f"the signature's /ByteRange [{zero} {a} {b} {c}] is not [0 {contents.start} {contents.end} {len(pdf) - contents.end}]: "
            "it must cover the whole file of "
            f"{len(pdf)} bytes except exactly its own /Contents"
        )
    if not _CONTENTS_TEXT.fullmatch(pdf, a, b):
        raise LayoutError("the signature's /Contents is not written as the signer writes it (upper-case hex, no whitespace)")
    try:
        info = cms.ContentInfo.load(contents.data, strict=False)
        der = info.dump()
        canonical = cms.ContentInfo.load(der).dump(force=True)
    except ValueError as exc:
        raise LayoutError(f"the signature's /Contents is not a CMS object ({' '.join(str(exc).split())[:120]})") from None
    if canonical != der or contents.data[len(der) :].strip(b"\x00"):
        raise LayoutError("the signature's /Contents is not one canonical DER CMS object followed by zero bytes")
    when = sig.get("M")
    return SignatureUpdate(
        byte_range=(zero, a, b, c),
        cms=der,
        signing_time=when.decode("latin-1") if isinstance(when, bytes) else None,
        signature_object=obj.num,
        field_object=field_num,
        touched=touched,
    )


def read_report_layout(pdf: bytes) -> ReportLayout:
    """The rendered revision's extent and the one signature update after it, if any; anything else is a LayoutError."""
    last = read_xref_section(pdf, _last_startxref(pdf))
    if last.prev is None:
        _section, end = _rendered_revision(pdf, last.start)
        if end != len(pdf):
            raise LayoutError(f"{len(pdf) - end} byte(s) follow the rendered report's %%EOF")
        return ReportLayout(rendered_end=end, signature=None)
    if last.prev >= last.start:
        raise LayoutError("the last cross-reference stream's /Prev does not point back into the file")
    previous = read_xref_section(pdf, last.prev)
    if previous.prev is not None:
        revisions = _count_revisions(pdf, last)
        raise LayoutError(
            f"the file has {revisions} revisions: after the rendered report and its one signature update, "
            f"{revisions - 2} more update(s) were appended (a report is signed once and never updated)"
        )
    rendered, end = _rendered_revision(pdf, previous.start)
    if last.size < rendered.size:
        raise LayoutError("the signature update's /Size is smaller than the rendered report's")
    return ReportLayout(rendered_end=end, signature=_signature_update(pdf, last, rendered, end))
