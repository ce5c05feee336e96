"""The catalogue of datasets ``adakit data`` knows: domains, classes, published sizes, licence and sources.

Counts are the published ones. A count marked ``certain=False`` is one we could not confirm from the
source: `adakit.datasets.prepare` reports a mismatch with it as a warning, not an error. Checksums are
recorded only where the source (or a well-kept loader such as torchvision) publishes them; elsewhere
they are ``None`` and preparing reports the sha256 it computed instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

RESEARCH = "research use, see source"

OFFICE31_CLASSES = (
    "back_pack bike bike_helmet bookcase bottle calculator desk_chair desk_lamp desktop_computer file_cabinet "
    "headphones keyboard laptop_computer letter_tray mobile_phone monitor mouse mug paper_notebook pen phone "
    "printer projector punchers ring_binder ruler scissors speaker stapler tape_dispenser trash_can").split()
OFFICEHOME_CLASSES = (
    "Alarm_Clock Backpack Batteries Bed Bike Bottle Bucket Calculator Calendar Candles Chair Clipboards Computer "
    "Couch Curtains Desk_Lamp Drill Eraser Exit_Sign Fan File_Cabinet Flipflops Flowers Folder Fork Glasses "
    "Hammer Helmet Kettle Keyboard Knives Lamp_Shade Laptop Marker Monitor Mop Mouse Mug Notebook Oven Pan "
    "Paper_Clip Pen Pencil Postit_Notes Printer Push_Pin Radio Refrigerator Ruler Scissors Screwdriver Shelf "
    "Sink Sneakers Soda Speaker Spoon TV Table Telephone ToothBrush Toys Trash_Can Webcam").split()
VISDA_CLASSES = ("aeroplane bicycle bus car horse knife motorcycle person plant skateboard train "
                 "truck").split()
DIGIT_CLASSES = [str(d) for d in range(10)]


@dataclass(frozen=True)
class DomainInfo:
    """One domain (or split) as prepared: its name in configs and its published image count."""

    name: str
    count: int
    certain: bool = True
    note: str = ""


@dataclass(frozen=True)
class RemoteFile:
    """A file of the public release: where it is, and its checksum when one is published."""

    name: str
    url: str | None
    sha256: str | None = None
    md5: str | None = None
    domains: tuple[str, ...] = ()  # the domains this file is needed for (empty: all)


@dataclass(frozen=True)
class DatasetInfo:
    """A dataset of the catalogue. ``layout`` is the path of one prepared domain relative to ``--out``."""

    name: str
    title: str
    kind: str  # image_folder | image_list | digits
    layout: str
    domains: tuple[DomainInfo, ...]
    num_classes: int
    classes: tuple[str, ...] | None
    licence: str
    homepage: str
    citation: str
    files: tuple[RemoteFile, ...] = field(default=())
    manual: str = ""  # set when there is no direct public download: what the user has to fetch
    default_subdir: str = ""
    notes: str = ""

    def domain(self, name: str) -> DomainInfo:
        for d in self.domains:
            if d.name == name:
                return d
        raise KeyError(name)


_CSR = "http://csr.bu.edu/ftp"
_DN = f"{_CSR}/visda/2019/multi-source"
# DomainNet (cleaned version): per-domain totals from the dataset page; the train/test split of each total
# follows the published lists, but we could not re-check those split sizes, so they only warn.
_DN_SPLITS = {
    "clipart": (33525, 14604), "infograph": (36023, 15582), "painting": (50416, 21850),
    "quickdraw": (120750, 51750), "real": (120906, 52041), "sketch": (48212, 20916),
}
DOMAINNET_TOTALS = {"clipart": 48129, "infograph": 51605, "painting": 72266, "quickdraw": 172500,
                    "real": 172947, "sketch": 69128}
_DN_ZIP = {"clipart": f"{_DN}/groundtruth/clipart.zip", "infograph": f"{_DN}/infograph.zip",
           "painting": f"{_DN}/groundtruth/painting.zip", "quickdraw": f"{_DN}/quickdraw.zip",
           "real": f"{_DN}/real.zip", "sketch": f"{_DN}/sketch.zip"}


def _domainnet() -> DatasetInfo:
    domains, files = [], []
    for d, (tr, te) in _DN_SPLITS.items():
        sure = d == "quickdraw"  # 345 classes x 350 / 150
        domains += [DomainInfo(f"{d}_train", tr, sure), DomainInfo(f"{d}_test", te, sure)]
        files.append(RemoteFile(f"{d}.zip", _DN_ZIP[d], domains=(f"{d}_train", f"{d}_test")))
        for split in ("train", "test"):
            files.append(RemoteFile(f"{d}_{split}.txt", f"{_DN}/domainnet/txt/{d}_{split}.txt",
                                    domains=(f"{d}_{split}",)))
    return DatasetInfo(
        name="domainnet", title="DomainNet (cleaned, DA train/test lists)", kind="image_list",
        layout="{domain}.txt", domains=tuple(domains), num_classes=345, classes=None,
        licence="non-commercial research and education (fair use notice), see source",
        homepage="http://ai.bu.edu/M3SDA/", citation="Peng et al., Moment Matching for Multi-Source Domain "
        "Adaptation, ICCV 2019", files=tuple(files), default_subdir="domainnet",
        notes="domains are <domain>_train / <domain>_test (the published lists); totals per domain "
              + ", ".join(f"{k} {v:,}" for k, v in DOMAINNET_TOTALS.items()))


CATALOG: dict[str, DatasetInfo] = {d.name: d for d in [
    DatasetInfo(
        name="office31", title="Office-31", kind="image_folder", layout="images/{domain}/images",
        domains=(DomainInfo("amazon", 2817), DomainInfo("dslr", 498), DomainInfo("webcam", 795)),
        num_classes=31, classes=tuple(OFFICE31_CLASSES), licence=RESEARCH,
        homepage="https://faculty.cc.gatech.edu/~judy/domainadapt/",
        citation="Saenko et al., Adapting Visual Category Models to New Domains, ECCV 2010",
        files=(RemoteFile("domain_adaptation_images.tar.gz", None),),
        manual="download domain_adaptation_images.tar.gz from the project page (a Google Drive link)",
        default_subdir="office31"),
    DatasetInfo(
        name="officehome", title="Office-Home", kind="image_folder", layout="{domain}",
        domains=(DomainInfo("Art", 2427), DomainInfo("Clipart", 4365), DomainInfo("Product", 4439),
                 DomainInfo("Real_World", 4357, note="'Real World' in the archive")),
        num_classes=65, classes=tuple(OFFICEHOME_CLASSES),
        licence="research and non-commercial use (custom terms), see source",
        homepage="https://www.hemanthdv.org/officeHomeDataset.html",
        citation="Venkateswara et al., Deep Hashing Network for Unsupervised Domain Adaptation, CVPR 2017",
        files=(RemoteFile("OfficeHomeDataset_10072016.zip", None),),
        manual="download OfficeHomeDataset_10072016.zip from the project page (a Google Drive link, "
               "after accepting the terms)", default_subdir="officehome"),
    DatasetInfo(
        name="visda", title="VisDA-2017 (classification)", kind="image_list", layout="{domain}.txt",
        domains=(DomainInfo("synthetic", 152397, note="train.tar: rendered 3D models"),
                 DomainInfo("real", 55388, note="validation.tar: COCO crops")),
        num_classes=12, classes=tuple(VISDA_CLASSES), licence=RESEARCH,
        homepage="https://ai.bu.edu/visda-2017/",
        citation="Peng et al., VisDA: The Visual Domain Adaptation Challenge, arXiv:1710.06924 (2017)",
        files=(RemoteFile("train.tar", f"{_CSR}/visda17/clf/train.tar", domains=("synthetic",)),
               RemoteFile("validation.tar", f"{_CSR}/visda17/clf/validation.tar", domains=("real",))),
        default_subdir="visda",
        notes="the test split (test.tar, 72,372 images in the challenge release) is not prepared"),
    _domainnet(),
    DatasetInfo(
        name="mnist", title="MNIST", kind="digits", layout="",
        domains=(DomainInfo("mnist-train", 60000), DomainInfo("mnist", 10000, note="the t10k test split")),
        num_classes=10, classes=tuple(DIGIT_CLASSES), licence=RESEARCH,
        homepage="http://yann.lecun.com/exdb/mnist/",
        citation="LeCun et al., Gradient-Based Learning Applied to Document Recognition, Proc. IEEE 1998",
        files=tuple(RemoteFile(f, f"https://ossci-datasets.s3.amazonaws.com/mnist/{f}", md5=m,
                               domains=(d,)) for f, m, d in [
            ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873", "mnist-train"),
            ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432", "mnist-train"),
            ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3", "mnist"),
            ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c", "mnist")]),
        default_subdir="digits", notes="files as mirrored by torchvision (same md5)"),
    DatasetInfo(
        name="usps", title="USPS", kind="digits", layout="",
        domains=(DomainInfo("usps-train", 7291), DomainInfo("usps-test", 2007)),
        num_classes=10, classes=tuple(DIGIT_CLASSES), licence=RESEARCH,
        homepage="https://www.csie.ntu.edu.tw/~cjlin/libsvmtools/datasets/multiclass.html#usps",
        citation="Hull, A Database for Handwritten Text Recognition Research, TPAMI 1994",
        files=(RemoteFile("usps.bz2", "https://www.csie.ntu.edu.tw/~cjlin/libsvmtools/datasets/multiclass/usps.bz2",
                          md5="ec16c51db3855ca6c91edd34d0e9b197", domains=("usps-train",)),
               RemoteFile("usps.t.bz2",
                          "https://www.csie.ntu.edu.tw/~cjlin/libsvmtools/datasets/multiclass/usps.t.bz2",
                          md5="8ea070ee2aca1ac39742fdd1ef5ed118", domains=("usps-test",))),
        default_subdir="digits",
        notes="LIBSVM files (labels 1..10) are converted to zip.train.gz / zip.test.gz (label then 256 values); "
              "--from also takes those two files from the Elements of Statistical Learning data page"),
    DatasetInfo(
        name="mnistm", title="MNIST-M", kind="digits", layout="",
        domains=(DomainInfo("mnistm-train", 59001), DomainInfo("mnistm", 9001, note="the test split")),
        num_classes=10, classes=tuple(DIGIT_CLASSES), licence=RESEARCH,
        homepage="http://yaroslav.ganin.net/",
        citation="Ganin & Lempitsky, Unsupervised Domain Adaptation by Backpropagation, ICML 2015",
        files=(RemoteFile("mnist_m.tar.gz", None),),
        manual="download mnist_m.tar.gz (mnist_m_train/, mnist_m_test/ and their *_labels.txt) from the "
               "DANN project page", default_subdir="digits",
        notes="32x32 colour PNGs are packed into mnistm_train.npz / mnistm_test.npz (X uint8 N,32,32,3; y)"),
]}


def get_dataset(name: str) -> DatasetInfo:
    """The catalogue entry ``name`` (case-insensitive; ``office-31``, ``visda-2017`` also work)."""
    from adakit.errors import ConfigError

    key = name.lower().replace("-", "").replace("_", "")
    key = {"visda2017": "visda"}.get(key, key)
    if key not in CATALOG:
        raise ConfigError(f"unknown dataset {name!r}; known: {', '.join(CATALOG)} (see `adakit data list`)")
    return CATALOG[key]
