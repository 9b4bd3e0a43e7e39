"""Open Inference Protocol V2 (KServe v2 / Triton HTTP) types and numpy codec. Pure: no web framework.

Wire format of ``POST /v2/models/{name}[/versions/{v}]/infer``::

    body = JSON header [+ binary tail]

The JSON header is ``{"id"?, "parameters"?, "inputs": [{"name", "datatype", "shape", "parameters"?,
"data"?}], "outputs"?: [{"name", "parameters"?}]}``. A tensor either carries ``data`` (flat or nested
JSON list, row-major) or ``parameters.binary_data_size`` (binary tensor data extension): its raw bytes
then follow the JSON header, tensor after tensor in the order they are listed, and the HTTP header
``Inference-Header-Content-Length`` gives the JSON header's byte length (absent: the body is all JSON).
Binary data is little-endian, row-major, unpadded; BOOL is one byte (0/1) per element; BYTES elements
are each a 4-byte little-endian unsigned length followed by that many bytes. An output is returned in
binary when its request ``parameters.binary_data`` is true, else when the request's
``parameters.binary_data_output`` is true (the stock tritonclient sets the latter when it names no
outputs); the response then uses the same layout (``Inference-Header-Content-Length`` and
``parameters.binary_data_size`` per output). JSON floats cannot hold NaN/Inf: they are written as
``null`` and ``null`` is read back as NaN for float datatypes. BF16 is ``ml_dtypes.bfloat16`` (as in
tritonclient >= r26.06); in JSON it travels as ordinary numbers.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeAlias

import numpy as np
import numpy.typing as npt
import orjson

from modelyard.dtypes import NUMPY_TO_V2, ONNX_TO_V2, V2_TO_NUMPY
from modelyard.errors import BadRequest, InvalidInput, InvalidModelFile, ModelyardError, PayloadTooLarge

__all__ = [
    "HEADER_LENGTH_HEADER",
    "NUMPY_TO_V2",
    "V2_TO_NUMPY",
    "InferRequest",
    "InferResponse",
    "RequestInput",
    "RequestOutput",
    "TensorDescription",
    "decode_request",
    "decode_response",
    "encode_request",
    "encode_response",
    "model_metadata",
    "numpy_to_v2",
    "onnx_type_to_v2",
    "v2_to_numpy",
]

Array: TypeAlias = npt.NDArray[Any]

#: HTTP header carrying the byte length of the JSON part when a binary tail follows it.
HEADER_LENGTH_HEADER = "Inference-Header-Content-Length"
DECOMPRESS_PIECE = 1024 * 1024  # a compressed body is inflated this much at a time

_WIRE: dict[str, np.dtype[Any]] = {
    name: dt.newbyteorder("<") for name, dt in V2_TO_NUMPY.items() if name != "BYTES"
}
_INT_RANGE: dict[str, tuple[int, int]] = {
    name: (int(np.iinfo(dt).min), int(np.iinfo(dt).max))
    for name, dt in V2_TO_NUMPY.items()
    if dt.kind in "iu"
}
_FLOATS = frozenset({"FP16", "FP32", "FP64", "BF16"})
_NARROW_FLOATS = frozenset({"FP16", "FP32", "BF16"})

_U32 = struct.Struct("<I")
_MAX_BYTES_ELEMENT = 0xFFFFFFFF


# --------------------------------------------------------------------------------------------- datatypes


def v2_to_numpy(datatype: str) -> np.dtype[Any]:
    """The numpy dtype of a V2 datatype (``BYTES`` is ``object``, holding ``bytes``); KeyError if unknown."""
    return V2_TO_NUMPY[datatype]


def _v2_of(dtype: np.dtype[Any]) -> str | None:
    name = NUMPY_TO_V2.get(dtype)
    if name is not None:
        return name
    if dtype.kind in "US":
        return "BYTES"
    if dtype.kind in "biuf" and not dtype.isnative:
        return NUMPY_TO_V2.get(dtype.newbyteorder("="))
    return None


def numpy_to_v2(dtype: npt.DTypeLike) -> str:
    """The V2 datatype of a numpy dtype; object, ``str`` and ``bytes`` arrays are ``BYTES``.

    Raises ValueError for dtypes V2 cannot carry (complex, datetime, structured...).
    """
    dt = np.dtype(dtype)
    name = _v2_of(dt)
    if name is None:
        raise ValueError(f"numpy dtype {dt} has no Open Inference Protocol datatype")
    return name


def onnx_type_to_v2(onnx_type: str) -> str:
    """The V2 datatype of an onnxruntime type string such as ``"tensor(float)"``.

    Raises InvalidModelFile for types V2 cannot carry (sequences, maps, complex, 8-bit floats...).
    """
    try:
        return ONNX_TO_V2[onnx_type]
    except KeyError:
        raise InvalidModelFile(
            f"ONNX type {onnx_type!r} has no Open Inference Protocol datatype; "
            "only tensors of bool, (u)int8-64, float16/32/64, bfloat16 and string can be served"
        ) from None


# ----------------------------------------------------------------------------------------------- types


@dataclass(frozen=True, slots=True, eq=False)
class RequestInput:
    """One decoded input tensor. ``data`` has ``shape`` and the dtype of ``datatype``.

    Arrays decoded from binary data may be read-only views into the request body.
    """

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: Array
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RequestOutput:
    """One requested output; ``binary`` is already resolved against ``binary_data_output``."""

    name: str
    binary: bool = False
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class InferRequest:
    """A decoded inference request. ``outputs`` is None when the client names none (return all)."""

    id: str | None
    inputs: list[RequestInput]
    outputs: list[RequestOutput] | None
    parameters: dict[str, Any]
    binary_output_default: bool

    def arrays(self) -> dict[str, Array]:
        """The inputs as ``{name: array}``, e.g. as onnxruntime feeds."""
        return {i.name: i.data for i in self.inputs}


@dataclass(frozen=True, slots=True, eq=False)
class InferResponse:
    """A decoded inference response (what our Python client gets back)."""

    model_name: str
    model_version: str | None
    id: str | None
    outputs: dict[str, Array]
    datatypes: dict[str, str]
    parameters: dict[str, Any]


class _NodeArgLike(Protocol):
    """What onnxruntime's ``NodeArg`` offers (``session.get_inputs()``)."""

    @property
    def name(self) -> str: ...

    @property
    def type(self) -> str: ...

    @property
    def shape(self) -> Sequence[int | str | None]: ...


