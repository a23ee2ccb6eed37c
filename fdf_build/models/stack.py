"""The model stack a build runs: the face detector and keypoint stage a :class:`BuildConfig` names.

The one module between the config and the models: the models themselves take arrays and
return records, and never see the config.
"""

from __future__ import annotations

from pathlib import Path

from ..config import BuildConfig, BuildError
from .faces import make_detector
from .pose import make_keypoint_model


def check_models(config: BuildConfig) -> None:
    """Fail before any work when a reference backend cannot run: no torch, or weights not on disk."""
    if not config.reference_models:
        return
    try:
        from .reference import find_weights
    except ImportError as e:
        raise BuildError(f"{', '.join(config.reference_models)} need the reference extra "
                         f"(pip install -e '.[reference]'): {e}") from None
    for model in config.reference_models:
        find_weights(model, config.weights_dir)  # a MissingWeights names the file: bad input


def make_models(config: BuildConfig, *, random_init: bool = False, cpus: int = 1):
    """The face detector and keypoint stage a config asks for; reference backends are batched.

    ``cpus``: CPU inferences that may run at once (MediaPipe makes that many graphs up front).
    A weights file that cannot be loaded is a :class:`~fdf_build.models.reference.WeightsError` naming it.
    """
    if config.reference_models:
        from . import reference

        common = dict(weights_dir=config.weights_dir, device=config.device, fp16=config.fp16, random_init=random_init)
    if config.detector == "dsfd":
        detector = reference.BatchedDetector(
            reference.DSFDDetector(max_side=config.detect_max_side, pad_multiple=config.pad_multiple,
                                   score_threshold=config.detector_threshold, **common),
            config.batch_size)
    else:
        detector = make_detector(config.detector, score_threshold=config.detector_threshold,
                                 max_side=config.detect_max_side)
    if config.keypoints == "keypointrcnn":
        keypoints = reference.BatchedKeypoints(
            reference.KeypointRCNN(max_side=config.detect_max_side, **common), config.batch_size)
    else:
        keypoints = make_keypoint_model(config.keypoints, graphs=cpus)
    if config.landmarks:
        keypoints = reference.WithLandmarks68(
            keypoints, reference.BatchedLandmarks(reference.FaceAlignment68(**common), config.batch_size))
    return detector, keypoints


def weights_files(config: BuildConfig) -> dict[str, Path]:
    """The weights file of each reference backend the build uses (:func:`check_models` ran first)."""
    if not config.reference_models:
        return {}
    from .reference import find_weights

    return {model: find_weights(model, config.weights_dir) for model in config.reference_models}
