"""Attribute models: agreement with the published FFHQ-Features records for every field, and time per face.

    PYTHONPATH=. python benchmarks/attributes.py [--threads 1] [--repeat 5]

On the 17 real FFHQ faces of ``tests/data/attributes`` (labels: the FFHQ-Features records, a cloud face API's
output, not ground truth), each face is found by RetinaFace and annotated on its image, as ``fdf-build features``
does. Every field gets a row: our agreement in sample, left out (each face scored by whatever was fitted or chosen
on the other 16), and the baseline a constant gets left out (the others' majority, or their median / mean). With
17 faces one face is 6 points of a share: read the figures as a sanity check, not a benchmark.

The choices made on these faces are refitted here and scored left out: the exposure map; the hair-colour
prototypes; the makeup rules; the blur and facial-hair candidates that were not shipped (each loses to a constant
left out). Times: median over ``--repeat`` runs, per face, ``--threads`` threads per model, with and without
the face parser; the baseline row is one RetinaFace detection of the same photos in the same process, so the
ratios survive a busy machine.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fdf_build import quality  # noqa: E402
from fdf_build.attributes import AttributeModels  # noqa: E402
from fdf_build.dataset.features import ATTRIBUTES  # noqa: E402
from fdf_build.models import appearance  # noqa: E402
from fdf_build.models import attributes as face_models  # noqa: E402
from fdf_build.models.attributes import MESH_DLIB5, head_pose  # noqa: E402
from fdf_build.models.facemesh import face_oval  # noqa: E402
from fdf_build.models.faces import RetinaFaceDetector  # noqa: E402

DATA = REPO / "tests" / "data" / "attributes"


def load_faces(detector) -> list[tuple[dict, np.ndarray, object]]:
    out = []
    for item in json.loads((DATA / "labels.json").read_text()):
        image = cv2.cvtColor(cv2.imread(str(DATA / item["file"])), cv2.COLOR_BGR2RGB)
        face = max(detector(image), key=lambda f: f.box[2] - f.box[0])  # the one aligned face
        out.append((item["labels"]["faceAttributes"], image, face))
    return out


# ---- leave-one-out helpers --------------------------------------------------------------------------------------

def share(hits) -> str:
    hits = np.asarray(hits, bool)
    return f"{int(hits.sum())}/{len(hits)}"


def majority_loo(y) -> np.ndarray:
    """Each face guessed as the others' majority (ties: True)."""
    y = np.asarray(y, bool)
    return np.array([np.delete(y, i).mean() >= 0.5 for i in range(len(y))])


def median_loo(y) -> np.ndarray:
    y = np.asarray(y, float)
    return np.array([np.median(np.delete(y, i)) for i in range(len(y))])


def mean_loo(y) -> np.ndarray:
    y = np.asarray(y, float)
    return (y.sum() - y) / (len(y) - 1)


def fit_threshold(x, y) -> tuple[float, int]:
    """(threshold, sign): predict ``sign * (x - threshold) >= 0``, best accuracy; a missing x predicts False."""
    x, y = np.asarray(x, float), np.asarray(y, bool)
    best = (-1.0, 0.0, 1)
    for t in np.unique(x[~np.isnan(x)]):
        for s in (1, -1):
            acc = (threshold_predict(x, t, s) == y).mean()
            if acc > best[0]:
                best = (acc, t, s)
    return best[1], best[2]


def threshold_predict(x, t: float, s: int) -> np.ndarray:
    x = np.asarray(x, float)
    return np.where(np.isnan(x), False, s * (np.nan_to_num(x) - t) >= 0)


