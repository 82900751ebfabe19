"""Weight resolution, safe checkpoint loading and strict layout checks."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from restorever import hub
from restorever.errors import CheckpointLayoutError, WeightsHashError, WeightsNotFoundError


def _card(sha=None):
    return hub.ModelCard(name="toy", arch="toy", weights={
        "model": hub.WeightFile("toy.pth", "https://example.invalid/toy.pth", sha, "MIT")})


def test_missing_weights_message_names_file_url_and_folder(tmp_path):
    with pytest.raises(WeightsNotFoundError) as info:
        hub.resolve_weights(_card(), cache_dir=tmp_path)
    msg = str(info.value)
    assert "toy.pth" in msg and "https://example.invalid/toy.pth" in msg
    assert str(tmp_path / "weights" / "toy" / "toy.pth") in msg and "--weights" in msg


def test_missing_weights_message_names_the_python_argument_too(tmp_path, monkeypatch):
    """Library users pass ``weights=``; the message names it beside the command-line flag, in the form each
    entry point takes (a role mapping for DifFace, ``recognizer_weights=`` for FacePipeline)."""
    monkeypatch.setenv("RESTOREVER_HOME", str(tmp_path))
    monkeypatch.setenv("RESTOREVER_OFFLINE", "1")
    from restorever import FacePipeline, create_recognizer, create_restorer
    with pytest.raises(WeightsNotFoundError, match=r"--weights FILE \(weights=FILE in Python\)"):
        create_restorer("vqfr-v2")
    with pytest.raises(WeightsNotFoundError, match=r"weights=\{'unet': FILE, 'estimator': FILE\} in Python"):
        create_restorer("difface")
    with pytest.raises(WeightsNotFoundError, match=r"--recognizer-weights FILE \(weights=FILE in Python\)"):
        create_recognizer("arcface-r50-ms1mv3")
    with pytest.raises(WeightsNotFoundError, match=r"--recognizer-weights FILE \(recognizer_weights=FILE in"):
        FacePipeline(recognizer="arcface-r50-ms1mv3")


def test_cached_file_is_hash_checked(tmp_path):
    data = b"weights"
    good = hashlib.sha256(data).hexdigest()
    folder = tmp_path / "weights" / "toy"
    folder.mkdir(parents=True)
    (folder / "toy.pth").write_bytes(data)
    assert hub.resolve_weights(_card(good), cache_dir=tmp_path) == folder / "toy.pth"
    with pytest.raises(WeightsHashError, match="expected"):
        hub.resolve_weights(_card("0" * 64), cache_dir=tmp_path)


def test_explicit_file_with_other_hash_only_warns(tmp_path, caplog):
    f = tmp_path / "mine.pth"
    f.write_bytes(b"abc")
    assert hub.resolve_weights(_card("0" * 64), explicit=f) == f
    assert "using it anyway" in caplog.text
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        hub.resolve_weights(_card(), explicit=tmp_path / "nope.pth")


def test_offline_download_is_not_attempted(tmp_path, monkeypatch):
    monkeypatch.setenv("RESTOREVER_OFFLINE", "1")
    called = []
    monkeypatch.setattr(hub, "download_file", lambda *a, **k: called.append(1))
    with pytest.raises(WeightsNotFoundError):
        hub.resolve_weights(_card(), cache_dir=tmp_path)
    assert not called


def test_download_verifies_hash_and_leaves_nothing_on_mismatch(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"payload" * 1000)
    dest = tmp_path / "out" / "file.bin"
    with pytest.raises(WeightsHashError):
        hub.download_file(src.as_uri(), dest, sha256="0" * 64)
    assert not dest.exists() and not list(dest.parent.glob("*.part"))
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    assert hub.download_file(src.as_uri(), dest, sha256=sha).read_bytes() == src.read_bytes()


class _Payload:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned > /tmp/restorever-ckpt-pwned",))


def test_load_checkpoint_refuses_code(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"params": {"w": torch.zeros(1)}, "x": _Payload()}, path)
    with pytest.raises(CheckpointLayoutError, match="weights-only"):
        hub.load_checkpoint(path)
    assert not Path("/tmp/restorever-ckpt-pwned").exists()


@pytest.mark.parametrize("wrapper", [None, "params_ema", "params", "state_dict"])
def test_load_checkpoint_unwraps_and_strips_prefix(tmp_path, wrapper):
    sd = {"module.a.weight": torch.ones(2), "module.b": torch.zeros(3)}
    path = tmp_path / "c.pth"
    torch.save(sd if wrapper is None else {wrapper: sd, "iter": torch.tensor(5)}, path)
    assert set(hub.load_checkpoint(path)) == {"a.weight", "b"}


def test_params_ema_preferred(tmp_path):
    path = tmp_path / "c.pth"
    torch.save({"params": {"w": torch.zeros(1)}, "params_ema": {"w": torch.ones(1)}}, path)
    assert hub.load_checkpoint(path)["w"].item() == 1.0


def test_strict_loading_names_keys():
    module = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Linear(3, 1))
    sd = module.state_dict()
    sd["extra.weight"] = torch.zeros(1)
    sd["0.weight"] = torch.zeros(4, 4)
    del sd["1.bias"]
    with pytest.raises(CheckpointLayoutError) as info:
        hub.load_state_dict_strict(module, sd, source="ckpt.pth")
    msg = str(info.value)
    assert "ckpt.pth" in msg and "1.bias" in msg and "extra.weight" in msg and "0.weight (4, 4) != (3, 2)" in msg


def test_check_weight_roles_names_unknown_roles_and_the_forms_that_work():
    assert hub.check_weight_roles("x", None, ["model"]) == {}
    assert hub.check_weight_roles("x", {"model": "a.pth"}, ["model"]) == {"model": "a.pth"}
    with pytest.raises(ValueError, match=r"^x: unknown weight role\(s\) \['unet'\]; use --weights FILE$"):
        hub.check_weight_roles("x", {"unet": "u.pth"}, ["model"])
    with pytest.raises(ValueError, match=r"\['model'\]; use --weights unet=FILE,estimator=FILE$"):
        hub.check_weight_roles("difface", {"model": "m.pth"}, ["unet", "estimator"])
    with pytest.raises(ValueError, match=r"use --weights FILE or model=FILE,shape_predictor=FILE$"):
        hub.check_weight_roles("dlib", {"landmarks": "s.dat"}, ["model", "shape_predictor"])


def test_parse_weights_option():
    assert hub.parse_weights_option("a.pth") == {"model": "a.pth"}
    assert hub.parse_weights_option("unet=u.pth,estimator=e.pth") == {"unet": "u.pth", "estimator": "e.pth"}
    for bad in ("unet=u.pth,", "unet=u.pth,,estimator=e.pth", "=u.pth", "unet="):
        with pytest.raises(ValueError, match="cannot parse"):
            hub.parse_weights_option(bad)
    # a comma separates parts only before ROLE= or NAME:, so paths may hold commas (they could not, with others)
    assert hub.parse_weights_option("unet=runs/a,b/u.pth,estimator=e,1.pth") == {
        "unet": "runs/a,b/u.pth", "estimator": "e,1.pth"}
    assert hub.parse_weights_option("unet=u.pth,oops") == {"unet": "u.pth,oops"}  # a path, not found later
    # several restorers: NAME:FILE and NAME:ROLE=FILE, names matched against the given backends only
    names = ["none", "vqfr-v2", "difface", "gfpgan-v1.4"]
    assert hub.parse_weights_option("vqfr-v2:V.pth,difface:unet=U.pth,difface:estimator=E.pth", backends=names) == {
        "vqfr-v2:model": "V.pth", "difface:unet": "U.pth", "difface:estimator": "E.pth"}
    assert hub.parse_weights_option("gfpgan-v1.4:G.pth", backends=names) == {"gfpgan-v1.4:model": "G.pth"}
    assert hub.parse_weights_option("vqfr-v2:w/v,2.pth,difface:unet=U.pth", backends=names) == {
        "vqfr-v2:model": "w/v,2.pth", "difface:unet": "U.pth"}
    assert hub.parse_weights_option("vqfr-v2:V.pth") == {"model": "vqfr-v2:V.pth"}  # no backends: a file name
    with pytest.raises(ValueError, match="vqfr-v2:model is given twice"):
        hub.parse_weights_option("vqfr-v2:a.pth,vqfr-v2:model=b.pth", backends=names)
    with pytest.raises(ValueError, match="model is given twice"):
        hub.parse_weights_option("model=a.pth,model=b.pth")


def test_route_restorer_weights():
    """One --weights for a run of several restorers: each file goes to the restorer it names; plain files to the one
    restorer that takes weights, and are refused when there are several (they used to go to all of them)."""
    from restorever.errors import ConfigError
    from restorever.pipeline.evaluate import route_restorer_weights

    names = ["none", "vqfr-v2", "difface"]
    assert route_restorer_weights(names, {"vqfr-v2:model": "V", "difface:unet": "U", "difface:estimator": "E"}) == {
        "none": None, "vqfr-v2": {"model": "V"}, "difface": {"unet": "U", "estimator": "E"}}
    assert route_restorer_weights(["none", "vqfr-v2"], {"model": "V"}) == {"none": None, "vqfr-v2": {"model": "V"}}
    assert route_restorer_weights(names, {"vqfr-v2:model": "V"}) == {"none": None, "vqfr-v2": {"model": "V"},
                                                                     "difface": None}  # difface: cached files
    for weights, message in (({"model": "V"}, r"several restorers that take weights \(vqfr-v2, difface\); prefix "
                                              r"each file with its restorer's name \(vqfr-v2:FILE,difface:FILE\)"),
                             ({"vqfr-v1:model": "V"}, "vqfr-v1 is not a restorer of this run"),
                             ({"none:model": "V"}, "none takes no weights")):
        with pytest.raises(ConfigError, match=message):
            route_restorer_weights(names, weights)
    with pytest.raises(ConfigError, match="restorer 'none' takes no weights"):
        route_restorer_weights(["none"], {"model": "V"})
