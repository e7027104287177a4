"""Run part of a configuration in a forked child process, to use a second core.

A configuration's checks that do not read the shared stream (the input strata, the seed checks,
the gradients, the exact checks) draw from their own seeded instances of the target, so they
can run while the shared stream runs: :func:`fork_call` runs a function in a child forked from
this process (it inherits the built target, the context and the imported frameworks, so it
starts at once) and :meth:`Forked.get` returns the child's value, pickled back through a pipe.
Both processes take those checks from one :class:`Claims` (each check once, to whichever is
free: the child from its start, the parent once its shared stream ends). The runner uses it only
where a fork is safe (:func:`fork_unsafe`) and the run has no time budget, so the results are the
same as one process running everything in turn (tested in ``tests/test_forked.py``). A child that
dies or raises gives :class:`ForkFailed`: the runner then runs the checks it had claimed here.
"""
from __future__ import annotations

import sys
import traceback
from typing import Any, Callable, Iterator, Optional

FORK_UNSAFE_MODULES = ("jax", "tensorflow")
"""Frameworks whose runtime threads make a forked child hang (JAX and TensorFlow warn of it)."""


class ForkFailed(RuntimeError):
    """The forked child gave no value (it died, was killed, or raised: the message says which)."""


def fork_unsafe(device: str = "cpu") -> str:
    """Why this process may not fork a child to run checks ('' when it may): no ``fork`` start
    method, a framework with runtime threads imported, or an initialised CUDA context."""
    import multiprocessing as mp
    if "fork" not in mp.get_all_start_methods():
        return "this platform has no fork"
    loaded = [m for m in FORK_UNSAFE_MODULES if m in sys.modules]
    if loaded:
        return f"{loaded[0]} is imported (its threads do not survive a fork)"
    if device != "cpu":
        return f"the target runs on {device}"
    torch = sys.modules.get("torch")
    if torch is not None and getattr(torch, "cuda", None) is not None and torch.cuda.is_initialized():
        return "CUDA is initialised in this process"
    return ""


def one_torch_thread() -> None:
    """Let torch (where imported) use one intra-op thread in this process: the forked child calls
    it, so that its pool and the parent's (as wide as the machine) do not contend for the cores,
    while the parent's shared stream keeps torch's default. Measured on 2 cores (split
    configurations, results identical; single runs, noisy): the timm ViT-Tiny scan 84.6 s wall with
    this, 95.2 s with both processes at the default, 83.8 s with both on one thread; the default
    torch:Dropout run 10.5 s, 11.0 s and 12.6 s. Dropout's draws do not depend on the thread count
    (tests/test_forked.py compares with one process at the default)."""
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "set_num_threads"):
        torch.set_num_threads(1)


class Claims:
    """The indices 0 .. n - 1 handed out once each, to whichever process asks first: this one or a
    child forked after the claims were made (a counter in shared memory). Iterate to take them."""

    def __init__(self, n: int) -> None:
        import multiprocessing as mp
        self.n = int(n)
        self.taken = mp.get_context("fork").Value("i", 0)

    def __iter__(self) -> Iterator[int]:
        while True:
            with self.taken.get_lock():
                k = self.taken.value
                if k >= self.n:
                    return
                self.taken.value = k + 1
            yield k


class Forked:
    """A running child (see :func:`fork_call`)."""

    def __init__(self, process: Any, reader: Any) -> None:
        self.process, self.reader = process, reader

    def get(self) -> Any:
        """The child's value (waits for it); :class:`ForkFailed` when it gave none."""
        try:
            kind, value = self.reader.recv()
        except (EOFError, OSError):
            kind, value = "died", None
        finally:
            self.reader.close()
            self.process.join()
        if kind == "ok":
            return value
        if kind == "raised":
            raise ForkFailed(f"the forked child raised: {value}")
        raise ForkFailed(f"the forked child died (exit code {self.process.exitcode})")


def fork_call(fn: Callable[[], Any]) -> Optional[Forked]:
    """Start ``fn()`` in a child forked from this process; None where a fork is refused by the
    system. The child sends back ``fn``'s value (it must pickle) and exits without running this
    process's exit handlers."""
    import multiprocessing as mp
    ctx = mp.get_context("fork")
    reader, writer = ctx.Pipe(duplex=False)

    def child() -> None:
        reader.close()
        try:
            out = ("ok", fn())
        except BaseException as exc:  # noqa: BLE001 - reported to the parent, which runs the part itself
            where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
            out = ("raised", f"{type(exc).__name__}: {exc}" + (f" (at {where.name}:{where.lineno})" if where else ""))
        try:
            writer.send(out)
        except Exception as exc:  # noqa: BLE001 - e.g. a value that does not pickle
            writer.send(("raised", f"its value could not be sent back: {type(exc).__name__}: {exc}"))
        writer.close()
        sys.stdout.flush()
        sys.stderr.flush()

    process = ctx.Process(target=child, daemon=True)
    try:
        process.start()
    except OSError:
        reader.close()
        writer.close()
        return None
    writer.close()
    return Forked(process, reader)

