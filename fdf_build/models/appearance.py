"""FFHQ-Features' appearance fields from a parsed face: glasses, accessories, hair, occlusion, makeup, beard.

Each reads the face-parsing classes (:mod:`.parsing`) in regions the face mesh puts where a part should be; the
thresholds sit in the wide gaps measured on the labelled faces (``benchmarks/attributes.py`` prints every value):

* ``glasses``: the glasses class covers 0.17-0.21 of the face (the mesh's area) on the two bespectacled labelled
  faces, under 0.001 on the 15 others; ``GLASSES_SHARE`` = 0.03. Behind clear lenses the network still gives the
  eyes some probability (0.05-0.07 over the mesh's eye outlines), behind sunglasses none (0.00-0.01 on the
  cyclists of ``tests/data/faces``): under ``SUNGLASSES_EYE_P`` they are Sunglasses. SwimmingGoggles cannot be
  told apart (the network has no such class): never given.
* ``accessories``: headwear (hat class over ``HEADWEAR_SHARE`` of the face: a bonnet 0.64, caps and helmets
  0.67-1.19, none 0.004 at most) and glasses, each with the network's mean probability over its pixels, in the
  cloud API's order (headwear, glasses, mask). Masks are not detected.
* ``hair``: over the crown (the top of the head above the mesh's forehead), ``bald`` is the share of skin among
  hair and skin, ``invisible`` means a hat covers most of it; ``hairColor`` ranks the six names by the hair
  pixels' colour.
* ``occlusion``: the parser does not see the part where the mesh puts it: the lips (lips and mouth under
  ``MOUTH_SEEN`` of the mesh's lip outline: 0.00 behind a hand, 0.55 and up otherwise), an eye (over half of its
  outline something other than the face's own classes: a closed eye is skin, glasses are glasses), the forehead
  (hat, cloth or background over half of it; hair is not an occluder: the records call fringes over the forehead
  unoccluded, 2 of 2).
* ``makeup``: the lips' redness against the cheeks (``lipMakeup``; and, for adult women by the age and gender
  nets, ``eyeMakeup``); ``facialHair.beard``: the chin's texture against the cheeks, for men. Thresholds and maps
  fitted on the labelled faces, chosen and scored leave-one-out by the benchmark.
"""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import NDArray

from .parsing import CLASS, MESH_LEFT_EYE, MESH_RIGHT_EYE, ParsedFace

GLASSES_SHARE = 0.03
SUNGLASSES_EYE_P = 0.025
HEADWEAR_SHARE = 0.1
MOUTH_SEEN = 0.3
#: what may show where an eye is without hiding it: a closed eye is skin, glasses are glasses
FACE_CLASSES = [CLASS[n] for n in ("skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "nose")]
#: outer lip outline, forehead outline (brows up to the mesh's top), and the mesh's topmost forehead points
MESH_LIPS = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146)
MESH_FOREHEAD = (10, 109, 67, 103, 54, 21, 71, 70, 63, 105, 66, 107, 9, 336, 296, 334, 293, 300, 301, 251, 284,
                 332, 297, 338)
MESH_TEMPLES = (54, 284)
#: the crown's depth over the face's height (forehead top to chin)
CROWN_DEPTH = 0.15


def _polygon(shape: tuple, points: NDArray) -> NDArray[np.bool_]:
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.round(points[:, :2]).astype(np.int32)], 1)
    return mask.astype(bool)


def face_area(face: ParsedFace) -> float:
    """Pixels inside the face mesh's outline: the unit the class shares are measured in."""
    return float(cv2.contourArea(cv2.convexHull(face.mesh[:, :2].astype(np.float32))))


def _confidence(face: ParsedFace, name: str, mask: NDArray[np.bool_]) -> float:
    return round(float(face.probabilities[CLASS[name]][mask].mean()), 2)


def glasses(face: ParsedFace) -> tuple[str, float]:
    """(FFHQ's glasses name, the network's confidence in the glasses pixels; 0 when there are none)."""
    lenses = face.mask("eye_g")
    if lenses.sum() < GLASSES_SHARE * face_area(face):
        return "NoGlasses", 0.0
    eyes = _polygon(face.labels.shape, face.mesh[list(MESH_LEFT_EYE)]) | _polygon(face.labels.shape,
                                                                                   face.mesh[list(MESH_RIGHT_EYE)])
    seen = float((face.probabilities[CLASS["l_eye"]] + face.probabilities[CLASS["r_eye"]])[eyes].mean()) if eyes.any() \
        else 0.0
    return ("Sunglasses" if seen < SUNGLASSES_EYE_P else "ReadingGlasses"), _confidence(face, "eye_g", lenses)


def accessories(face: ParsedFace, glasses_: tuple[str, float]) -> list[dict]:
    out = []
    hat = face.mask("hat")
    if hat.sum() >= HEADWEAR_SHARE * face_area(face):
        out.append({"type": "headwear", "confidence": _confidence(face, "hat", hat)})
    if glasses_[0] != "NoGlasses":
        out.append({"type": "glasses", "confidence": glasses_[1]})
    return out