def fit_l1(x, y, sign: int = 0) -> tuple[float, float]:
    """clip(a + b x, 0, 1) with least absolute error (grid search); ``sign`` -1/+1 forces the slope's sign."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    span = max(np.ptp(x), 1e-9)
    slopes = np.linspace(-2 / span, 2 / span, 81)
    if sign:
        slopes = slopes[np.sign(slopes) == sign]
    best = (np.inf, 0.0, 0.0)
    for b in slopes:
        for a in np.linspace(-1 - abs(b) * np.abs(x).max(), 1 + abs(b) * np.abs(x).max(), 201):
            err = np.abs(np.clip(a + b * x, 0, 1) - y).sum()
            if err < best[0]:
                best = (err, a, b)
    return best[1], best[2]


def loo(fit, predict, x, y) -> np.ndarray:
    x, y = np.asarray(x, float), np.asarray(y)
    return np.array([predict(x[i:i + 1], *fit(np.delete(x, i), np.delete(y, i)))[0] for i in range(len(y))])


def l1_predict(x, a, b):
    return np.clip(a + b * np.asarray(x, float), 0, 1)


# ---- per-face statistics on the parsed face ---------------------------------------------------------------------

def lab(face) -> np.ndarray:
    out = cv2.cvtColor(face.rgb, cv2.COLOR_RGB2LAB).astype(float)
    out[..., 0] *= 100 / 255
    out[..., 1:] -= 128
    return out


def region_stats(face) -> dict:
    """The makeup and facial-hair candidates: parsed regions' colour, darkness and texture against the cheeks."""
    shape, m = face.labels.shape, face.mesh
    skin = face.mask("skin")
    cheeks = skin & np.logical_or.reduce([appearance._hull(shape, m[list(c)]) for c in appearance.MESH_CHEEKS])
    ref = cheeks if cheeks.sum() >= 50 else skin
    c = lab(face)
    lips = face.mask("u_lip", "l_lip")
    chroma = np.hypot(c[..., 1], c[..., 2])
    eyes = np.zeros(shape, bool)
    lids = np.zeros(shape, bool)
    for eye, brow in ((appearance.MESH_LEFT_EYE, (276, 283, 282, 295, 285)),
                      (appearance.MESH_RIGHT_EYE, (46, 53, 52, 65, 55))):
        outline = appearance._polygon(shape, m[list(eye)])
        eyes |= outline
        lids |= appearance._hull(shape, m[list(eye) + list(brow)]) & ~outline & skin
    ring = (cv2.dilate(eyes.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0) & ~eyes
    mouth = appearance._polygon(shape, m[list(appearance.MESH_LIPS)])
    moustache = appearance._hull(shape, m[[98, 2, 327, 291, 267, 0, 37, 61]]) & ~mouth
    chin = appearance._hull(shape, m[[61, 291, 58, 172, 136, 150, 149, 176, 148, 152, 377, 400, 378, 379, 365, 397,
                                      288]]) & ~mouth
    texture = np.abs(cv2.Laplacian(cv2.GaussianBlur(c[..., 0], (0, 0), 1), cv2.CV_64F))
    med = lambda a, mask: float(np.median(a[mask])) if mask.sum() >= 10 else math.nan  # noqa: E731
    return {
        "lip redness": med(c[..., 1], lips) - med(c[..., 1], ref),
        "lip chroma": med(chroma, lips) - med(chroma, ref),
        "lip lightness": med(c[..., 0], lips) - med(c[..., 0], ref),
        "eyelid darkness": med(c[..., 0], ref) - med(c[..., 0], lids),
        "eyeliner darkness": med(c[..., 0], ref) - (float(np.percentile(c[..., 0][ring], 10)) if ring.any() else math.nan),
        "moustache darkness": med(c[..., 0], ref) - med(c[..., 0], moustache),
        "chin darkness": med(c[..., 0], ref) - med(c[..., 0], chin),
        "moustache texture": med(texture, moustache) / max(med(texture, ref), 1e-6),
        "chin texture": med(texture, chin) / max(med(texture, ref), 1e-6),
    }


def blur_stats(image, box, mesh, face) -> dict:
    """Sharpness candidates for blur, at the records' scale (face box 32-128 px wide) and on the parsed skin."""
    out = {}
    for width in (32, 64, 128):
        k = width / (box[2] - box[0])
        gray = cv2.resize(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), None, fx=k, fy=k,
                          interpolation=cv2.INTER_AREA if k < 1 else cv2.INTER_CUBIC).astype(float)
        mask = np.zeros(gray.shape, np.uint8)
        cv2.fillConvexPoly(mask, cv2.convexHull((mesh[face_oval(), :2] * k).astype(np.float32)).astype(np.int32), 1)
        mask = mask.astype(bool)
        lap = cv2.Laplacian(gray, cv2.CV_64F)[mask]
        grad = np.hypot(cv2.Sobel(gray, cv2.CV_64F, 1, 0), cv2.Sobel(gray, cv2.CV_64F, 0, 1))[mask]
        out[f"log Laplacian variance @{width}"] = math.log10(1 + lap.var())
        out[f"Laplacian / contrast @{width}"] = math.log10(lap.var() / max(gray[mask].var(), 1e-6))
        out[f"log Tenengrad @{width}"] = math.log10(1 + (grad ** 2).mean())
    skin = face.mask("skin", "l_brow", "r_brow", "l_eye", "r_eye", "nose", "u_lip", "l_lip")
    small = cv2.resize(cv2.cvtColor(face.rgb, cv2.COLOR_RGB2GRAY), (104, 104), interpolation=cv2.INTER_AREA)
    mask = cv2.resize(skin.astype(np.uint8), (104, 104), interpolation=cv2.INTER_NEAREST).astype(bool)
    out["log Laplacian variance, parsed face"] = math.log10(1 + cv2.Laplacian(small.astype(float), cv2.CV_64F)[mask].var())
    return out


