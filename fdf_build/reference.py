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

Batching: each backend has a ``*_batch`` method over a list of images, which it letterboxes to one
square canvas (``canvas`` px, zero padding at the right and bottom) so a batch is one tensor; one image
or a batch of them gives the same result. On CUDA, ``fp16=True`` runs under autocast.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from .detect import empty_keypoints
from .keypoints import nose_and_eyes_inside
from .records import Face

WEIGHTS = {
    "dsfd": ("WIDERFace_DSFD_RES152.pth", "https://folk.ntnu.no/haakohu/WIDERFace_DSFD_RES152.pth"),
    "keypointrcnn": ("keypointrcnn_resnet50_fpn_coco-fc266e95.pth",
                     "https://download.pytorch.org/models/keypointrcnn_resnet50_fpn_coco-fc266e95.pth"),
    "face-alignment": ("2DFAN4-11f355bf06.pth.tar",
                       "https://www.adrianbulat.com/downloads/python-fan/2DFAN4-11f355bf06.pth.tar"),
}


class MissingWeights(Exception):
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
        raise ValueError(f"--device {device}: CUDA is not available on this machine")
    return torch.device(device)


def letterbox(images: list[np.ndarray], canvas: int) -> tuple[np.ndarray, list[float]]:
    """Shrink each image to fit ``canvas`` (never enlarge) and pad right/bottom: ``(N, canvas, canvas, 3)`` and scales."""
    batch = np.zeros((len(images), canvas, canvas, 3), dtype=np.uint8)
    scales = []
    for i, image in enumerate(images):
        h, w = image.shape[:2]
        scale = min(1.0, canvas / max(h, w))
        if scale < 1.0:
            image = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))),
                               interpolation=cv2.INTER_AREA)
        batch[i, : image.shape[0], : image.shape[1]] = image
        scales.append(scale)
    return batch, scales


class _TorchBackend:
    def _autocast(self):
        import torch

        return torch.autocast(self.device.type, enabled=self.fp16 and self.device.type == "cuda")

    def _load(self, net, model: str, weights_dir, random_init: bool):
        import torch

        if not random_init:
            state = torch.load(find_weights(model, weights_dir), map_location="cpu", weights_only=False)
            net.load_state_dict(state.get("state_dict", state) if isinstance(state, dict) else state)
        return net.eval().to(self.device)


class DSFDDetector(_TorchBackend):
    name = "dsfd-resnet152 (face_detection 0.2.2)"

    def __init__(self, *, weights_dir: Optional[Path] = None, device: str = "cpu", fp16: bool = False,
                 canvas: int = 1024, score_threshold: float = 0.5, nms_threshold: float = 0.3,
                 random_init: bool = False):
        import torch  # noqa: F401
        from face_detection.dsfd.config import resnet152_model_config
        from face_detection.dsfd.face_ssd import SSD

        self.device, self.fp16, self.canvas = _device(device), fp16, canvas
        self.score_threshold, self.nms_threshold = score_threshold, nms_threshold
        self.net = self._load(SSD(resnet152_model_config), "dsfd", weights_dir, random_init)
        self.mean = np.array([123, 117, 104], dtype=np.float32)

    def __call__(self, image: np.ndarray) -> list[Face]:
        return self.detect_batch([image])[0]

    def detect_batch(self, images: list[np.ndarray]) -> list[list[Face]]:
        import torch
        from torchvision.ops import nms

        batch, scales = letterbox(images, self.canvas)
        x = torch.from_numpy(np.moveaxis(batch.astype(np.float32) - self.mean, -1, 1)).to(self.device)
        with torch.no_grad(), self._autocast():
            raw = self.net(x[:, [2, 1, 0]], self.score_threshold, self.nms_threshold).float()
        out = []
        for boxes, scale in zip(raw, scales):
            # non-finite boxes only come from untrained weights; they are no faces
            keep = (boxes[:, 4] >= self.score_threshold) & torch.isfinite(boxes).all(dim=1)
            boxes = boxes[keep]
            boxes = boxes[nms(boxes[:, :4], boxes[:, 4], self.nms_threshold)].cpu().numpy()
            faces = []
            for x0, y0, x1, y1, score in boxes:
                box = np.array([x0, y0, x1, y1], dtype=np.float32) * self.canvas / scale
                faces.append(Face(box=box, score=round(float(score), 6), keypoints=empty_keypoints()))
            out.append(faces)
        return out


