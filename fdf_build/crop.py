"""Cropping stage: each kept face of a photo cut out as FDF256 cut it, with its box and keypoints in the crop frame.

The arithmetic lives in :mod:`fdf_build.geometry` (:class:`~fdf_build.geometry.CropGeometry`);
this stage applies it to a photo's faces and hands the writer :class:`~fdf_build.records.FaceCrop` records.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from numpy.typing import NDArray

from .geometry import CropGeometry, crop, whole_pixels
from .records import Face, FaceCrop, Photo


def cut_faces(photo: Photo, image: NDArray[np.uint8], faces: list[Face], geometry: CropGeometry,
              download_url: str) -> list[FaceCrop]:
    """One :class:`FaceCrop` per face, numbered in the given order (the photo's ``face_index``)."""
    return [cut_face(photo, image, face, index, geometry, download_url) for index, face in enumerate(faces)]


def cut_face(photo: Photo, image: NDArray[np.uint8], face: Face, index: int, geometry: CropGeometry,
             download_url: str) -> FaceCrop:
    # the crop is cut around the whole-pixel box, so that is the box the dataset records
    face = dataclasses.replace(face, box=whole_pixels(face.box).astype(np.float32))
    t = geometry.transform(face.box)
    return FaceCrop(
        photo=photo,
        face_index=index,
        face=face,
        image=crop(image, t),
        box=geometry.crop_box(t, face.box),
        keypoints=t.forward(face.keypoints),
        landmarks=geometry.landmarks(t, face.keypoints),
        download_url=download_url,
        landmarks68=None if face.landmarks68 is None else t.forward(face.landmarks68),
    )
