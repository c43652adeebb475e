"""`cnnrepro predict`: label single images with a trained run (PyTorch or Keras); one JSON line per image.

Each image is resized and scaled exactly as the run's training inputs were (its run_info.json), decoded
within params clean.max_pixels and converted as the clean stage converts (cnnrepro.data.pixels.model_image);
images are decoded one at a time, so memory holds one decoded image beside the resized ones.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, type=Path, help="a completed run directory")
    parser.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")


def main(args: argparse.Namespace) -> int:
    import numpy as np

    from cnnrepro.inference.evaluate import check_device, load_trained, max_pixels
    from cnnrepro.train.engine.images import load_image

    device = check_device(args.device)
    pixel_limit = max_pixels(args.params)
    trained, config = load_trained(args.run, device)  # its config checked (input shape included) first
    channels, height, width = config.data.input_shape
    classes = config.data.classes
    resample = config.data.resize_filter or "bilinear"
    # Decode all first: a bad image fails the command before anything is printed.
    arrays = [load_image(path, (height, width), resample, channels, max_pixels=pixel_limit) for path in args.images]
    for path, array in zip(args.images, arrays, strict=True):
        probabilities = trained.class_probabilities(array[None])[0].tolist()
        best = int(np.argmax(probabilities))
        print(
            json.dumps(
                {
                    "image": str(path),
                    "label": classes[best],
                    "probability": probabilities[best],
                    "probabilities": dict(zip(classes, probabilities, strict=True)),
                }
            )
        )
    return 0
