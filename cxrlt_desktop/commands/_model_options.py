"""The model options shared by ``cxrlt score-library`` (and any command that builds a Predictor).

They mirror ``cxrlt score``'s options, with one difference: every default is None, so a value
not given on the command line comes from the settings file (``--settings FILE``, default
``cxrlt_desktop.paths.config_file()``). Model files are taken as a whole: when any of
``--task1-checkpoint`` / ``--clip-model`` is given, the models come from the command line
only; otherwise from the settings' ``[models]`` table.

The scoring commands (``cxrlt score-library``, ``cxrlt worker``) start the same way: the
settings, the engine configuration and the store (:func:`open_for_scoring`), then the models
(:func:`load_scoring_predictors`), each printing its error as ``cxrlt COMMAND: error: ...``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from cxrlt_desktop.commands._text import printable


def add_model_arguments(
    p: argparse.ArgumentParser, *, settings: bool = True, **defaults: Any
) -> None:
    """Add the engine options (models, mode, device, precision, batch size).

    With ``settings`` (the default) every default is None and ``--settings`` is added, so values
    not given come from the settings file; ``cxrlt score`` passes ``settings=False`` and its own
    ``defaults`` (keyword = option dest).
    """
    p.add_argument(
        "--task1-checkpoint",
        dest="task1_checkpoint",
        nargs="+",
        action="extend",
        type=Path,
        default=None,
        metavar="PATH",
        help="Task 1 checkpoint(s) (.safetensors or .pth); repeat or list several"
        + ("; default: the settings' models" if settings else ""),
    )
    p.add_argument(
        "--task1-weights",
        dest="task1_weights",
        nargs="+",
        action="extend",
        type=float,
        default=None,
        metavar="W",
        help="ensemble weight per checkpoint, in order (default 1.0 MLP, 1.5 CSRA)",
    )
    p.add_argument(
        "--task1-arch", default=None, metavar="NAME", help="timm architecture (default: detected)"
    )
    p.add_argument(
        "--clip-model", type=Path, default=None, metavar="DIR", help="WhyXrayCLIP/open_clip folder"
    )
    p.add_argument(
        "--prompts", type=Path, default=None, metavar="FILE.json", help="zero-shot prompts JSON"
    )
    p.add_argument(
        "--mode",
        choices=("paper", "fast"),
        default=None,
        help="paper: both models, 6 views (default); fast: CSRA only, identity view"
        + ("; default: the settings' mode" if settings else ""),
    )
    p.add_argument(
        "--normal-alpha", type=float, default=None, metavar="A", help="normal gating exponent"
    )
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None)
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default=None)
    p.add_argument("--batch-size", type=int, default=None, metavar="N")
    p.add_argument(
        "--cpu-backend",
        choices=("auto", "openvino", "onnx", "torch"),
        default=None,
        help="runtime for the Task 1 backbones on the CPU in fp32 (default auto: OpenVINO, "
        "else ONNX Runtime, else PyTorch; all give the same numbers to ~1e-6)",
    )
    p.add_argument(
        "--image-size", type=int, default=None, help=argparse.SUPPRESS
    )  # tests, demo models
    if settings:
        p.add_argument(
            "--settings",
            type=Path,
            default=None,
            metavar="FILE.toml",
            help="settings file (default: the user's)",
        )
    if defaults:
        p.set_defaults(**defaults)


def add_db_arguments(p: argparse.ArgumentParser, *, settings: bool = True) -> None:
    """``--db URL`` (default: the settings' database, else the user data folder's) and, with
    ``settings``, ``--settings FILE`` left out of the help (the model options add their own)."""
    p.add_argument(
        "--db",
        default=None,
        metavar="URL",
        help="database URL (default: settings, else the user data folder)",
    )
    if settings:
        p.add_argument(
            "--settings", type=Path, default=None, metavar="FILE.toml", help=argparse.SUPPRESS
        )


def load_settings(args: argparse.Namespace):  # noqa: ANN201
    """The settings named by ``--settings`` (or the user's file); raises SettingsError.

    The user's file may be absent (defaults); a file named with ``--settings`` must exist, so
    that a mistyped name is an error rather than a silent fall-back to the defaults. What is
    there but is no regular file (a folder, a FIFO, a device) is refused by ``Settings.load``
    with what it is.
    """
    from cxrlt_desktop.settings import Settings, SettingsError

    named = getattr(args, "settings", None)
    if named is not None and not Path(named).exists():
        raise SettingsError(["no such settings file (given with --settings)"], str(named))
    return Settings.load(named)


def config_from_args(args: argparse.Namespace, settings: Any = None):  # noqa: ANN201
    """An ``EngineConfig`` from the options, falling back to ``settings`` for what is not given.

    Raises
    ------
    ValueError
        No model configured anywhere, weights not matching checkpoints, or a bad batch size
        (the message says which option to give).
    """
    from cxrlt_desktop.paths import cache_dir

    if settings is None:
        settings = load_settings(args)
    cli_models = bool(args.task1_checkpoint) or args.clip_model is not None
    if cli_models:
        ckpts = list(args.task1_checkpoint or [])
        weights = args.task1_weights
        clip = args.clip_model
    else:
        ckpts = list(settings.task1_checkpoints)
        weights = args.task1_weights if args.task1_weights is not None else settings.task1_weights
        clip = settings.clip_model
    if not ckpts and clip is None:
        raise ValueError(
            "no model to score with: give --task1-checkpoint and/or --clip-model, "
            "or set [models] in the settings file"
        )
    if weights is not None and len(weights) != len(ckpts):
        raise ValueError(
            f"{len(weights)} --task1-weights for {len(ckpts)} checkpoints; give one weight per checkpoint"
        )
    batch = args.batch_size if args.batch_size is not None else settings.batch_size
    if batch < 1:
        raise ValueError("--batch-size must be >= 1")
    overrides: dict[str, Any] = {
        "task1_checkpoints": ckpts,
        "task1_weights": weights,
        "clip_model": clip,
        "batch_size": batch,
        "cache_dir": cache_dir(),
    }
    for opt, key in (
        ("task1_arch", "task1_arch"),
        ("prompts", "prompts"),
        ("mode", "mode"),
        ("normal_alpha", "normal_alpha"),
        ("device", "device"),
        ("precision", "precision"),
        ("image_size", "image_size"),
        ("cpu_backend", "cpu_backend"),
    ):
        value = getattr(args, opt, None)
        if value is not None:
            overrides[key] = value
    return settings.engine_config(**overrides)


def resolve_db(args: argparse.Namespace, settings: Any = None) -> str | None:
    """``--db URL``, else the settings' ``database``, else None (the default file)."""
    if getattr(args, "db", None):
        return args.db
    return getattr(settings, "database", None) if settings is not None else None


def _print_error(command: str, error: object) -> None:
    print(f"cxrlt {command}: error: {printable(error)}", file=sys.stderr)


def open_for_scoring(args: argparse.Namespace, command: str):  # noqa: ANN201
    """``(settings, config, store)`` for a scoring command: the settings, the ``EngineConfig``
    of the options and the store (opened, not created), or None after printing the error of a
    bad settings file or option, or of a store that cannot be opened (the command exits 2)."""
    from cxrlt_desktop.settings import SettingsError
    from cxrlt_desktop.store import StoreError, open_store

    try:
        settings = load_settings(args)
        config = config_from_args(args, settings)
    except (SettingsError, ValueError) as e:
        _print_error(command, e)
        return None
    try:
        store = open_store(resolve_db(args, settings), create=False)
    except StoreError as e:
        _print_error(command, e)
        return None
    return settings, config, store


def requested_policy(args: Any, settings: Any, config: Any) -> str | None:
    """The scoring policy a command runs: ``--policy``; else "fast" when the engine config's
    mode is fast (``--mode fast``, or the settings'); else the settings' ``[engine] policy``
    unless "auto" (or "fast", which ``--mode paper`` overrode); None: by the device."""
    if getattr(args, "policy", None):
        return args.policy
    if config.mode == "fast":
        return "fast"
    return None if settings.policy in ("auto", "fast") else settings.policy


def load_scoring_predictors(config: Any, policy: str | None, command: str):  # noqa: ANN201
    """``(predictor, fast_predictor, policy)`` of ``library.progressive.load_predictors``, or
    None after printing why the models cannot be loaded (the command exits 1)."""
    from cxrlt_desktop.library.progressive import load_predictors
    from engine.checkpoints import CheckpointError
    from engine.predictor import EngineError
    from engine.zeroshot import ZeroShotError

    try:
        return load_predictors(config, policy)
    except (CheckpointError, ZeroShotError, EngineError, OSError) as e:
        _print_error(command, e)
        return None
