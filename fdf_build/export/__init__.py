"""Exports of a dataset in the FDF layout for other training tools: WebDataset tar shards, Parquet for the
Hugging Face ``datasets`` ecosystem, StyleGAN's dataset zip (docs/formats.md has their schemas).

One module per format (:mod:`.webdataset`, :mod:`.parquet`, :mod:`.stylegan`: a ``write_shard(samples,
stream)`` each), :mod:`.samples` reads the faces, :mod:`.run` plans, resumes and writes through
:mod:`fdf_build.storage`, so ``--out`` is a directory or any fsspec URL. Every sample carries its face's
license and author.
"""

from .run import FORMATS, ExportConfig, ExportError, ExportSummary, run_export

__all__ = ["FORMATS", "ExportConfig", "ExportError", "ExportSummary", "run_export"]
