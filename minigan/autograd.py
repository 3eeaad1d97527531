"""Reverse-mode automatic differentiation: ``Tensor``, ``Function``, ``backward``, ``grad``, ``no_grad``.

How it works, in four sentences. A ``Tensor`` wraps an array (NumPy or CuPy) and remembers the
``Function`` that made it (its ``creator``). A ``Function`` computes its ``forward`` on raw arrays
and, when any input requires a gradient, keeps its inputs so that its ``backward`` can turn the
gradient of its output into gradients of its inputs. ``backward`` visits the functions of a graph in
reverse topological order, each one once, adding up the gradients that reach each tensor. Every
``backward`` rule is written with Tensor operations, so with ``create_graph=True`` the backward pass
records a graph of its own and can be differentiated again (WGAN-GP's gradient penalty needs this).
"""
import contextlib
import itertools
import time
import traceback
import weakref

import numpy as np

from . import backend

# ------------------------------------------------------------------------------------------------
# Global modes: gradient recording, anomaly detection, profiling
# ------------------------------------------------------------------------------------------------
_grad_enabled = True
_anomaly = False
_profile = None   # a dict name -> [calls, forward_s, backward_calls, backward_s] while profiling
# Counts every in-place change anywhere. A Function notes it when recorded; its backward checks
# its saved tensors only when it has moved since, so a graph nobody changed in place pays one
# integer comparison per op for the version counter.
_inplace_epoch = 0


def is_grad_enabled():
    return _grad_enabled


@contextlib.contextmanager
def set_grad_enabled(mode):
    """Turn graph recording on or off inside a ``with`` block."""
    global _grad_enabled
    previous, _grad_enabled = _grad_enabled, bool(mode)
    try:
        yield
    finally:
        _grad_enabled = previous


def no_grad():
    """``with no_grad():`` runs operations without recording a graph (evaluation, updates)."""
    return set_grad_enabled(False)


def enable_grad():
    return set_grad_enabled(True)


@contextlib.contextmanager
def detect_anomaly(enabled=True):
    """Raise at the first op whose forward or backward produces NaN or inf, naming the op and the
    line of user code that created it. Slower: every result is checked and every op keeps a stack."""
    global _anomaly
    previous, _anomaly = _anomaly, bool(enabled)
    try:
        yield
    finally:
        _anomaly = previous


def _check_finite(array, what, fn):
    xp = backend.array_module(array)
    if array.dtype.kind == "f" and not bool(xp.isfinite(array).all()):
        bad = "nan" if bool(xp.isnan(array).any()) else "inf"
        _raise_anomaly(fn, f"{bad} in its {what}")


def _raise_anomaly(fn, what, cause=None):
    where = "".join(getattr(fn, "_stack", None) or ["    (stack not recorded)\n"])
    raise FloatingPointError(f"anomaly: {type(fn).__name__} produced {what}.\n"
                             f"The op was created at:\n{where}") from cause


# ------------------------------------------------------------------------------------------------
# Tensor
# ------------------------------------------------------------------------------------------------
# dtype kinds a Tensor may hold: bool, signed and unsigned integers, floats. Complex, object,
# string and datetime arrays would flow into float kernels and come out as silent nonsense.
_TENSOR_KINDS = "biuf"


def check_dtype(dtype, what="a tensor"):
    """TypeError naming the dtype unless it is bool, an integer or a float."""
    dtype = np.dtype(dtype)
    if dtype.kind not in _TENSOR_KINDS:
        raise TypeError(f"{what} cannot have dtype {dtype} (kind {dtype.kind!r}): minigan tensors "
                        "hold bool, integer or floating-point values")
    return dtype


def _as_array(data, dtype=None, device=None):
    """An array from data (array, scalar, list): Python floats become the default dtype (float32),
    arrays keep theirs, integers stay integers (labels, indices)."""
    if isinstance(data, Tensor):
        data = data.data
    if backend.is_cupy_array(data) or isinstance(data, np.ndarray):
        array = data
    elif isinstance(data, np.generic):   # a NumPy scalar keeps its dtype, like an array
        array = np.asarray(data)
    else:
        array = np.asarray(data)
        if array.dtype == np.float64 and dtype is None:
            array = array.astype(backend.get_default_dtype())
    if array.dtype.kind not in _TENSOR_KINDS:
        check_dtype(array.dtype, f"a tensor made from {type(data).__name__}")
    if dtype is not None and array.dtype != check_dtype(dtype):
        array = array.astype(dtype)
    if device is not None and backend.device_of(array) != backend.normalize_device(device):
        array = backend.to_device(array, device)
    return array


