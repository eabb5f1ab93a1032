"""CSRA, TTA views, preprocessing, weighting and gating against independent computations."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from engine import tta
from engine.ensemble import default_weights, normal_gating, normalise_weights, weighted_mean
from engine.models import CSRAHead
from engine.preprocess import clip_grey, task1_grey, task1_tensor, to_uint8

# ---------------------------------------------------------------- CSRA


def test_csra_head_equals_naive_per_position_loop():
    g = torch.Generator().manual_seed(0)
    c, k, h, w = 5, 3, 3, 4
    head = CSRAHead(c, num_classes=k).double()
    with torch.no_grad():
        head.conv_att.weight.copy_(torch.randn(k, c, 1, 1, generator=g, dtype=torch.float64))
        head.classifier.weight.copy_(torch.randn(k, c, generator=g, dtype=torch.float64))
        head.classifier.bias.copy_(torch.randn(k, generator=g, dtype=torch.float64))
    x = torch.randn(2, c, h, w, generator=g, dtype=torch.float64)
    logits, att = head(x)

    W = head.classifier.weight.tolist()
    b = head.classifier.bias.tolist()
    A = head.conv_att.weight[:, :, 0, 0].tolist()
    for n in range(2):
        X = x[n].tolist()  # [c][h][w]
        positions = [(i, j) for i in range(h) for j in range(w)]
        mean = [sum(X[ch][i][j] for i, j in positions) / len(positions) for ch in range(c)]
        for cls in range(k):
            scores = [sum(A[cls][ch] * X[ch][i][j] for ch in range(c)) for i, j in positions]
            m = max(scores)
            e = [math.exp(s - m) for s in scores]
            a = [v / sum(e) for v in e]
            feat = [
                sum(a[p] * X[ch][i][j] for p, (i, j) in enumerate(positions)) for ch in range(c)
            ]
            base = sum(W[cls][ch] * mean[ch] for ch in range(c)) + b[cls]
            attl = sum(W[cls][ch] * feat[ch] for ch in range(c)) + b[cls]
            assert logits[n, cls].item() == pytest.approx(base + 0.1 * attl, abs=1e-12)
            for p, (i, j) in enumerate(positions):
                assert att[n, cls, i, j].item() == pytest.approx(a[p], abs=1e-12)


# ---------------------------------------------------------------- TTA


def _bilinear_sample_reflect(img: np.ndarray, px: float, py: float) -> float:
    """grid_sample semantics (align_corners=False, reflection padding) for one point, by hand."""
    h, w = img.shape

    def reflect(v: float, size: int) -> float:
        lo, span = -0.5, float(size)
        v = abs(v - lo)
        extra = math.fmod(v, span)
        flips = math.floor(v / span)
        v = extra + lo if flips % 2 == 0 else span - extra + lo
        return min(max(v, 0.0), size - 1.0)

    px, py = reflect(px, w), reflect(py, h)
    x0, y0 = math.floor(px), math.floor(py)
    fx, fy = px - x0, py - y0
    out = 0.0
    for yy, wy in ((y0, 1 - fy), (y0 + 1, fy)):
        for xx, wx in ((x0, 1 - fx), (x0 + 1, fx)):
            if 0 <= yy < h and 0 <= xx < w:
                out += wy * wx * img[yy, xx]
    return out


def _rotate_by_hand(img: np.ndarray, degrees: float) -> np.ndarray:
    h, w = img.shape
    a = math.radians(degrees)
    out = np.zeros_like(img)
    for i in range(h):
        for j in range(w):
            xn, yn = (2 * j + 1) / w - 1, (2 * i + 1) / h - 1
            xs = math.cos(a) * xn - math.sin(a) * yn
            ys = math.sin(a) * xn + math.cos(a) * yn
            out[i, j] = _bilinear_sample_reflect(
                img, ((xs + 1) * w - 1) / 2, ((ys + 1) * h - 1) / 2
            )
    return out


def _resize_by_hand(img: np.ndarray, nh: int, nw: int) -> np.ndarray:
    """Bilinear, half-pixel centres (align_corners=False), negative source coordinates clamped to 0."""
    h, w = img.shape

    def taps(n_out: int, n_in: int):
        src = np.maximum((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0.0)
        i0 = np.floor(src).astype(int)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, src - i0

    y0, y1, fy = taps(nh, h)
    x0, x1, fx = taps(nw, w)
    top = img[y0][:, x0] * (1 - fx) + img[y0][:, x1] * fx
    bot = img[y1][:, x0] * (1 - fx) + img[y1][:, x1] * fx
    return top * (1 - fy)[:, None] + bot * fy[:, None]


@pytest.fixture(scope="module")
def small():
    rng = np.random.default_rng(1)
    return rng.standard_normal((2, 3, 20, 23))  # non-square: catches H/W mix-ups


def test_identity_and_flip(small):
    x = torch.from_numpy(small)
    np.testing.assert_array_equal(tta.view(x, "identity").numpy(), small)
    np.testing.assert_array_equal(tta.view(x, "hflip").numpy(), small[..., ::-1])


@pytest.mark.parametrize("name,deg", [("rot+5", 5.0), ("rot-5", -5.0)])
def test_rotation_against_explicit_bilinear_reflection(small, name, deg):
    got = tta.view(torch.from_numpy(small), name).numpy()
    for n in range(2):
        for c in range(3):
            np.testing.assert_allclose(got[n, c], _rotate_by_hand(small[n, c], deg), atol=1e-9)


def test_rotation_by_larger_angle_exercises_reflection(small):
    # 30 degrees pulls corners far outside the image, where the reflection rule matters
    got = tta.rotate(torch.from_numpy(small), 30.0).numpy()
    np.testing.assert_allclose(got[0, 0], _rotate_by_hand(small[0, 0], 30.0), atol=1e-9)


def test_zoom_in_against_independent_resize_and_crop(small):
    got = tta.view(torch.from_numpy(small), "zoom1.1").numpy()
    h, w = 20, 23
    nh, nw = 22, 25  # int(1.1 * 20), int(1.1 * 23)
    for n in range(2):
        for c in range(3):
            big = _resize_by_hand(small[n, c], nh, nw)
            np.testing.assert_allclose(got[n, c], big[1 : 1 + h, 1 : 1 + w], atol=1e-9)


def test_zoom_out_against_independent_resize_and_reflect_pad(small):
    got = tta.view(torch.from_numpy(small), "zoom0.9").numpy()
    nh, nw = 18, 20  # int(0.9 * 20), int(0.9 * 23)
    for n in range(2):
        for c in range(3):
            little = _resize_by_hand(small[n, c], nh, nw)
            # left (23 - 20) // 2 = 1, right 2; top (20 - 18) // 2 = 1, bottom 1; reflect = no edge repeat
            want = np.pad(little, ((1, 1), (1, 2)), mode="reflect")
            np.testing.assert_allclose(got[n, c], want, atol=1e-9)
    # and cv2's bilinear resize (same half-pixel rule for a float image) agrees
    cv = cv2.resize(small[0, 0].astype(np.float32), (nw, nh), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(cv, _resize_by_hand(small[0, 0], nh, nw), atol=1e-5)


def test_stack_views_is_view_major(small):
    x = torch.from_numpy(small)
    s = tta.stack_views(x)
    assert s.shape == (12, 3, 20, 23)
    for k, name in enumerate(tta.VIEWS):
        torch.testing.assert_close(s[2 * k : 2 * k + 2], tta.view(x, name))


# ---------------------------------------------------------------- preprocessing


def test_to_uint8_percentile_stretch_by_hand():
    x = np.arange(10000, dtype=np.uint16).reshape(100, 100)
    sample = x.reshape(-1)[::5]  # 10000 // 2000 = 5
    lo, hi = np.percentile(sample, 0.5), np.percentile(sample, 99.5)
    # linear interpolation: index 0.005 * 1999 = 9.995 -> 49.975; 0.995 * 1999 = 1989.005 -> 9945.025
    assert (lo, hi) == pytest.approx((49.975, 9945.025), abs=1e-9)
    u8 = to_uint8(x)
    assert u8.dtype == np.uint8
    assert u8[0, 0] == 0 and u8[-1, -1] == 255
    v = 5000
    assert u8.reshape(-1)[v] == int((v - lo) / (hi - lo) * 255.0)
    # constant image: x / max; all-zero: zeros; uint8 passes through
    assert (to_uint8(np.full((4, 4), 9.0)) == 255).all()
    assert (to_uint8(np.zeros((4, 4), np.int16)) == 0).all()
    u = np.array([[1, 2], [3, 4]], np.uint8)
    assert to_uint8(u) is u
    with pytest.raises(ValueError, match="2-D"):
        to_uint8(np.zeros((4, 4, 3)))


def test_task1_grey_resize_equals_three_channel_resize():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 4096, (97, 61)).astype(np.uint16)
    u8 = to_uint8(x)
    rgb = cv2.resize(np.stack([u8] * 3, -1), (64, 64), interpolation=cv2.INTER_LINEAR)
    grey = task1_grey(x, 64)
    for c in range(3):
        np.testing.assert_array_equal(rgb[..., c], grey)
    t = task1_tensor(torch.from_numpy(grey[None]))
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    for c in range(3):
        np.testing.assert_allclose(
            t[0, c].numpy(), (rgb[..., c] / 255.0 - mean[c]) / std[c], atol=1e-6
        )


def test_clip_grey_scaling():
    hi = np.array([[0, 65535], [300, 0]], np.uint16)
    np.testing.assert_allclose(clip_grey(hi, 2), hi / 65535.0, atol=1e-7)
    lo = np.array([[0, 255], [100, 0]], np.uint16)
    np.testing.assert_allclose(clip_grey(lo, 2), lo / 255.0, atol=1e-7)


# ---------------------------------------------------------------- weighting and gating


def test_weights_default_and_normalised():
    assert default_weights(["mlp", "csra"]) == [1.0, 1.5]
    np.testing.assert_allclose(normalise_weights([1.0, 1.5]), [0.4, 0.6])
    for bad in ([], [1.0, -1.0], [0.0, 0.0], [float("nan")]):
        with pytest.raises(ValueError):
            normalise_weights(bad)


def test_weighted_mean_and_gating_by_hand():
    p_mlp = np.array([[0.2, 0.5, 0.9]])
    p_csra = np.array([[0.6, 0.1, 0.3]])
    ens = weighted_mean([p_mlp, p_csra], [1.0, 1.5])
    np.testing.assert_allclose(ens, [[0.44, 0.26, 0.54]], atol=1e-15)
    gated = normal_gating(ens, alpha=0.5)
    g = math.sqrt(1 - 0.44)  # 0.748331...
    np.testing.assert_allclose(gated, [[0.44, 0.26 * g, 0.54 * g]], atol=1e-15)
    np.testing.assert_allclose(gated, [[0.44, 0.194566184, 0.404099]], atol=1e-6)
    # alpha 1: p_c (1 - p0); clipping at both ends
    np.testing.assert_allclose(normal_gating(np.array([[0.5, 0.8]]), alpha=1.0), [[0.5, 0.4]])
    np.testing.assert_allclose(normal_gating(np.array([[1.0, 0.7, 0.0]])), [[1 - 1e-6, 1e-6, 1e-6]])
