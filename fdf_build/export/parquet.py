"""Parquet shards for the Hugging Face ``datasets`` ecosystem: a row per face, the image as ``datasets``' Image.

The Arrow :func:`schema` is the contract (docs/formats.md lists it): the PNG in ``image`` (``{bytes, path}``, which
``datasets`` decodes to a PIL image: the schema's ``huggingface`` metadata says so), a typed column for every
metainfo field and attribute, and ``json``, the sample's whole record as WebDataset's ``.json`` holds it (so no
field is lost, not even one a later tool adds). Row groups hold :data:`ROW_GROUP_SIZE` faces (about 12 MB):
what ``datasets`` writes for image datasets, small enough to stream a shard a row group at a time.
Compression, dictionaries and statistics are off for the image bytes (PNG is compressed already), zstd elsewhere.
"""

from __future__ import annotations

import json
from typing import BinaryIO, Iterable, Iterator

from ..dataset.metainfo import FaceRecord
from .samples import Sample, record_json

EXTENSION = "parquet"
#: what :func:`stored_size` leaves for the footer (schema and row group metadata)
TRAILER = 64 << 10
ROW_GROUP_SIZE = 100


def schema():
    """The Arrow schema of every Parquet export (docs/formats.md lists it)."""
    import pyarrow as pa

    text, f64, i64, boolean = pa.string(), pa.float64(), pa.int64(), pa.bool_()
    points = pa.list_(pa.list_(f64))  # [[x, y] or null, ...]

    def struct(names, kind):
        return pa.struct([(n, kind) for n in names])

    level = lambda name: pa.struct([(name, text), ("value", f64)])  # noqa: E731
    face_attributes = pa.struct([
        ("age", f64), ("gender", text), ("smile", f64), ("glasses", text),
        ("headPose", struct(("pitch", "roll", "yaw"), f64)),
        ("emotion", struct(("anger", "contempt", "disgust", "fear", "happiness", "neutral", "sadness", "surprise"),
                           f64)),
        ("facialHair", struct(("moustache", "beard", "sideburns"), f64)),
        ("makeup", struct(("eyeMakeup", "lipMakeup"), boolean)),
        ("hair", pa.struct([("bald", f64), ("invisible", boolean),
                            ("hairColor", pa.list_(pa.struct([("color", text), ("confidence", f64)])))])),
        ("occlusion", struct(("foreheadOccluded", "eyeOccluded", "mouthOccluded"), boolean)),
        ("accessories", pa.list_(pa.struct([("type", text), ("confidence", f64)]))),
        ("blur", level("blurLevel")), ("exposure", level("exposureLevel")), ("noise", level("noiseLevel")),
    ])
    metainfo = [
        ("author", text), ("bounding_box", pa.list_(f64)), ("category", text), ("date_crawled", text),
        ("date_taken", text), ("date_uploaded", text), ("landmark", points), ("license", text),
        ("license_url", text), ("original_bounding_box", pa.list_(f64)), ("original_landmark", points),
        ("photo_title", text), ("photo_url", text), ("yfcc100m_line_idx", i64), ("user_nsid", text),
        ("photo_id", i64), ("download_url", text), ("face_index", i64), ("face_score", f64), ("detector", text),
        ("keypoint_model", text), ("keypoint_scores", pa.list_(f64)), ("keypoints_missing", pa.list_(text)),
        ("landmarks68", points), ("landmark68", points), ("phash", text), ("photo_phash", text),
    ]
    fields = [
        ("key", text), ("split", text), ("index", i64),
        ("image", pa.struct([("bytes", pa.binary()), ("path", text)])),
        ("landmarks", pa.list_(pa.list_(pa.float32()))), ("box", pa.list_(i64)),
        *metainfo,
        ("attributes", pa.struct([("faceId", text), ("faceRectangle", struct(("top", "left", "width", "height"), i64)),
                                  ("faceAttributes", face_attributes)])),
        ("json", text),
    ]
    # datasets reads the image column as its Image feature (a PIL image); every other column's type is inferred
    features = {"info": {"features": {"image": {"_type": "Image"}}}}
    return pa.schema(fields, metadata={b"huggingface": json.dumps(features).encode()})


def _points(points):
    return None if points is None else [None if p is None else list(p) for p in points]


def _list(values):
    return None if values is None else list(values)


def row(sample: Sample) -> dict:
    """A sample as one row of :func:`schema` (missing fields null)."""
    r = FaceRecord.from_json(sample.number, sample.record, split=sample.split)
    return {
        "key": sample.key, "split": sample.split, "index": sample.number,
        "image": {"bytes": sample.png, "path": f"{sample.key}.png"},
        "landmarks": sample.landmarks.tolist(), "box": sample.record["box"],
        "author": r.author, "bounding_box": _list(r.bounding_box), "category": r.category,
        "date_crawled": r.date_crawled, "date_taken": r.date_taken, "date_uploaded": r.date_uploaded,
        "landmark": _points(r.landmark), "license": r.license, "license_url": r.license_url,
        "original_bounding_box": _list(r.original_bounding_box), "original_landmark": _points(r.original_landmark),
        "photo_title": r.photo_title, "photo_url": r.photo_url, "yfcc100m_line_idx": r.yfcc100m_line_idx,
        "user_nsid": r.user_nsid, "photo_id": r.photo_id, "download_url": r.download_url or None,
        "face_index": r.face_index, "face_score": r.face_score, "detector": r.detector or None,
        "keypoint_model": r.keypoint_model or None, "keypoint_scores": _list(r.keypoint_scores),
        "keypoints_missing": _list(r.keypoints_missing), "landmarks68": _points(r.landmarks68),
        "landmark68": _points(r.landmark68), "phash": r.phash or None, "photo_phash": r.photo_phash or None,
        "attributes": sample.record.get("attributes"),
        "json": record_json(sample.record).decode("utf-8"),
    }


def stored_size(sizes: list[int]) -> int:
    """About what a sample takes in a shard: its image as it is, its metadata compressed (a fraction of it)."""
    return sum(sizes)


def _batches(samples: Iterable[Sample], size: int) -> Iterator[list[dict]]:
    batch = []
    for sample in samples:
        batch.append(row(sample))
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def write_shard(samples: Iterable[Sample], stream: BinaryIO, *, row_group_size: int = ROW_GROUP_SIZE) -> int:
    """Write a Parquet file of ``samples`` to ``stream``, a row group per ``row_group_size`` faces; returns the
    sample count."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrow_schema = schema()
    image = ("image.bytes", "image.path")
    others = [c for c in _leaf_columns(arrow_schema) if c not in image]
    count = 0
    with pq.ParquetWriter(stream, arrow_schema, compression={c: "zstd" for c in others} | {c: "none" for c in image},
                          use_dictionary=others, write_statistics=others) as writer:
        for batch in _batches(samples, row_group_size):
            writer.write_table(pa.Table.from_pylist(batch, schema=arrow_schema), row_group_size=row_group_size)
            count += len(batch)
    return count


def _leaf_columns(schema) -> list[str]:
    import pyarrow as pa

    def leaves(prefix: str, kind) -> Iterator[str]:
        if pa.types.is_struct(kind):
            for i in range(kind.num_fields):
                yield from leaves(f"{prefix}.{kind.field(i).name}", kind.field(i).type)
        elif pa.types.is_list(kind):
            yield from leaves(f"{prefix}.list.element", kind.value_type)
        else:
            yield prefix

    return [leaf for field in schema for leaf in leaves(field.name, field.type)]