# ---- the report -------------------------------------------------------------------------------------------------

def row(field: str, ours: str, left_out: str, baseline: str, note: str = "") -> None:
    print(f"  {field:24s} {ours:>18s} {left_out:>18s} {baseline:>22s}  {note}")


def agreement(faces, models: AttributeModels) -> None:
    labels = [lab_ for lab_, _, _ in faces]
    annotations = [models.faces([(image, face.box.astype(float))])[0] for _, image, face in faces]
    ours = [a["faceAttributes"] for a in annotations]
    assert all(list(a) == list(ATTRIBUTES) for a in ours)
    n = len(faces)
    print(f"agreement with the records on {n} faces (in sample | left out | a constant left out):")
    row("field", "ours", "left out", "baseline")
    adult = np.array([t["age"] >= 13 for t in labels])
    gender = np.array([o["gender"] == t["gender"] for o, t in zip(ours, labels)])
    row("gender (aged >= 13)", share(gender[adult]), "nothing fitted", share(majority_loo(
        [t["gender"] == "female" for t in labels])[adult] == np.array([t["gender"] == "female" for t in labels])[adult]))
    age = np.array([abs(o["age"] - t["age"]) for o, t in zip(ours, labels)])
    ages = np.array([t["age"] for t in labels])
    row("age MAE (aged >= 13)", f"{age[adult].mean():.2f}", "nothing fitted",
        f"{np.abs(median_loo(ages[adult]) - ages[adult]).mean():.2f}")
    for field, key in (("smile > 0.5", lambda a: a["smile"] > 0.5),
                       ("emotion (top)", lambda a: max(a["emotion"], key=a["emotion"].get))):
        got = np.array([key(o) == key(t) for o, t in zip(ours, labels)])
        tops = [key(t) for t in labels]
        common = max(set(tops), key=tops.count)
        row(field, share(got), "nothing fitted", share([t == common for t in tops]) + " (in sample)")
    for angle in ("yaw", "pitch", "roll"):
        err = np.array([abs(o["headPose"][angle] - t["headPose"][angle]) for o, t in zip(ours, labels)])
        truth = np.array([t["headPose"][angle] for t in labels])
        row(f"{angle} MAE", f"{err.mean():.2f}", "pitch: offset" if angle == "pitch" else "nothing fitted",
            f"{np.abs(median_loo(truth) - truth).mean():.2f}")
    exposure_rows(faces, labels, models)
    noise = np.array([(o["noise"]["value"], t["noise"]["value"]) for o, t in zip(ours, labels)])
    row("noise r", f"{np.corrcoef(noise.T)[0, 1]:+.2f}", "nothing fitted", "-", "our copies' own noise")
    if ours[0]["glasses"] is None:
        print("  (no face parser: the parsed fields are null; install the parsing extra for their rows)")
        return
    parsed_rows(faces, labels, ours, models)


