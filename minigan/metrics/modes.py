"""Mode coverage of 2-D samples: PacGAN's protocol (Lin et al. 2018, following VEEGAN).

A sample is *high quality* when it lies within 3 standard deviations of its nearest mode; a mode
is *captured* when it is the nearest mode of at least one high-quality sample. The reverse KL
KL(q || p) compares the histogram q of high-quality samples over modes with the true uniform
mixture weights p = 1/K: 0 for a perfect spread, log K when every sample sits on one mode.
"""
import numpy as np

from ..data.toy import nearest_mode


def mode_coverage(samples, modes, std, threshold=3.0):
    """Metrics of generated 2-D samples against a mixture with these centres and std.

    Returns {"modes": captured count, "n_modes": K, "high_quality": fraction of samples within
    ``threshold * std`` of their nearest mode, "reverse_kl": KL(q || uniform), "counts": (K,)}.
    """
    samples = np.asarray(samples, dtype=np.float64)
    modes = np.asarray(modes, dtype=np.float64)
    if samples.ndim != 2 or samples.shape[1] != modes.shape[1]:
        raise ValueError(f"mode_coverage: samples of shape {samples.shape} do not match modes "
                         f"of shape {modes.shape}")
    if not np.isfinite(samples).all():
        raise ValueError("mode_coverage: samples contain NaN or inf")
    index, distance = nearest_mode(samples, modes)
    good = distance <= threshold * std
    counts = np.bincount(index[good], minlength=len(modes))
    q = counts / max(int(counts.sum()), 1)
    nonzero = q > 0
    reverse_kl = float(np.sum(q[nonzero] * np.log(q[nonzero] * len(modes)))) if good.any() \
        else float("inf")
    return {"modes": int((counts > 0).sum()), "n_modes": int(len(modes)),
            "high_quality": float(good.mean()) if len(good) else 0.0,
            "reverse_kl": reverse_kl, "counts": counts}