class Tensor:
    """An array with an optional gradient and the function that made it.

    ``Tensor(data, requires_grad=False, dtype=None, device=None)``. ``data`` is the raw array
    (``numpy.ndarray`` on 'cpu', ``cupy.ndarray`` on 'cuda'); ``grad`` is a Tensor or None.
    Operators (``+ - * / ** @``, indexing, ``.sum()``...) are attached by ``minigan.functional``.
    """
    __array_priority__ = 1000   # numpy scalars on the left defer to Tensor's reflected operators
    __hash__ = object.__hash__  # == is elementwise (as in PyTorch), identity stays hashable
    # The version counter: [version, _inplace_epoch of the last change], shared by tensors that
    # view the same memory (detach, reshape...), bumped by every in-place change
    # (``_bump_version``). None until the first change, so a fresh tensor costs nothing; it
    # reads as version 0.
    _version_counter = None

    def __init__(self, data, requires_grad=False, dtype=None, device=None):
        self.data = _as_array(data, dtype, device)
        self.grad = None
        self.creator = None
        self.name = None
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    @classmethod
    def _wrap(cls, array, requires_grad=False):
        """A Tensor around an existing array, no copy and no checks (used by Function.apply)."""
        t = cls.__new__(cls)
        t.data, t.grad, t.creator, t.name, t.requires_grad = array, None, None, None, requires_grad
        return t

    def requires_grad_(self, requires_grad=True):
        if requires_grad and self.data.dtype.kind != "f":
            raise TypeError(
                f"only floating-point tensors can require gradients, got dtype {self.data.dtype}")
        self.requires_grad = bool(requires_grad)
        return self

    # --- what it is ----------------------------------------------------------------------------
    shape = property(lambda self: tuple(self.data.shape))
    ndim = property(lambda self: self.data.ndim)
    dtype = property(lambda self: self.data.dtype)
    device = property(lambda self: backend.device_of(self.data))
    is_leaf = property(lambda self: self.creator is None)
    grad_fn = property(lambda self: self.creator)

    def size(self, dim=None):
        return self.shape if dim is None else self.shape[dim]

    def numel(self):
        return int(self.data.size)

    def dim(self):
        return self.ndim

    def __len__(self):
        return len(self.data)

    def __bool__(self):
        """The truth of a one-element tensor; more elements raise, as in NumPy (without this,
        Python would fall back on ``len`` and call any non-empty tensor true)."""
        return bool(self.data)

    def __repr__(self):
        body = np.array2string(backend.as_numpy(self.data), precision=4, separator=", ",
                               prefix="tensor(")
        extra = ""
        if self.device != "cpu":
            extra += f", device='{self.device}'"
        if self.dtype != np.float32 or self.data.ndim == 0 and self.dtype.kind != "f":
            extra += f", dtype={self.dtype.name}"
        if self.creator is not None:
            extra += f", grad_fn=<{type(self.creator).__name__}>"
        elif self.requires_grad:
            extra += ", requires_grad=True"
        return f"tensor({body}{extra})"

    # --- leaving the graph -----------------------------------------------------------------------
    def detach(self):
        """The same data, cut from the graph (shares memory and the version counter, like
        ``torch.Tensor.detach``: an in-place change through it is seen by the graph)."""
        out = Tensor._wrap(self.data)
        out._version_counter = self._shared_version_counter()
        return out

    # --- in-place changes ----------------------------------------------------------------------
    @property
    def _version(self):
        """How many in-place changes this tensor's memory has seen (``torch.Tensor._version``)."""
        counter = self._version_counter
        return 0 if counter is None else counter[0]

    def _shared_version_counter(self):
        if self._version_counter is None:
            self._version_counter = [0, 0]
        return self._version_counter

    def _changed_after(self, epoch):
        """Whether this tensor's memory was changed in place after ``_inplace_epoch`` was epoch."""
        counter = self._version_counter
        return counter is not None and counter[1] > epoch

    def _bump_version(self):
        """Record an in-place change of ``self.data``: a graph that saved this tensor before the
        change refuses to backward through it (see ``Function.saved_inputs``)."""
        global _inplace_epoch
        _inplace_epoch += 1
        counter = self._shared_version_counter()
        counter[0] += 1
        counter[1] = _inplace_epoch
        return self

    def item(self):
        if self.data.size != 1:
            raise ValueError(f"item() needs a tensor with one element, got shape {self.shape}")
        return self.data.reshape(()).item()

    def numpy(self):
        """The data as a NumPy array (copied to the host from a GPU); no gradient follows it."""
        return backend.as_numpy(self.data)

    def tolist(self):
        return self.numpy().tolist()

    def to(self, device=None, dtype=None):
        """This tensor on another device and/or with another dtype (``self`` when nothing changes).

        A tensor made by an op is moved differentiably: its gradient flows back to the original
        device and dtype. A leaf that requires grad gives a new leaf that requires grad (the usual
        ``tensor(..., requires_grad=True).to("cuda")`` then trains the moved copy)."""
        same_dtype = dtype is None or self.data.dtype == np.dtype(dtype)
        same_device = device is None or self.device == backend.normalize_device(device)
        if same_dtype and same_device:
            return self
        if self.creator is not None:
            return _Convert.apply(self, device=device, dtype=dtype)
        out = Tensor._wrap(_convert(self.data, device, dtype))
        if self.requires_grad:
            out.requires_grad_(out.data.dtype.kind == "f")
        return out

    def cpu(self):
        return self.to("cpu")

    def cuda(self):
        return self.to("cuda")

    def float(self):
        return self.to(dtype=np.float32)

    def double(self):
        return self.to(dtype=np.float64)

    def zero_(self):
        """Fill with zeros in place. Not recorded in the graph: with grad mode on, a tensor that
        requires grad is refused (PyTorch refuses leaves; minigan also non-leaves, whose
        gradient would otherwise flow through the zeroed values as if they were still there)."""
        if _grad_enabled and self.requires_grad:
            kind = "a leaf" if self.creator is None else "a non-leaf"
            raise RuntimeError(f"zero_(): {kind} tensor of shape {self.shape} that requires grad "
                               "cannot be changed in place while gradients are recorded; do it "
                               "under minigan.no_grad(), or on .detach()")
        self.data[...] = 0
        return self._bump_version()

    # --- gradients -----------------------------------------------------------------------------
    def backward(self, gradient=None, retain_graph=None, create_graph=False):
        """Accumulate d(self)/d(leaf) into every leaf's ``.grad`` (see :func:`backward`)."""
        backward(self, gradient, retain_graph=retain_graph, create_graph=create_graph)


