"""The ``cxrlt eval --out DIR`` report: markdown, metrics JSON, PR curves and reliability diagrams.

matplotlib is imported only here and draws with its Agg canvas (no display needed).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from training.metrics import ECE_BINS, EvalResult, precision_recall_points, reliability_bins

PR_FILE = "pr_curves.png"
RELIABILITY_FILE = "reliability.png"
REPORT_FILE = "report.md"
METRICS_FILE = "metrics.json"


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    if isinstance(x, int):
        return str(x)
    return f"{x:.{digits}f}"


def _grid(n: int) -> tuple[int, int]:
    cols = min(6, max(1, math.ceil(math.sqrt(n))))
    return math.ceil(n / cols), cols


def _plot(
    path: Path,
    classes: Sequence[str],
    labels: np.ndarray,
    probs: np.ndarray,
    all_classes: Sequence[str],
    kind: str,
) -> None:
    # A bare Figure renders with the Agg canvas and touches no pyplot/backend global state, so
    # this also works inside the GUI process and from worker threads.
    from matplotlib.figure import Figure

    rows, cols = _grid(len(classes))
    fig = Figure(figsize=(2.6 * cols, 2.4 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.ravel()[len(classes) :]:
        ax.axis("off")
    for ax, name in zip(axes.ravel(), classes, strict=False):
        j = list(all_classes).index(name)
        ok = ~np.isnan(labels[:, j]) & ~np.isnan(probs[:, j])
        y, p = labels[ok, j], probs[ok, j]
        if kind == "pr":
            recall, precision = precision_recall_points(y, p)
            ax.step(recall, precision, where="post", lw=1.2)
            ax.axhline(float(np.mean(y > 0.5)), color="grey", lw=0.8, ls="--")
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1.02)
            ax.set_xlabel("recall", fontsize=7)
            ax.set_ylabel("precision", fontsize=7)
        else:
            mean_p, freq, count = reliability_bins(y, p, ECE_BINS)
            used = count > 0
            width = 1.0 / ECE_BINS
            centers = (np.arange(ECE_BINS) + 0.5) * width
            ax.bar(centers[used], freq[used], width=width, edgecolor="black", lw=0.4, alpha=0.7)
            ax.plot(mean_p[used], freq[used], "o", ms=2.5, color="C3")
            ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1.02)
            ax.set_xlabel("predicted probability", fontsize=7)
            ax.set_ylabel("observed frequency", fontsize=7)
        ax.set_title(name, fontsize=8)
        ax.tick_params(labelsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def write_report(
    out: str | Path,
    result: EvalResult,
    labels: np.ndarray,
    probs: np.ndarray,
    classes: Sequence[str],
    sources: dict[str, str],
) -> Path:
    """Write ``report.md``, ``metrics.json``, ``pr_curves.png`` and ``reliability.png``.

    Parameters
    ----------
    out : path-like
        Output folder (created).
    result : EvalResult
        From :func:`training.metrics.evaluate`.
    labels, probs : numpy.ndarray
        The aligned ``[N, C]`` arrays the result was computed on.
    classes : sequence of str
        Their column names.
    sources : dict
        Shown at the top of the report (e.g. ``{"labels": ..., "predictions": ...}``).

    Returns
    -------
    pathlib.Path
        The markdown file.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / METRICS_FILE).write_text(json.dumps(result.to_json(), indent=2) + "\n", encoding="utf-8")
    scored = list(result.per_class)
    if scored:
        _plot(out / PR_FILE, scored, labels, probs, classes, "pr")
        _plot(out / RELIABILITY_FILE, scored, labels, probs, classes, "reliability")
    lines = _summary_lines(result, labels.shape[0], sources)
    lines += _per_class_lines(result)
    if scored:
        lines += _figure_lines()
    report = out / REPORT_FILE
    report.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return report


def _summary_lines(result: EvalResult, n_images: int, sources: dict[str, str]) -> list[str]:
    """The report's title, sources, counts and macro means."""
    m = result.macro
    lines = ["# Evaluation report", ""]
    for k, v in sources.items():
        lines.append(f"- {k}: `{v}`")
    return lines + [
        f"- images with labels and predictions: {n_images}",
        f"- classes scored: {len(result.per_class)}; excluded: {len(result.excluded)}",
        "",
        "## Macro means",
        "",
        "| mAP | mAUC | mF1 (at 0.5) | mF1 (best threshold) | mECE (15 bins) |",
        "|---|---|---|---|---|",
        f"| {_fmt(m['mAP'])} | {_fmt(m['mAUC'])} | {_fmt(m['mF1'])} | {_fmt(m['mF1_best'])} "
        f"| {_fmt(m['mECE'])} |",
        "",
        "F1@best uses the per-class threshold that maximises F1 on these same data (an optimistic "
        "bound); F1@0.5 is the fixed-threshold figure.",
    ]


def _per_class_lines(result: EvalResult) -> list[str]:
    """The per-class table and the classes left out of the macro means, with why."""
    lines = [
        "",
        "## Per class",
        "",
        "| class | n | positives | AP | AUROC | F1@0.5 | F1@best | best threshold | ECE |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in result.per_class.items():
        lines.append(
            f"| {name} | {r['n']} | {r['positives']} | {_fmt(r['AP'])} | {_fmt(r['AUROC'])} "
            f"| {_fmt(r['F1@0.5'])} | {_fmt(r['F1@best'])} | {_fmt(r['best_threshold'])} "
            f"| {_fmt(r['ECE'])} |"
        )
    if result.excluded:
        lines += ["", "## Excluded from the macro means", ""]
        for name in result.excluded:
            lines.append(f"- {name}: {result.excluded_reasons.get(name, '')}")
    return lines


def _figure_lines() -> list[str]:
    """The PR-curve and reliability figures with their legends."""
    return [
        "",
        "## Precision-recall curves",
        "",
        f"![PR curves]({PR_FILE})",
        "",
        "Dashed line: the class's prevalence (the AP of a random ranking).",
        "",
        "## Reliability diagrams",
        "",
        f"![Reliability diagrams]({RELIABILITY_FILE})",
        "",
        "Bars: observed frequency of positives per probability bin (15 equal-width bins); "
        "dots: mean predicted probability in the bin; dashed: perfect calibration.",
    ]
