"""Docstrings of the backend twins, written once.

Every operation exists four times with the same arguments: ``poolkit.<op>`` (the
public function, whose docstring documents every argument: see
:mod:`poolkit.functional`), ``poolkit.reference.<op>``, ``poolkit.cpu.<op>`` and
``poolkit.gpu.<op>``. The backend twins would repeat the same text forty times
each, so their docstrings are generated here from one template: a summary, what
the backend adds (``parallel=``, ``kernel=``) and links to the other twins.
Pure Python: no numba, no other poolkit module.
"""
from __future__ import annotations

__all__ = ["twin_doc", "document_twins"]

_BACKENDS = {
    "reference": "the plain-loop specification",
    "cpu": "the Numba CPU kernels (serial and parallel)",
    "gpu": "the CUDA kernels",
}


def twin_doc(name: str, backend: str, summary: str, options: str = "") -> str:
    """The docstring of ``poolkit.<backend>.<name>``.

    >>> print(twin_doc("max_pool3d", "cpu", "3-D max pooling on the CPU.").splitlines()[0])
    3-D max pooling on the CPU.
    """
    see = [f"    poolkit.{name} : the public function (documents every argument)."]
    see += [f"    poolkit.{b}.{name} : {what}." for b, what in _BACKENDS.items() if b != backend]
    extra = f" {options}" if options else ""
    return (f"{summary}\n\n    Same arguments, results and errors as :func:`poolkit.{name}`.{extra}\n\n"
            "    See Also\n    --------\n" + "\n".join(see) + "\n    ")


def document_twins(namespace: dict, names, backend: str, summary, options: str = "") -> None:
    """Give each function ``namespace[name]`` its :func:`twin_doc`; ``summary(name)`` -> str."""
    for name in names:
        namespace[name].__doc__ = twin_doc(name, backend, summary(name), options)