def as_tensor(x, like=None):
    """A Tensor from x; numbers take the dtype and device of ``like`` (so ``x32 * 2`` stays float32)."""
    if isinstance(x, Tensor):
        return x
    if like is not None and not isinstance(x, np.ndarray) and not backend.is_cupy_array(x):
        dtype = like.dtype if like.dtype.kind == "f" else None
        return Tensor._wrap(_as_array(x, dtype, like.device))
    return Tensor._wrap(_as_array(x))


# ------------------------------------------------------------------------------------------------
# Function
# ------------------------------------------------------------------------------------------------
_sequence = itertools.count()   # creation order of the recorded functions (grad() prunes by it)


class Function:
    """One differentiable operation.

    Subclasses write ``forward(self, *arrays, **params) -> array`` on raw arrays, and
    ``backward(self, grad_output) -> tuple`` with one gradient (a Tensor, or None) per input,
    written with Tensor operations. Positional arguments of ``apply`` are the tensor inputs;
    keyword arguments are fixed parameters (stride, axis...) passed on to ``forward``, which stores
    what ``backward`` needs on ``self``. Inside ``backward``: ``self.inputs`` are the input
    Tensors, ``self.output`` is the output Tensor, ``self.needs_input_grad`` says which inputs
    want a gradient.

    In-place safety: ``saved_inputs`` lists the inputs whose values ``backward`` reads (None: all
    of them; ``()`` for ops that only need shapes, like add), ``saves_output`` says whether it
    reads ``self.output``. Backward raises when an in-place op changed one of them after the
    forward (``w.zero_()`` between ``y = x * w`` and ``y.backward()``), naming the op and tensor.
    ``is_view`` marks ops whose output may share the input's memory (reshape, indexing): the
    output then shares the input's version counter.
    """
    inputs = None
    saved_inputs = None
    saves_output = False
    is_view = False

    @classmethod
    def apply(cls, *inputs, **params):
        # This runs for every op, so the usual case (Tensors only, all NumPy or all CuPy) is
        # decided with type checks and no generator; the rest takes the general path.
        for t in inputs:
            if not isinstance(t, Tensor):
                like = next((t for t in inputs if isinstance(t, Tensor)), None)
                inputs = tuple(as_tensor(t, like) for t in inputs)
                break
        if len(inputs) > 1:
            kind = type(inputs[0].data)
            for t in inputs:
                if type(t.data) is not kind:   # a device can differ only where the types do
                    _check_same_device(cls, inputs)
                    break
        fn = cls()
        # under no_grad nothing will be differentiated, so no input wants a gradient
        if _grad_enabled:
            fn.needs_input_grad = needs = tuple([t.requires_grad for t in inputs])
            record = True in needs
        else:
            fn.needs_input_grad = (False,) * len(inputs)
            record = False
        if _profile is not None:
            start = time.perf_counter()
        y = fn.forward(*[t.data for t in inputs], **params)
        if isinstance(y, np.generic):   # NumPy reductions return scalars; .data stays an array
            y = np.asarray(y)
        if _profile is not None:
            _record(cls.__name__, 0, time.perf_counter() - start)
        out = Tensor._wrap(y, record)
        if cls.is_view and getattr(y, "base", None) is not None:
            base = inputs[0]
            counter = base._version_counter
            if counter is None:
                counter = base._version_counter = [0, 0]
            out._version_counter = counter
        if record:
            fn.inputs = inputs
            fn._epoch = _inplace_epoch
            fn._output = weakref.ref(out)
            fn.sequence_nr = next(_sequence)
            out.creator = fn
            if _anomaly:
                fn._stack = traceback.format_stack(limit=12)[:-2]
        if _anomaly:
            _check_finite(y, "forward output", fn)
        return out

    @property
    def output(self):
        return self._output()

    def forward(self, *arrays, **params):
        raise NotImplementedError

    def backward(self, grad_output):
        raise NotImplementedError(f"{type(self).__name__} has no backward rule")


