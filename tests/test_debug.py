"""Debugging aids: anomaly detection (forward and backward), the per-op profiler, graph drawing."""
import os

import numpy as np
import pytest

import minigan as mg
import minigan.functional as F
from minigan import profiler, viz

THIS_FILE = os.path.basename(__file__)


def leaf(array):
    return mg.tensor(np.asarray(array, dtype=np.float64), requires_grad=True)


# ------------------------------------------------------------------------------------------------
# detect_anomaly
# ------------------------------------------------------------------------------------------------
def test_anomaly_in_forward_names_the_op_and_the_line_that_created_it():
    x = leaf([1.0, -1.0])
    with mg.detect_anomaly(), np.errstate(invalid="ignore"):
        with pytest.raises(FloatingPointError) as info:
            F.log(x * 2.0)            # log of a negative number: nan
    message = str(info.value)
    assert "Log" in message and "nan" in message and "forward" in message
    assert THIS_FILE in message and "F.log(x * 2.0)" in message


def test_anomaly_in_backward_names_the_op_whose_gradient_broke():
    x = leaf([0.0, 4.0])
    with mg.detect_anomaly(), np.errstate(divide="ignore"):
        y = F.sqrt(x).sum()           # fine forward; d sqrt/dx = 1 / (2 sqrt x) is inf at 0
        with pytest.raises(FloatingPointError) as info:
            y.backward()
    message = str(info.value)
    assert "Sqrt" in message and "inf" in message and "backward" in message
    assert THIS_FILE in message and "F.sqrt(x).sum()" in message


def test_anomaly_from_a_method_call_and_inf_from_overflow():
    x = leaf([1000.0])
    with mg.detect_anomaly(), np.errstate(over="ignore"), pytest.raises(FloatingPointError) as info:
        x.exp()
    assert "Exp" in str(info.value) and "inf" in str(info.value)
    assert THIS_FILE in str(info.value)


def test_without_anomaly_mode_nan_passes_silently_and_the_mode_is_restored():
    x = leaf([-1.0])
    with mg.detect_anomaly():
        pass
    with np.errstate(invalid="ignore"):
        y = F.log(x)                  # no error outside detect_anomaly
    assert np.isnan(y.item())
    with pytest.raises(FloatingPointError):
        with mg.detect_anomaly(), np.errstate(invalid="ignore"):
            F.log(x)
    with np.errstate(invalid="ignore"):
        F.log(x)                      # mode restored after the exception
    with mg.detect_anomaly(), mg.detect_anomaly(enabled=False), np.errstate(invalid="ignore"):
        F.log(x)                      # switched off inside


def test_anomaly_mode_keeps_clean_results_unchanged():
    x = leaf([0.5, 2.0])
    with mg.detect_anomaly():
        y = (F.sigmoid(x) * F.log(x)).sum()
        y.backward()
    expected = (1 / (1 + np.exp(-x.data))) * np.log(x.data)
    assert y.item() == pytest.approx(expected.sum())
    assert np.isfinite(x.grad.data).all()


# ------------------------------------------------------------------------------------------------
# profiler
# ------------------------------------------------------------------------------------------------
def test_profiler_counts_forward_and_backward_calls_per_op():
    x = leaf(np.ones((2, 3)))
    w = leaf(np.ones((4, 3)))
    with profiler.profile() as prof:
        for _ in range(3):
            y = F.tanh(F.linear(x, w)).sum()
            y.backward()
    stats = prof.stats
    assert stats["Linear"][0] == 3 and stats["Tanh"][0] == 3 and stats["Sum"][0] == 3
    assert stats["Linear"][2] == 3 and stats["Tanh"][2] == 3
    assert all(s[1] >= 0 and s[3] >= 0 for s in stats.values())
    table = prof.table()
    lines = {line.split()[0]: line.split() for line in table.splitlines()[2:-1]}
    assert lines["Linear"][1] == "3" and lines["Tanh"][1] == "3" and lines["Linear"][3] == "3"
    assert "calls" in table.splitlines()[0] and str(prof) == table
    F.exp(x)                          # outside the block: not recorded
    assert "Exp" not in prof.stats


# ------------------------------------------------------------------------------------------------
# graph drawing
# ------------------------------------------------------------------------------------------------
def test_graph_text_and_dot_name_every_op():
    x = leaf([[1.0, 2.0]])
    x.name = "x"
    w = leaf([[1.0, 0.5], [2.0, -1.0]])
    h = F.tanh(x @ w)
    y = (h * h).sum()
    text = viz.graph_text(y)
    for op in ("Sum", "Mul", "Tanh", "MatMul"):
        assert op in text
    assert "x (1, 2) float64 [leaf, requires_grad]" in text
    assert "(seen)" in text           # h feeds Mul twice; its subgraph is drawn once
    dot = viz.to_dot(y)
    assert dot.startswith("digraph") and dot.rstrip().endswith("}")
    for op in ("Sum", "Mul", "Tanh", "MatMul"):
        assert f'label="{op}"' in dot
    assert dot.count('label="Tanh"') == 1
    y.backward()
    assert "(freed after backward)" in viz.graph_text(y)
