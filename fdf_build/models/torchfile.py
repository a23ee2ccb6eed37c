"""Tensors of a PyTorch state dict saved in the legacy (pre-1.6) ``torch.save`` format, read without torch.

That format is a run of pickles (magic number, protocol, system info, the state dict whose tensors point at
storages by key, the storages' keys in file order) followed by each storage's raw bytes: an int64 element count,
then the elements. The pickle names only ``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2`` and
``torch.*Storage``: :class:`_Unpickler` answers those with plain stand-ins and refuses every other name, so loading
a file runs no code from it.
"""

from __future__ import annotations

import collections
import pickle
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from ..errors import BadInput

MAGIC = 0x1950A86A20F9469CFC6C
PROTOCOL = 1001
#: the storage classes the format names, as numpy types (their element sizes are fixed, whatever C's long is)
STORAGES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
            "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16, "CharStorage": np.int8,
            "ByteStorage": np.uint8, "BoolStorage": np.bool_}


class TorchFileError(BadInput):
    """The file is not a legacy torch state dict this reader understands (bad input: exit 2)."""


class _Tensor(tuple):
    """(storage key, offset, shape, strides): a tensor not yet given its storage's bytes."""


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return lambda storage, offset, shape, strides, *_: _Tensor((storage, offset, tuple(shape), tuple(strides)))
        if module == "torch" and name in STORAGES:
            return STORAGES[name]
        raise TorchFileError(f"refusing to load {module}.{name} from a state dict")

    def persistent_load(self, saved_id):
        kind, dtype, key, _location, size = saved_id[:5]
        if kind != "storage" or len(saved_id) > 5 and saved_id[5] is not None:
            raise TorchFileError(f"unsupported storage reference {saved_id[:2]}")
        return key, np.dtype(dtype), int(size)


def load_state_dict(path: Path) -> dict[str, NDArray]:
    """``{name: array}`` of the tensors in ``path`` (a legacy-format ``torch.save`` of a state dict)."""
    with open(path, "rb") as f:
        try:
            if pickle.load(f) != MAGIC or pickle.load(f) != PROTOCOL:
                raise TorchFileError(f"{path} is not a legacy-format torch file")
            pickle.load(f)  # system info: endianness and C type sizes, which the fixed storage types ignore
            tensors = _Unpickler(f).load()
            keys = pickle.load(f)
        except (pickle.UnpicklingError, EOFError, AttributeError, IndexError, TypeError) as e:
            raise TorchFileError(f"{path} is not a legacy-format torch file ({e})") from None
        dtypes = {storage[0]: storage[1] for storage, *_ in tensors.values()}
        storages = {}
        for key in keys:
            count = int(np.frombuffer(f.read(8), "<i8")[0])
            storages[key] = np.frombuffer(f.read(count * dtypes[key].itemsize), dtypes[key])
    out = {}
    for name, ((key, dtype, _size), offset, shape, strides) in tensors.items():
        flat = storages[key]
        out[name] = np.lib.stride_tricks.as_strided(flat[offset:], shape, [s * dtype.itemsize for s in strides]).copy()
    return out