def crown(face: ParsedFace) -> NDArray[np.bool_]:
    """The top of the head, where hair (or a bald scalp) is: between the temples, in each column the head's
    (hair, skin or hat) topmost ``CROWN_DEPTH`` of the face's height, above the mesh's forehead top (the region
    is upright, so rows are heights)."""
    p = face.mesh[:, :2]
    top, chin = p[10, 1], p[152, 1]
    left, right = (int(round(v)) for v in sorted(p[list(MESH_TEMPLES), 0]))
    head = face.mask("hair", "skin", "hat")
    out = np.zeros(head.shape, bool)
    depth = CROWN_DEPTH * (chin - top)
    for x in range(max(0, left), min(head.shape[1], right)):
        rows = np.flatnonzero(head[: max(0, int(round(top))), x])
        if rows.size:
            out[rows[0]:int(round(min(top, rows[0] + depth))), x] = True
    return out


def hair(face: ParsedFace, colors) -> dict:
    """``bald``, ``invisible`` and ``hairColor`` (ranked; ``[]`` when the hair is hidden, as the records have
    it) from the scalp band and the hair pixels; ``colors(rgb_pixels) -> [(name, confidence)...]`` ranks the
    colour."""
    labels = face.labels[crown(face)]
    hair_px, skin_px, hat_px = (int((labels == CLASS[n]).sum()) for n in ("hair", "skin", "hat"))
    invisible = hat_px > hair_px + skin_px
    bald = round(skin_px / (hair_px + skin_px), 2) if hair_px + skin_px else None
    area = face_area(face)
    strands = face.mask("hair")
    sure = strands & (face.probabilities[CLASS["hair"]] > 0.8)  # the hair's own colour, not its fringe's
    strands = sure if sure.sum() >= 0.005 * area else strands
    ranked = [] if invisible or strands.sum() < 0.005 * area else colors(face.rgb[strands])
    return {"bald": None if invisible else bald, "invisible": invisible,
            "hairColor": [{"color": name, "confidence": round(float(c), 2)} for name, c in ranked]}


def occlusion(face: ParsedFace) -> dict:
    shape = face.labels.shape
    lips = _polygon(shape, face.mesh[list(MESH_LIPS)])
    mouth_seen = np.isin(face.labels[lips], [CLASS[n] for n in ("u_lip", "l_lip", "mouth")]).mean() if lips.any() \
        else 1.0
    eye_covered = 0.0
    for outline in (MESH_LEFT_EYE, MESH_RIGHT_EYE):
        eye = _polygon(shape, face.mesh[list(outline)])
        if eye.any():
            eye_covered = max(eye_covered, 1 - np.isin(face.labels[eye], FACE_CLASSES).mean())
    forehead = _polygon(shape, face.mesh[list(MESH_FOREHEAD)])
    forehead_seen = np.isin(face.labels[forehead], [CLASS[n] for n in ("skin", "l_brow", "r_brow", "hair")]).mean() \
        if forehead.any() else 1.0
    return {"foreheadOccluded": bool(forehead_seen < 0.5), "eyeOccluded": bool(eye_covered > 0.5),
            "mouthOccluded": bool(mouth_seen < MOUTH_SEEN)}


class HairPalette:
    """Ranks FFHQ's six hair-colour names for a set of hair pixels.

    Black, brown and blond: a Gaussian likeness to each one's prototype, the median (CIELAB lightness L*,
    yellowness b*) of its hair pixels over the labelled faces whose records rank it first (``PROTOTYPES``,
    refitted leave-one-out by ``benchmarks/attributes.py``), in units of ``SPREAD``. Red, gray and other have no
    labelled face, so they follow the colour's definition: red an orange-red hue (a*/b* angle 15-55 degrees) with
    chroma over 20, gray a light colour (L* over 40) without chroma (under 6), other a strong colour outside hair's
    hues (blue, green, violet); each scaled to [0, 1] by how far it is inside that region.
    """

    #: (L*, b*) per name, medians over the labelled faces (tests/data/attributes, records ranking it first)
    PROTOTYPES = {"black": (14.6, 3.0), "brown": (22.0, 6.0), "blond": (45.1, 27.0)}
    SPREAD = (10.0, 8.0)
    ORDER = ("brown", "blond", "black", "red", "gray", "other")

    def __init__(self, prototypes: dict | None = None):
        self.prototypes = prototypes or self.PROTOTYPES

    @staticmethod
    def colour(rgb_pixels: NDArray[np.uint8]) -> tuple[float, float, float]:
        """Median (L*, a*, b*) of ``(N, 3)`` RGB pixels."""
        lab = cv2.cvtColor(np.ascontiguousarray(rgb_pixels, np.uint8)[None], cv2.COLOR_RGB2LAB)[0].astype(np.float64)
        return float(np.median(lab[:, 0]) * 100 / 255), float(np.median(lab[:, 1]) - 128), \
            float(np.median(lab[:, 2]) - 128)

    def scores(self, lightness: float, a: float, b: float) -> dict[str, float]:
        out = {}
        for name, (pl, pb) in self.prototypes.items():
            d2 = ((lightness - pl) / self.SPREAD[0]) ** 2 + ((b - pb) / self.SPREAD[1]) ** 2
            out[name] = float(np.exp(-d2 / 2))
        chroma, hue = float(np.hypot(a, b)), float(np.degrees(np.arctan2(b, a)))
        ramp = lambda v, lo, hi: float(np.clip((v - lo) / (hi - lo), 0, 1))  # noqa: E731
        out["red"] = ramp(chroma, 20, 35) * (1.0 if 15 <= hue <= 55 else 0.0)
        out["gray"] = ramp(lightness, 40, 60) * (1 - ramp(chroma, 3, 6))
        out["other"] = ramp(chroma, 15, 30) * (1.0 if hue < 0 or hue > 100 else 0.0)
        return out

    def __call__(self, rgb_pixels: NDArray[np.uint8]) -> list[tuple[str, float]]:
        scores = self.scores(*self.colour(rgb_pixels))
        return sorted(((n, scores[n]) for n in self.ORDER), key=lambda t: -t[1])


