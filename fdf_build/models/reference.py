"""Reference-fidelity backends (the ``[reference]`` extra): the models FDF256 was annotated with.

* :class:`DSFDDetector`: DSFD with a ResNet-152 trunk (the ``face_detection`` package's network),
  confidence 0.5 and NMS 0.3 as in the reference.
* :class:`KeypointRCNN`: torchvision's ``keypointrcnn_resnet50_fpn`` (COCO), persons with score >= 0.3,
  matched to faces by the nose-and-eyes-inside-the-box rule; COCO keypoints 0-6.
* :class:`FaceAlignment68`: face-alignment's 2D-FAN-4, 68 landmarks per kept face.

No weights are ever downloaded: each backend looks for its file under ``weights_dir``, then in the torch
hub cache (``$TORCH_HOME/hub/checkpoints/``), under the upstream file name, and stops before any work
with a message naming the file, its upstream URL and where to put it (:class:`MissingWeights`).
``random_init=True`` builds the same network with random weights, for tests of the code path only.

Batching: each backend has a ``*_batch`` method over a list of photos and a ``*_prepared`` one over
photos already shrunk to ``max_side`` (:class:`Fitted`, made by worker threads), and a ``batch_key``:
the size it runs a photo at. A batch of photos of one key gives each photo its result alone, so the
batched wrappers (:class:`BatchedDetector`, :class:`BatchedKeypoints`) group calls by it; a batch of
mixed keys is padded to one size and may differ slightly. On CUDA, ``fp16=True`` runs under autocast.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import BadInput
from ..geometry import Fitted
from ..records import Face
from .faces import empty_keypoints
from .pose import nose_and_eyes_inside

WEIGHTS = {
    "dsfd": ("WIDERFace_DSFD_RES152.pth", "https://folk.ntnu.no/haakohu/WIDERFace_DSFD_RES152.pth"),
    "keypointrcnn": ("keypointrcnn_resnet50_fpn_coco-fc266e95.pth",
                     "https://download.pytorch.org/models/keypointrcnn_resnet50_fpn_coco-fc266e95.pth"),
    "face-alignment": ("2DFAN4-11f355bf06.pth.tar",
                       "https://www.adrianbulat.com/downloads/python-fan/2DFAN4-11f355bf06.pth.tar"),
}


class WeightsError(BadInput):
    """A reference model's weights cannot be used; the message says which file and what to do."""


class MissingWeights(WeightsError):
    """A reference model's weights are not on this machine (they are never downloaded at run time)."""


def hub_checkpoints() -> Path:
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "torch")
    return Path(torch_home) / "hub" / "checkpoints"


def find_weights(model: str, weights_dir: Optional[Path]) -> Path:
    name, url = WEIGHTS[model]
    places = ([Path(weights_dir)] if weights_dir else []) + [hub_checkpoints()]
    for place in places:
        if (place / name).is_file():
            return place / name
    where = f"{weights_dir} (--weights-dir) or {hub_checkpoints()}" if weights_dir else str(hub_checkpoints())
    raise MissingWeights(
        f"{model}: weights file {name} not found in {where}. Nothing is downloaded at run time: fetch it from "
        f"{url} on a machine with internet access and put it in {where}."
    )


def _device(device: str):
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BadInput(f"--device {device}: CUDA is not available on this machine")
    return torch.device(device)


class _TorchBackend:
    def _autocast(self):
        import torch

        return torch.autocast(self.device.type, enabled=self.fp16 and self.device.type == "cuda")

    def _load(self, net, model: str, weights_dir, random_init: bool):
        import torch

        if not random_init:
            path = find_weights(model, weights_dir)
            try:
                # weights_only: a weights file is data; unpickling arbitrary objects would run its code
                state = torch.load(path, map_location="cpu", weights_only=True)
                net.load_state_dict(state.get("state_dict", state) if isinstance(state, dict) else state)
            except Exception as e:
                reason = str(e).strip().split(". ")[0].splitlines()[0][:200]
                raise WeightsError(
                    f"{model}: {path} cannot be loaded as {WEIGHTS[model][0]} ({type(e).__name__}: {reason}): "
                    f"it is damaged or holds other weights. Replace it with the file from {WEIGHTS[model][1]}."
                ) from None
        return net.eval().to(self.device)