#: A tensor for ``model_metadata``: an onnxruntime NodeArg, or ``(name, datatype, shape)`` where the
#: datatype is V2 (``"FP32"``) or ONNX (``"tensor(float)"``) and dims may be None/str when dynamic.
TensorDescription: TypeAlias = "_NodeArgLike | tuple[str, str, Sequence[int | str | None]]"


# ------------------------------------------------------------------------------------- decoding helpers


def _loads_header(body: bytes, header_length: int | None) -> tuple[dict[str, Any], int]:
    """Parse the JSON part; return it and the offset where the binary tail starts."""
    if header_length is None:
        head: bytes | memoryview = body
        tail = len(body)
    else:
        if type(header_length) is not int or not 0 <= header_length <= len(body):
            raise InvalidInput(
                f"{HEADER_LENGTH_HEADER} is {header_length!r} but must be between 0 and the body length "
                f"({len(body)} bytes)",
                field=HEADER_LENGTH_HEADER,
            )
        head = memoryview(body)[:header_length]
        tail = header_length
    try:
        doc = orjson.loads(head)
    except orjson.JSONDecodeError as exc:
        if header_length is None:
            hint = f" (if binary tensor data follows the JSON, send its length as {HEADER_LENGTH_HEADER})"
        else:
            hint = f" (the first {header_length} bytes, per {HEADER_LENGTH_HEADER})"
        raise InvalidInput(f"the JSON header is not valid JSON: {exc}{hint}", field="body") from None
    if not isinstance(doc, dict):
        raise InvalidInput(f"the JSON header must be an object, not {_json_kind(doc)}", field="body")
    return doc, tail


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _params(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput(f"{where} must be an object, not {_json_kind(value)}", field=where)
    return value


_Loc: TypeAlias = tuple[str, int, str]  # ("inputs" | "outputs", index, tensor name)


def _bad(loc: _Loc, suffix: str, message: str) -> InvalidInput:
    """InvalidInput naming the tensor (``input 'x': ...``) and its field (``inputs[0].data``)."""
    kind, i, name = loc
    return InvalidInput(f"{kind[:-1]} {name!r}{message}", field=f"{kind}[{i}]{suffix}")


def _tensor_header(
    obj: Any, kind: str, i: int, seen: set[str]
) -> tuple[str, str, tuple[int, ...], int, dict[str, Any]]:
    """Validate name/datatype/shape/parameters of ``inputs[i]`` (or ``outputs[i]``)."""
    if not isinstance(obj, dict):
        raise InvalidInput(f"{kind}[{i}] must be an object, not {_json_kind(obj)}", field=f"{kind}[{i}]")
    name = obj.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidInput(f"{kind}[{i}].name must be a non-empty string", field=f"{kind}[{i}].name")
    if name in seen:
        raise _bad((kind, i, name), ".name", " is given more than once")
    seen.add(name)
    datatype: Any = obj.get("datatype")
    if datatype not in V2_TO_NUMPY:
        raise _bad(
            (kind, i, name),
            ".datatype",
            f" has unknown datatype {datatype!r}; expected one of {', '.join(V2_TO_NUMPY)}",
        )
    shape = obj.get("shape")
    if type(shape) is not list:
        raise _bad((kind, i, name), ".shape", f": shape must be an array of integers, got {shape!r}")
    for d in shape:
        if type(d) is not int or d < 0:
            raise _bad((kind, i, name), ".shape", f": shape must hold non-negative integers, got {shape!r}")
    params = obj.get("parameters")
    if params is None:
        params = {}
    elif type(params) is not dict:
        raise _bad(
            (kind, i, name), ".parameters", f": parameters must be an object, not {_json_kind(params)}"
        )
    elif "shared_memory_region" in params:
        raise _bad(
            (kind, i, name), ".parameters.shared_memory_region", ": shared-memory tensors are not supported"
        )
    return name, datatype, tuple(shape), math.prod(shape), params


def _narrow(raw: Array, dt: np.dtype[Any]) -> Array:
    """``raw`` cast to a narrower float type; out-of-range values become +-inf (IEEE, as Triton does).

    ``np.errstate`` costs more than the cast itself, so it is only entered when numpy actually
    reports an overflow as an error (a warnings filter turned its RuntimeWarning into one).
    """
    try:
        return raw.astype(dt)
    except RuntimeWarning:
        with np.errstate(over="ignore"):
            return raw.astype(dt)


def _json_tensor(data: Any, datatype: str, shape: tuple[int, ...], count: int, loc: _Loc) -> Array:
    """Decode JSON ``data`` (flat or nested, row-major) into an array of ``shape``."""
    if datatype == "BYTES":
        return _json_bytes(data, shape, count, loc)
    dt = V2_TO_NUMPY[datatype]
    try:
        raw = np.asarray(data)
    except (ValueError, TypeError):
        raise _bad(
            loc, ".data", f": data must be a flat or rectangular nested array of {datatype} values"
        ) from None
    if raw.size != count:
        raise _bad(loc, ".data", f": data has {raw.size} elements but shape {list(shape)} needs {count}")
    if count == 0:
        return np.empty(shape, dt)
    k = raw.dtype.kind
    if datatype in _FLOATS:
        if k == "f" or k == "i" or k == "u":
            arr = _narrow(raw, dt) if datatype in _NARROW_FLOATS else raw.astype(dt, copy=False)
        elif k == "O" and all(v is None or type(v) in (int, float) for v in raw.flat):
            flat = [math.nan if v is None else v for v in raw.flat]  # null stands for NaN/Inf
            arr = _narrow(np.asarray(flat, dtype=np.float64), dt)
        else:
            raise _bad(loc, ".data", f": {datatype} data must be numbers")
    elif datatype == "BOOL":
        if k != "b":
            raise _bad(loc, ".data", ": BOOL data must be true/false values")
        arr = raw
    else:  # integers: convert from the list again so that numpy range-checks every value
        # numpy infers float64 (or object) for ints beyond int64 mixed with small ones: look closer
        if not (k == "i" or k == "u" or (k in "fO" and _all_ints(data))):
            raise _bad(loc, ".data", f": {datatype} data must be integers")
        try:
            arr = np.asarray(data, dtype=dt)
        except (OverflowError, ValueError, TypeError):
            lo, hi = _INT_RANGE[datatype]
            raise _bad(loc, ".data", f": {datatype} data must be integers in [{lo}, {hi}]") from None
    return arr.reshape(shape)


def _all_ints(data: Any) -> bool:
    if type(data) is list:
        return all(_all_ints(v) for v in data)
    return type(data) is int


def _flatten_strings(data: Any, out: list[Any]) -> None:
    if isinstance(data, list):
        for item in data:
            _flatten_strings(item, out)
    else:
        out.append(data)


def _json_bytes(data: Any, shape: tuple[int, ...], count: int, loc: _Loc) -> Array:
    if isinstance(data, list) and all(type(s) is str for s in data):
        flat: list[Any] = data
    else:
        flat = []
        _flatten_strings(data, flat)
        if not all(type(s) is str for s in flat):
            raise _bad(loc, ".data", ": BYTES data in JSON must be strings")
    if len(flat) != count:
        raise _bad(loc, ".data", f": data has {len(flat)} elements but shape {list(shape)} needs {count}")
    arr = np.empty(count, dtype=np.object_)
    try:
        arr[:] = [s.encode() for s in flat]
    except UnicodeEncodeError:
        raise _bad(loc, ".data", ": BYTES data is not valid UTF-8 text") from None
    return arr.reshape(shape)


_SIZE = ".parameters.binary_data_size"


def _binary_tensor(
    body: bytes, start: int, size: int, datatype: str, shape: tuple[int, ...], count: int, loc: _Loc
) -> Array:
    """Decode ``size`` bytes of ``body`` at ``start`` (already known to be in range)."""
    if datatype == "BYTES":
        return _binary_bytes(body, start, size, shape, count, loc)
    dt = _WIRE[datatype]
    expected = count * dt.itemsize
    if size != expected:
        raise _bad(
            loc,
            _SIZE,
            f": binary_data_size is {size} bytes but shape {list(shape)} of {datatype} needs {expected}",
        )
    if count == 0:
        return np.empty(shape, V2_TO_NUMPY[datatype])
    if datatype == "BOOL":
        flags: Array = np.frombuffer(body, np.uint8, count, start) != 0
        return flags.reshape(shape)
    arr = np.frombuffer(body, dt, count, start)
    if not arr.flags.aligned:
        arr = arr.copy()
    if not dt.isnative:  # big-endian host
        arr = arr.astype(dt.newbyteorder("="))
    return arr.reshape(shape)


def _binary_bytes(body: bytes, start: int, size: int, shape: tuple[int, ...], count: int, loc: _Loc) -> Array:
    items: list[bytes] = []
    pos, end = start, start + size
    unpack = _U32.unpack_from
    while pos < end:
        if len(items) == count:
            raise _bad(
                loc,
                _SIZE,
                f": binary BYTES data holds more than the {count} elements shape {list(shape)} needs",
            )
        if pos + 4 > end:
            raise _bad(loc, _SIZE, ": binary BYTES data ends inside a 4-byte length prefix")
        (n,) = unpack(body, pos)
        pos += 4
        if pos + n > end:
            raise _bad(
                loc,
                _SIZE,
                f": binary BYTES element {len(items)} claims {n} bytes but only {end - pos} remain",
            )
        items.append(body[pos : pos + n])
        pos += n
    if len(items) != count:
        raise _bad(
            loc,
            _SIZE,
            f": binary BYTES data holds {len(items)} elements but shape {list(shape)} needs {count}",
        )
    arr = np.empty(count, dtype=np.object_)
    arr[:] = items
    return arr.reshape(shape)


def _tensor_data(
    obj: dict[str, Any],
    params: dict[str, Any],
    body: bytes,
    offset: int,
    header_length: int | None,
    datatype: str,
    shape: tuple[int, ...],
    count: int,
    loc: _Loc,
) -> tuple[Array, int]:
    """The tensor's array and the new binary offset."""
    size = params.get("binary_data_size")
    if size is None:
        if "data" not in obj:
            raise _bad(loc, ".data", " has neither data nor parameters.binary_data_size")
        return _json_tensor(obj["data"], datatype, shape, count, loc), offset
    if "data" in obj:
        raise _bad(loc, ".data", " has both data and parameters.binary_data_size")
    if type(size) is not int or size < 0:
        raise _bad(loc, _SIZE, f": binary_data_size must be a non-negative integer, got {size!r}")
    if header_length is None:
        raise _bad(
            loc,
            _SIZE,
            f" declares binary_data_size but the body has no binary part "
            f"(the {HEADER_LENGTH_HEADER} header is missing)",
        )
    if offset + size > len(body):
        raise _bad(
            loc,
            _SIZE,
            f": binary data truncated: needs {size} bytes at offset {offset - header_length} of the "
            f"binary part but only {max(0, len(body) - offset)} remain",
        )
    return _binary_tensor(body, offset, size, datatype, shape, count, loc), offset + size


def _check_fully_consumed(body: bytes, offset: int) -> None:
    if offset != len(body):
        raise InvalidInput(
            f"{len(body) - offset} bytes after the JSON header are not claimed by any binary_data_size",
            field="body",
        )


# ------------------------------------------------------------------------------------------- requests


def decode_request(body: bytes, header_length: int | None, *, max_elements: int) -> InferRequest:
    """Decode an inference request body.

    ``header_length`` is the ``Inference-Header-Content-Length`` header (None: the body is all JSON).
    Raises InvalidInput (with ``field`` naming the culprit, e.g. ``inputs[0].shape``) for any malformed
    request and PayloadTooLarge when all inputs together have more than ``max_elements`` elements.
    """
    doc, offset = _loads_header(body, header_length)
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidInput("id must be a string", field="id")
    parameters = _params(doc.get("parameters"), "parameters")
    binary_default = parameters.get("binary_data_output", False)
    if type(binary_default) is not bool:
        raise InvalidInput(
            "parameters.binary_data_output must be true or false", field="parameters.binary_data_output"
        )
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list):
        raise InvalidInput(
            "the request must have an inputs array" if raw_inputs is None else "inputs must be an array",
            field="inputs",
        )

    inputs: list[RequestInput] = []
    seen: set[str] = set()
    total = 0
    for i, obj in enumerate(raw_inputs):
        name, datatype, shape, count, params = _tensor_header(obj, "inputs", i, seen)
        total += count
        if total > max_elements:
            raise PayloadTooLarge(
                f"input {name!r} brings the request to {total} tensor elements; the limit is {max_elements}",
                field=f"inputs[{i}].shape",
            )
        data, offset = _tensor_data(
            obj,
            params,
            body,
            offset,
            header_length,
            datatype,
            shape,
            count,
            ("inputs", i, name),
        )
        inputs.append(RequestInput(name, datatype, shape, data, params))
    _check_fully_consumed(body, offset)

    outputs = _decode_requested(doc.get("outputs"), binary_default)
    return InferRequest(request_id, inputs, outputs, parameters, binary_default)