class KeypointRCNN(_TorchBackend):
    name = "keypointrcnn_resnet50_fpn (torchvision, COCO)"

    def __init__(self, *, weights_dir: Optional[Path] = None, device: str = "cpu", fp16: bool = False,
                 canvas: int = 1024, person_threshold: float = 0.3, random_init: bool = False):
        from torchvision.models.detection import keypointrcnn_resnet50_fpn

        self.device, self.fp16, self.canvas, self.person_threshold = _device(device), fp16, canvas, person_threshold
        net = keypointrcnn_resnet50_fpn(weights=None, weights_backbone=None, box_score_thresh=person_threshold)
        self.net = self._load(net, "keypointrcnn", weights_dir, random_init)

    def persons_batch(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """Per image, ``(P, 7, 2)`` keypoints 0-6 of persons with score >= the threshold, in image pixels."""
        import torch

        batch, scales = letterbox(images, self.canvas)
        tensors = [torch.from_numpy(b).permute(2, 0, 1).float().div(255).to(self.device) for b in batch]
        with torch.no_grad(), self._autocast():
            results = self.net(tensors)
        out = []
        for result, scale in zip(results, scales):
            keep = result["scores"] >= self.person_threshold
            out.append(result["keypoints"][keep][:, :7, :2].float().cpu().numpy() / scale)
        return out

    def match(self, faces: list[Face], persons: np.ndarray) -> list[Face]:
        """Each face takes the first person whose nose and both eyes are inside its box."""
        out = []
        for face in faces:
            for person in persons:
                if nose_and_eyes_inside(person, face.box):
                    face = replace(face, keypoints=person.astype(np.float32), keypoint_model=self.name)
                    break
            out.append(face)
        return out

    def __call__(self, image: np.ndarray, faces: list[Face]) -> list[Face]:
        return self.match(faces, self.persons_batch([image])[0])


class FaceAlignment68(_TorchBackend):
    """68 landmarks per face from 2D-FAN-4 on the face box's 256 x 256 crop (face-alignment's own framing)."""

    name = "face-alignment 2DFAN-4"

    def __init__(self, *, weights_dir: Optional[Path] = None, device: str = "cpu", fp16: bool = False,
                 random_init: bool = False):
        from face_alignment.models import FAN

        self.device, self.fp16 = _device(device), fp16
        self.net = self._load(FAN(4), "face-alignment", weights_dir, random_init)

    def landmarks_batch(self, image: np.ndarray, boxes: list[np.ndarray]) -> np.ndarray:
        """``(F, 68, 2)`` landmarks in image pixels for the ``F`` face boxes of one image."""
        import torch

        from .geometry import crop, square_around

        if not boxes:
            return np.zeros((0, 68, 2), dtype=np.float32)
        transforms = [square_around(b, expand=1.2, out_size=256) for b in boxes]
        crops = np.stack([crop(image, t) for t in transforms])
        x = torch.from_numpy(crops).permute(0, 3, 1, 2).float().div(255).to(self.device)
        with torch.no_grad(), self._autocast():
            heatmaps = self.net(x)[-1].float().cpu().numpy()  # (F, 68, 64, 64)
        f, k, h, w = heatmaps.shape
        flat = heatmaps.reshape(f, k, -1).argmax(-1)
        points = np.stack([flat % w, flat // w], -1).astype(np.float64) + 0.5  # heatmap cell centres
        return np.stack([t.inverse(p * 256 / w) for t, p in zip(transforms, points)]).astype(np.float32)


class Batcher:
    """Turns single calls from many worker threads into batched calls of ``batch_fn``.

    Worker threads keep decoding and cropping while a batch runs, so the GPU waits
    on no JPEG decode; a batch goes as soon as ``batch_size`` calls are waiting or
    ``max_wait`` seconds passed since the first.
    """

    def __init__(self, batch_fn, batch_size: int, max_wait: float = 0.005):
        import queue
        import threading

        self.batch_fn, self.batch_size, self.max_wait = batch_fn, batch_size, max_wait
        self._queue = queue.Queue()
        threading.Thread(target=self._serve, daemon=True, name="batcher").start()

    def __call__(self, item):
        from concurrent.futures import Future

        future = Future()
        self._queue.put((item, future))
        return future.result()

    def _serve(self) -> None:
        import queue
        import time

        while True:
            batch = [self._queue.get()]
            deadline = time.monotonic() + self.max_wait
            while len(batch) < self.batch_size:
                try:
                    batch.append(self._queue.get(timeout=max(0.0, deadline - time.monotonic())))
                except queue.Empty:
                    break
            try:
                results = self.batch_fn([item for item, _ in batch])
            except BaseException as e:  # hand the failure to every waiting caller
                for _, future in batch:
                    future.set_exception(e)
                continue
            for (_, future), result in zip(batch, results):
                future.set_result(result)


class BatchedDetector:
    """A :class:`DSFDDetector` called per image from worker threads, run in batches."""

    def __init__(self, detector: DSFDDetector, batch_size: int):
        self.name = detector.name
        self._batcher = Batcher(detector.detect_batch, batch_size)

    def __call__(self, image: np.ndarray) -> list[Face]:
        return self._batcher(image)


class BatchedKeypoints:
    """Keypoint R-CNN persons found in batches across worker threads, matched per image."""

    def __init__(self, model: KeypointRCNN, batch_size: int):
        self.model, self.name = model, model.name
        self._batcher = Batcher(model.persons_batch, batch_size)

    def __call__(self, image: np.ndarray, faces: list[Face]) -> list[Face]:
        return self.model.match(faces, self._batcher(image))


class WithLandmarks68:
    """Any keypoint stage (or none), then 68 face-alignment landmarks for each face."""

    def __init__(self, keypoints, landmarks: FaceAlignment68):
        self.keypoints, self.landmarks = keypoints, landmarks
        self.name = keypoints.name if keypoints is not None else "detector"

    def __call__(self, image: np.ndarray, faces: list[Face]) -> list[Face]:
        if self.keypoints is not None:
            faces = self.keypoints(image, faces)
        points = self.landmarks.landmarks_batch(image, [f.box for f in faces])
        return [replace(f, landmarks68=p) for f, p in zip(faces, points)]
