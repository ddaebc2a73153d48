"""The one place where Numba options live.

- cache=True: compiled kernels are stored beside the source, so a second run starts fast.
- error_model="numpy": float division follows IEEE (no ZeroDivisionError check), which lets LLVM
  vectorise loops that divide (measured: a rational tanh goes from 2.1 to 0.28 ns per element).
- fastmath stays off: the gradient checks compare against exact float64 maths.
- No parallel=True: the matrix products already use both cores through BLAS, and Numba threads
  around BLAS calls oversubscribe the two cores (one threading plan: BLAS's).
"""

import importlib.util
import os
import sys
import types

from numba import njit
from numba.extending import overload

OPTIONS = {"cache": True, "error_model": "numpy", "nogil": True}


def _kernels_digest() -> bytes:
    """One hash of every module's source in this folder."""
    import hashlib

    folder = os.path.dirname(os.path.abspath(__file__))
    digest = hashlib.sha256()
    for name in sorted(os.listdir(folder)):
        if name.endswith(".py"):
            with open(os.path.join(folder, name), "rb") as f:
                digest.update(name.encode() + b"\0" + f.read())
    return digest.digest()


def _stamp_every_kernel_with_the_folder() -> None:
    """Numba keeps a compiled kernel while the source file of the kernel's own function is
    unchanged, but a kernel holds the code of every helper it inlines and every overload it calls,
    from other files (generation's `generate` holds the step of every cell and packed.py's
    products): a change to one of those would leave a stale kernel in the cache, silently. So each
    kernel's stamp also carries a hash of this whole folder's sources (~1 ms once per process), and
    any change here recompiles them all."""
    from numba.core import caching

    folder_digest = None

    def stamped(locator):
        class Stamped(locator):
            def get_source_stamp(self):
                nonlocal folder_digest
                if folder_digest is None:
                    folder_digest = _kernels_digest()
                return super().get_source_stamp(), folder_digest

        Stamped.__name__ = f"Stamped{locator.__name__}"
        return Stamped

    impl = getattr(caching, "_CacheImpl", None) or caching.CacheImpl  # (its name in Numba before 0.60)
    classes = impl._locator_classes
    if not getattr(classes[0], "rnncli_stamped", False):
        wrapped = [stamped(locator) for locator in classes]
        for locator in wrapped:
            locator.rnncli_stamped = True
        classes[:] = wrapped


_stamp_every_kernel_with_the_folder()

kernel = njit(**OPTIONS)
"""Decorator for a compiled kernel."""

inline = njit(inline="always", **OPTIONS)
"""Decorator for a small helper inlined into the kernels that call it."""


def overload_by_type(python_fn):
    """Register a compile-time overload of `python_fn` (see activations.py)."""
    return overload(python_fn, jit_options=OPTIONS)


def _set_up_numba_lightly() -> None:
    """Run Numba's one-time set-up now, without importing scipy.linalg's whole package.

    Before its first compilation or cache load, Numba loads all its registries; one of them checks
    for BLAS by importing `scipy.linalg.cython_blas`, and importing that module first imports the
    `scipy.linalg` package, which takes ~0.1 s (~0.2 s of the set-up's 0.34) and is not needed:
    Numba uses only cython_blas's function pointers. So the extension module is loaded on its own,
    under a placeholder parent that is removed again right after, and a later `import scipy.linalg`
    gets the real package (which reuses the loaded module). Measured: a warm `rnncli sample` starts
    ~0.2 s sooner. Anything unexpected falls back to Numba's own set-up on first use.
    """
    if "scipy.linalg" in sys.modules:
        return
    try:
        import scipy
        from numba.core.registry import cpu_target

        name = "scipy.linalg.cython_blas"
        folder = os.path.join(os.path.dirname(scipy.__file__), "linalg")
        binary = next(f for f in os.listdir(folder) if f.startswith("cython_blas.") and f.endswith((".so", ".pyd")))
        spec = importlib.util.spec_from_file_location(name, os.path.join(folder, binary))
        module = importlib.util.module_from_spec(spec)
        placeholder = types.ModuleType("scipy.linalg")
        placeholder.__path__ = [folder]
        sys.modules["scipy.linalg"] = placeholder
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
            cpu_target.target_context.refresh()
        finally:
            del sys.modules["scipy.linalg"]
    except Exception:  # noqa: BLE001 - a shortcut only; Numba sets itself up as usual
        sys.modules.pop("scipy.linalg.cython_blas", None)


_set_up_numba_lightly()