def decode_body(
    body: bytes,
    headers: Mapping[str, str],
    *,
    max_request_bytes: int,
    max_json_body_bytes: int,
    max_tensor_elements: int,
) -> InferRequest:
    """``decode_request`` of an HTTP body and its (lower-case) headers: decompressed first if
    ``content-encoding`` says gzip or deflate (a MiB at a time, up to ``max_request_bytes``), its JSON held
    to ``max_json_body_bytes``."""
    body = _decompress(body, headers.get("content-encoding"), max_request_bytes)
    header_length = headers.get(HEADER_LENGTH_HEADER.lower())
    if header_length is not None and not header_length.isdigit():
        raise BadRequest(f"{HEADER_LENGTH_HEADER} must be a number of bytes")
    json_length = int(header_length) if header_length is not None else len(body)
    if json_length > max_json_body_bytes:
        raise PayloadTooLarge(
            f"the request's JSON is over the {max_json_body_bytes}-byte limit "
            "(send big tensors as binary data)"
        )
    return decode_request(
        body, int(header_length) if header_length is not None else None, max_elements=max_tensor_elements
    )


def _decompress(body: bytes, encoding: str | None, cap: int) -> bytes:
    if not encoding or encoding == "identity":
        return body
    if encoding not in ("gzip", "deflate"):
        raise BadRequest(f"unsupported Content-Encoding {encoding!r}")
    d = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
    pieces: list[bytes] = []
    size, pending = 0, body
    try:
        while pending and not d.eof:  # a MiB at a time: a bomb is dropped piece by piece, never built whole
            piece = d.decompress(pending, DECOMPRESS_PIECE)
            pending = d.unconsumed_tail
            size += len(piece)
            if size > cap:
                raise PayloadTooLarge(f"decompressed request is over the {cap}-byte limit")
            pieces.append(piece)
    except zlib.error as exc:
        raise BadRequest(f"the body is not valid {encoding} data: {exc}") from None
    if not d.eof:
        raise BadRequest(f"the {encoding} body is truncated")
    return b"".join(pieces)


