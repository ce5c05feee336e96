"""Backbones: torchvision and timm models, ImageNet weights offline, local weight files. No network."""

import re
from types import SimpleNamespace
from urllib.error import URLError

import pytest
import torch

from adakit.config import build_config
from adakit.errors import ConfigError, DataError
from adakit.models import backbones, build_model
from adakit.models.backbones import build_backbone, imagenet_checkpoint


def _cfg(backbone: str, weights: str | None = None):
    return SimpleNamespace(backbone=backbone, weights=weights, hidden_dim=8, dropout=0.0)


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """An empty torch hub cache and a download that fails as without network."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    calls = []

    def no_network(url, *args, **kwargs):
        calls.append(url)
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    return calls


def test_config_accepts_timm_names_and_rejects_unknown_backbones():
    cfg = build_config({"model": {"backbone": "timm/resnet18", "weights": "imagenet"}})
    assert cfg.model.backbone == "timm/resnet18"
    with pytest.raises(ConfigError, match=r"model\.backbone.*unknown backbone 'resnet7'.*timm/<name>"):
        build_config({"model": {"backbone": "resnet7"}})


def test_imagenet_weights_offline_say_which_file_goes_where(offline, tmp_path):
    with pytest.raises(ConfigError) as err:
        build_backbone(_cfg("resnet18", "imagenet"), (3, 32, 32))
    msg = str(err.value)
    expected = tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in msg and str(expected) in msg
    assert "URLError" in msg and "model.weights: /path/to/file.pth" in msg
    assert offline == ["https://download.pytorch.org/models/resnet18-f37072fd.pth"]
    assert imagenet_checkpoint("mobilenet_v2")[1].name == "mobilenet_v2-7ebf99e0.pth"


def test_imagenet_weights_come_from_the_hub_cache(monkeypatch, tmp_path):
    """A checkpoint placed where the offline error says is used (torch hub loads it without a download)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    ref = build_backbone(_cfg("resnet18"), (3, 32, 32))
    state = {**ref.state_dict(), "fc.weight": torch.zeros(1000, 512), "fc.bias": torch.zeros(1000)}
    _, path = imagenet_checkpoint("resnet18")
    seen = []

    def from_cache(url, *args, **kwargs):  # the real function would only read `path`; no hash check of a cached file
        seen.append(url)
        return torch.load(path, weights_only=True)

    path.parent.mkdir(parents=True)
    torch.save(state, path)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", from_cache)
    monkeypatch.setattr(backbones, "check_cached_checkpoint", lambda *args: None)  # (not the real file's hash)
    net = build_backbone(_cfg("resnet18", "imagenet"), (3, 32, 32))
    assert seen and torch.equal(net.conv1.weight, ref.conv1.weight)
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 512)


def test_corrupt_cached_checkpoint_is_named(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    _, path = imagenet_checkpoint("resnet18")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match=f"{path} is corrupt"):
        build_backbone(_cfg("resnet18", "imagenet"), (3, 32, 32))


@pytest.mark.parametrize("name, dim", [("resnet18", 512), ("mobilenet_v2", 1280)])
def test_torchvision_backbones_forward_shape(name, dim):
    net = build_backbone(_cfg(name), (3, 32, 32))
    assert net.out_dim == dim
    with torch.no_grad():
        assert net.eval()(torch.zeros(2, 3, 32, 32)).shape == (2, dim)


def test_vit_needs_224_pixels():
    with pytest.raises(ConfigError, match="vit_b_16 takes 224x224 images"):
        build_backbone(_cfg("vit_b_16"), (3, 32, 32))


def test_imagenet_weights_only_for_pretrainable_backbones():
    with pytest.raises(ConfigError, match="'lenet' has no ImageNet weights"):
        build_backbone(_cfg("lenet", "imagenet"), (1, 28, 28))


