"""Every registered architecture, as timm tests its models: builds, right shapes, valid probabilities.
And the registry itself: names, the seed projects' old names as aliases, and collisions refused."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from digitops.digits import NUM_CLASSES
from digitops.models import build_model, list_models, register_model, registry, resolve_model_name

# The seed projects' architectures, by the names they were once registered under (old MLflow runs and
# dvc.lock files record these) and the names they have now.
OLD_NAMES = {
    "seed000": "lenet5_wide",
    "seed001": "cnn_bn",
    "seed002": "tutorial_cnn",
    "seed003": "deep3block",
    "seed004": "small_cnn",
}


@pytest.fixture
def scratch_registry(monkeypatch):
    """The registry as it is now, restored after the test (so test registrations do not leak)."""
    monkeypatch.setattr(registry, "_MODELS", dict(registry._MODELS))
    monkeypatch.setattr(registry, "_ALIASES", dict(registry._ALIASES))


def _named(name: str):
    def factory():
        raise AssertionError("never built")

    factory.__name__ = name
    return factory


def test_list_models_names_the_canonical_architectures_sorted_without_aliases():
    assert list_models() == sorted([*OLD_NAMES.values(), "digitnet"])
    assert not set(OLD_NAMES) & set(list_models())


@pytest.mark.parametrize(("alias", "name"), OLD_NAMES.items())
def test_an_old_name_resolves_to_its_canonical_name(alias, name):
    assert resolve_model_name(alias) == name
    assert resolve_model_name(name) == name


@pytest.mark.parametrize(("alias", "name"), OLD_NAMES.items())
def test_an_alias_builds_the_same_architecture_as_its_name(alias, name):
    by_alias, by_name = build_model(alias), build_model(name)
    assert by_alias.name == by_name.name == name
    assert by_alias.count_params() == by_name.count_params()
    assert [layer.__class__.__name__ for layer in by_alias.layers] == [
        layer.__class__.__name__ for layer in by_name.layers
    ]

    def configs(model):  # layer names carry a per-session counter (conv2d_7); the rest must match
        return [{k: v for k, v in layer.get_config().items() if k != "name"} for layer in model.layers]

    assert configs(by_alias) == configs(by_name)


def test_an_alias_passes_factory_options_through():
    assert (
        len(build_model("seed002", l2=1e-3).losses) == len(build_model("tutorial_cnn", l2=1e-3).losses) == 4
    )


@pytest.mark.parametrize("lookup", [build_model, resolve_model_name])
def test_unknown_name_lists_the_canonical_names(lookup):
    expected = (
        "unknown model 'lenet'; registered models: cnn_bn, deep3block, digitnet, lenet5_wide, small_cnn"
    )
    with pytest.raises(KeyError, match=expected) as raised:
        lookup("lenet")
    assert "seed00" not in str(raised.value)  # aliases are not offered as choices


def test_a_name_cannot_be_registered_twice(scratch_registry):
    with pytest.raises(ValueError, match="'cnn_bn' is already a registered model"):
        register_model(_named("cnn_bn"))


@pytest.mark.parametrize(
    ("name", "aliases", "error"),
    [
        ("new_net", ("cnn_bn",), "'cnn_bn' is already a registered model"),
        ("new_net", ("seed001",), "'seed001' is already an alias of 'cnn_bn'"),
        ("seed004", (), "'seed004' is already an alias of 'small_cnn'"),
        ("new_net", ("old_net", "old_net"), "repeat a name"),
        ("new_net", ("new_net",), "repeat a name"),
    ],
)
def test_a_colliding_alias_is_refused_and_nothing_is_registered(scratch_registry, name, aliases, error):
    before = (dict(registry._MODELS), dict(registry._ALIASES))
    with pytest.raises(ValueError, match=error):
        register_model(aliases=aliases)(_named(name))
    assert before == (registry._MODELS, registry._ALIASES)


def test_aliases_given_as_one_string_are_refused(scratch_registry):
    with pytest.raises(TypeError, match="not the string 'old_net'"):
        register_model(aliases="old_net")
    assert "o" not in registry._ALIASES


def test_a_model_registers_with_and_without_aliases(scratch_registry):
    aliased, plain = _named("new_net"), _named("plain_net")
    assert register_model(aliases=("old_net",))(aliased) is aliased and register_model(plain) is plain
    assert resolve_model_name("old_net") == "new_net" and resolve_model_name("plain_net") == "plain_net"
    assert {"new_net", "plain_net"} <= set(list_models()) and "old_net" not in list_models()


@pytest.mark.parametrize("name", list_models())
def test_model_outputs_probabilities_for_uint8_digits(name):
    model = build_model(name)
    assert model.name == name
    images = np.random.default_rng(0).integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    probabilities = keras.ops.convert_to_numpy(model(images, training=False))
    assert probabilities.shape == (5, NUM_CLASSES) and probabilities.dtype == np.float32
    assert np.isfinite(probabilities).all()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert model.inputs[0].dtype == "uint8" and tuple(model.inputs[0].shape) == (None, 28, 28)


def test_seed_parameter_counts_match_their_descriptions():
    assert build_model("lenet5_wide").count_params() == 3_274_634  # 3.27 M
    assert build_model("cnn_bn").count_params() == 871_978  # docs/results.md
    assert build_model("deep3block").count_params() == 1_606_064  # 1.61 M


def test_factory_options_are_passed_through():
    plain, regularised = build_model("tutorial_cnn"), build_model("tutorial_cnn", l2=1e-3, dropout=0.3)
    assert not plain.losses and len(regularised.losses) == 4  # one L2 term per conv and dense layer
    assert any(layer.__class__.__name__ == "Dropout" for layer in regularised.layers)
    assert build_model("digitnet", width=16).count_params() < build_model("digitnet").count_params()