def _decode_requested(raw: Any, binary_default: bool) -> list[RequestOutput] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise InvalidInput("outputs must be an array", field="outputs")
    if not raw:  # an empty list asks for nothing in particular: return everything
        return None
    outputs: list[RequestOutput] = []
    seen: set[str] = set()
    for i, obj in enumerate(raw):
        at = f"outputs[{i}]"
        if not isinstance(obj, dict):
            raise InvalidInput(f"{at} must be an object, not {_json_kind(obj)}", field=at)
        name = obj.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidInput(f"{at}.name must be a non-empty string", field=f"{at}.name")
        if name in seen:
            raise InvalidInput(f"output {name!r} is requested more than once", field=f"{at}.name")
        seen.add(name)
        params = _params(obj.get("parameters"), f"{at}.parameters")
        binary = params.get("binary_data", binary_default)
        if type(binary) is not bool:
            raise InvalidInput(
                f"output {name!r}: binary_data must be true or false", field=f"{at}.parameters.binary_data"
            )
        for unsupported in ("classification", "shared_memory_region"):
            if unsupported in params:
                raise InvalidInput(
                    f"output {name!r}: parameter {unsupported!r} is not supported",
                    field=f"{at}.parameters.{unsupported}",
                )
        outputs.append(RequestOutput(name, binary, params))
    return outputs


