"""Reference backends' throughput: images/s of DSFD, keypoint R-CNN and DSFD + keypoint R-CNN end to end,
per device, batch size and precision.

Uses real weights when they are in --weights-dir or the torch hub cache, else --random-init (the same
networks with random weights: the same work per image, except that DSFD's post-processing sees more
candidate boxes). Baseline for the ratios: batch size 1, fp32, on the same device in the same run.

    python benchmarks/reference.py --device cuda --batch-sizes 1,8 --images 64            # on a GPU
    python benchmarks/reference.py --device cpu --batch-sizes 1,2 --images 4 --canvas 512 --random-init
"""

from __future__ import annotations

import argparse
import time

import torch

from fdf_build.demo import demo_photos
from fdf_build.decode import decode_image
from fdf_build.reference import DSFDDetector, KeypointRCNN


def rate(fn, images, batch: int) -> float:
    fn(images[:batch])  # warm-up (cudnn autotune, allocations)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    for i in range(0, len(images), batch):
        fn(images[i : i + batch])
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return len(images) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--canvas", type=int, default=1024)
    parser.add_argument("--weights-dir")
    parser.add_argument("--random-init", action="store_true")
    args = parser.parse_args()
    photos = [decode_image(b) for b in demo_photos().values()]
    images = (photos * (args.images // len(photos) + 1))[: args.images]
    precisions = [False, True] if args.device.startswith("cuda") else [False]
    print(f"device {args.device}, {args.images} images, canvas {args.canvas}, "
          f"{'random' if args.random_init else 'real'} weights")
    for fp16 in precisions:
        common = dict(device=args.device, fp16=fp16, canvas=args.canvas, weights_dir=args.weights_dir,
                      random_init=args.random_init)
        dsfd, krcnn = DSFDDetector(**common), KeypointRCNN(**common)
        backends = {
            "dsfd": dsfd.detect_batch,
            "keypointrcnn": krcnn.persons_batch,
            "dsfd+keypointrcnn": lambda batch: (dsfd.detect_batch(batch), krcnn.persons_batch(batch)),
        }
        for name, fn in backends.items():
            rates = {b: rate(fn, images, b) for b in map(int, args.batch_sizes.split(","))}
            base = rates[min(rates)]
            print(f"{'amp ' if fp16 else 'fp32'} {name:18s} " + "  ".join(
                f"batch {b}: {r:7.1f} img/s ({r / base:.2f}x)" for b, r in rates.items()))


if __name__ == "__main__":
    main()
