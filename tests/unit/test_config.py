from __future__ import annotations

import pytest
import yaml

from digitops.config import load_params
from digitops.errors import ConfigError
from tests.fakes import REPO_ROOT


@pytest.fixture
def params_dict():
    return yaml.safe_load((REPO_ROOT / "params.yaml").read_text())


def _load(tmp_path, data):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_params(path)


def test_the_repository_params_load_and_are_frozen(params_dict):
    params = load_params(REPO_ROOT / "params.yaml")
    assert params.ingest.sources == ("mnist", "usps", "bhmsds", "optdigits-orig")
    assert params.ingest.max_per_split is None
    with pytest.raises(ValueError, match="frozen"):
        params.split.val_fraction = 0.5


def test_unknown_key_is_named(tmp_path, params_dict):
    params_dict["split"]["val_fracton"] = 0.2
    with pytest.raises(ConfigError, match=r"split\.val_fracton: Extra inputs are not permitted"):
        _load(tmp_path, params_dict)


def test_missing_key_is_named(tmp_path, params_dict):
    del params_dict["ingest"]["max_per_split"]
    with pytest.raises(ConfigError, match=r"ingest\.max_per_split: Field required"):
        _load(tmp_path, params_dict)


def test_unknown_source_lists_the_known_ones(tmp_path, params_dict):
    params_dict["ingest"]["sources"] = ["mnist", "kmnist"]
    with pytest.raises(
        ConfigError,
        match=r"unknown source\(s\) \['kmnist'\]; "
        r"known sources: \['bhmsds', 'drawings', 'emnist-digits', 'mnist', 'optdigits-orig', 'usps'\]",
    ):
        _load(tmp_path, params_dict)


def test_a_floor_may_name_overall_or_any_published_registry_source_and_nothing_else(tmp_path, params_dict):
    params_dict["promote"]["floors"] = {"overall": 0.9, "usps": 0.9, "emnist-digits": 0.9}
    assert _load(tmp_path, params_dict).promote.floors["emnist-digits"] == 0.9
    params_dict["promote"]["floors"] = {"overall": 0.9, "mnsit": 0.9}
    with pytest.raises(ConfigError, match=r"promote\.floors: .*floor for unknown source\(s\) \['mnsit'\]"):
        _load(tmp_path, params_dict)
    # The gate never compares contributed digits: a floor on them would be a promise it does not keep.
    params_dict["promote"]["floors"] = {"overall": 0.9, "drawings": 0.9}
    with pytest.raises(
        ConfigError, match=r"promote\.floors: .*floor for contributed source\(s\) \['drawings'\]"
    ):
        _load(tmp_path, params_dict)


def test_a_contributed_source_in_the_mix_needs_its_cap_per_epoch(tmp_path, params_dict):
    params_dict["ingest"]["sources"] = ["mnist", "drawings"]
    assert _load(tmp_path, params_dict).train.source_mix["drawings"].max_per_epoch == 2000  # params.yaml's
    for mix in ({}, {"drawings": {"share": 0.5}}):
        params_dict["train"]["source_mix"] = mix
        with pytest.raises(ConfigError, match=r"train\.source_mix\.drawings\.max_per_epoch is required"):
            _load(tmp_path, params_dict)
    params_dict["ingest"]["sources"] = ["mnist"]  # not ingested: nothing to cap
    assert _load(tmp_path, params_dict).train.source_mix["drawings"].max_per_epoch is None


def test_contributed_sources_alone_are_not_a_mix(tmp_path, params_dict):
    params_dict["ingest"]["sources"] = ["drawings"]
    with pytest.raises(
        ConfigError, match=r"ingest\.sources: .*all contributed sources.*list a published one"
    ):
        _load(tmp_path, params_dict)


