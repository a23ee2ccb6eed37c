"""Reference backends' throughput: images/s of DSFD, keypoint R-CNN, both, and both end to end, per device,
batch size and precision.

Photos are the bundled demo photos shrunk to YFCC's 500 px download size (the build's default), so a
stream holds photos of several sizes, as Flickr's does. Rows:

* ``dsfd``, ``keypointrcnn``, ``dsfd+keypointrcnn``: the models alone on decoded photos, ``batch`` photos a
  call, a batch of mixed sizes padded to one (the upper bound of what the device does).
* ``end to end``: JPEG bytes in, faces matched to persons out, as the build runs them: worker threads
  decode and resize while the batchers group photos of one size into batches of up to ``batch``.
  Its ratio against ``dsfd+keypointrcnn`` at the same batch size shows what decoding, grouping by size and
  threads cost (1.00x: the device never waits on them).

Uses real weights when they are in --weights-dir or the torch hub cache, else --random-init (the same
networks with random weights: the same work per image, except that DSFD's post-processing sees more
candidate boxes). Baseline for the batch ratios: the smallest batch size, same device, same run.

    python benchmarks/reference.py --device cuda --batch-sizes 1,8 --images 256            # on a GPU
    python benchmarks/reference.py --device cuda --batch-sizes 1,8 --images 256 --pad-multiple 128
    python benchmarks/reference.py --device cpu --batch-sizes 1,2 --images 6 --max-side 256 --random-init

On an offline GPU machine that has torch, torchvision, opencv, numpy and requests but not this package: it needs
only face_detection (a pure-Python sdist), built into a wheel where pip works and carried over:

    pip wheel --no-deps face-detection==0.2.2 -w .whl                                   # where pip works
    pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl                   # on the GPU machine
    PYTHONPATH=/tmp/site:. python3 benchmarks/reference.py --device cuda --batch-sizes 1,8 --random-init
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import torch

from fdf_build.decode import decode_image
from fdf_build.demo import demo_photos
from fdf_build.models.reference import BatchedDetector, BatchedKeypoints, DSFDDetector, KeypointRCNN


def yfcc_sized(jpeg: bytes, side: int) -> bytes:
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    factor = side / max(image.shape[:2])
    image = cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


def rate(run, items: list, per_call: int) -> float:
    run(items[:per_call])  # warm-up (cudnn autotune, allocations)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    for i in range(0, len(items), per_call):
        run(items[i : i + per_call])
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return len(items) / (time.perf_counter() - start)


def end_to_end(dsfd: DSFDDetector, krcnn: KeypointRCNN, batch: int, threads: int):
    detector, keypoints = BatchedDetector(dsfd, batch), BatchedKeypoints(krcnn, batch)

    def one(jpeg: bytes):
        image = decode_image(jpeg)
        return keypoints(image, detector(image))

    def run(jpegs: list[bytes]):
        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(one, jpegs))

    return run, detector.batcher.batch_sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--photo-side", type=int, default=500, help="longer side of the test photos (YFCC: 500)")
    parser.add_argument("--max-side", type=int, default=1024, help="the build's --detect-max-side")
    parser.add_argument("--pad-multiple", type=int, default=1, help="the build's --pad-multiple (DSFD)")
    parser.add_argument("--threads", type=int, default=0, help="end-to-end worker threads (default: the build's)")
    parser.add_argument("--weights-dir")
    parser.add_argument("--random-init", action="store_true")
    args = parser.parse_args()
    jpegs = [yfcc_sized(b, args.photo_side) for b in demo_photos().values()]
    jpegs = (jpegs * (args.images // len(jpegs) + 1))[: args.images]
    photos = [decode_image(b) for b in jpegs]
    sizes = len({p.shape for p in photos})
    precisions = [False, True] if args.device.startswith("cuda") else [False]
    table = {}  # (fp16, batch size) -> images/s per row
    print(f"device {args.device} ({torch.cuda.get_device_name() if args.device.startswith('cuda') else os.cpu_count()}"
          f"{'' if args.device.startswith('cuda') else ' cores'}), torch {torch.__version__}, {args.images} photos "
          f"of {sizes} sizes (longer side {args.photo_side}), {'random' if args.random_init else 'real'} weights, "
          f"DSFD pad multiple {args.pad_multiple}")
    for fp16 in precisions:
        common = dict(device=args.device, fp16=fp16, max_side=args.max_side, weights_dir=args.weights_dir,
                      random_init=args.random_init)
        dsfd, krcnn = DSFDDetector(pad_multiple=args.pad_multiple, **common), KeypointRCNN(**common)
        for b in map(int, args.batch_sizes.split(",")):
            models = {
                "dsfd": (dsfd.detect_batch, photos, b),
                "keypointrcnn": (krcnn.persons_batch, photos, b),
                "dsfd+keypointrcnn": (lambda batch: (dsfd.detect_batch(batch), krcnn.persons_batch(batch)), photos, b),
            }
            # the build's thread count for this batch size (BuildConfig.threads on CUDA)
            threads = args.threads or max(16, 4 * b)
            rates = {name: rate(run, items, n) for name, (run, items, n) in models.items()}
            run, batches = end_to_end(dsfd, krcnn, b, threads)
            rates["end to end"] = rate(run, jpegs, len(jpegs))
            mean_batch = sum(n * k for n, k in batches.items()) / sum(batches.values())
            print(f"{'amp ' if fp16 else 'fp32'} batch {b:2d}: " + "  ".join(
                f"{name} {r:7.1f} img/s" for name, r in rates.items())
                + f"  (end to end / models: {rates['end to end'] / rates['dsfd+keypointrcnn']:.2f}x, {threads} threads,"
                f" DSFD batches of {mean_batch:.1f} photos on average)")
            table[fp16, b] = rates
    for fp16 in precisions:
        batches = sorted(b for p, b in table if p == fp16)
        for name in table[fp16, batches[0]]:
            print(f"{'amp ' if fp16 else 'fp32'} {name}: " + ", ".join(
                f"batch {b} {table[fp16, b][name] / table[fp16, batches[0]][name]:.2f}x" for b in batches)
                + f" of batch {batches[0]}")

if __name__ == "__main__":
    main()