def _check_same_device(cls, inputs):
    device = inputs[0].device
    for t in inputs[1:]:
        if t.device != device:
            raise RuntimeError(
                f"{cls.__name__}: expected all tensors on the same device, got "
                f"{device} and {t.device}; move them with .to(device) first")


def _check_versions(fn):
    """RuntimeError when a tensor ``fn`` saved for its backward was changed in place after ``fn``
    was recorded (called only when some in-place change happened since)."""
    saved = fn.saved_inputs
    for i, t in enumerate(fn.inputs):
        if (saved is None or i in saved) and t._changed_after(fn._epoch):
            _raise_modified(fn, f"input {i}", t)
    if fn.saves_output:
        out = fn._output()
        if out is not None and out._changed_after(fn._epoch):
            _raise_modified(fn, "its output", out)


def _raise_modified(fn, which, t):
    name = f" '{t.name}'" if t.name else ""
    raise RuntimeError(
        f"one of the tensors needed for gradient computation has been modified by an in-place "
        f"operation: {which} of {type(fn).__name__}, the tensor{name} of shape {t.shape} and dtype "
        f"{t.dtype}, is at version {t._version}, changed after {type(fn).__name__} saved it. Do "
        "the in-place change (zero_, an optimizer step, an init, load_state_dict) after "
        "backward(), or work on a copy")


def _convert(array, device, dtype):
    if dtype is not None and array.dtype != np.dtype(dtype):
        array = array.astype(dtype)
    if device is not None and backend.device_of(array) != backend.normalize_device(device):
        array = backend.to_device(array, device)
    return array


class _Convert(Function):
    """Tensor.to inside a graph: the gradient goes back to the input's device and dtype."""
    saved_inputs = ()

    def forward(self, x, device, dtype):
        self.source = (backend.device_of(x), x.dtype)
        return _convert(x, device, dtype)

    def backward(self, gy):
        device, dtype = self.source
        return _Convert.apply(gy, device=device, dtype=dtype)


def _record(name, slot, seconds):
    stats = _profile.setdefault(name, [0, 0.0, 0, 0.0])
    stats[slot] += 1
    stats[slot + 1] += seconds