def test_a_cached_checkpoint_with_another_hash_than_its_name_is_refused(monkeypatch, tmp_path):
    """torch hub checks the sha256 only when it downloads: a file placed in the cache by hand under torchvision's name
    (other weights, a fine-tuned copy) was loaded silently as the ImageNet weights, and feature files made with it
    recorded 'weights imagenet' as those made with the real ones, so a source and a target made with the two passed
    as one feature space."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    url, path = imagenet_checkpoint("resnet18")
    path.parent.mkdir(parents=True)
    state = {**build_backbone(_cfg("resnet18"), (3, 32, 32)).state_dict(), "fc.weight": torch.zeros(1000, 512),
             "fc.bias": torch.zeros(1000)}
    torch.save(state, path)  # loadable, the right architecture, but not the file torchvision published
    with pytest.raises(ConfigError, match=rf"{re.escape(str(path))} is corrupt or not torchvision's file \(its "
                                          rf"sha256 starts [0-9a-f]{{8}}, its name says f37072fd\)\. Download "
                                          rf"{re.escape(url)} again"):
        build_backbone(_cfg("resnet18", "imagenet"), (3, 32, 32))


def test_local_weights_file_loads_and_misfit_is_named(tmp_path):
    ref = build_backbone(_cfg("resnet18"), (3, 32, 32))
    path = tmp_path / "w.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in ref.state_dict().items()}}, path)
    net = build_backbone(_cfg("resnet18", str(path)), (3, 32, 32))
    assert torch.equal(net.layer1[0].conv1.weight, ref.layer1[0].conv1.weight)
    with pytest.raises(DataError, match="does not fit the backbone"):
        build_backbone(_cfg("mobilenet_v2", str(path)), (3, 32, 32))
    with pytest.raises(DataError, match="file not found"):
        build_backbone(_cfg("resnet18", str(tmp_path / "none.pth")), (3, 32, 32))
    with pytest.raises(DataError, match=r"'none' is read as a file name: for random initial weights leave "
                                        r"model\.weights out"):
        build_backbone(_cfg("resnet18", "none"), (3, 32, 32))  # (--weights none of adakit features)
    with pytest.raises(DataError, match=r"is a folder; give the state-dict file in it \(it holds w\.pth\)"):
        build_backbone(_cfg("resnet18", str(tmp_path)), (3, 32, 32))  # (it said "file not found")


def test_a_pickled_model_or_a_broken_file_as_weights_says_what_to_do(tmp_path):
    """A whole model saved with torch.save(model) got torch's weights_only message (advising weights_only=False, which
    runs any code in the file); a file that is not a checkpoint said only 'KeyError (101)'; a truncated one gave
    miniz's internals. Each now says what the file is and what to save instead."""
    torch.save(torch.nn.Linear(2, 2), tmp_path / "model.pth")
    with pytest.raises(DataError, match=r"model\.weights .*model\.pth: holds a pickled Python object "
                                        r"\(torch\.nn\.modules\.linear\.Linear\), not only tensors: a whole model .* "
                                        r"torch\.save\(model\.state_dict\(\), 'model\.pth'\)") as err:
        build_backbone(_cfg("resnet18", str(tmp_path / "model.pth")), (3, 32, 32))
    assert "weights_only" not in str(err.value)
    (tmp_path / "text.pth").write_text("hello")
    torch.save({"w": torch.zeros(100)}, tmp_path / "full.pth")
    (tmp_path / "half.pth").write_bytes((tmp_path / "full.pth").read_bytes()[:300])
    for name in ("text.pth", "half.pth"):
        with pytest.raises(DataError, match=rf"model\.weights .*{name}: cannot read as a torch state dict \(\w+: .*\): "
                                            r"the file is truncated or corrupt, or torch\.save did not write it"):
            build_backbone(_cfg("resnet18", str(tmp_path / name)), (3, 32, 32))


