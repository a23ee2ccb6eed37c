"""BuildConfig: every setting of a build in one frozen, validated object; a copy is saved with the output."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .decode import DEFAULT_MAX_PIXELS
from .errors import BadInput, Stopped
from .fetch import FetchSettings
from .geometry import FDF256_EXPAND, KEYPOINTS_OUTSIDE, CropGeometry
from .sources.filters import DEFAULT_LICENSES, LICENSES, resolve_licenses
from .sources.metadata import FLICKR_SIZES

#: FDF256's validation share: 6,533 of 248,515 faces.
DEFAULT_VAL_FRACTION = 0.026
#: Crop side = max(face width, height) x this, in DeepPrivacy2's integer arithmetic:
#: FDF256's crops are ``expand_bbox_simple(box, 0.4)``, 1.4x the face box.
DEFAULT_EXPAND = FDF256_EXPAND

DETECTORS = ("retinaface", "dsfd")
#: mediapipe+movenet: BlazePose, then MoveNet MultiPose for the faces BlazePose did not match
KEYPOINT_MODELS = ("mediapipe+movenet", "mediapipe", "movenet", "keypointrcnn", "none")
DEFAULT_KEYPOINTS = KEYPOINT_MODELS[0]
LANDMARK_MODELS = ("face-alignment",)
#: What happens to a face that no person's keypoints matched: FDF256 dropped them (every face has 7 keypoints).
UNMATCHED = ("drop", "keep")
EXECUTORS = ("local", "ray")
#: Settings that never change a build's shards (where it goes, how fast and where it runs, what the merge leaves
#: out), and the metadata file and blocklist, which enter a build's identity by their content (fdf_build.identity),
#: not their path.
NOT_OUTPUT = ("out", "out_url", "workers", "per_host", "timeout", "deadline", "retries", "max_retry_after",
              "metadata", "base_url", "crawl_date", "rate", "retry_budget", "executor", "ray_address", "weights_dir", "device",
              "batch_size", "blocklist", "dedup")


class BuildError(Stopped):
    """A user-facing problem that stops a build before it starts (the CLI prints it as one line)."""


@dataclass(frozen=True, kw_only=True)
class BuildConfig(FetchSettings):
    metadata: str
    #: where the build works: the dataset itself, or with ``out_url`` the driver's local copy of it
    out: Path
    #: an object store URL (``s3://...``) the shards and dataset go to (:mod:`fdf_build.remote`), if not local
    out_url: Optional[str] = None
    limit: Optional[int] = None
    base_url: Optional[str] = None
    flickr_size: Optional[str] = None
    licenses: tuple[str, ...] = DEFAULT_LICENSES
    blocklist: Optional[Path] = None
    #: photos declaring more pixels than this are refused before decoding (None: no cap but OpenCV's own)
    max_pixels: Optional[int] = DEFAULT_MAX_PIXELS
    min_face: int = 64
    size: int = 256
    expand: float = DEFAULT_EXPAND
    #: keypoints outside the crop: clamped to its border as DP2's get_crop does, or NaN
    keypoints_outside: str = "clamp"
    val_fraction: float = DEFAULT_VAL_FRACTION
    detector: str = "retinaface"
    detector_threshold: float = 0.5
    detect_max_side: int = 1024
    #: DSFD input sides rounded up to a multiple of this (1: each photo at its own size, as the reference)
    pad_multiple: int = 1
    keypoints: str = DEFAULT_KEYPOINTS
    #: None: drop (FDF256's rule), or keep when there is no keypoint model to match with
    unmatched: Optional[str] = None
    #: reference backends (the [reference] extra): 68-point landmarks, where their weights are, how they run
    landmarks: Optional[str] = None
    weights_dir: Optional[Path] = None
    device: str = "cpu"
    batch_size: int = 8
    fp16: bool = False
    shard_size: int = 10_000
    executor: str = "local"
    ray_address: Optional[str] = None
    #: keep one face of each group of near-duplicates (fdf_build.dedup); decides the merge only, not the shards
    dedup: bool = False
    #: FDF's date_crawled; fixed per build (saved with it) so a rebuild or resume is byte-identical.
    crawl_date: Optional[str] = None

    def __post_init__(self):
        super().__post_init__()
        if self.unmatched is None:
            object.__setattr__(self, "unmatched", "keep" if self.keypoints == "none" else "drop")
        checks = [
            (self.limit is None or self.limit >= 0, "limit must be >= 0"),
            (self.flickr_size is None or self.flickr_size in FLICKR_SIZES, f"size must be one of {sorted(FLICKR_SIZES)}"),
            (self.max_pixels is None or self.max_pixels >= 1, "max-pixels must be >= 1"),
            (self.min_face >= 1, "min-face must be >= 1"),
            (self.size >= 8, "size must be >= 8"),
            (self.expand >= 1.0, "expand must be >= 1 (the crop must hold the whole face box)"),
            (self.keypoints_outside in KEYPOINTS_OUTSIDE, f"keypoints-outside must be one of {KEYPOINTS_OUTSIDE}"),
            (0.0 <= self.val_fraction <= 1.0, "val-fraction must be in [0, 1]"),
            (self.detector in DETECTORS, f"detector must be one of {DETECTORS}"),
            (self.keypoints in KEYPOINT_MODELS, f"keypoints must be one of {KEYPOINT_MODELS}"),
            (self.unmatched in UNMATCHED, f"unmatched must be one of {UNMATCHED}"),
            (self.unmatched == "keep" or self.keypoints != "none", "--unmatched drop needs a keypoint model"),
            (self.shard_size >= 1, "shard-size must be >= 1"),
            (self.executor in EXECUTORS, f"executor must be one of {EXECUTORS}"),
            (self.landmarks is None or self.landmarks in LANDMARK_MODELS, f"landmarks must be one of {LANDMARK_MODELS}"),
            (self.batch_size >= 1, "batch-size must be >= 1"),
            (self.pad_multiple >= 1, "pad-multiple must be >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise BadInput(message)
        unknown = [code for code in self.licenses if code not in LICENSES and "/" not in code]
        if unknown:
            resolve_licenses(unknown)  # raises with the list of valid codes

    @classmethod
    def from_json(cls, data: dict) -> "BuildConfig":
        """The inverse of :meth:`to_json`, for commands that continue a saved build.

        Settings this version no longer has (``keypoint_threshold``) are ignored.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        data = {k: v for k, v in data.items() if k in known}
        data["out"] = Path(data["out"])
        data["licenses"] = tuple(data["licenses"])
        for key in ("blocklist", "weights_dir"):
            if data.get(key):
                data[key] = Path(data[key])
        return cls(**data)

    @property
    def geometry(self) -> CropGeometry:
        """How this build cuts its crops (recorded in the dataset as ``crop_geometry.json``)."""
        return CropGeometry(expand=self.expand, size=self.size, keypoints_outside=self.keypoints_outside)

    @property
    def reference_models(self) -> list[str]:
        """The reference backends this build needs (their weights must be on disk)."""
        chosen = [self.detector, self.keypoints, self.landmarks]
        return [m for m in ("dsfd", "keypointrcnn", "face-alignment") if m in chosen]

    @property
    def threads(self) -> int:
        """Photos in flight at once: ``workers``, raised for GPU backends so their per-size batches can fill."""
        if self.reference_models and self.device.startswith("cuda"):
            return max(self.workers, 4 * self.batch_size)
        return self.workers

    def to_json(self) -> dict:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(self).items()}

    def output_settings(self) -> dict:
        """The settings that decide which photos land in which shard and how each is processed.

        A resumed build must use the same ones, or its shards would mix two builds. Every
        setting not in :data:`NOT_OUTPUT` is one (so a new setting is in by default); licenses
        are the set of license URLs they accept, whatever the order or spelling they were given in.
        """
        settings = {k: v for k, v in self.to_json().items() if k not in NOT_OUTPUT}
        settings["licenses"] = sorted(resolve_licenses(self.licenses))
        return settings
