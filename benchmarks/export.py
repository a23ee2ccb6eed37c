"""Export and read throughput of each export format against the FDF layout, in one run.

Makes a dataset of --faces faces (default 10,000, 256 px crops) out of the demo's faces
(`fdf_build.dataset.synthetic.replicate_dataset`: each its own photo, owner and license), then measures:
  * export, faces/s: `run_export` of the whole dataset to a local folder, per format, against copying the
    dataset's files (`shutil.copytree`: the least any export costs, reading and writing the same bytes);
  * read, faces/s: one epoch of the train split through torch's DataLoader (--workers worker processes,
    batches of --batch-size, every image decoded to an array), each format with its users' reader:
    FDF256Dataset over the FDF layout (the baseline), webdataset.WebDataset over the tar shards,
    datasets' Parquet loader (its one-off conversion to an Arrow cache timed apart), and the StyleGAN zip
    read as StyleGAN3's ImageFolderDataset reads it.
One format at a time (its export deleted before the next, so the disk holds one), each measurement repeated
--repeats times interleaved with its baseline's, medians printed with their ratio. The files are read from the
page cache after the first pass: the figures compare formats, not disks.

    python benchmarks/export.py [--faces 10000] [--workers 2] [--batch-size 64] [--repeats 3]

Needs the export, test (webdataset, datasets) and reference (torch) extras.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

from fdf_build.dataset.loader import FDF256Dataset
from fdf_build.dataset.synthetic import replicate_dataset
from fdf_build.demo import run_demo
from fdf_build.export import ExportConfig, run_export

FORMATS = ("webdataset", "parquet", "stylegan")


class StyleGANZip:
    """StyleGAN3's ImageFolderDataset on a zip, as it reads one: image files sorted by name, PIL-decoded, CHW;
    the zip opened in each worker."""

    def __init__(self, path: Path):
        import PIL.Image

        self.path, self._zip = path, None
        PIL.Image.init()
        with zipfile.ZipFile(path) as z:
            self.names = sorted(n for n in z.namelist() if os.path.splitext(n)[1].lower() in PIL.Image.EXTENSION)

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> np.ndarray:
        import PIL.Image

        self._zip = self._zip or zipfile.ZipFile(self.path)
        with self._zip.open(self.names[index]) as f:
            return np.array(PIL.Image.open(f)).transpose(2, 0, 1)

    def __getstate__(self):
        return dict(self.__dict__, _zip=None)


def stack(images) -> "torch.Tensor":  # noqa: F821
    import torch

    return torch.from_numpy(np.stack(images))


def fdf_images(batch):
    return stack([s["image"] for s in batch])


def wds_images(batch):
    return stack([s["png"] for s in batch])


def hf_images(batch):
    return stack([np.asarray(s["image"]) for s in batch])


def epoch(dataset, collate, args) -> int:
    from torch.utils.data import DataLoader

    loader = DataLoader(dataset, batch_size=args.batch_size, num_workers=args.workers, collate_fn=collate)
    return sum(len(batch) for batch in loader)


def reader(fmt: str, out: Path, cache: Path):
    """``fmt``'s export read as its users read it: (dataset, collate, seconds spent preparing it)."""
    start = time.perf_counter()
    if fmt == "webdataset":
        import webdataset as wds

        shards = sorted(str(p) for p in (out / "train").glob("*.tar"))
        return wds.WebDataset(shards, shardshuffle=False, empty_check=False).decode("rgb8"), wds_images, 0.0
    if fmt == "parquet":
        import datasets

        hf = datasets.load_dataset("parquet", data_files=str(out / "train" / "*.parquet"), split="train",
                                   cache_dir=str(cache)).select_columns(["image"])
        return hf, hf_images, time.perf_counter() - start
    return StyleGANZip(out / "train.zip"), stack, 0.0


def rate(count: int, seconds: list[float]) -> float:
    return count / statistics.median(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--shard-size", type=int, default=1_000)
    args = parser.parse_args()
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        run_demo(tmp / "demo", crawl_date="2026-01-01")
        counts = replicate_dataset(tmp / "demo", tmp / "dataset", args.faces, attributes=False)
        faces, train = sum(counts.values()), counts["train"]
        baseline = FDF256Dataset(tmp / "dataset", "train")
        print(f"{faces:,} faces (train {train:,}, val {counts['val']:,}) at 256 px, {os.cpu_count()} CPUs; "
              f"medians of {args.repeats}, each format's runs interleaved with its baseline's")
        results = {}
        # one format at a time, deleted after: the disk holds the dataset and one export, never all of them
        for fmt in FORMATS:
            out = tmp / fmt
            copies, exports = [], []
            for _ in range(args.repeats):
                start = time.perf_counter()
                shutil.copytree(tmp / "dataset", tmp / "copy")
                copies.append(time.perf_counter() - start)
                shutil.rmtree(tmp / "copy")
                config = ExportConfig(dataset=tmp / "dataset", out=str(out), format=fmt, shard_size=args.shard_size)
                start = time.perf_counter()
                run_export(config, restart=True)
                exports.append(time.perf_counter() - start)
            size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
            dataset, collate, prepared = reader(fmt, out, tmp / "hf")
            fdf_reads, reads = [], []
            for _ in range(args.repeats):
                for times, source, collate_fn in ((fdf_reads, baseline, fdf_images), (reads, dataset, collate)):
                    start = time.perf_counter()
                    assert epoch(source, collate_fn, args) == train
                    times.append(time.perf_counter() - start)
            results[fmt] = {"export": rate(faces, exports), "copy": rate(faces, copies), "read": rate(train, reads),
                            "fdf_read": rate(train, fdf_reads), "mb": size / 1e6, "prepared_s": prepared}
            r = results[fmt]
            print(f"{fmt:<10} export {r['export']:7.0f} faces/s ({r['export'] / r['copy']:.2f}x a copy of the FDF "
                  f"layout: {r['copy']:.0f} faces/s), {r['mb']:,.0f} MB; read {r['read']:6.0f} faces/s "
                  f"({r['read'] / r['fdf_read']:.2f}x the FDF layout: {r['fdf_read']:.0f} faces/s)"
                  + (f"; datasets' one-off Arrow conversion {prepared:.1f} s" if prepared else ""), flush=True)
            shutil.rmtree(out)
            shutil.rmtree(tmp / "hf", ignore_errors=True)
        print(f"(read: train split, DataLoader with {args.workers} workers, batches of {args.batch_size})")
        print(json.dumps(results))


if __name__ == "__main__":
    main()