def encode_request(
    inputs: Mapping[str, npt.ArrayLike],
    *,
    request_id: str | None = None,
    outputs: Sequence[str | RequestOutput] | None = None,
    binary_inputs: bool | Collection[str] = True,
    binary_output_default: bool | None = None,
    parameters: Mapping[str, Any] | None = None,
    datatypes: Mapping[str, str] | None = None,
) -> tuple[bytes, int | None]:
    """Build an inference request body; return it and its JSON header length (None: all JSON).

    ``binary_inputs`` is True/False for all inputs or the set of input names to send in binary.
    ``outputs`` names outputs (a bare name takes the ``binary_output_default``, itself sent as
    ``parameters.binary_data_output`` when not None). ``datatypes`` overrides the datatype inferred
    from an array's dtype. Raises InvalidInput for arrays that cannot be sent.
    """
    tensors: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for i, (name, value) in enumerate(inputs.items()):
        arr = np.asarray(value)
        at = f"inputs[{i}]"
        datatype = (datatypes or {}).get(name) or _v2_of(arr.dtype) or ""
        if datatype not in V2_TO_NUMPY:
            raise InvalidInput(
                f"input {name!r}: numpy dtype {arr.dtype} has no V2 datatype", field=f"{at}.datatype"
            )
        if datatype != "BYTES" and arr.dtype != V2_TO_NUMPY[datatype]:
            arr = arr.astype(V2_TO_NUMPY[datatype])
        binary = binary_inputs if isinstance(binary_inputs, bool) else name in binary_inputs
        tensor: dict[str, Any] = {"name": name, "shape": list(arr.shape), "datatype": datatype}
        if binary:
            raw = _to_wire(arr, datatype, f"input {name!r}", at)
            tensor["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            tensor["data"] = _to_json(arr, datatype, strict=True, what=f"input {name!r}", at=f"{at}.data")
        tensors.append(tensor)

    doc: dict[str, Any] = {}
    if request_id is not None:
        doc["id"] = request_id
    params = dict(parameters or {})
    if binary_output_default is not None:
        params["binary_data_output"] = binary_output_default
    if params:
        doc["parameters"] = params
    doc["inputs"] = tensors
    if outputs:
        wanted: list[dict[str, Any]] = []
        for out in outputs:
            if isinstance(out, str):
                wanted.append({"name": out})
            else:
                wanted.append({"name": out.name, "parameters": {**out.parameters, "binary_data": out.binary}})
        doc["outputs"] = wanted
    head = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    if not chunks:
        return head, None
    return b"".join([head, *chunks]), len(head)


# ------------------------------------------------------------------------------------------ responses


def _to_wire(arr: Array, datatype: str, what: str, at: str) -> bytes:
    """Binary tensor data of ``arr`` (row-major, little-endian, BYTES length-prefixed)."""
    if datatype != "BYTES":
        return np.asarray(arr, dtype=_WIRE[datatype]).tobytes()
    parts: list[bytes] = []
    for item in arr.ravel().tolist():
        b = _as_bytes(item)
        if len(b) > _MAX_BYTES_ELEMENT:
            raise InvalidInput(f"{what}: a BYTES element is longer than 4 GiB", field=at)
        parts.append(_U32.pack(len(b)))
        parts.append(b)
    return b"".join(parts)


def _as_bytes(item: Any) -> bytes:
    if isinstance(item, bytes):
        return item
    if isinstance(item, str):
        return item.encode()
    return str(item).encode()


def _to_json(arr: Array, datatype: str, *, strict: bool, what: str, at: str) -> Any:
    """Flat JSON data of ``arr``: numeric arrays stay numpy (orjson serialises them), BYTES become str."""
    if datatype == "BYTES":
        out: list[str] = []
        for item in arr.ravel().tolist():
            if isinstance(item, bytes):
                try:
                    out.append(item.decode())
                except UnicodeDecodeError:
                    if strict:
                        raise InvalidInput(
                            f"{what}: BYTES element is not UTF-8 so cannot travel in JSON; send it in binary",
                            field=at,
                        ) from None
                    out.append(item.decode(errors="replace"))
            else:
                out.append(item if isinstance(item, str) else str(item))
        return out
    if datatype == "BF16":
        return arr.astype(np.float32).ravel()
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return arr.ravel()


def encode_response(
    *,
    model_name: str,
    model_version: str | int | None,
    request_id: str | None,
    outputs: Mapping[str, Array],
    requested: Sequence[RequestOutput] | None,
    binary_default: bool,
    parameters: Mapping[str, Any] | None = None,
) -> tuple[bytes, int | None]:
    """Build an inference response body; return it and its JSON header length.

    The header length is None when every output is in JSON: send plain ``application/json``; otherwise
    send it as ``Inference-Header-Content-Length`` (``application/octet-stream``). With ``requested``
    only those outputs are returned, in that order, each binary per its ``binary`` flag (InvalidInput
    for a name the model does not produce); without it all outputs, binary per ``binary_default``.
    JSON floats that are NaN/Inf become null; non-UTF-8 BYTES in JSON are decoded with replacement.
    """
    if requested:
        selection: list[tuple[str, bool]] = []
        for i, rq in enumerate(requested):
            if rq.name not in outputs:
                raise InvalidInput(
                    f"output {rq.name!r} was requested but model {model_name!r} only produces "
                    f"{', '.join(map(repr, outputs)) or 'nothing'}",
                    field=f"outputs[{i}].name",
                )
            selection.append((rq.name, rq.binary))
    else:
        selection = [(name, binary_default) for name in outputs]

    tensors: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for name, binary in selection:
        arr = outputs[name]
        if not isinstance(arr, np.ndarray):
            raise ModelyardError(
                f"output {name!r} of model {model_name!r} is a {type(arr).__name__}, not a tensor",
                field=name,
            )
        datatype = _v2_of(arr.dtype)
        if datatype is None:
            raise ModelyardError(
                f"output {name!r} of model {model_name!r} has numpy dtype {arr.dtype}, which V2 cannot carry",
                field=name,
            )
        tensor: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(arr.shape)}
        if binary:
            raw = _to_wire(arr, datatype, f"output {name!r}", name)
            tensor["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            tensor["data"] = _to_json(arr, datatype, strict=False, what=f"output {name!r}", at=name)
        tensors.append(tensor)

    doc: dict[str, Any] = {"model_name": model_name}
    if model_version is not None:
        doc["model_version"] = str(model_version)
    if request_id is not None:
        doc["id"] = request_id
    if parameters:
        doc["parameters"] = dict(parameters)
    doc["outputs"] = tensors
    head = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    if not chunks:
        return head, None
    return b"".join([head, *chunks]), len(head)


def decode_response(
    body: bytes, header_length: int | None, *, max_elements: int | None = None
) -> InferResponse:
    """Decode an inference response body (the mirror of ``encode_response``; for our client and tests).

    Raises InvalidInput (``field`` like ``outputs[0].data``) when the body is malformed.
    """
    doc, offset = _loads_header(body, header_length)
    model_name = doc.get("model_name")
    if not isinstance(model_name, str):
        raise InvalidInput("model_name must be a string", field="model_name")
    version = doc.get("model_version")
    if type(version) is int:  # the spec says string; tolerate servers that send a number
        version = str(version)
    elif version is not None and not isinstance(version, str):
        raise InvalidInput("model_version must be a string", field="model_version")
    response_id = doc.get("id")
    if response_id is not None and not isinstance(response_id, str):
        raise InvalidInput("id must be a string", field="id")
    parameters = _params(doc.get("parameters"), "parameters")
    raw_outputs = doc.get("outputs")
    if not isinstance(raw_outputs, list):
        raise InvalidInput("the response must have an outputs array", field="outputs")
    outputs: dict[str, Array] = {}
    datatypes: dict[str, str] = {}
    seen: set[str] = set()
    total = 0
    for i, obj in enumerate(raw_outputs):
        name, datatype, shape, count, params = _tensor_header(obj, "outputs", i, seen)
        total += count
        if max_elements is not None and total > max_elements:
            raise PayloadTooLarge(
                f"output {name!r} brings the response to {total} tensor elements; "
                f"the limit is {max_elements}",
                field=f"outputs[{i}].shape",
            )
        outputs[name], offset = _tensor_data(
            obj,
            params,
            body,
            offset,
            header_length,
            datatype,
            shape,
            count,
            ("outputs", i, name),
        )
        datatypes[name] = datatype
    _check_fully_consumed(body, offset)
    return InferResponse(model_name, version, response_id, outputs, datatypes, parameters)


# ------------------------------------------------------------------------------------------- metadata


def _describe(tensor: TensorDescription) -> dict[str, Any]:
    if isinstance(tensor, tuple):
        name, datatype, dims = tensor
    else:
        name, datatype, dims = tensor.name, tensor.type, tensor.shape
    if datatype.startswith("tensor(") or datatype not in V2_TO_NUMPY:
        datatype = onnx_type_to_v2(datatype)
    shape = [d if type(d) is int and d >= 0 else -1 for d in dims]
    return {"name": name, "datatype": datatype, "shape": shape}


def model_metadata(
    name: str,
    versions: Iterable[int | str],
    platform: str,
    inputs: Iterable[TensorDescription],
    outputs: Iterable[TensorDescription],
) -> dict[str, Any]:
    """The body of ``GET /v2/models/{name}[/versions/{v}]``; dynamic dims (None, symbolic, <0) are -1.

    ``inputs``/``outputs`` may be onnxruntime ``session.get_inputs()`` / ``get_outputs()`` directly.
    """
    return {
        "name": name,
        "versions": [str(v) for v in versions],
        "platform": platform,
        "inputs": [_describe(t) for t in inputs],
        "outputs": [_describe(t) for t in outputs],
    }