#: the mesh's cheeks: the skin colour lips are compared with
MESH_CHEEKS = ((116, 117, 118, 50, 205, 187, 123), (345, 346, 347, 280, 425, 411, 352))
#: lip makeup: lips this much redder (CIELAB a*) than the cheeks (the statistic the issue named, its threshold
#: fitted on the labelled faces); eye makeup: adult (age net >= 15) women (gender net) whose lips are this much
#: redder, chosen by leave-one-out among lip, eyelid and eyeliner statistics (benchmarks/attributes.py prints both
#: in sample and left out, against the majority)
LIP_MAKEUP_REDNESS = 9.5
EYE_MAKEUP_LIP_REDNESS = 9.0
MAKEUP_MIN_AGE = 15


def lip_redness(face: ParsedFace) -> float | None:
    """Median a* (CIELAB red-green) of the lip pixels minus that of the cheeks' skin; None without lips."""
    lips = face.mask("u_lip", "l_lip")
    skin = face.mask("skin")
    cheeks = skin & np.logical_or.reduce([_hull(face.labels.shape, face.mesh[list(c)]) for c in MESH_CHEEKS])
    reference = cheeks if cheeks.sum() >= 50 else skin
    if lips.sum() < 20 or not reference.any():
        return None
    a = cv2.cvtColor(face.rgb, cv2.COLOR_RGB2LAB)[..., 1].astype(np.float64)
    return float(np.median(a[lips]) - np.median(a[reference]))


def _hull(shape: tuple, points: NDArray) -> NDArray[np.bool_]:
    mask = np.zeros(shape, np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(np.round(points[:, :2]).astype(np.int32)), 1)
    return mask.astype(bool)


#: beard = clip(A + B * the chin's texture over the cheeks') for men (gender net), 0 for women; fitted for least
#: absolute error on the labelled men, the slope held positive (benchmarks/attributes.py: left out it beats a
#: constant and the gender net alone; moustache and sideburn statistics do not, so those are null)
BEARD_FIT = (-0.058, 0.086)
MESH_CHIN = (61, 291, 58, 172, 136, 150, 149, 176, 148, 152, 377, 400, 378, 379, 365, 397, 288)


def chin_texture(face: ParsedFace) -> float | None:
    """Median fine-detail energy (|Laplacian| of L*, lightly smoothed) of the chin below the lips, over the
    cheeks': stubble and beards are textured, shaven skin is smooth."""
    shape = face.labels.shape
    skin = face.mask("skin")
    cheeks = skin & np.logical_or.reduce([_hull(shape, face.mesh[list(c)]) for c in MESH_CHEEKS])
    chin = _hull(shape, face.mesh[list(MESH_CHIN)]) & ~_polygon(shape, face.mesh[list(MESH_LIPS)])
    if chin.sum() < 10 or cheeks.sum() < 10:
        return None
    lightness = cv2.cvtColor(face.rgb, cv2.COLOR_RGB2LAB)[..., 0].astype(np.float64) * 100 / 255
    texture = np.abs(cv2.Laplacian(cv2.GaussianBlur(lightness, (0, 0), 1), cv2.CV_64F))
    return float(np.median(texture[chin]) / max(float(np.median(texture[cheeks])), 1e-6))


def facial_hair(face: ParsedFace, *, gender: str) -> dict:
    texture = chin_texture(face) if gender == "male" else None
    beard = 0.0 if gender != "male" else None if texture is None else \
        round(float(np.clip(BEARD_FIT[0] + BEARD_FIT[1] * texture, 0, 1)), 2)
    return {"moustache": None, "beard": beard, "sideburns": None}


def makeup(face: ParsedFace, *, gender: str, age: float) -> dict:
    """FFHQ's ``makeup``; a face without visible lips is read as without makeup (nothing seen to say otherwise)."""
    redness = lip_redness(face)
    red = redness is not None
    return {"eyeMakeup": bool(red and gender == "female" and age >= MAKEUP_MIN_AGE
                              and redness >= EYE_MAKEUP_LIP_REDNESS),
            "lipMakeup": bool(red and redness >= LIP_MAKEUP_REDNESS)}
