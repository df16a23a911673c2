"""Packed-latent datasets in the formats large-scale trainers read, and readers back.

Every format stores each row of ``latents.npy`` as its raw bytes (C order, uint8; the shape and
code mode in the export's ``bldm_fast_export.json``) and the label as an int64, so a read-back
is byte-identical:

* ``hf`` (:mod:`.hf`): Parquet shards ``data/train-XXXXX-of-YYYYY.parquet`` (columns ``codes``
  binary, ``label`` int64), the layout Hugging Face ``datasets.load_dataset(DIR)`` reads;
  :func:`.hf.load_hf` returns a ``datasets.Dataset`` whose rows decode to packed uint8 + label.
* ``webdataset`` (:mod:`.webdataset`): tar shards ``shard-XXXXXX.tar`` of ``<key>.codes.npy``
  + ``<key>.cls`` members; :func:`.webdataset.wds_dataset` builds a ``webdataset.WebDataset``
  with the decoder :func:`.webdataset.decode_codes`, :func:`.webdataset.read_webdataset` reads
  without it.
* ``mds`` (:mod:`.mds`): MosaicML streaming's MDS (``index.json`` + ``shard.XXXXX.mds``,
  columns ``codes`` ``bytes`` and ``label`` ``int``), written and read without the library.

Writers need only numpy and the standard library, except ``hf`` (pyarrow).
"""

from .common import EXPORT_META, FORMATS, read_export_meta

__all__ = ["EXPORT_META", "FORMATS", "read_export_meta"]