def exposure_rows(faces, labels, models) -> None:
    x = np.array([quality.brightness(quality.FaceRegion(image, face.box, models.mesh(image, face.box)))
                  for _, image, face in faces])
    y = np.array([t["exposure"]["value"] for t in labels])
    shipped = np.clip(quality.EXPOSURE_FIT[0] + quality.EXPOSURE_FIT[1] * x, 0, 1)
    left_out = loo(fit_l1, l1_predict, x, y)
    a, b = fit_l1(x, y)
    row("exposure MAE", f"{np.abs(shipped - y).mean():.3f}", f"{np.abs(left_out - y).mean():.3f}",
        f"{np.abs(median_loo(y) - y).mean():.3f} / {np.abs(mean_loo(y) - y).mean():.3f}",
        f"r {np.corrcoef(shipped, y)[0, 1]:+.2f} (left out {np.corrcoef(left_out, y)[0, 1]:+.2f}); refit "
        f"({a:.3f}, {b:.3f}), shipped {quality.EXPOSURE_FIT}")


def parsed_rows(faces, labels, ours, models) -> None:
    glasses = [o["glasses"] == t["glasses"] for o, t in zip(ours, labels)]
    row("glasses", share(glasses), "nothing fitted", share(majority_loo(
        [t["glasses"] != "NoGlasses" for t in labels]) == np.array([t["glasses"] != "NoGlasses" for t in labels])))
    for kind in ("glasses", "headwear"):
        got = [any(x["type"] == kind for x in o["accessories"]) for o in ours]
        truth = [any(x["type"] == kind for x in t["accessories"]) for t in labels]
        row(f"accessories: {kind}", share(np.equal(got, truth)), "nothing fitted",
            share(majority_loo(truth) == np.array(truth)))
    for key in ("foreheadOccluded", "eyeOccluded", "mouthOccluded"):
        truth = [t["occlusion"][key] for t in labels]
        row(f"occlusion: {key}", share([o["occlusion"][key] == v for o, v in zip(ours, truth)]), "nothing fitted",
            share(majority_loo(truth) == np.array(truth)))
    seen = [i for i, o in enumerate(ours) if o["hair"]["bald"] is not None]
    bald = np.array([ours[i]["hair"]["bald"] for i in seen])
    truth = np.array([labels[i]["hair"]["bald"] for i in seen])
    row("hair: bald MAE", f"{np.abs(bald - truth).mean():.3f}", "nothing fitted",
        f"{np.abs(median_loo(truth) - truth).mean():.3f}", "no bald face among them")
    invisible = [o["hair"]["invisible"] == t["hair"]["invisible"] for o, t in zip(ours, labels)]
    row("hair: invisible", share(invisible), "nothing fitted", "17/17", "the bonnet the records missed")
    hair_colour_rows(faces, labels, models)
    stats = [region_stats(models.parser(image, models.mesh(image, face.box))) for _, image, face in faces]
    makeup_rows(ours, labels, stats)
    facial_hair_rows(ours, labels, stats)


def hair_colour_rows(faces, labels, models) -> None:
    colours, tops = [], []
    for (_, image, face), t in zip(faces, labels):
        parsed = models.parser(image, models.mesh(image, face.box))
        strands = parsed.mask("hair") & (parsed.probabilities[appearance.CLASS["hair"]] > 0.8)
        if t["hair"]["hairColor"] and strands.sum() > 50:
            colours.append(appearance.HairPalette.colour(parsed.rgb[strands]))
            tops.append(t["hair"]["hairColor"][0]["color"])
    colours, tops = np.array(colours), np.array(tops)
    palette = appearance.HairPalette()
    shipped = [max(palette.scores(*c).items(), key=lambda kv: kv[1])[0] for c in colours]
    left_out = []
    for i in range(len(tops)):
        keep = np.arange(len(tops)) != i
        prototypes = {name: (float(np.median(colours[keep & (tops == name), 0])),
                             float(np.median(colours[keep & (tops == name), 2])))
                      for name in appearance.HairPalette.PROTOTYPES if (keep & (tops == name)).any()}
        scores = appearance.HairPalette(prototypes).scores(*colours[i])
        left_out.append(max(scores.items(), key=lambda kv: kv[1])[0])
    best_constant = max(list(tops).count(name) for name in set(tops))  # a left-out majority flips on ties
    refit = {str(name): (round(float(np.median(colours[tops == name, 0])), 1),
                         round(float(np.median(colours[tops == name, 2])), 1)) for name in sorted(set(tops))}
    row("hair: colour (top)", share(np.array(shipped) == tops), share(np.array(left_out) == tops),
        f"{best_constant}/{len(tops)} (best constant)", f"prototypes refit {refit}")


