"""kio entities to bytes, with one generated function per entity class.

kio's own writer (`kio.serial.entity_writer`) interprets a class's field list on
every call: one `write()` per field, a phantom-type range check on every length and
varint, a `BytesIO` for the tagged fields of every flexible struct. A Produce
response of one partition cost about 40 µs that way, more than the append it
answers; on a three-node cluster every acks=all write costs a produce response, two
replica fetch requests and two fetch responses, all on the latency path.

`compiled_writer(cls)` generates (once per class, like `dataclasses` generates
`__init__`) a function `write(buf, refs, entity)` that appends the entity's bytes
to the `bytearray` `buf`, packs runs of fixed-size fields with one precompiled
`struct.Struct`, and calls the nested classes' functions directly. The bytes are
kio's, field for field (the tests compare both writers on random entities of every
API version ottla serves). Large `bytes`/`records` values (record data, usually
memoryviews of log segments) are not copied: `(position in buf, value)` goes to
`refs`, and `chunks(buf, refs)` interleaves them for `transport.writelines`.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable
from typing import Any

from kio.serial._implicit_defaults import get_tagged_field_default
from kio.serial._introspect import (
    EntityField,
    EntityTupleField,
    PrimitiveField,
    PrimitiveTupleField,
    classify_field,
    get_field_tag,
    get_schema_field_type,
    is_optional,
)

__all__ = ["REFERENCE_BYTES_MIN", "Refs", "chunks", "compiled_writer", "write_uvarint"]

# A bytes/records value at least this large is kept by reference, not copied.
REFERENCE_BYTES_MIN = 8192

Refs = list[tuple[int, Any]]
Write = Callable[[bytearray, Refs, Any], None]

_ZERO_UUID = bytes(16)
# struct codes and the expression that gives each fixed-size kind's value from `v`.
_FIXED: dict[str, tuple[str, str]] = {
    "bool": ("?", "{v}"),
    "int8": ("b", "{v}"),
    "int16": ("h", "{v}"),
    "int32": ("i", "{v}"),
    "int64": ("q", "{v}"),
    "uint8": ("B", "{v}"),
    "uint16": ("H", "{v}"),
    "uint32": ("I", "{v}"),
    "uint64": ("Q", "{v}"),
    "float64": ("d", "{v}"),
    "error_code": ("h", "{v}"),
    "uuid": ("16s", "(_ZERO_UUID if {v} is None else {v}.bytes)"),
    "timedelta_i32": ("i", "round({v}.total_seconds() * 1000)"),
    "timedelta_i64": ("q", "round({v}.total_seconds() * 1000)"),
    "datetime_i64": ("q", "round({v}.timestamp() * 1000)"),
}
_NULLABLE_DATETIME = "(-1 if {v} is None else round({v}.timestamp() * 1000))"


def write_uvarint(buf: bytearray, value: int) -> None:
    """Append an unsigned varint (7 bits a byte, low bits first)."""
    if value < 0:
        raise ValueError(f"unsigned varint of a negative number: {value}")
    while value > 0x7F:
        buf.append(0x80 | (value & 0x7F))
        value >>= 7
    buf.append(value)


def _put_bytes(buf: bytearray, refs: Refs, value: Any) -> None:
    """Append a bytes-like value, or keep a large one by reference."""
    if len(value) >= REFERENCE_BYTES_MIN:
        refs.append((len(buf), value))
    else:
        buf += value


def _tagged(buf: bytearray, tags: list[tuple[int, bytearray, Refs]]) -> None:
    """The tagged-field section: count, then tag, size and bytes of each."""
    write_uvarint(buf, len(tags))
    for tag, data, refs in tags:
        body = bytes(b"".join(bytes(c) for c in chunks(data, refs))) if refs else data
        write_uvarint(buf, tag)
        write_uvarint(buf, len(body))
        buf += body


def chunks(buf: bytearray, refs: Refs) -> list[Any]:
    """`buf` with the referenced values put back at their positions, as chunks."""
    if not refs:
        return [buf]
    view = memoryview(buf)
    out: list[Any] = []
    start = 0
    for position, value in refs:
        if position > start:
            out.append(view[start:position])
        out.append(value)
        start = position
    if start < len(buf):
        out.append(view[start:])
    return out


_WRITERS: dict[type[Any], Write] = {}
_BUILDING: set[type[Any]] = set()


def compiled_writer(cls: type[Any]) -> Write:
    """The generated writer of kio entity class `cls` (made on first use, then cached)."""
    writer = _WRITERS.get(cls)
    if writer is None:
        _BUILDING.add(cls)
        try:
            writer = _WRITERS[cls] = _Generator(cls).build()
        finally:
            _BUILDING.discard(cls)
    return writer


class _Generator:
    """Source of one entity class's writer (see the module docstring)."""

    def __init__(self, cls: type[Any]) -> None:
        self.cls = cls
        self.flexible = bool(cls.__flexible__)
        self.namespace: dict[str, Any] = {
            "_ZERO_UUID": _ZERO_UUID,
            "_uvarint": write_uvarint,
            "_put_bytes": _put_bytes,
            "_tagged": _tagged,
        }
        self.lines: list[str] = []
        self.run: list[tuple[str, str]] = []  # pending fixed-size (code, expression)
        self.names = 0

    def name(self, prefix: str, value: Any) -> str:
        self.names += 1
        name = f"_{prefix}{self.names}"
        self.namespace[name] = value
        return name

    def build(self) -> Write:
        if self.cls.__name__ == "RequestHeader":
            # kio writes its client_id as a legacy string even when flexible; ottla
            # writes request headers itself (header.py) and never comes here.
            raise TypeError("request headers are written by ottla.protocol.header")
        tagged: list[tuple[int, dataclasses.Field[Any]]] = []
        for field in dataclasses.fields(self.cls):
            tag = get_field_tag(field)
            if tag is not None:
                tagged.append((int(tag), field))
                continue
            self.field(field, f"e.{field.name}", "    ")
        self.flush("    ")
        if self.flexible:
            self.tagged(sorted(tagged, key=lambda item: item[0]))
        elif tagged:
            raise ValueError(f"{self.cls.__name__}: tagged fields in a non-flexible struct")
        body = "\n".join(self.lines) or "    pass"
        source = f"def write(buf, refs, e):\n{body}\n"
        filename = f"<writer {self.cls.__module__}.{self.cls.__name__}>"
        exec(compile(source, filename, "exec"), self.namespace)
        writer: Write = self.namespace["write"]
        return writer

    def flush(self, indent: str) -> None:
        """Pack the pending run of fixed-size fields with one struct."""
        if not self.run:
            return
        packer = self.name("s", struct.Struct(">" + "".join(code for code, _ in self.run)).pack)
        self.lines.append(f"{indent}buf += {packer}({', '.join(e for _, e in self.run)})")
        self.run = []

    def field(
        self, field: dataclasses.Field[Any], value: str, indent: str, tag: bool = False
    ) -> None:
        optional = False if tag else is_optional(field)
        kind = classify_field(field)
        if isinstance(kind, PrimitiveField):
            self.primitive(get_schema_field_type(field), optional, value, indent)
            return
        if isinstance(kind, EntityField):
            self.entity(kind.type_, optional, value, indent)
            return
        self.flush(indent)
        v = self.local()
        self.lines.append(f"{indent}{v} = {value}")
        if self.flexible:
            self.lines.append(f"{indent}if {v} is None:")
            self.lines.append(f"{indent}    buf.append(0)")
            self.lines.append(f"{indent}else:")
            self.lines.append(f"{indent}    _uvarint(buf, len({v}) + 1)")
        else:
            self.lines.append(f"{indent}if {v} is None:")
            self.lines.append(f"{indent}    buf += b'\\xff\\xff\\xff\\xff'")
            self.lines.append(f"{indent}else:")
            length = self.name("s", struct.Struct(">i").pack)
            self.lines.append(f"{indent}    buf += {length}(len({v}))")
        item = self.local()
        self.lines.append(f"{indent}    for {item} in {v}:")
        inner = indent + "        "
        if isinstance(kind, EntityTupleField):
            self.entity(kind.type_, False, item, inner)
        else:
            assert isinstance(kind, PrimitiveTupleField)
            self.primitive(get_schema_field_type(field), False, item, inner)
        self.flush(inner)

    def local(self) -> str:
        self.names += 1
        return f"v{self.names}"

    def entity(self, cls: type[Any], optional: bool, value: str, indent: str) -> None:
        self.flush(indent)
        # Nested writers are generated first and called directly; a class nesting
        # itself (none in Kafka's schemas) would get its writer on first call.
        writer = self.name("w", _Lazy(cls) if cls in _BUILDING else compiled_writer(cls))
        if not optional:
            self.lines.append(f"{indent}{writer}(buf, refs, {value})")
            return
        v = self.local()
        self.lines.append(f"{indent}{v} = {value}")
        self.lines.append(f"{indent}if {v} is None:")
        self.lines.append(f"{indent}    buf.append(0xFF)")
        self.lines.append(f"{indent}else:")
        self.lines.append(f"{indent}    buf.append(1)")
        self.lines.append(f"{indent}    {writer}(buf, refs, {v})")

    def primitive(self, kafka_type: str, optional: bool, value: str, indent: str) -> None:
        fixed = _FIXED.get(kafka_type)
        if kafka_type == "datetime_i64" and optional:
            self.run.append(("q", _NULLABLE_DATETIME.format(v=value)))
            return
        if fixed is not None and (not optional or kafka_type == "uuid"):
            code, expression = fixed
            self.run.append((code, expression.format(v=value)))
            return
        if kafka_type not in ("string", "bytes", "records"):
            raise NotImplementedError(f"{self.cls.__name__}: no writer for {kafka_type}")
        self.flush(indent)
        v = self.local()
        self.lines.append(f"{indent}{v} = {value}")
        if self.flexible:
            null, length, encode = (
                "buf.append(0)",
                "_uvarint(buf, len({v}) + 1)",
                "if isinstance({v}, str): {v} = {v}.encode()",
            )
        else:
            pack = self.name("s", struct.Struct(">h" if kafka_type == "string" else ">i").pack)
            null = (
                "buf += b'\\xff\\xff'"
                if kafka_type == "string"
                else "buf += b'\\xff\\xff\\xff\\xff'"
            )
            length, encode = f"buf += {pack}(len({{v}}))", "{v} = {v}.encode()"
        if not optional:
            null = "raise TypeError('unexpectedly received None')"
        self.lines.append(f"{indent}if {v} is None:")
        self.lines.append(f"{indent}    {null}")
        self.lines.append(f"{indent}else:")
        if kafka_type == "string":
            self.lines.append(f"{indent}    {encode.format(v=v)}")
        self.lines.append(f"{indent}    {length.format(v=v)}")
        self.lines.append(f"{indent}    _put_bytes(buf, refs, {v})")

    def tagged(self, tagged: list[tuple[int, dataclasses.Field[Any]]]) -> None:
        """Tagged fields: those equal to their default are left out, as kio does."""
        if not tagged:
            self.lines.append("    buf.append(0)")
            return
        self.lines.append("    tags = []")
        for tag, field in tagged:
            default = self.name("d", field.default)
            missing = field.default is dataclasses.MISSING
            implicit = self.name("i", get_tagged_field_default(field) if missing else None)
            v = self.local()
            self.lines.append(f"    {v} = e.{field.name}")
            skip = f"{v} == {default}" + (f" or {v} == {implicit}" if missing else "")
            self.lines.append(f"    if not ({skip}):")
            self.lines.append("        tag_buf, tag_refs = buf, refs")
            self.lines.append("        buf, refs = bytearray(), []")
            self.field(field, v, "        ", tag=True)
            self.flush("        ")
            self.lines.append(f"        tags.append(({tag}, buf, refs))")
            self.lines.append("        buf, refs = tag_buf, tag_refs")
        self.lines.append("    if tags:")
        self.lines.append("        _tagged(buf, tags)")
        self.lines.append("    else:")
        self.lines.append("        buf.append(0)")


class _Lazy:
    """A nested class's writer, generated on its first call (classes may nest deeply)."""

    __slots__ = ("cls", "writer")

    def __init__(self, cls: type[Any]) -> None:
        self.cls = cls
        self.writer: Write | None = None

    def __call__(self, buf: bytearray, refs: Refs, entity: Any) -> None:
        writer = self.writer
        if writer is None:
            writer = self.writer = compiled_writer(self.cls)
        writer(buf, refs, entity)
