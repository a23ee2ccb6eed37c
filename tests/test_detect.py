import json

import numpy as np
import pytest
from click.testing import CliRunner

from fdf_build.cli.main import cli
from fdf_build.geometry import box_iou
from fdf_build.models.pose import nose_and_eyes_inside, person_region

from .conftest import DEMO_DATA, load_rgb


def large(box, min_face=64) -> bool:
    return box[2] - box[0] >= min_face and box[3] - box[1] >= min_face


def test_detector_recall_and_precision_on_annotated_real_photos(annotations, shared_faces, detector):
    """Faces >= 64 px: every annotated one found (IoU >= 0.4), and no large detection without an annotation."""
    truth_total = found = detections = false = 0
    for entry in annotations:
        faces = detector(load_rgb(shared_faces / entry["file"]))
        boxes = [f.box for f in faces]
        truth = [f["box"] for f in entry["faces"] if not f.get("ignore") and large(f["box"])]
        truth_total += len(truth)
        found += sum(any(box_iou(t, b) >= 0.4 for b in boxes) for t in truth)
        for b in boxes:
            if large(b):
                detections += 1
                # any annotated face, small or ignored, counts as a true match for a large detection
                false += not any(box_iou(f["box"], b) >= 0.4 for f in entry["faces"])
    recall, precision = found / truth_total, 1 - false / detections
    print(f"faces >= 64 px: recall {recall:.3f} ({found}/{truth_total}), precision {precision:.3f}")
    assert truth_total >= 20
    assert recall >= 0.95 and precision >= 0.95


def test_no_face_in_a_cat(shared_faces, detector):
    assert detector(load_rgb(shared_faces / "skimage_chelsea_noface.png")) == []


def test_detector_nose_and_eyes_follow_the_persons_left(detector):
    image = load_rgb(DEMO_DATA / "codait_luciano.jpg")
    (face,) = detector(image)
    nose, left_eye, right_eye = face.keypoints[:3]
    # a frontal face: the person's left eye is on the image's right
    assert left_eye[0] > nose[0] > right_eye[0]
    assert np.isnan(face.keypoints[3:]).all()  # ears and shoulders: not this model's to give
    flipped = detector(np.ascontiguousarray(image[:, ::-1]))[0]
    width = image.shape[1]
    np.testing.assert_allclose(flipped.keypoints[1, 0], width - right_eye[0], atol=4)


def test_pose_gives_all_seven_on_a_frontal_portrait(annotations, detector, pose):
    image = load_rgb(DEMO_DATA / "codait_luciano.jpg")  # the annotated codait_luciano.png, as a JPEG, same size
    (face,) = pose(image, detector(image))
    kp = face.keypoints
    assert face.keypoint_model.startswith("mediapipe")
    assert not np.isnan(kp[:5]).any()
    (annotation,) = [a for a in annotations if a["file"] == "codait_luciano.png"]
    assert own_keypoints([face], annotation, "mediapipe") == {0}
    # person's left ear and shoulder on the image's right, shoulders below the chin
    assert kp[3, 0] > kp[0, 0] > kp[4, 0]
    assert kp[1, 0] > kp[2, 0]
    shoulders = kp[5:][~np.isnan(kp[5:, 0])]
    assert len(shoulders) >= 1 and (shoulders[:, 1] > face.box[3]).all()


def annotated_faces_of(faces, annotation) -> list[int]:
    """For each detected face, the index of the annotated face its box matches (IoU >= 0.5), or -1."""
    out = []
    for f in faces:
        ious = [box_iou(a["box"], f.box) for a in annotation["faces"]]
        out.append(int(np.argmax(ious)) if max(ious, default=0) >= 0.5 else -1)
    return out


def head_centre(points) -> np.ndarray:
    """Mean of nose and both eyes: the same point whichever order a model or an annotator lists the eyes in."""
    return np.mean(points, axis=0)


def own_keypoints(faces, annotation, model_prefix) -> set[int]:
    """Checks that each face the model matched has the nose and eyes of the person its box is annotated on: their
    centre is nearer that face's annotated head (its annotated nose and eyes, else its box's centre) than any other
    annotated face's, and within 0.75 of its annotated width (BlazePose puts a profile's eyes up to 0.68 widths off,
    on the same head). Returns the annotated faces the model matched."""
    truth = {i: head_centre(np.array(a["landmarks5"])[:3]) if a.get("landmarks5") else
             head_centre(np.reshape(a["box"], (2, 2))) for i, a in enumerate(annotation["faces"])}
    matched = set()
    for f, j in zip(faces, annotated_faces_of(faces, annotation)):
        if not f.keypoint_model.startswith(model_prefix):
            assert np.isnan(f.keypoints[3:]).all()  # no pose model's points: the detector's nose and eyes only
            continue
        assert j >= 0, f"a face no annotation boxes got {f.keypoint_model}'s keypoints"
        centre = head_centre(f.keypoints[:3])
        nearest = min(truth, key=lambda i: np.linalg.norm(centre - truth[i]))
        assert nearest == j, f"annotated face {j} got the keypoints of annotated face {nearest}"
        box = annotation["faces"][j]["box"]
        assert np.linalg.norm(centre - truth[j]) <= 0.75 * (box[2] - box[0])
        matched.add(j)
    return matched


@pytest.fixture(scope="module")
def movenet():
    from fdf_build.models.pose import MoveNetMultiPose

    return MoveNetMultiPose()