# ------------------------------------------------------------------------------------------------
# The backward pass
# ------------------------------------------------------------------------------------------------
def _topological_order(roots, after=-1):
    """Functions reachable from the roots, each after every function that feeds it.

    Iterative depth-first search with an explicit stack (a 10,000-op chain must not meet
    Python's recursion limit)."""
    order, seen = [], set()
    stack = [(r.creator, False) for r in roots if r.creator is not None]
    while stack:
        fn, inputs_done = stack.pop()
        if inputs_done:
            order.append(fn)
            continue
        if id(fn) in seen:
            continue
        if fn.inputs is None:
            raise RuntimeError(
                f"trying to backward through the graph a second time ({type(fn).__name__}'s saved "
                "inputs were freed after the first backward); pass retain_graph=True to the first "
                "backward() or grad() if you need to go through it again")
        seen.add(id(fn))
        stack.append((fn, True))
        for t in fn.inputs:
            if (t.creator is not None and t.requires_grad and id(t.creator) not in seen
                    and t.creator.sequence_nr > after):
                stack.append((t.creator, False))
    return order


def _leading_to(order, wanted):
    """The functions of ``order`` (inputs' creators first) with a path to a tensor in ``wanted``:
    ``grad`` runs only these backward rules. Without this, grad(loss, params_K) of an unrolled
    optimizer would also run every earlier step's backward, a cost quadratic in the steps."""
    needed = set()
    for fn in order:
        if any(id(x) in wanted or (x.creator is not None and id(x.creator) in needed)
               for x in fn.inputs):
            needed.add(id(fn))
    return [fn for fn in order if id(fn) in needed]


def _root_gradients(outputs, grad_outputs):
    grads = []
    for i, (y, g) in enumerate(zip(outputs, grad_outputs)):
        if not y.requires_grad:
            raise RuntimeError(
                f"output {i} does not require grad and has no grad_fn: nothing to differentiate "
                "(did you compute it under no_grad(), or from tensors without requires_grad=True?)")
        if g is None:
            if y.data.size != 1:
                raise RuntimeError(
                    f"grad can be implicitly created only for scalar outputs, got shape {y.shape}; "
                    "pass a gradient of the same shape (backward(gradient=...))")
            g = Tensor._wrap(backend.array_module(y.data).ones_like(y.data))
        g = as_tensor(g, like=y)
        if g.shape != y.shape:
            raise ValueError(f"gradient has shape {g.shape} but the output has shape {y.shape}")
        grads.append(g)
    return grads


def _run(outputs, grad_outputs, retain_graph, create_graph, wanted=None):
    """Propagate gradients from outputs back through the graph.

    Returns a dict id(tensor) -> gradient for every leaf reached, and for the tensors in ``wanted``.
    """
    # a function recorded before every wanted tensor existed cannot lie between them and the
    # outputs: grad() does not even walk there (a leaf among them keeps the whole graph)
    if wanted:
        after = min(x.creator.sequence_nr if x.creator is not None else -1
                    for x in wanted.values())
        order = _leading_to(_topological_order(outputs, after), wanted)
    else:
        order = _topological_order(outputs)
    grads, keep = {}, {}          # id(tensor) -> gradient; id -> tensor (keeps ids valid)
    for y, g in zip(outputs, _root_gradients(outputs, grad_outputs)):
        grads[id(y)] = g if id(y) not in grads else grads[id(y)] + g
        keep[id(y)] = y
    wanted = wanted or {}
    found = {}
    with set_grad_enabled(create_graph):
        for fn in reversed(order):
            out = fn.output
            gy = grads.pop(id(out), None)
            if id(out) in wanted:
                found[id(out)] = gy
            if gy is None:          # this output does not reach the roots through a gradient
                continue
            if fn._epoch != _inplace_epoch:
                _check_versions(fn)
            if _profile is not None:
                start = time.perf_counter()
            try:
                gxs = fn.backward(gy)
            except FloatingPointError as error:
                # anomaly mode caught an op inside this backward rule: name the rule's op and
                # where the user created it, not the anonymous op within the rule
                if not _anomaly:
                    raise
                inner = str(error).splitlines()[0].replace("anomaly: ", "").rstrip(".")
                _raise_anomaly(fn, f"nan or inf in its backward (inside it, {inner})", error)
            if _profile is not None:
                _record(type(fn).__name__, 2, time.perf_counter() - start)
            if not isinstance(gxs, tuple):
                gxs = (gxs,)
            if len(gxs) != len(fn.inputs):
                raise RuntimeError(f"{type(fn).__name__}.backward returned {len(gxs)} gradients "
                                   f"for {len(fn.inputs)} inputs")
            for x, gx in zip(fn.inputs, gxs):
                if gx is None or not x.requires_grad:
                    continue
                if gx.shape != x.shape:
                    raise RuntimeError(f"{type(fn).__name__}.backward returned a gradient of shape "
                                       f"{gx.shape} for an input of shape {x.shape}")
                if _anomaly:
                    _check_finite(gx.data, "backward (gradient of an input)", fn)
                key = id(x)
                grads[key] = gx if key not in grads else grads[key] + gx
                keep[key] = x
            if not retain_graph:
                order_nr = fn.sequence_nr
                vars(fn).clear()    # frees saved arrays; a second backward then raises
                fn.sequence_nr = order_nr
    for key, g in grads.items():
        if key in wanted:
            found[key] = g
    leaves = {k: (keep[k], g) for k, g in grads.items() if keep[k].creator is None}
    return leaves, found


