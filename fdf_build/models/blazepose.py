"""BlazePose full, one person per image: MediaPipe's two models on ai-edge-litert, MediaPipe's graph in numpy.

This is what ``mediapipe.solutions.pose.Pose(static_image_mode=True, model_complexity=1)`` of mediapipe 0.10.21
does to one RGB image, step by step after its graph configs (``mediapipe/modules/pose_detection/
pose_detection_cpu.pbtxt``, ``pose_landmark/pose_landmark_cpu.pbtxt``, ``pose_detection_to_roi.pbtxt``,
``pose_landmark_by_roi_cpu.pbtxt``, ``tensors_to_pose_landmarks_and_segmentation.pbtxt``) and the calculators
they name, without the mediapipe package (which pins numpy < 2 and has no wheel past Python 3.12):

1. **Detection** (``pose_detection.tflite``): the image letterboxed into 224 x 224 (zero border, values in
   [-1, 1]); 2254 SSD anchors (:func:`ssd_anchors`) each decode to a box and 4 keypoints (:func:`decode`), scored
   by the sigmoid of the logit clipped to +-100. The best detection scoring at least ``min_detection_score`` is
   averaged, weighted by score, with every detection overlapping it by IoU > 0.3 (MediaPipe's weighted
   non-maximum suppression; the graph keeps only its first detection: :func:`best_detection`).
2. **Region** (:func:`detection_region`): centred on the detection's keypoint 0 (the hips' centre), its side 2.5
   times the distance to keypoint 1 (the full body's circle), turned so that keypoint 0 to 1 points up.
3. **Landmarks** (``pose_landmark_full.tflite``): that region resampled to 256 x 256 (bilinear, edge pixels
   repeated, values in [0, 1]); a pose flag <= 0.5 means no person. 39 points (33 landmarks and the 6 the model
   uses itself), each refined by its 64 x 64 heatmap (the sigmoid-weighted mean of 7 x 7 cells around it, where
   their largest value reaches 0.5: :func:`refine_with_heatmap`), visibility the sigmoid of its logit, then
   carried back into image pixels (:func:`project`).

Each step is a plain function of arrays (tested on hand-worked numbers); :class:`BlazePose` runs them. Images
are resampled exactly as MediaPipe's OpenCV converter does (``cv2.warpPerspective`` from the rotated rectangle's
corners on the uint8 image, then scaled to floats), so the models see the same pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple, Optional

import cv2
import numpy as np
from numpy.typing import NDArray

from .weights import tflite_interpreter

DETECTION_SIZE, LANDMARK_SIZE = 224, 256
#: the detector's anchor layers (SsdAnchorsCalculatorOptions in pose_detection_cpu.pbtxt)
STRIDES = (8, 16, 32, 32, 32)
#: MediaPipe clips score logits to this before the sigmoid
SCORE_CLIP = 100.0
NMS_IOU = 0.3
REGION_SCALE = 1.25
HEATMAP_KERNEL, HEATMAP_MIN = 9, 0.5
POSE_FLAG_MIN = 0.5


@dataclass(frozen=True)
class RotatedRect:
    """A rectangle in image pixels: centre, width, height, and rotation in radians (clockwise on screen)."""

    cx: float
    cy: float
    width: float
    height: float
    rotation: float = 0.0


class Pose(NamedTuple):
    """33 BlazePose landmarks: ``points`` (33, 2) x, y in image pixels, ``visibility`` (33,) in [0, 1]."""

    points: NDArray[np.float32]
    visibility: NDArray[np.float32]
    score: float  # the detection's


@lru_cache(maxsize=None)
def ssd_anchors(size: int = DETECTION_SIZE, strides: tuple[int, ...] = STRIDES) -> NDArray[np.float64]:
    """``(N, 2)`` anchor centres (x, y in [0, 1]), in the detector's output order.

    As MediaPipe's ``SsdAnchorsCalculator`` with one aspect ratio plus its interpolated scale (2 anchors per
    layer and cell) and fixed anchor size (every anchor 1 x 1, so only centres matter): consecutive layers of
    one stride share a grid, their anchors interleaved per cell. For 224 px and strides 8, 16, 32, 32, 32:
    28 x 28 x 2 + 14 x 14 x 2 + 7 x 7 x 6 = 2254 anchors.
    """
    out = []
    layer = 0
    while layer < len(strides):
        same = layer
        while same < len(strides) and strides[same] == strides[layer]:
            same += 1
        cells = math.ceil(size / strides[layer])
        per_cell = 2 * (same - layer)
        ys, xs = np.mgrid[0:cells, 0:cells]
        centres = np.stack([(xs + 0.5) / cells, (ys + 0.5) / cells], axis=-1).reshape(-1, 1, 2)
        out.append(np.repeat(centres, per_cell, axis=1).reshape(-1, 2))
        layer = same
    return np.concatenate(out)


def decode(raw: NDArray, anchors: NDArray, size: int = DETECTION_SIZE) -> tuple[NDArray, NDArray]:
    """The detector's ``(N, 12)`` raw output to boxes ``(N, 4)`` (x0, y0, x1, y1) and keypoints ``(N, 4, 2)``,
    in [0, 1] of its input: x, y, w, h then 4 (x, y), all in input pixels relative to the anchor's centre."""
    raw = np.asarray(raw, np.float64)
    centre = raw[:, :2] / size + anchors
    half = raw[:, 2:4] / size / 2
    boxes = np.concatenate([centre - half, centre + half], axis=1)
    keypoints = raw[:, 4:12].reshape(-1, 4, 2) / size + anchors[:, None, :]
    return boxes, keypoints