#: (model, crowd photo, its annotated faces >= 64 px, those the model gives keypoints to: written down once)
CROWDS = [
    # five players cheek by jowl; BlazePose gives the three facing the camera theirs, the two half-hidden ones none
    ("pose", "pexels_baseball_team.jpg", [0, 1, 2, 3, 4], {0, 1, 2}),
    # MoveNet: all but the profile (index 2), half-hidden ones included
    ("movenet", "pexels_baseball_team.jpg", [0, 1, 2, 3, 4], {0, 1, 3, 4}),
    ("pose", "pexels_cyclists.jpg", [0, 1, 2, 3], {0, 1, 3}),
    ("movenet", "pexels_cyclists.jpg", [0, 1, 2, 3], {0, 1, 2, 3}),
]


@pytest.mark.parametrize("model, photo, faces, expected", CROWDS)
def test_pose_on_a_crowd_never_assigns_a_neighbours_keypoints(request, annotations, shared_faces, detector, model,
                                                             photo, faces, expected):
    (annotation,) = [a for a in annotations if a["file"] == photo]
    image = load_rgb(shared_faces / photo)
    model = request.getfixturevalue(model)
    found = model(image, [f for f in detector(image) if large(f.box)])
    assert sorted(annotated_faces_of(found, annotation)) == faces
    assert own_keypoints(found, annotation, model.name.split("-")[0]) == expected


def test_pose_keeps_every_point_with_its_score(detector, pose):
    image = load_rgb(DEMO_DATA / "codait_luciano.jpg")
    (face,) = pose(image, detector(image))
    assert np.isfinite(face.keypoints).all()  # no visibility cut: the model's every point, with its score
    assert face.keypoint_scores.shape == (7,) and ((face.keypoint_scores >= 0) & (face.keypoint_scores <= 1)).all()
    assert face.keypoint_scores[:3].min() > 0.5  # nose and eyes of a frontal portrait: seen


def test_movenet_from_the_wheel_matches_a_portrait(detector, movenet):
    from fdf_build.models.pose import MoveNetMultiPose, movenet_weights

    assert movenet_weights()[4:8] == b"TFL3"  # a TFLite flatbuffer, checked against its bundle's sha256
    image = load_rgb(DEMO_DATA / "codait_luciano.jpg")
    (face,) = movenet(image, detector(image))
    assert face.keypoint_model == MoveNetMultiPose.name and np.isfinite(face.keypoints).all()
    kp = face.keypoints
    assert kp[1, 0] > kp[0, 0] > kp[2, 0]  # the person's left eye on the image's right, as COCO orders them
    assert kp[5:, 1].min() > face.box[3]  # shoulders below the chin


def test_cascade_asks_the_next_model_only_for_misses(detector):
    from fdf_build.models.pose import PersonModel, PoseCascade

    class Never(PersonModel):
        name = "never"

        def person(self, image, box):
            return None

    class Always(PersonModel):
        name = "always"
        asked = 0

        def person(self, image, box):
            Always.asked += 1
            points = np.tile((box[:2] + box[2:]) / 2, (7, 1)).astype(np.float32)
            return points, np.ones(7, np.float32)

    image = load_rgb(DEMO_DATA / "whitehouse_obama_biden.jpg")
    faces = detector(image)
    assert [f.keypoint_model for f in PoseCascade([Never(), Always()])(image, faces)] == ["always"] * len(faces)
    assert [f.keypoint_model for f in PoseCascade([Always(), Never()])(image, faces)] == ["always"] * len(faces)
    assert Always.asked == 2 * len(faces)


def test_matching_rule():
    box = np.array([10, 10, 50, 50])
    kp = np.full((7, 2), np.nan)
    kp[:3] = [[30, 30], [40, 20], [20, 20]]
    assert nose_and_eyes_inside(kp, box)
    for outside in ([55, 20], [5, 20], [30, 5], [30, 55]):  # an eye right of, left of, above, below the box
        kp[1] = outside
        assert not nose_and_eyes_inside(kp, box)
    kp[1], kp[2] = [50, 10], [10, 50]  # on the box's corners: inside
    assert nose_and_eyes_inside(kp, box)
    kp[1] = [np.nan, np.nan]
    assert not nose_and_eyes_inside(kp, box)


def test_person_region_is_clipped():
    assert person_region(np.array([10, 10, 50, 50]), (100, 200)) == (0, 0, 110, 100)


def test_detect_cli_json(tmp_path):
    bad = tmp_path / "not_an_image.jpg"
    bad.write_text("<html>")
    images = [DEMO_DATA / "whitehouse_obama_biden.jpg", DEMO_DATA / "skimage_chelsea_noface.jpg"]
    result = CliRunner().invoke(cli, ["detect", "--json", *map(str, images)])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["image"] for r in lines] == [str(p) for p in images]
    assert len(lines[0]["faces"]) == 2 and lines[1]["faces"] == []
    face = lines[0]["faces"][0]
    assert len(face["box"]) == 4 and len(face["keypoints"]) == 7 and 0 < face["score"] <= 1
    assert all(p is None or len(p) == 2 for p in face["keypoints"])
    result = CliRunner().invoke(cli, ["detect", str(bad)])
    assert result.exit_code == 2 and "1 of 1 image(s) could not be decoded" in result.output


def test_tflite_chatter_goes_to_the_debug_log_not_the_terminal():
    import subprocess
    import sys

    # TFLite announces its delegate once per process, on the first interpreter: a fresh process shows it
    script = ("import logging; logging.basicConfig(level=logging.DEBUG, format='%(name)s %(message)s')\n"
              "from fdf_build.models.pose import make_keypoint_model\n"
              "make_keypoint_model('mediapipe+movenet', graphs=2)\n")
    quiet = subprocess.run([sys.executable, "-c", script.replace("DEBUG", "WARNING")], capture_output=True, text=True)
    assert quiet.returncode == 0 and quiet.stderr == "" and quiet.stdout == ""
    verbose = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert verbose.returncode == 0
    assert any(line.startswith("fdf_build.models.weights tflite: ") for line in verbose.stderr.splitlines())
