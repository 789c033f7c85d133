"""``mnist-gpu predict``: your own pictures of digits, prepared as MNIST's were made, read by a
saved network."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..backend import get_backend
from .common import UsageError, check_outputs, emit_json, json_on_stdout, log, say, writing
from .evaluate import load_model_info_or_usage_error, sweep_model_line


# ``--show`` draws each of the 28x28 pixels as a square of this many screen pixels (280x280).
SHOW_SCALE = 10


def run(args) -> int:
    from ..model import network
    from ..model.layer import Context
    from ..viz import digits, figures

    files = image_files(args.images, digits.IMAGE_SUFFIXES)
    check_outputs(args, "show", "json", inputs=[(f"the picture {f}", f) for f in files])
    if args.show and len(files) != 1:
        raise UsageError(f"--show writes the image of one file, and {len(files)} were given")
    arch, params, info = load_model_info_or_usage_error(args.weights, args.model)
    about_model = sweep_model_line(args.model, info, arch)
    if about_model and info.get("diverged"):
        log(f"warning: {about_model}")
    ctx = Context(get_backend("numpy"), str(network.flat(params)[0].dtype))
    results = []
    for path in files:
        try:
            image = digits.mnist_style(path)
        except figures.MissingExtra as err:
            raise UsageError(str(err)) from None
        except digits.ImageReadError as err:
            results.append({"file": str(path), "error": str(err)})
            continue
        x = (image.reshape(1, 784) / 255).astype(ctx.dtype)
        with ctx.backend.activate():  # scores that overflow are shown as such, not warned about
            scores = network.logits(arch, params, x, ctx)[0]
        results.append({"file": str(path), "digit": int(np.argmax(scores)),
                        "scores": [float(v) for v in scores], "image": image})
    failed = [r for r in results if "error" in r]
    if not json_on_stdout(args):
        if len(files) == 1 and failed and not args.json:
            raise UsageError(failed[0]["error"])
        _print_predictions(results, len(files) == 1)
    if args.json:
        emit_json(args, {"weights": args.weights, "architecture": arch.describe(),
                         "predictions": [{k: v for k, v in r.items() if k != "image"}
                                         for r in results]})
    if len(files) == 1 and failed:
        return 2  # one file, as any bad argument
    if args.show and not failed:
        with writing("--show", args.show):
            digits.save_gray_png(results[0]["image"], args.show, scale=SHOW_SCALE)
        say(args, f"wrote {args.show} (the 28x28 image the network saw, each pixel drawn "
                  f"{SHOW_SCALE}x{SHOW_SCALE}: {28 * SHOW_SCALE}x{28 * SHOW_SCALE})")
    return 1 if failed else 0


def _print_predictions(results, single: bool) -> None:
    if single:
        result = results[0]
        if "error" in result:
            log(f"error: {result['error']}")
            return
        print(f"digit: {result['digit']}")
        print("scores: " + "  ".join(f"{d}: {v:.3f}" for d, v in enumerate(result["scores"])))
        return
    for r in results:
        if "error" in r:
            log(f"error: {r['error']}")
        else:
            print(f"{r['file']}: {r['digit']}  (score {max(r['scores']):.3f})")


def image_suffixes() -> tuple:
    """The suffixes of the pictures predict reads (imported only when asked)."""
    from ..viz.digits import IMAGE_SUFFIXES

    return IMAGE_SUFFIXES


def image_files(arguments, suffixes) -> list:
    """The files named, each folder replaced by its pictures (sorted; a folder without any is an
    error). A missing or unreadable name is kept, to be reported in its own line."""
    files = []
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            pictures = sorted(p for p in path.iterdir()
                              if p.suffix.lower() in suffixes and p.is_file()
                              and not p.name.startswith("."))
            if not pictures:
                raise UsageError(f"{path}: a folder with no pictures "
                                 f"({', '.join(suffixes[:4])}, ...)")
            files += pictures
        else:
            files.append(path)
    return files