class DSFDDetector(_TorchBackend):
    name = "dsfd-resnet152 (face_detection 0.2.2)"
    #: face_detection's per-channel mean (RGB); whole numbers, so a uint8 pad of it is exactly zero once subtracted
    MEAN = (123, 117, 104)

    def __init__(self, *, weights_dir: Optional[Path] = None, device: str = "cpu", fp16: bool = False,
                 max_side: int = 1024, pad_multiple: int = 1, score_threshold: float = 0.5,
                 nms_threshold: float = 0.3, random_init: bool = False):
        import torch
        from face_detection.dsfd.config import resnet152_model_config
        from face_detection.dsfd.face_ssd import SSD

        self.device, self.fp16, self.max_side, self.pad_multiple = _device(device), fp16, max_side, pad_multiple
        self.score_threshold, self.nms_threshold = score_threshold, nms_threshold
        self.net = self._load(SSD(resnet152_model_config), "dsfd", weights_dir, random_init)
        self.mean = torch.tensor(self.MEAN, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)

    def prepare(self, image: np.ndarray) -> Fitted:
        return Fitted.of(image, self.max_side)

    def batch_key(self, fitted: Fitted) -> tuple[int, int]:
        """The input size this photo runs at: its own, or rounded up to ``pad_multiple`` (whatever its batch)."""
        m = self.pad_multiple
        return tuple(-(-side // m) * m for side in fitted.image.shape[:2])

    def __call__(self, image: np.ndarray) -> list[Face]:
        return self.detect_batch([image])[0]

    def detect_batch(self, images: list[np.ndarray]) -> list[list[Face]]:
        return self.detect_prepared([self.prepare(image) for image in images])

    def detect_prepared(self, fitted: list[Fitted]) -> list[list[Face]]:
        """Faces per photo, found in one forward pass over photos padded to a common size.

        face_detection runs one photo at its own size, as this does for photos of one
        :meth:`batch_key`; any pad (right and bottom) is the mean colour, zero after mean
        subtraction, as the network's own zero padding is.
        """
        import torch
        from torchvision.ops import nms

        h, w = np.max([self.batch_key(f) for f in fitted], axis=0)
        batch = np.empty((len(fitted), h, w, 3), dtype=np.uint8)
        batch[:] = self.MEAN
        for i, f in enumerate(fitted):
            batch[i, : f.image.shape[0], : f.image.shape[1]] = f.image
        # uint8 crosses to the device (a quarter of float32's bytes); the arithmetic runs there
        x = torch.from_numpy(batch).to(self.device).permute(0, 3, 1, 2).float() - self.mean
        with torch.inference_mode(), self._autocast():
            raw = self.net(x[:, [2, 1, 0]], self.score_threshold, self.nms_threshold).float()
        out = []
        for boxes, f in zip(raw, fitted):
            # non-finite boxes only come from untrained weights; they are no faces
            keep = (boxes[:, 4] >= self.score_threshold) & torch.isfinite(boxes).all(dim=1)
            boxes = boxes[keep]
            pixels = boxes[:, :4] * boxes.new_tensor([w, h, w, h])
            fh, fw = f.image.shape[:2]
            # suppression on coordinates normalised by the photo's own size, as face_detection does
            order = nms(pixels / boxes.new_tensor([fw, fh, fw, fh]), boxes[:, 4], self.nms_threshold)
            # whole pixels, as DeepPrivacy's DSFD boxes (round().long()); it also absorbs the ~1e-5 px by which
            # kernels picked for another batch size can move a box
            corners = np.round(f.to_original(pixels[order].cpu().numpy().reshape(-1, 2, 2)).reshape(-1, 4))
            out.append([Face(box=box.astype(np.float32), score=round(float(score), 6), keypoints=empty_keypoints())
                        for box, score in zip(corners, boxes[order, 4].cpu().numpy())])
        return out


class KeypointRCNN(_TorchBackend):
    """torchvision's keypoint R-CNN, each photo at its own size through the model's own resize, as the reference ran it."""

    name = "keypointrcnn_resnet50_fpn (torchvision, COCO)"

    def __init__(self, *, weights_dir: Optional[Path] = None, device: str = "cpu", fp16: bool = False,
                 max_side: int = 1024, person_threshold: float = 0.3, random_init: bool = False):
        from torchvision.models.detection import keypointrcnn_resnet50_fpn

        self.device, self.fp16, self.max_side, self.person_threshold = _device(device), fp16, max_side, person_threshold
        net = keypointrcnn_resnet50_fpn(weights=None, weights_backbone=None, box_score_thresh=person_threshold)
        self.net = self._load(net, "keypointrcnn", weights_dir, random_init)

    def prepare(self, image: np.ndarray) -> Fitted:
        return Fitted.of(image, self.max_side)

    def batch_key(self, fitted: Fitted) -> tuple[int, int]:
        """The padded size torchvision's transform gives this photo alone: photos that share it batch with no change."""
        t = self.net.transform
        h, w = fitted.image.shape[:2]
        scale = min(t.min_size[-1] / min(h, w), t.max_size / max(h, w))
        return tuple(-(-math.floor(side * scale) // t.size_divisible) * t.size_divisible for side in (h, w))

    def persons_batch(self, images: list[np.ndarray]) -> list[np.ndarray]:
        return self.persons_prepared([self.prepare(image) for image in images])

    def persons_prepared(self, fitted: list[Fitted]) -> list[np.ndarray]:
        """Per photo, ``(P, 7, 2)`` keypoints 0-6 of persons with score >= the threshold, best first, in photo pixels."""
        import torch

        tensors = [torch.from_numpy(f.image).to(self.device).permute(2, 0, 1).float().div(255) for f in fitted]
        with torch.inference_mode(), self._autocast():
            results = self.net(tensors)
        out = []
        for result, f in zip(results, fitted):
            keep = result["scores"] >= self.person_threshold
            out.append(f.to_original(result["keypoints"][keep][:, :7, :2].float().cpu().numpy()))
        return out

    def match(self, faces: list[Face], persons: np.ndarray) -> list[Face]:
        """Faces in detection order each take the best person not yet taken whose nose and both eyes are inside the box."""
        taken = set()
        out = []
        for face in faces:
            for i, person in enumerate(persons):
                if i not in taken and nose_and_eyes_inside(person, face.box):
                    taken.add(i)
                    face = replace(face, keypoints=person.astype(np.float32), keypoint_model=self.name)
                    break
            out.append(face)
        return out

    def __call__(self, image: np.ndarray, faces: list[Face]) -> list[Face]:
        return self.match(faces, self.persons_batch([image])[0])


class FaceAlignment68(_TorchBackend):
    """68 landmarks per face from 2D-FAN-4, framed and read out as face_alignment's own API does.

    ``FaceAlignment.get_landmarks_from_image`` frames a face box by its centre moved up 0.12 of the box
    height and a scale of (w + h) / 195 (its S3FD detector's reference scale): a square of side
    200 x scale px resampled to 256 x 256. It adds the heatmaps of the mirrored crop (``flip_input``, on by
    default in face_alignment 1.5), moves each heatmap peak a quarter cell towards its higher neighbour, and
    maps it back to the photo in whole pixels. Its own functions do the cropping and the read-out here, so
    the landmarks are the ones its API gives with the same weights; only the network runs batched.
    """

    name = "face-alignment 2DFAN-4"

    def __init__(self, *, weights_dir: Optional[Path] = None, device: str = "cpu", fp16: bool = False,
                 random_init: bool = False, flip_input: bool = True):
        from face_alignment.models import FAN

        self.device, self.fp16, self.flip_input = _device(device), fp16, flip_input
        self.net = self._load(FAN(4), "face-alignment", weights_dir, random_init)

    @staticmethod
    def frame(box: np.ndarray) -> tuple[np.ndarray, float]:
        """face_alignment's (centre, scale) for a face box (x0, y0, x1, y1)."""
        from face_alignment.utils import CENTER_Y_OFFSET, REFERENCE_SCALE

        # upstream's arithmetic: differences in the box's own dtype, then with Python floats in float64 (numpy 1's
        # promotion, which upstream was written for; under numpy 2 a float32 scale stays float32, and torch
        # refuses to put a numpy float32 into a tensor)
        x0, y0, x1, y1 = box
        w, h = x1 - x0, y1 - y0
        centre = np.array([float(x1) - float(w) / 2.0, float(y1) - float(h) / 2.0])
        centre[1] = centre[1] - float(h) * CENTER_Y_OFFSET
        return centre, float(x1 - x0 + y1 - y0) / REFERENCE_SCALE

    def landmarks_batch(self, image: np.ndarray, boxes: list[np.ndarray]) -> np.ndarray:
        """``(F, 68, 2)`` landmarks in image pixels for the ``F`` face boxes of one image."""
        return self.landmarks_with(image, boxes, self.heatmaps)

    def landmarks_with(self, image: np.ndarray, boxes: list[np.ndarray], run) -> np.ndarray:
        """Crops cut here (a worker thread), heatmaps made by ``run`` over the crops, read out in the photo."""
        from face_alignment.utils import crop, get_preds_fromhm

        if not boxes:
            return np.zeros((0, 68, 2), dtype=np.float32)
        frames = [self.frame(b) for b in boxes]
        heatmaps = run([crop(image, centre, scale) for centre, scale in frames])
        points = [get_preds_fromhm(h[None], centre, scale)[1][0] for h, (centre, scale) in zip(heatmaps, frames)]
        return np.stack(points).astype(np.float32)

    def heatmaps(self, crops: list[np.ndarray]) -> list[np.ndarray]:
        """Per 256 x 256 crop, FAN's last ``(68, 64, 64)`` heatmaps (plus the mirrored crop's, flipped back)."""
        import torch
        from face_alignment.utils import flip

        x = torch.from_numpy(np.stack(crops)).to(self.device).permute(0, 3, 1, 2).float().div(255)
        with torch.inference_mode(), self._autocast():
            out = self.net(x)[-1].float()
            if self.flip_input:
                out += flip(self.net(flip(x))[-1].float(), is_label=True)
        return list(out.cpu().numpy())


class Batcher:
    """Turns single calls from many worker threads into batched calls of ``batch_fn``.

    Worker threads keep decoding and resizing while a batch runs, so the GPU waits
    on no JPEG decode. Calls are grouped by ``key(item)`` (for the models, the size
    they run a photo at: a batch of one size pads no photo more than it is padded
    alone, so each photo gets exactly its result alone). A group goes as soon as
    ``batch_size`` calls are in it or ``max_wait`` seconds after its first call arrived.
    """

    def __init__(self, batch_fn, batch_size: int, max_wait: float = 0.005, key=lambda item: None):
        import queue
        import threading

        self.batch_fn, self.batch_size, self.max_wait, self.key = batch_fn, batch_size, max_wait, key
        #: how many batches of each size ran: how well photos of one size fill batches
        self.batch_sizes: Counter = Counter()
        self._queue = queue.Queue()
        threading.Thread(target=self._serve, daemon=True, name="batcher").start()

    def __call__(self, item):
        return self.map([item])[0]

    def map(self, items: list) -> list:
        """Results for several items of one caller, which may land in one batch or several."""
        from concurrent.futures import Future

        # keys are computed here, so a bad item fails its caller instead of the batch thread
        keyed = [(self.key(item), item, Future()) for item in items]
        for call in keyed:
            self._queue.put(call)
        return [future.result() for _, _, future in keyed]

    def _serve(self) -> None:
        import queue
        import time

        groups: dict = {}  # key -> (deadline, [(item, future)])
        while True:
            timeout = max(0.0, min(d for d, _ in groups.values()) - time.monotonic()) if groups else None
            try:
                key, item, future = self._queue.get(timeout=timeout)
                deadline, calls = groups.setdefault(key, (time.monotonic() + self.max_wait, []))
                calls.append((item, future))
            except queue.Empty:
                pass
            now = time.monotonic()
            for key in [k for k, (d, calls) in groups.items() if len(calls) >= self.batch_size or d <= now]:
                self._run(groups.pop(key)[1])

    def _run(self, calls: list) -> None:
        self.batch_sizes[len(calls)] += 1
        try:
            results = self.batch_fn([item for item, _ in calls])
            if len(results) != len(calls):
                raise RuntimeError(f"{self.batch_fn} gave {len(results)} results for {len(calls)} items")
        except BaseException as e:  # hand the failure to every waiting caller
            for _, future in calls:
                future.set_exception(e)
            return
        for (_, future), result in zip(calls, results):
            future.set_result(result)


class BatchedDetector:
    """A :class:`DSFDDetector` called per photo from worker threads, run in batches.

    The calling worker thread shrinks its photo; the batch thread only pads, copies and runs.
    """

    def __init__(self, detector: DSFDDetector, batch_size: int):
        self.detector, self.name = detector, detector.name
        self.batcher = Batcher(detector.detect_prepared, batch_size, key=detector.batch_key)

    def __call__(self, image: np.ndarray) -> list[Face]:
        return self.batcher(self.detector.prepare(image))


class BatchedKeypoints:
    """Keypoint R-CNN persons found in batches across worker threads, matched per image."""

    def __init__(self, model: KeypointRCNN, batch_size: int):
        self.model, self.name = model, model.name
        self.batcher = Batcher(model.persons_prepared, batch_size, key=model.batch_key)

    def __call__(self, image: np.ndarray, faces: list[Face]) -> list[Face]:
        return self.model.match(faces, self.batcher(self.model.prepare(image)))


class BatchedLandmarks:
    """:class:`FaceAlignment68` over the faces of many photos: worker threads cut the crops, batches run them.

    Every crop is 256 x 256, so any faces share a batch with no padding at all.
    """

    def __init__(self, model: FaceAlignment68, batch_size: int):
        self.model, self.batcher = model, Batcher(model.heatmaps, batch_size)

    def landmarks_batch(self, image: np.ndarray, boxes: list[np.ndarray]) -> np.ndarray:
        return self.model.landmarks_with(image, boxes, self.batcher.map)


class WithLandmarks68:
    """Any keypoint stage (or none), then 68 face-alignment landmarks for each face."""

    def __init__(self, keypoints, landmarks: "FaceAlignment68 | BatchedLandmarks"):
        self.keypoints, self.landmarks = keypoints, landmarks
        self.name = keypoints.name if keypoints is not None else "detector"

    def __call__(self, image: np.ndarray, faces: list[Face]) -> list[Face]:
        if self.keypoints is not None:
            faces = self.keypoints(image, faces)
        points = self.landmarks.landmarks_batch(image, [f.box for f in faces])
        return [replace(f, landmarks68=p) for f, p in zip(faces, points)]