def _private_array(array, taken):
    """``array``, or a copy of it when it is a view (a read-only broadcast, say), the caller's own
    gradient, or already handed to another leaf: .grad arrays are updated in place (clipping,
    accumulation), so no two may share memory. ``taken`` collects the ids handed out."""
    if (array.base is not None or id(array) in taken
            or not getattr(array.flags, "writeable", True)):
        array = array.copy()
    taken.add(id(array))
    return array


def backward(tensors, grad_tensors=None, retain_graph=None, create_graph=False):
    """Add the gradient of ``tensors`` with respect to every leaf that requires grad into its ``.grad``.

    ``grad_tensors`` are the upstream gradients (needed when an output is not a scalar).
    The graph is freed afterwards unless ``retain_graph`` (default: ``create_graph``).
    """
    outputs = [tensors] if isinstance(tensors, Tensor) else list(tensors)
    if grad_tensors is None or isinstance(grad_tensors, Tensor):
        grad_tensors = [grad_tensors] * len(outputs) if grad_tensors is None else [grad_tensors]
    if retain_graph is None:
        retain_graph = create_graph
    leaves, _ = _run(outputs, grad_tensors, retain_graph, create_graph)
    given = {id(g.data) for g in grad_tensors if isinstance(g, Tensor)}
    for leaf, g in leaves.values():
        if not leaf.requires_grad:
            continue
        if g.data.dtype is not leaf.data.dtype and g.data.dtype != leaf.data.dtype:
            g = g.to(dtype=leaf.dtype)   # a float32 leaf met a float64 tensor: grad stays float32
        if create_graph:
            leaf.grad = g if leaf.grad is None else leaf.grad + g
        elif leaf.grad is None:
            leaf.grad = Tensor._wrap(_private_array(g.data, given))
        else:   # the sum is a new array already: no private copy of g first
            leaf.grad = Tensor._wrap(leaf.grad.data + g.data)


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False,
         allow_unused=False):
    """The gradients of ``outputs`` with respect to ``inputs``, returned as a tuple.

    Unlike ``backward``, no ``.grad`` is touched: a gradient penalty can differentiate the critic
    with respect to its input without writing the critic's parameter gradients. With
    ``create_graph=True`` the returned gradients are themselves differentiable.
    """
    outputs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    single = isinstance(inputs, Tensor)
    inputs = [inputs] if single else list(inputs)
    if grad_outputs is None or isinstance(grad_outputs, Tensor):
        grad_outputs = [grad_outputs] * len(outputs) if grad_outputs is None else [grad_outputs]
    for i, x in enumerate(inputs):
        if not x.requires_grad:
            raise RuntimeError(f"input {i} of grad() does not require grad")
    if retain_graph is None:
        retain_graph = create_graph
    _, found = _run(outputs, grad_outputs, retain_graph, create_graph,
                    wanted={id(x): x for x in inputs})
    result, taken = [], set()
    for i, x in enumerate(inputs):
        g = found.get(id(x))
        if g is None and not allow_unused:
            raise RuntimeError(f"input {i} of grad() was not used to compute the outputs "
                               "(pass allow_unused=True to get None for it)")
        if g is not None and g.dtype != x.dtype:
            g = g.to(dtype=x.dtype)
        if g is not None and not create_graph:
            g = Tensor._wrap(_private_array(g.data, taken))
        result.append(g)
    return tuple(result)
