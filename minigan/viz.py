"""Draw a graph: as indented text (``print_graph``) or Graphviz dot source (``to_dot``)."""
from .autograd import Tensor


def _label(t):
    name = f"{t.name} " if t.name else ""
    return f"{name}{tuple(t.shape)} {t.dtype}"


def graph_text(root):
    """The graph below ``root`` as an indented tree; a function already shown is marked (seen)."""
    lines, seen = [], set()
    stack = [(root, 0)]
    while stack:
        t, depth = stack.pop()
        pad = "  " * depth
        fn = t.creator
        if fn is None:
            kind = "leaf, requires_grad" if t.requires_grad else "constant"
            lines.append(f"{pad}{_label(t)} [{kind}]")
            continue
        if id(fn) in seen:
            lines.append(f"{pad}{type(fn).__name__} -> {_label(t)} (seen)")
            continue
        seen.add(id(fn))
        lines.append(f"{pad}{type(fn).__name__} -> {_label(t)}")
        if fn.inputs is None:
            lines.append(f"{pad}  (freed after backward)")
            continue
        for x in reversed(fn.inputs):
            stack.append((x, depth + 1))
    return "\n".join(lines)


def print_graph(root):
    print(graph_text(root))


def to_dot(root):
    """Graphviz source: tensors as boxes, functions as ellipses (render with ``dot -Tpng``)."""
    out = ["digraph minigan {", "  rankdir=LR;"]
    seen = set()
    stack = [root]
    while stack:
        t = stack.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        out.append(f'  t{id(t)} [shape=box, label="{_label(t)}"];')
        fn = t.creator
        if fn is None or fn.inputs is None:
            continue
        out.append(f'  f{id(fn)} [label="{type(fn).__name__}"];')
        out.append(f"  f{id(fn)} -> t{id(t)};")
        for x in fn.inputs:
            if isinstance(x, Tensor):
                out.append(f"  t{id(x)} -> f{id(fn)};")
                stack.append(x)
    out.append("}")
    return "\n".join(dict.fromkeys(out))  # each edge once, order kept