def test_lab_sources_must_be_registry_sources(tmp_path, params_dict):
    assert load_params(REPO_ROOT / "params.yaml").evaluate.lab_sources == ("mnist", "usps")
    params_dict["evaluate"]["lab_sources"] = ["mnist", "nist"]
    with pytest.raises(ConfigError, match=r"evaluate\.lab_sources: .*unknown source\(s\) \['nist'\]"):
        _load(tmp_path, params_dict)


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("split", "val_fraction", 1.5, r"split\.val_fraction"),
        ("ingest", "max_per_split", 9, r"ingest\.max_per_split"),
        ("ingest", "drawings_test_fraction", 1.5, r"ingest\.drawings_test_fraction"),
        ("ingest", "hash_test_fraction", -0.1, r"ingest\.hash_test_fraction"),
        ("base", "seed", -1, r"base\.seed"),
        ("ingest", "sources", [], r"ingest\.sources"),
        ("ingest", "sources", ["usps", "usps"], "listed twice"),
        ("base", "seed", "abc", r"base\.seed"),
        ("promote", "max_digit_regression", 1.5, r"promote\.max_digit_regression"),
        ("promote", "min_digit_support", 0, r"promote\.min_digit_support"),
        ("evaluate", "top_confusions", 0, r"evaluate\.top_confusions"),
        ("evaluate", "lab_sources", ["usps", "usps"], "listed twice"),
    ],
)
def test_invalid_values(tmp_path, params_dict, section, key, value, message):
    params_dict[section][key] = value
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path, params_dict)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("slant", {"p": 0.5, "shear": [20, -20]}, r"augment\.slant\.shear: Value error, a range is written"),
        ("low_resolution", {"p": 0.5, "scale": [0.1, 0.5]}, r"augment\.low_resolution\.scale\.0"),
        ("motion_blur", {"p": 0.5, "kernel": [3, 4]}, r"augment\.motion_blur\.kernel: .*odd lengths from 3"),
        ("thinner", {"p": 1.5, "kernel": 2, "min_ink": 0.4}, r"augment\.thinner\.p"),
    ],
)
def test_invalid_real_world_augmentation(tmp_path, params_dict, key, value, message):
    params_dict["augment"][key] = value
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path, params_dict)


def test_unreadable_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_params(tmp_path / "absent.yaml")
    (tmp_path / "bad.yaml").write_text("ingest: [unclosed")
    with pytest.raises(ConfigError, match="cannot read"):
        load_params(tmp_path / "bad.yaml")


def test_a_source_mix_is_typed(tmp_path, params_dict):
    params_dict["train"]["source_mix"] = {"usps": {"share": 2.5}, "drawings": {"max_per_epoch": 2000}}
    mix = _load(tmp_path, params_dict).train.source_mix
    assert (mix["usps"].share, mix["usps"].max_per_epoch) == (2.5, None)
    assert (mix["drawings"].share, mix["drawings"].max_per_epoch) == (None, 2000)
    repository = load_params(REPO_ROOT / "params.yaml")
    # It samples what it ingests, and caps contributed drawings for when they are listed (opt-in).
    assert set(repository.train.source_mix) <= {*repository.ingest.sources, "drawings"}


@pytest.mark.parametrize(
    ("mix", "message"),
    [
        ({"kmnist": {"share": 0.5}}, r"train\.source_mix: .*unknown source\(s\) \['kmnist'\]; known sources"),
        ({"usps": {}}, r"train\.source_mix\.usps: .*give share, max_per_epoch or both"),
        ({"usps": {"share": 0}}, r"train\.source_mix\.usps\.share"),
        ({"usps": {"max_per_epoch": 0}}, r"train\.source_mix\.usps\.max_per_epoch"),
        ({"usps": {"weight": 2}}, r"train\.source_mix\.usps\.weight: Extra inputs"),
    ],
)
def test_a_bad_source_mix_is_named(tmp_path, params_dict, mix, message):
    params_dict["train"]["source_mix"] = mix
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path, params_dict)


def test_the_serve_defaults_are_the_values_params_yaml_sets():
    """A client without params.yaml (`digitops predict`) and the service agree on every defaulted limit."""
    from digitops.config import ServeParams

    repository = load_params(REPO_ROOT / "params.yaml").serve
    defaulted = {name for name, field in ServeParams.model_fields.items() if not field.is_required()}
    new = {"max_image_pixels", "max_photo_pixels", "max_concurrent_decodes", "max_concurrent_photos"}
    assert new <= defaulted
    for name in sorted(defaulted):
        assert getattr(ServeParams.model_construct(), name) == getattr(repository, name), name
