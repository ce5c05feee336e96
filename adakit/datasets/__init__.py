"""Known datasets: the catalogue (`CATALOG`), downloading and `prepare` (``adakit data``)."""

from adakit.datasets.catalog import CATALOG, DatasetInfo, DomainInfo, RemoteFile, get_dataset
from adakit.datasets.download import download, extract, verify_checksum
from adakit.datasets.prepare import PrepareResult, prepare

__all__ = ["CATALOG", "DatasetInfo", "DomainInfo", "RemoteFile", "PrepareResult", "download", "extract",
           "get_dataset", "prepare", "verify_checksum"]
