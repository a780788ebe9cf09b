"""Compiled channel-subset convolution kernels of the sparse executor, with a pure-PyTorch fallback.

The C source (``csrc/sparse_kernels.c``) is compiled by the package's own build (``pip install``) into
``adafuse/inference/_sparse_kernels*.so`` and loaded here with :mod:`ctypes` over plain float buffers; it
picks AVX-512, AVX2 or portable C at run time. Where it is missing (no compiler at install time, another
platform) or disabled with ``ADAFUSE_SPARSE_KERNELS=torch``, :func:`available` is False and the executor runs
its pure-PyTorch path, which gives the same results.

One primitive, :func:`conv_subset`: a convolution over an NHWC image ``(H*W, ldx)`` that reads only the
``n`` input channels present in it (``brow[c]`` = the weight row of present channel ``c``) and writes
``ncols`` output channels, with a bias and an optional ReLU. The weight is stored input-major,
``(kh*kw*C_in, C_out)`` (:func:`input_major`), so a subset of input channels is a row lookup and a subset of
output channels a column copy.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import itertools
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import Tensor

ISA_NAMES = ("c", "avx2", "avx512")
_lib: ctypes.CDLL | None = None
_load_error: str | None = None
_loaded = False
_isa_level = 0  # index into ISA_NAMES of the instruction set in use (set when the library loads)
_zeros = torch.zeros(0)
_zeros_lock = threading.Lock()


def _load() -> ctypes.CDLL | None:
    global _lib, _load_error, _loaded, _isa_level
    if _loaded:
        return _lib
    _loaded = True
    if os.environ.get("ADAFUSE_SPARSE_KERNELS", "").lower() in ("torch", "0", "off", "none"):
        _load_error = "disabled by ADAFUSE_SPARSE_KERNELS"
        return None
    spec = importlib.util.find_spec("adafuse.inference._sparse_kernels")
    if spec is None or spec.origin is None:
        _load_error = "the compiled kernels are not installed (no C compiler when the package was built?)"
        return None
    try:
        lib = ctypes.CDLL(spec.origin)
    except OSError as exc:
        _load_error = f"cannot load {spec.origin}: {exc}"
        return None
    i64, i32, ptr = ctypes.c_int64, ctypes.c_int, ctypes.c_void_p
    lib.adafuse_conv_subset.argtypes = [ptr, i64, i32, i32, i32, i32, i32, i32, i32, i32, i32, ptr, i64, i64, ptr,
                                        i32, ptr, i32, ptr, i64, ptr, i64, i32, i32, ptr, i32, i32]
    lib.adafuse_gather_padded.argtypes = [ptr, i64, i32, i32, ptr, i64, ptr, i32, i32, i32, i32, i32]
    lib.adafuse_gather_padded.restype = None
    lib.adafuse_pack_columns.argtypes = [ptr, ptr, i64, i64, ptr, i32]
    lib.adafuse_pack_columns.restype = None
    lib.adafuse_conv_subset.restype = i32
    lib.adafuse_set_isa.argtypes = [i32]
    lib.adafuse_set_isa.restype = i32
    lib.adafuse_best_isa.restype = i32
    cap = os.environ.get("ADAFUSE_SPARSE_ISA", "")
    _isa_level = lib.adafuse_set_isa(ISA_NAMES.index(cap) if cap in ISA_NAMES else -1)
    _lib = lib
    return lib


def available() -> bool:
    """True when the compiled kernels are loaded (the executor then uses them)."""
    return _load() is not None


def status() -> str:
    """One line saying which kernels run: ``"compiled (avx512)"`` or why the PyTorch fallback is used."""
    if _load() is None:
        return f"pytorch fallback ({_load_error})"
    return f"compiled ({isa()})"


def isa() -> str:
    """Instruction set the kernels use (``c``, ``avx2`` or ``avx512``); ``none`` without kernels."""
    return ISA_NAMES[_isa_level] if _load() is not None else "none"


def set_isa(name: str | None) -> str:
    """Cap the instruction set (``c``, ``avx2``, ``avx512``; None = best available). Returns the one in use."""
    global _isa_level
    lib = _load()
    if lib is None:
        raise RuntimeError(status())
    if name is not None and name not in ISA_NAMES:
        raise ValueError(f"unknown instruction set {name!r}; choose from {ISA_NAMES}")
    _isa_level = lib.adafuse_set_isa(ISA_NAMES.index(name) if name is not None else -1)
    return ISA_NAMES[_isa_level]


def input_major(weight: Tensor) -> Tensor:
    """Conv weight ``(C_out, C_in, kh, kw)`` -> ``(kh*kw*C_in, C_out)``: row ``tap*C_in + c`` holds the weights
    of input channel ``c`` at kernel position ``tap`` for every output channel."""
    c_out, c_in, kh, kw = weight.shape
    return weight.permute(2, 3, 1, 0).reshape(kh * kw * c_in, c_out).contiguous()


def _zero_row(n: int) -> Tensor:
    global _zeros
    with _zeros_lock:
        if _zeros.numel() < n:
            _zeros = torch.zeros(max(n, 2 * _zeros.numel(), 4096))
        return _zeros


def conv_subset(x: Tensor, hw: tuple[int, int], brow: Tensor, weight: Tensor, tap_rows: int, kernel: tuple[int, int],
                stride: tuple[int, int], padding: tuple[int, int], out: Tensor, bias: Tensor | None = None,
                relu: bool = False, residual: Tensor | None = None, rows: tuple[int, int] | None = None) -> Tensor:
    """``out[m, j] = act(bias[j] + residual[m, j] + sum_{tap,c} x[pixel(m, tap), c] * weight[tap*R + brow[c], j])``
    with ``R = tap_rows``.

    ``x``: the zero-padded NHWC frame ``((H + 2*ph) * (W + 2*pw), >=n)`` float32 with unit channel stride (the
    ``n = len(brow)`` present channels are its first ``n`` columns; ``hw = (H, W)`` without the padding);
    ``weight``: input-major ``(kh*kw*tap_rows, ncols)``; ``brow``: int32 ``(n,)``; ``out`` and ``residual``:
    ``(Ho*Wo, >=ncols)`` float32 with unit channel stride (``out`` is written, not accumulated); ``rows``:
    compute only output pixels ``[begin, end)`` (to split a frame between threads).
    """
    lib = _load()
    if lib is None:
        raise RuntimeError(status())
    (h, w), (kh, kw), (sh, sw), (ph, pw) = hw, kernel, stride, padding
    ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    n, ncols = brow.numel(), weight.shape[1]
    if x.dtype != torch.float32 or weight.dtype != torch.float32 or out.dtype != torch.float32:
        raise TypeError("conv_subset works on float32 tensors")
    if brow.dtype != torch.int32 or not brow.is_contiguous():
        raise TypeError("brow must be a contiguous int32 tensor")
    padded = (h + 2 * ph) * (w + 2 * pw)
    if x.dim() != 2 or x.shape[0] != padded or x.stride(1) != 1 or x.shape[1] < n:
        raise ValueError(f"x must be the padded frame ({padded}, >={n}) with unit channel stride, got {tuple(x.shape)}")
    for name, t in (("out", out), ("residual", residual)):
        if t is not None and (t.dim() != 2 or t.shape[0] != ho * wo or t.stride(1) != 1 or t.shape[1] < ncols):
            raise ValueError(f"{name} must be ({ho * wo}, >={ncols}) with unit channel stride, got {tuple(t.shape)}")
    if weight.dim() != 2 or weight.stride(1) != 1 or weight.shape[0] != kh * kw * tap_rows:
        raise ValueError(f"weight must be input-major ({kh * kw * tap_rows}, C_out), got {tuple(weight.shape)}")
    if bias is not None and (bias.numel() != ncols or not bias.is_contiguous()):
        raise ValueError(f"bias must be ({ncols},) contiguous")
    begin, end = rows if rows is not None else (0, ho * wo)
    zero = _zero_row(n)
    rc = lib.adafuse_conv_subset(
        x.data_ptr(), x.stride(0), h, w, n, kh, kw, sh, sw, ph, pw, weight.data_ptr(), weight.stride(0), tap_rows,
        brow.data_ptr(), ncols, bias.data_ptr() if bias is not None else None, int(relu),
        residual.data_ptr() if residual is not None else None, residual.stride(0) if residual is not None else 0,
        out.data_ptr(), out.stride(0), ho, wo, zero.data_ptr(), begin, end)
    if rc != 0:
        raise ValueError("adafuse_conv_subset rejected its arguments")
    return out


def gather_padded(dst: Tensor, col0: int, src: Tensor, idx: Tensor | None, ncols: int, hw: tuple[int, int],
                  padding: tuple[int, int]) -> None:
    """Copy columns ``idx`` (int32; None = the first ``ncols``) of the NHWC frame ``src`` ``(H*W, >=...)`` into
    columns ``col0 .. col0+ncols`` of the interior of the zero-padded frame ``dst``
    ``((H + 2*ph) * (W + 2*pw), C)``; with ``col0 == 0`` the padding border of ``dst`` is zeroed too."""
    lib = _load()
    if lib is None:
        raise RuntimeError(status())
    (h, w), (ph, pw) = hw, padding
    if dst.dtype != torch.float32 or src.dtype != torch.float32 or dst.stride(1) != 1 or src.stride(1) != 1:
        raise TypeError("gather_padded works on float32 tensors with unit channel stride")
    if dst.shape[0] != (h + 2 * ph) * (w + 2 * pw) or src.shape[0] != h * w or col0 + ncols > dst.shape[1]:
        raise ValueError(f"gather_padded: shapes dst {tuple(dst.shape)}, src {tuple(src.shape)} do not fit")
    if idx is not None and (idx.dtype != torch.int32 or not idx.is_contiguous() or idx.numel() != ncols):
        raise TypeError("idx must be a contiguous int32 tensor of ncols entries")
    lib.adafuse_gather_padded(dst.data_ptr(), dst.stride(0), dst.shape[1], col0, src.data_ptr(), src.stride(0),
                              idx.data_ptr() if idx is not None else None, ncols, h, w, ph, pw)


def pack_columns(weight: Tensor, ids: Tensor) -> Tensor:
    """``weight[:, ids]`` of a row-major float32 matrix, packed contiguously, in one single-threaded pass
    (safe to call from the kernel threads; ``ids``: int64)."""
    lib = _load()
    if lib is None:
        raise RuntimeError(status())
    if weight.dtype != torch.float32 or weight.dim() != 2 or weight.stride(1) != 1 or ids.dtype != torch.int64:
        raise TypeError("pack_columns needs a float32 matrix with unit column stride and int64 ids")
    if not ids.is_contiguous() or (ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= weight.shape[1])):
        raise ValueError("pack_columns: ids out of range")
    out = weight.new_empty(weight.shape[0], ids.numel())
    lib.adafuse_pack_columns(out.data_ptr(), weight.data_ptr(), weight.stride(0), weight.shape[0], ids.data_ptr(),
                             ids.numel())
    return out


class WorkerPool:
    """A small pool of threads that run kernel calls in parallel (the calls release the GIL). One per
    executor; ``threads`` defaults to ``torch.get_num_threads()`` at each call."""

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads
        self._pool: ThreadPoolExecutor | None = None
        self._size = 0

    def run(self, tasks: Sequence[Callable[[], None]], threads: int | None = None) -> None:
        """Run every task on ``threads`` threads (default: the pool's, else ``torch.get_num_threads()``); the
        calling thread and the pool's threads take them in order from a shared counter (uneven tasks balance
        themselves). Re-raises the first error."""
        threads = min(threads or self.threads or torch.get_num_threads(), len(tasks))
        if threads <= 1:
            for task in tasks:
                task()
            return
        if self._pool is None or self._size < threads - 1:
            if self._pool is not None:
                self._pool.shutdown()
            self._pool = ThreadPoolExecutor(max_workers=threads - 1, thread_name_prefix="adafuse-kernel")
            self._size = threads - 1
        counter = itertools.count()

        def drain() -> None:
            while (i := next(counter)) < len(tasks):
                tasks[i]()

        futures = [self._pool.submit(drain) for _ in range(threads - 1)]
        try:
            drain()
        finally:
            for f in futures:
                f.result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None


@contextlib.contextmanager
def torch_single_threaded() -> Iterator[int]:
    """Run PyTorch's own ops single-threaded inside the block (yields the thread count before): the kernels
    spread the work over that many threads themselves, and PyTorch's OpenMP workers, which spin for a while
    after each op, would otherwise compete with them for the cores."""
    threads = torch.get_num_threads()
    if threads > 1:
        torch.set_num_threads(1)
    try:
        yield threads
    finally:
        if threads > 1:
            torch.set_num_threads(threads)


_POOL = WorkerPool()


def pool() -> WorkerPool:
    """The process-wide pool the executor's stages run their kernel calls on."""
    return _POOL