def test_the_state_dict_of_an_adakit_model_gives_its_backbone(tmp_path):
    """torch.save(model.state_dict()) of an adakit model (a loaded run: backbone, bottleneck, head) as model.weights
    was refused as 'weights for another architecture' (every key 'unexpected' under backbone.); its backbone's
    weights are loaded. Keys of another architecture under backbone. are still refused."""
    cfg = build_config({"model": {"backbone": "resnet18", "bottleneck_dim": 16}})
    model = build_model(cfg.model, (3, 32, 32), 4)
    torch.save(model.state_dict(), tmp_path / "run_model.pth")
    net = build_backbone(_cfg("resnet18", str(tmp_path / "run_model.pth")), (3, 32, 32))
    assert torch.equal(net.layer4[1].conv2.weight, model.backbone.layer4[1].conv2.weight)
    with pytest.raises(DataError, match=r"another architecture than mobilenet_v2"):
        build_backbone(_cfg("mobilenet_v2", str(tmp_path / "run_model.pth")), (3, 32, 32))


def test_weights_of_feature_backbones_are_loaded_or_refused(tmp_path):
    """model.weights was silently ignored for mlp and identity while the backbone learning-rate multiplier (0.1)
    applied as for a pretrained backbone: an MLP's state dict is now loaded, identity's refused."""
    ref = build_backbone(_cfg("mlp"), (6,))
    path = tmp_path / "mlp.pth"
    torch.save(ref.state_dict(), path)
    torch.manual_seed(1)
    net = build_backbone(_cfg("mlp", str(path)), (6,))
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), ref.state_dict().values()))
    with pytest.raises(DataError, match="file not found"):
        build_backbone(_cfg("mlp", str(path) + ".missing"), (6,))
    with pytest.raises(ConfigError, match="the identity backbone has no weights; remove model.weights"):
        build_backbone(_cfg("identity", str(path)), (6,))


def test_weights_of_another_variant_name_the_file_the_backbone_and_the_first_mismatched_key(tmp_path):
    """resnet50 weights into resnet18 shared key names with other shapes: a bare RuntimeError (size mismatch)."""
    path = tmp_path / "r50.pth"
    torch.save(build_backbone(_cfg("resnet50"), (3, 32, 32)).state_dict(), path)
    with pytest.raises(DataError, match=r"model\.weights .*r50\.pth: these weights are for another architecture "
                                        r"than resnet18: layer1\.0\.conv1\.weight has shape \(64, 64, 1, 1\) in the "
                                        r"file but \(64, 64, 3, 3\) in resnet18; give weights saved from resnet18"):
        build_backbone(_cfg("resnet18", str(path)), (3, 32, 32))


def test_mlp_weights_of_another_width_name_the_hidden_dim_to_set(tmp_path):
    """An mlp state dict saved at another model.hidden_dim said to give weights saved from mlp or change the backbone;
    the fix is the width."""
    path = tmp_path / "mlp.pt"
    torch.save(build_backbone(SimpleNamespace(**{**vars(_cfg("mlp")), "hidden_dim": 32}), (6,)).state_dict(), path)
    with pytest.raises(DataError, match=r"net\.0\.weight has shape \(32, 6\) in the file but \(8, 6\) in mlp; set "
                                        r"model\.hidden_dim: 32, the width"):
        build_backbone(_cfg("mlp", str(path)), (6,))
    with pytest.raises(DataError, match=r"\(32, 6\) in the file but \(8, 7\) in mlp; give weights saved from mlp"):
        build_backbone(_cfg("mlp", str(path)), (7,))  # (other input features: not a width to set)


timm = pytest.importorskip("timm", reason="timm not installed (pip install 'timm>=0.9')")


def test_timm_backbone_builds_with_pooled_features():
    net = build_backbone(_cfg("timm/resnet18"), (3, 32, 32))
    assert net.out_dim == 512
    with torch.no_grad():
        assert net.eval()(torch.zeros(2, 3, 32, 32)).shape == (2, 512)
    one_channel = build_backbone(_cfg("timm/test_resnet"), (1, 28, 28))  # in_chans follows the data
    with torch.no_grad():
        assert one_channel.eval()(torch.zeros(2, 1, 28, 28)).shape == (2, one_channel.out_dim)
    model = build_model(build_config({"model": {"backbone": "timm/test_resnet", "bottleneck_dim": 16}}).model,
                        (3, 32, 32), num_classes=5)
    assert model(torch.zeros(2, 3, 32, 32))[1].shape == (2, 5)


