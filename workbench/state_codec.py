"""A searcher checkpoint as JSON plus typed arrays: decoding never runs code.

``nasw.db`` is a file people copy, share and reopen months later, so nothing read from it may
execute. Pickle (and ``torch.load`` without ``weights_only``) can run arbitrary code while
loading; this codec cannot: the document is parsed with :func:`json.loads` and every array is
rebuilt by ``numpy.frombuffer`` / ``torch.frombuffer`` from raw bytes, a dtype taken from an
allow-list and a shape checked against the byte count.

What a ``state_dict()`` may hold (the searcher state contract, ``searchers/base.py``): dicts,
lists, tuples, ``str``, ``int``, ``float`` (``nan``/``inf`` included), ``bool``, ``None``,
numpy arrays and scalars, and CPU-able torch tensors. Anything else (a set, a numpy
``Generator``, a custom object, an ``nn.Module``) is refused at *encode* time with the path of the
offending value, so a searcher that breaks the contract fails in its own tests, not on resume.

Encoding, JSON-side (``$``-keys are tags; a dict whose keys are all ``str`` and none starts
with ``$`` stays a plain JSON object):

* ``{"$f": "nan" | "inf" | "-inf"}`` -- a non-finite float (JSON has none);
* ``{"$tuple": [...]}`` -- a tuple (``torch.Size`` included);
* ``{"$dict": [[key, value], ...]}`` -- a dict with a non-``str`` or ``$``-prefixed key;
* ``{"$array": {"lib": "numpy" | "torch", "dtype": ..., "shape": [...], "scalar": bool,
  "b64": ...}}`` -- a small array inline, or ``"blob": digest`` instead of ``"b64"`` for one of
  :data:`BLOB_MIN_BYTES` or more, stored once by content beside the document. Equal digests
  mean equal arrays (the digest covers library, dtype, shape and bytes), so a checkpoint write
  stores only the arrays that changed since the last one.

Arrays come back as independent copies: two equal (or aliased) arrays come back as two, which
is what an optimizer that updates its buffers in place needs.

Writing is incremental in time as well as in bytes: the digest of a large torch tensor is
remembered against the tensor object and its version counter (``Tensor._version``, which every
in-place operation, optimizer steps and ``copy_`` included, increments), so a tensor that has
not changed since the last checkpoint is neither copied out nor hashed again when its blob is
already stored. EPNAS keeps hundreds of MB of shared weights in its state; rehashing them at
every result cost about a second. A write made behind autograd's back (through ``.data`` or a
numpy view) does not move the counter: searchers replace such tensors instead.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import sys
import weakref
from collections.abc import Callable, Collection, Mapping
from typing import Any

from searchers.errors import NaswError

#: arrays at least this large (bytes) are stored as content-addressed blobs, not inline
BLOB_MIN_BYTES = 1024
#: the document's format tag; a new incompatible layout gets a new tag
FORMAT = "nasw-state/1"
#: numpy dtypes (little-endian ``dtype.str``) an array may have
NUMPY_DTYPES = frozenset({"|b1", "|i1", "|u1", "<i2", "<u2", "<i4", "<u4", "<i8", "<u8",
                          "<f2", "<f4", "<f8", "<c8", "<c16"})
#: torch dtypes (``str(dtype)`` without ``torch.``) a tensor may have
TORCH_DTYPES = frozenset({"bool", "uint8", "int8", "int16", "int32", "int64", "float16",
                          "bfloat16", "float32", "float64", "complex64", "complex128"})
#: deepest nesting a document may have (json.loads recursion stays far below Python's limit)
MAX_DEPTH = 200
MAX_NDIM = 32

LEGACY_MESSAGE = ("this run's checkpoint was written by an older nasw in an unsafe format "
                  "(pickle); the run stays viewable but cannot be resumed")


class StateFormatError(NaswError):
    """A stored checkpoint that cannot be decoded safely (old pickle, damaged, foreign)."""


class LegacyStateError(StateFormatError):
    """A checkpoint in the pickle format of nasw before the safe codec: never unpickled."""

    def __init__(self) -> None:
        super().__init__("searcher_state", "a pickled checkpoint", "a JSON checkpoint",
                         hint=LEGACY_MESSAGE)


def _damaged(why: str) -> StateFormatError:
    return StateFormatError("searcher_state", why, "a checkpoint written by this nasw",
                            hint="the stored checkpoint is damaged; the run stays viewable "
                                 "but cannot be resumed")


# -- encoding --------------------------------------------------------------------------------
def _array_parts(value: Any) -> tuple[str, str, tuple[int, ...], bytes, bool] | None:
    """``(lib, dtype, shape, raw bytes, scalar)`` for an array or numpy scalar, else None."""
    torch = sys.modules.get("torch")  # no tensor can exist unless torch is imported
    if torch is not None and isinstance(value, torch.Tensor):
        if value.layout is not torch.strided or value.is_quantized or value.is_nested:
            raise TypeError("only dense (strided) tensors can be stored")
        if value.is_meta:
            raise TypeError("a meta tensor has no data to store")
        tensor = value.detach().to("cpu").resolve_conj().resolve_neg().contiguous()
        dtype = str(tensor.dtype).removeprefix("torch.")
        if dtype not in TORCH_DTYPES:
            raise TypeError(f"tensor dtype {dtype} is not one of {sorted(TORCH_DTYPES)}")
        raw = tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b""
        return "torch", dtype, tuple(int(n) for n in tensor.shape), raw, False
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(value, (numpy.ndarray, numpy.generic)):
        scalar = isinstance(value, numpy.generic)
        array = numpy.asarray(value)
        array = array.astype(array.dtype.newbyteorder("<"), order="C", copy=False)
        if array.dtype.str not in NUMPY_DTYPES:
            raise TypeError(f"array dtype {array.dtype} is not one of {sorted(NUMPY_DTYPES)}")
        return "numpy", array.dtype.str, tuple(int(n) for n in array.shape), array.tobytes(), scalar
    return None


#: id(tensor) -> (weak reference, version counter, data pointer, digest) of its last encoding.
#: Keyed by id, not by the tensor: tensors compare element-wise, so they cannot be dict keys.
_TENSOR_DIGESTS: dict[int, tuple[weakref.ref[Any], int, int, str]] = {}


def _remembered_digest(value: Any) -> str | None:
    """The digest of ``value`` from an earlier encoding if it is a torch tensor unchanged since."""
    torch = sys.modules.get("torch")
    if torch is None or not isinstance(value, torch.Tensor):
        return None
    seen = _TENSOR_DIGESTS.get(id(value))
    if seen is None or seen[0]() is not value:
        return None
    if seen[1] != value._version or seen[2] != value.data_ptr():
        return None
    return seen[3]


def _remember_digest(value: Any, digest: str) -> None:
    torch = sys.modules.get("torch")
    if torch is None or not isinstance(value, torch.Tensor):
        return
    key = id(value)
    try:  # the entry goes when the tensor does, before its id can be reused
        ref = weakref.ref(value, lambda _ref, key=key: _TENSOR_DIGESTS.pop(key, None))
    except TypeError:  # a tensor subclass without weak references: not remembered
        return
    _TENSOR_DIGESTS[key] = (ref, value._version, value.data_ptr(), digest)


def _digest(lib: str, dtype: str, shape: tuple[int, ...], raw: bytes) -> str:
    digest = hashlib.blake2b(f"{lib}:{dtype}:{list(shape)}:".encode(), digest_size=20)
    digest.update(raw)
    return f"{lib}:{digest.hexdigest()}"


def encode_state(state: Mapping[str, Any], known: Collection[str] = frozenset()
                 ) -> tuple[bytes, dict[str, bytes], set[str]]:
    """``(document, new_blobs, referenced)`` for a searcher's ``state_dict()``.

    ``document`` is UTF-8 JSON; ``new_blobs`` maps the digests of large arrays not in ``known``
    (already stored) to their raw bytes; ``referenced`` is every digest the document uses.
    Raises :class:`TypeError` naming the path of a value outside the contract.
    """
    new: dict[str, bytes] = {}
    referenced: set[str] = set()

    def enc(value: Any, path: str, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise TypeError(f"{path}: nested deeper than {MAX_DEPTH}")
        if value is None or isinstance(value, bool):
            return None if value is None else bool(value)
        if isinstance(value, str):
            return str(value)
        if isinstance(value, int):
            return int(value)
        if isinstance(value, float):
            value = float(value)
            if math.isfinite(value):
                return value
            return {"$f": "nan" if value != value else ("inf" if value > 0 else "-inf")}
        if isinstance(value, Mapping):
            if all(type(k) is str and not k.startswith("$") for k in value):
                return {k: enc(v, f"{path}[{k!r}]", depth + 1) for k, v in value.items()}
            return {"$dict": [[enc(k, f"{path}.key", depth + 1),
                               enc(v, f"{path}[{k!r}]", depth + 1)] for k, v in value.items()]}
        if isinstance(value, tuple):
            return {"$tuple": [enc(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value)]}
        if isinstance(value, list):
            return [enc(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value)]
        digest = _remembered_digest(value)
        if digest is not None and digest in known:  # unchanged and stored: nothing to copy
            referenced.add(digest)
            dtype = str(value.dtype).removeprefix("torch.")
            return {"$array": {"lib": "torch", "dtype": dtype,
                               "shape": [int(n) for n in value.shape], "scalar": False,
                               "blob": digest}}
        try:
            parts = _array_parts(value)
        except TypeError as err:
            raise TypeError(f"{path}: {err}") from None
        if parts is None:
            raise TypeError(f"{path}: a {type(value).__module__}.{type(value).__qualname__} "
                            "cannot be stored in a checkpoint (allowed: dict, list, tuple, str, "
                            "int, float, bool, None, numpy arrays, torch tensors)")
        lib, dtype, shape, raw, scalar = parts
        spec: dict[str, Any] = {"lib": lib, "dtype": dtype, "shape": list(shape),
                                "scalar": scalar}
        if len(raw) >= BLOB_MIN_BYTES:
            digest = _digest(lib, dtype, shape, raw)
            _remember_digest(value, digest)
            referenced.add(digest)
            if digest not in known:
                new.setdefault(digest, raw)
            spec["blob"] = digest
        else:
            spec["b64"] = base64.b64encode(raw).decode("ascii")
        return {"$array": spec}

    if not isinstance(state, Mapping):
        raise TypeError(f"a state_dict must be a dict, not {type(state).__name__}")
    document = {"format": FORMAT, "state": enc(dict(state), "state", 0)}
    text = json.dumps(document, separators=(",", ":"), allow_nan=False)
    return text.encode("utf-8"), new, referenced


# -- decoding --------------------------------------------------------------------------------
def _itemsize(lib: str, dtype: str) -> int:
    if lib == "numpy":
        import numpy

        return numpy.dtype(dtype).itemsize
    return {"bool": 1, "uint8": 1, "int8": 1, "int16": 2, "int32": 4, "int64": 8,
            "float16": 2, "bfloat16": 2, "float32": 4, "float64": 8, "complex64": 8,
            "complex128": 16}[dtype]


def _build_array(spec: Mapping[str, Any], load_blob: Callable[[str], bytes]) -> Any:
    lib, dtype, shape = spec.get("lib"), spec.get("dtype"), spec.get("shape")
    allowed = NUMPY_DTYPES if lib == "numpy" else TORCH_DTYPES if lib == "torch" else None
    if allowed is None or dtype not in allowed:
        raise _damaged(f"array {lib}/{dtype}")
    if (not isinstance(shape, list) or len(shape) > MAX_NDIM
            or not all(type(n) is int and 0 <= n < 2**40 for n in shape)):
        raise _damaged(f"array shape {shape!r}")
    if "blob" in spec:
        digest = spec["blob"]
        if not isinstance(digest, str):
            raise _damaged("array reference")
        raw = load_blob(digest)
        if not isinstance(raw, (bytes, bytearray, memoryview)):
            raise _damaged(f"array {digest} is not bytes")
        raw = bytes(raw)
        if _digest(lib, dtype, tuple(shape), raw) != digest:
            raise _damaged(f"array {digest} does not match its digest")
    else:
        try:
            raw = base64.b64decode(spec.get("b64", ""), validate=True)
        except (ValueError, TypeError):
            raise _damaged("array bytes") from None
    count = math.prod(shape)
    if count * _itemsize(lib, dtype) != len(raw):
        raise _damaged(f"array of shape {shape} with {len(raw)} bytes")
    if lib == "numpy":
        import numpy

        array = numpy.frombuffer(raw, dtype=numpy.dtype(dtype)).reshape(shape).copy()
        return array[()] if spec.get("scalar") is True and not shape else array
    import torch

    kind = getattr(torch, dtype)
    if not raw:
        return torch.empty(shape, dtype=kind)
    return torch.frombuffer(bytearray(raw), dtype=kind).reshape(shape).clone()


def decode_state(data: bytes, load_blob: Callable[[str], bytes]) -> dict[str, Any]:
    """Inverse of :func:`encode_state`; ``load_blob(digest)`` returns a stored array's bytes.

    Raises :class:`LegacyStateError` for a pickle (never unpickled) and
    :class:`StateFormatError` for anything else that is not a document of this format.
    """
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise _damaged(f"a {type(data).__name__}")
    data = bytes(data)
    if data[:1] == b"\x80":  # a pickle (protocol 2+): what nasw wrote before this codec
        raise LegacyStateError()
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _damaged("not JSON") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise _damaged(f"format {document.get('format') if isinstance(document, dict) else None!r}")

    def dec(value: Any, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise _damaged("nested too deep")
        if isinstance(value, list):
            return [dec(v, depth + 1) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (tag, body), = value.items()
            if tag == "$f":
                if body not in ("nan", "inf", "-inf"):
                    raise _damaged(f"float {body!r}")
                return float(body)
            if tag == "$tuple":
                if not isinstance(body, list):
                    raise _damaged("tuple")
                return tuple(dec(v, depth + 1) for v in body)
            if tag == "$dict":
                if not isinstance(body, list) or not all(
                        isinstance(p, list) and len(p) == 2 for p in body):
                    raise _damaged("dict")
                out: dict[Any, Any] = {}
                for key, item in body:
                    key = dec(key, depth + 1)
                    try:
                        out[key] = dec(item, depth + 1)
                    except TypeError:  # an unhashable key
                        raise _damaged("dict key") from None
                return out
            if tag == "$array":
                if not isinstance(body, dict):
                    raise _damaged("array")
                return _build_array(body, load_blob)
        if any(isinstance(k, str) and k.startswith("$") for k in value):
            raise _damaged(f"tag {sorted(value)[0]!r}")
        return {k: dec(v, depth + 1) for k, v in value.items()}

    state = dec(document.get("state"), 0)
    if not isinstance(state, dict):
        raise _damaged("state is not a dict")
    return state


__all__ = ["BLOB_MIN_BYTES", "FORMAT", "LEGACY_MESSAGE", "LegacyStateError", "NUMPY_DTYPES",
           "StateFormatError", "TORCH_DTYPES", "decode_state", "encode_state"]