def sigmoid(x):
    return 1 / (1 + np.exp(-np.asarray(x, np.float64)))


def iou(box: NDArray, boxes: NDArray) -> NDArray[np.float64]:
    """IoU of one (x0, y0, x1, y1) box with each of ``boxes``; 0 where they do not overlap."""
    w = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    h = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = w * h
    union = (box[2] - box[0]) * (box[3] - box[1]) + (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def best_detection(boxes: NDArray, keypoints: NDArray, logits: NDArray, *, min_score: float,
                   iou_threshold: float = NMS_IOU) -> Optional[tuple[NDArray, NDArray, float]]:
    """The first detection of MediaPipe's weighted non-maximum suppression: the best-scoring box at or above
    ``min_score``, with its box and keypoints replaced by the score-weighted mean over every kept detection whose
    IoU with it exceeds ``iou_threshold`` (itself included). None when none scores ``min_score``."""
    scores = sigmoid(np.clip(logits, -SCORE_CLIP, SCORE_CLIP))
    keep = (scores >= min_score) & (boxes[:, 2] >= boxes[:, 0]) & (boxes[:, 3] >= boxes[:, 1])
    if not keep.any():
        return None
    boxes, keypoints, scores = boxes[keep], keypoints[keep], scores[keep]
    top = int(np.argmax(scores))
    near = iou(boxes[top], boxes) > iou_threshold
    w = scores[near]
    box = (boxes[near] * w[:, None]).sum(0) / w.sum()
    points = (keypoints[near] * w[:, None, None]).sum(0) / w.sum()
    return box, points, float(scores[top])


def letterbox(width: float, height: float) -> tuple[RotatedRect, tuple[float, float]]:
    """The whole image as MediaPipe's ``ImageToTensor`` sees it with ``keep_aspect_ratio``: a square on its longer
    side, and the padding (left/right, top/bottom) as shares of that square."""
    return pad_to_square(RotatedRect(width / 2, height / 2, width, height))


def pad_to_square(rect: RotatedRect) -> tuple[RotatedRect, tuple[float, float]]:
    """MediaPipe's ``PadRoi`` for a square tensor: grow the short side; the padding on each side, as a share."""
    aspect = rect.height / rect.width
    if aspect < 1:
        return RotatedRect(rect.cx, rect.cy, rect.width, rect.width, rect.rotation), (0.0, (1 - aspect) / 2)
    return RotatedRect(rect.cx, rect.cy, rect.height, rect.height, rect.rotation), ((1 - 1 / aspect) / 2, 0.0)


def unpad(points: NDArray, padding: tuple[float, float]) -> NDArray[np.float64]:
    """Tensor-relative points to the unpadded rectangle's [0, 1] (``Detection/LandmarkLetterboxRemoval``)."""
    pad = np.asarray(padding, np.float64)
    return (np.asarray(points, np.float64) - pad) / (1 - 2 * pad)


def normalize_radians(angle: float) -> float:
    """Into [-pi, pi), as MediaPipe's ``NormalizeRadians``."""
    return angle - 2 * math.pi * math.floor((angle + math.pi) / (2 * math.pi))


def detection_region(keypoints_px: NDArray, scale: float = REGION_SCALE) -> RotatedRect:
    """``PoseDetectionToRoi``: a square centred on keypoint 0, side ``2 * scale`` times its distance to keypoint 1,
    rotated so that the line from keypoint 0 to 1 points up (``AlignmentPointsRectsCalculator`` with target
    angle 90 degrees, then ``RectTransformationCalculator`` scale 1.25, square on the long side)."""
    (x0, y0), (x1, y1) = np.asarray(keypoints_px, np.float64)[:2]
    side = 2 * math.hypot(x1 - x0, y1 - y0) * scale
    rotation = normalize_radians(math.pi / 2 - math.atan2(-(y1 - y0), x1 - x0))
    return RotatedRect(float(x0), float(y0), side, side, rotation)


def cut(image: NDArray[np.uint8], rect: RotatedRect, size: int, *, border: int) -> NDArray[np.uint8]:
    """``rect`` resampled to ``size`` x ``size``, as MediaPipe's OpenCV converter does it: the rotated rectangle's
    corners (``cv2.boxPoints``: bottom-left, top-left, top-right, bottom-right) mapped onto the output's by
    ``cv2.warpPerspective``, bilinear, on the uint8 pixels."""
    corners = cv2.boxPoints(((rect.cx, rect.cy), (rect.width, rect.height), math.degrees(rect.rotation)))
    target = np.array([[0, size], [0, 0], [size, 0], [size, size]], np.float32)
    matrix = cv2.getPerspectiveTransform(corners.astype(np.float32), target)
    return cv2.warpPerspective(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=border, borderValue=0)


def refine_with_heatmap(points: NDArray, heatmap: NDArray, *, kernel: int = HEATMAP_KERNEL,
                        min_confidence: float = HEATMAP_MIN) -> NDArray[np.float64]:
    """``RefineLandmarksFromHeatmapCalculator``: each point ((N, 2) in [0, 1]) moves to the sigmoid-weighted mean
    cell of its ``kernel`` x ``kernel`` window in its heatmap channel ((H, W, N) logits), where the window's
    largest sigmoid reaches ``min_confidence``. Cells are indexed by truncation (as C++'s int conversion: a point
    just left of 0 still uses column 0); points outside the heatmap stay."""
    h, w, _ = heatmap.shape
    out = np.array(points, np.float64)
    half = (kernel - 1) // 2
    for i, (x, y) in enumerate(out):
        col, row = int(x * w), int(y * h)
        if not (0 <= col < w and 0 <= row < h):
            continue
        rows, cols = slice(max(0, row - half), min(h, row + half + 1)), slice(max(0, col - half), min(w, col + half + 1))
        confidence = sigmoid(heatmap[rows, cols, i])
        total = confidence.sum()
        if confidence.max() >= min_confidence and total > 0:
            r, c = np.mgrid[rows, cols]
            out[i] = ((c * confidence).sum() / w / total, (r * confidence).sum() / h / total)
    return out


def project(points: NDArray, rect: RotatedRect) -> NDArray[np.float64]:
    """Points in [0, 1] of ``rect`` to image pixels (``LandmarkProjectionCalculator`` on a square region)."""
    p = np.asarray(points, np.float64) - 0.5
    c, s = math.cos(rect.rotation), math.sin(rect.rotation)
    x = (c * p[:, 0] - s * p[:, 1]) * rect.width + rect.cx
    y = (s * p[:, 0] + c * p[:, 1]) * rect.height + rect.cy
    return np.stack([x, y], axis=1)


class BlazePose:
    """BlazePose full on one RGB image (the most prominent person, or None); not thread-safe (one interpreter
    per model), so callers keep one per thread.

    ``min_detection_score``: MediaPipe's ``min_detection_confidence``; ``threads``: TFLite threads per model.
    """

    def __init__(self, *, min_detection_score: float = 0.5, threads: int = 1):
        self.min_detection_score = min_detection_score
        self._detector = tflite_interpreter("pose_detection.tflite", threads=threads)
        self._landmarks = tflite_interpreter("pose_landmark_full.tflite", threads=threads)
        out = {tuple(d["shape"][1:]): d["index"] for d in self._landmarks.get_output_details()}
        self._points, self._flag, self._heatmap = out[(195,)], out[(1,)], out[(64, 64, 39)]
        boxes, scores = sorted(self._detector.get_output_details(), key=lambda d: -d["shape"][-1])
        self._boxes, self._scores = boxes["index"], scores["index"]

    def detect(self, image: NDArray[np.uint8]) -> Optional[tuple[NDArray, float]]:
        """The first detection's 4 keypoints in image pixels ``(4, 2)`` and its score, or None."""
        height, width = image.shape[:2]
        square, padding = letterbox(width, height)
        tensor = cut(image, square, DETECTION_SIZE, border=cv2.BORDER_CONSTANT).astype(np.float32) * (2 / 255) - 1
        it = self._detector
        it.set_tensor(it.get_input_details()[0]["index"], tensor[None])
        it.invoke()
        boxes, keypoints = decode(it.get_tensor(self._boxes)[0], ssd_anchors())
        found = best_detection(boxes, keypoints, it.get_tensor(self._scores)[0, :, 0],
                               min_score=self.min_detection_score)
        if found is None:
            return None
        _, points, score = found
        return unpad(points, padding) * (width, height), score

    def __call__(self, image: NDArray[np.uint8]) -> Optional[Pose]:
        detection = self.detect(image)
        if detection is None:
            return None
        keypoints, score = detection
        region, padding = pad_to_square(detection_region(keypoints))
        tensor = cut(image, region, LANDMARK_SIZE, border=cv2.BORDER_REPLICATE).astype(np.float32) * (1 / 255)
        it = self._landmarks
        it.set_tensor(it.get_input_details()[0]["index"], tensor[None])
        it.invoke()
        if float(it.get_tensor(self._flag).reshape(-1)[0]) <= POSE_FLAG_MIN:
            return None
        raw = it.get_tensor(self._points).reshape(39, 5).astype(np.float64)
        points = refine_with_heatmap(raw[:, :2] / LANDMARK_SIZE, it.get_tensor(self._heatmap)[0])
        points = project(unpad(points, padding), region)
        return Pose(points[:33].astype(np.float32), sigmoid(raw[:33, 3]).astype(np.float32), score)