def test_timm_local_weights_file(tmp_path):
    src = timm.create_model("test_resnet", num_classes=10)  # a checkpoint with its classifier head
    path = tmp_path / "t.pth"
    torch.save(src.state_dict(), path)
    with pytest.warns(UserWarning, match=r"trained with input mean \(0\.5, 0\.5, 0\.5\)"):
        net = build_backbone(_cfg("timm/test_resnet", str(path)), (3, 32, 32))
    first = next(iter(src.state_dict()))
    assert torch.equal(net.state_dict()[first], src.state_dict()[first])


def test_timm_local_weights_with_a_classifier_of_another_name_and_class_count(tmp_path):
    """The classifier keys dropped were fc./classifier./heads./head. only: inception_v4's 10-class state dict (its
    classifier is last_linear) was refused as 'weights for another architecture' (unexpected last_linear.weight).
    The classifier timm names for the model is dropped too."""
    ref = timm.create_model("inception_v4", num_classes=10)
    torch.save(ref.state_dict(), tmp_path / "iv4.pth")
    with pytest.warns(UserWarning, match="trained with input mean"):
        net = build_backbone(_cfg("timm/inception_v4", str(tmp_path / "iv4.pth")), (3, 75, 75))
    assert torch.equal(net.features[0].conv.weight, ref.features[0].conv.weight) and net.out_dim == 1536
    state = ref.state_dict()
    state["extra.weight"] = torch.zeros(1)  # a key of no classifier is still refused
    torch.save(state, tmp_path / "other.pth")
    with pytest.raises(DataError, match=r"unexpected \['extra\.weight'\]"):
        build_backbone(_cfg("timm/inception_v4", str(tmp_path / "other.pth")), (3, 75, 75))


def test_timm_unknown_model_and_offline_pretrained(monkeypatch):
    with pytest.raises(ConfigError, match=r"timm has no model 'resnet7x'"):
        build_backbone(_cfg("timm/resnet7x"), (3, 32, 32))

    def no_network(*args, pretrained=False, **kwargs):
        if pretrained:
            raise OSError("We couldn't connect to 'https://huggingface.co' to load the files")
        return real(*args, **kwargs)

    real = timm.create_model
    monkeypatch.setattr(timm, "create_model", no_network)
    with pytest.raises(ConfigError, match=r"timm/resnet18: cannot get the pretrained weights from the Hugging "
                                          r"Face hub \(timm/resnet18\.a1_in1k\).*model\.weights: /path/to/file\.pth"):
        build_backbone(_cfg("timm/resnet18", "imagenet"), (3, 32, 32))


@pytest.mark.parametrize(("backbone", "shape", "hint"), [("mlp", (2, 4), r"reshape\(len\(X\), -1\)"),
                                                         ("identity", (2, 2, 2, 1), r"reshape\(len\(X\), -1\)"),
                                                         ("mlp", (0,), r"reshape\(len\(X\), -1\)"),
                                                         ("lenet", (28, 28), r"X\[:, None\]")])
def test_builtin_backbones_refuse_samples_neither_vectors_nor_images(backbone, shape, hint):
    # (N, 2, 4) arrays used to build an MLP of input width 2 and crash in torch at the first training step;
    # (N, 28, 28) greyscale images were called feature vectors
    with pytest.raises(ConfigError, match=rf"model\.backbone='{backbone}'.*{re.escape(str(shape))}.*{hint}"):
        build_backbone(_cfg(backbone), shape)


@pytest.mark.parametrize("size", [8, 15])
def test_lenet_refuses_images_too_small_for_its_convolutions(size):
    # 8x8 or 15x15 images used to crash inside torch at the first training step (kernel size can't be greater
    # than actual input size / output size is too small)
    with pytest.raises(ConfigError, match=rf"model\.backbone='lenet'.*at least 16x16.*{size}x{size}"):
        build_backbone(_cfg("lenet"), (1, size, size))
    assert build_backbone(_cfg("lenet"), (1, 16, 16))(torch.zeros(2, 1, 16, 16)).shape == (2, 800)