def makeup_rows(ours, labels, stats) -> None:
    adult_woman = np.array([o["gender"] == "female" and o["age"] >= appearance.MAKEUP_MIN_AGE for o in ours])
    candidates = {name: np.array([s[name] for s in stats]) for name in
                  ("lip redness", "lip chroma", "lip lightness", "eyelid darkness", "eyeliner darkness")}
    for field in ("eyeMakeup", "lipMakeup"):
        y = np.array([t["makeup"][field] for t in labels])
        base = share(majority_loo(y) == y)
        shipped = np.array([o["makeup"][field] for o in ours])
        print(f"  {field}: shipped {share(shipped == y)} in sample; the majority left out {base}")
        rules = {}
        for name, x in candidates.items():
            for gate in ("", " and adult woman"):
                rules[name + gate] = (x, gate)

        def fitted(x, gate, keep):
            t, s = fit_threshold(x[keep] if not gate else np.where(adult_woman[keep], x[keep], np.nan), y[keep])
            return t, s

        def predict(x, gate, i, t, s):
            return bool(threshold_predict(x[i:i + 1], t, s)[0]) and (not gate or bool(adult_woman[i]))

        scores = {}
        for rule, (x, gate) in rules.items():
            hits = [predict(x, gate, i, *fitted(x, gate, np.arange(len(y)) != i)) == y[i] for i in range(len(y))]
            t, s = fitted(x, gate, np.ones(len(y), bool))
            ins = [predict(x, gate, i, t, s) == y[i] for i in range(len(y))]
            scores[rule] = (np.mean(hits), share(ins), share(hits), f"{'>=' if s > 0 else '<='} {t:.1f}")
        for rule, (_, ins, out, t) in sorted(scores.items(), key=lambda kv: -kv[1][0])[:4]:
            print(f"    {rule:36s} {t:>9s} in sample {ins}, left out {out}")
        # nested: the rule itself chosen on the 16 others, by its own left-out score there
        nested = []
        for i in range(len(y)):
            keep = np.arange(len(y)) != i
            idx = np.flatnonzero(keep)

            def inner(rule):
                x, gate = rules[rule]
                return np.mean([predict(x, gate, j, *fitted(x, gate, keep & (np.arange(len(y)) != j))) == y[j]
                                for j in idx])
            best = max(rules, key=inner)
            x, gate = rules[best]
            nested.append(predict(x, gate, i, *fitted(x, gate, keep)) == y[i])
        print(f"    rule chosen among these on the 16 others (nested): left out {share(nested)}")


def facial_hair_rows(ours, labels, stats) -> None:
    """Beard: shipped (chin texture for men, 0 for women), refitted left out; moustache and sideburns: their
    regions' statistics, which lose to a constant (so they are null), and the gender net alone."""
    male = np.array([o["gender"] == "male" for o in ours])
    n = len(ours)
    for key, stat in (("beard", "chin texture"), ("moustache", "moustache darkness"),
                      ("moustache", "moustache texture"), ("sideburns", "chin texture")):
        y = np.array([t["facialHair"][key] for t in labels])
        x = np.array([s[stat] for s in stats])
        gated = np.array([np.median(y[(np.arange(n) != i) & male]) if male[i] else 0.0 for i in range(n)])
        region = []
        for i in range(n):
            keep = (np.arange(n) != i) & male & ~np.isnan(x)
            a, b = fit_l1(x[keep], y[keep], sign=1)
            region.append(0.0 if not male[i] else float(l1_predict([x[i]], a, b)[0]))
        a, b = fit_l1(x[male], y[male], sign=1)
        in_sample = np.where(male, l1_predict(x, a, b), 0.0)
        shipped = f"shipped {np.abs(np.array([o['facialHair'][key] for o in ours]) - y).mean():.3f}; " \
            if ours[0]["facialHair"][key] is not None else ""
        print(f"  facialHair.{key} MAE: {shipped}men by {stat} in sample {np.abs(in_sample - y).mean():.3f} "
              f"(map ({a:.3f}, {b:.3f})), left out {np.abs(np.array(region) - y).mean():.3f}; the gender net alone "
              f"(men: the male median) {np.abs(gated - y).mean():.3f}; a constant {np.abs(median_loo(y) - y).mean():.3f}")


def blur_rows(faces, models) -> None:
    y = np.array([t["blur"]["value"] for t, _, _ in faces])
    rows = {}
    for _, image, face in faces:
        mesh = models.mesh(image, face.box)
        parsed = models.parser(image, mesh) if models.parser else None
        stats = blur_stats(image, face.box, mesh, parsed) if parsed else {}
        for k, v in stats.items():
            rows.setdefault(k, []).append(v)
    print(f"blur candidates (a map clip(a + b x), slope forced so sharper means less blur, least absolute error; "
          f"a constant left out: median {np.abs(median_loo(y) - y).mean():.3f}, mean "
          f"{np.abs(mean_loo(y) - y).mean():.3f}):")
    for name, x in rows.items():
        x = np.array(x)
        a, b = fit_l1(x, y, sign=-1)
        left_out = loo(lambda xs, ys: fit_l1(xs, ys, sign=-1), l1_predict, x, y)
        print(f"  {name:38s} r {np.corrcoef(x, y)[0, 1]:+.2f}  MAE in sample {np.abs(l1_predict(x, a, b) - y).mean():.3f}"
              f", left out {np.abs(left_out - y).mean():.3f}")


def median_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def timings(faces, threads: int, repeat: int) -> None:
    models = AttributeModels(threads=threads)
    items = [(image, face.box.astype(float)) for _, image, face in faces]
    n = len(items)
    meshes = [models.mesh(*item) for item in items]
    images = [item[0] for item in items]
    detector = RetinaFaceDetector(threads=threads)
    rows = {
        "face mesh (2 passes)": lambda: [models.mesh(*item) for item in items],
        "age + gender (batch)": lambda: models.age_gender(images, [m[list(MESH_DLIB5), :2] for m in meshes]),
        "emotion (batch)": lambda: models.emotion(images, [(*m[:, :2].min(0), *m[:, :2].max(0)) for m in meshes]),
        "exposure/noise": lambda: [quality.image_quality(im, box, m) for (im, box), m in zip(items, meshes)],
    }
    if models.parser is not None:
        parsed = [models.parser(im, m) for im, m in zip(images, meshes)]
        rows["face parser (416 px)"] = lambda: [models.parser(im, m) for im, m in zip(images, meshes)]
        rows["parsed fields (no network)"] = lambda: [
            (appearance.glasses(p), appearance.hair(p, models.palette), appearance.occlusion(p),
             appearance.makeup(p, gender="female", age=30.0), appearance.facial_hair(p, gender="male"))
            for p in parsed]
        rows["all attributes, with parsing"] = lambda: models.faces(items)
    without = AttributeModels(threads=threads, parsing=False)
    rows["all attributes, without parsing"] = lambda: without.faces(items)
    rows["baseline: RetinaFace detection per photo"] = lambda: [detector(im) for im in images]
    models.faces(items)  # warm up
    without.faces(items)
    print(f"time per face, median of {repeat}, {threads} thread(s) per model, {n} faces:")
    times = {name: median_time(fn, repeat) / n for name, fn in rows.items()}
    base = times["baseline: RetinaFace detection per photo"]
    for name, t in times.items():
        print(f"  {name:42s} {1000 * t:7.2f} ms  ({t / base:.2f}x baseline)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    faces = load_faces(RetinaFaceDetector())
    models = AttributeModels(threads=args.threads)
    agreement(faces, models)
    raw = [head_pose(models.mesh(image, face.box))["pitch"] - face_models.PITCH_OFFSET for _, image, face in faces]
    theirs = np.array([t["headPose"]["pitch"] for t, _, _ in faces])
    left_out = [raw[i] + np.mean(np.delete(theirs - np.array(raw), i)) for i in range(len(raw))]
    print(f"  pitch offset {face_models.PITCH_OFFSET}: left out MAE {np.abs(np.array(left_out) - theirs).mean():.2f}"
          f" (no offset {np.abs(np.array(raw) - theirs).mean():.2f})")
    if models.parser is not None:
        blur_rows(faces, models)
    timings(faces, args.threads, args.repeat)


if __name__ == "__main__":
    main()
