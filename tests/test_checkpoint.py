import json
import random

import pytest
import torch

from binsr.nn import checkpoint
from binsr.nn.config import VERSION
from binsr.nn.models import MODELS, complete_config, create_model, model_arguments

TINY = {"n_feats": 4, "n_blocks": 1}


def _assert_same_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_save_then_load_model_rebuilds_the_same_model_without_restating_it(tmp_path):
    torch.manual_seed(0)
    model = create_model("edsr-proposed", scale=3, att_bin="se", att_res="none", **TINY)
    path = checkpoint.save(tmp_path / "sub" / "m.pt", model, step=7, metrics={"psnr": 30.5})
    loaded = checkpoint.load_model(path)
    assert loaded.config == model.config
    assert loaded.scale == 3 and not loaded.training
    _assert_same_tensors(loaded.state_dict(), model.state_dict())
    state = torch.load(path, weights_only=True)  # plain types and tensors only
    assert state["step"] == 7 and state["metrics"] == {"psnr": 30.5} and state["format"] == checkpoint.FORMAT
    assert [p.name for p in path.parent.iterdir()] == ["m.pt"]  # the temporary file was renamed away


def test_save_leaves_the_old_file_intact_when_writing_fails(tmp_path):
    model = create_model("edsr-fp", **TINY)
    path = checkpoint.save(tmp_path / "m.pt", model, step=1)
    before = path.read_bytes()
    with pytest.raises(TypeError, match="generator"):
        checkpoint.save(path, model, step=2, metrics=(i for i in ()))  # fails half-way through torch.save
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]


def test_load_model_rejects_another_architecture_or_scale_in_one_line(tmp_path):
    path = checkpoint.save(tmp_path / "bbcu.pt", create_model("edsr-bbcu", scale=4, **TINY))
    with pytest.raises(ValueError, match=r"holds a 'edsr-bbcu' model; expected 'edsr-fp'$"):
        checkpoint.load_model(path, expect_name="edsr-fp")
    with pytest.raises(ValueError, match=r"is for scale x4; expected x2$"):
        checkpoint.load_model(path, expect_scale=2)
    assert checkpoint.load_model(path, expect_name="edsr-bbcu", expect_scale=4).scale == 4


def test_missing_corrupt_and_foreign_files_fail_naming_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"checkpoint .*nope\.pt does not exist"):
        checkpoint.load(tmp_path / "nope.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"checkpoint .*corrupt\.pt is corrupt or not a torch file"):
        checkpoint.load(corrupt)
    truncated = tmp_path / "truncated.pt"
    good = checkpoint.save(tmp_path / "good.pt", create_model("edsr-fp", **TINY)).read_bytes()
    truncated.write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError, match=r"truncated\.pt is corrupt"):
        checkpoint.load_model(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(ValueError, match=r"foreign\.pt is not a binsr-checkpoint-1 file"):
        checkpoint.load(foreign)


def _ship_one(assets, name="edsr-fp-x2"):
    model = create_model("edsr-fp", scale=2, **TINY)
    path = checkpoint.save(assets / f"{name}.pt", model, step=3)
    entry = {"file": path.name, "model": "edsr-fp", "arguments": model.config["kwargs"]}
    entry["sha256"] = checkpoint.sha256(path)
    (assets / "manifest.json").write_text(json.dumps({"models": {name: entry}}))
    return model, path


def test_pretrained_loads_a_shipped_model_and_checks_its_hash(tmp_path):
    model, path = _ship_one(tmp_path)
    _assert_same_tensors(checkpoint.pretrained("edsr-fp-x2", tmp_path).state_dict(), model.state_dict())
    with pytest.raises(ValueError, match=r"no shipped model 'edsr-bbcu-x2'; expected one of edsr-fp-x2$"):
        checkpoint.pretrained("edsr-bbcu-x2", tmp_path)
    data = bytearray(path.read_bytes())
    data[-30] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"edsr-fp-x2\.pt has sha256 [0-9a-f]{64}; the manifest expects [0-9a-f]{64}$"):
        checkpoint.pretrained("edsr-fp-x2", tmp_path)
    path.unlink()
    with pytest.raises(FileNotFoundError, match=r"edsr-fp-x2\.pt for 'edsr-fp-x2' is missing"):
        checkpoint.pretrained("edsr-fp-x2", tmp_path)


def test_no_manifest_means_nothing_shipped(tmp_path):
    assert checkpoint.read_manifest(tmp_path) == {"models": {}}
    with pytest.raises(ValueError, match=r"expected one of \(none shipped\)"):
        checkpoint.pretrained("edsr-fp-x2", tmp_path)


@pytest.mark.parametrize("name", sorted(checkpoint.read_manifest()["models"]))
def test_shipped_checkpoints_match_the_manifest_and_are_small(name):
    entry = checkpoint.read_manifest()["models"][name]
    path = checkpoint.ASSETS / entry["file"]
    assert path.stat().st_size < 2 * 1024 * 1024
    state = checkpoint.load(path)
    assert "optimizer" not in state and state["step"] == entry["steps"]
    model = checkpoint.pretrained(name)
    assert model.config == checkpoint.shipped_config(entry)
    kind = entry["arguments"].get("att_bin")  # proposed variants other than the best carry their attention kind
    assert name in (f"{entry['model']}-x{model.scale}", f"{entry['model']}-{kind}-x{model.scale}")
    assert entry["file"] == f"{name}.pt"


def _rewrite(path, **changes):
    """Save the checkpoint at `path` again with some of its entries changed (None: removed)."""
    state = torch.load(path, weights_only=True)
    state.update(changes)
    torch.save({k: v for k, v in state.items() if v is not None}, path)


def test_a_checkpoint_stored_before_gate_input_existed_loads_with_the_gates_it_was_trained_with(tmp_path):
    # gate_input's default is now "unit"; a model stored without the argument (version 1) had gates that saw the
    # amplified features, and must come back that way: the same outputs, bit for bit
    torch.manual_seed(0)
    model = create_model("edsr-proposed", scale=2, att_bin="pixel", att_res="spatial", gate_input="amplified", **TINY)
    for p in model.parameters():
        p.data.add_(0.1 * torch.randn_like(p))  # gates away from their identity start, so the input scale matters
    path = checkpoint.save(tmp_path / "old.pt", model)
    assert torch.load(path, weights_only=True)["model"]["version"] == VERSION
    kwargs = {k: v for k, v in model.config["kwargs"].items() if k != "gate_input"}
    version_1 = {
        "name": "edsr-proposed",
        "kwargs": {("backward" if k == "sign_backward" else k): v for k, v in kwargs.items()},
    }
    _rewrite(path, model=version_1)
    loaded = checkpoint.load_model(path)
    assert loaded.config == model.config and loaded.config["kwargs"]["gate_input"] == "amplified"
    x = torch.rand(1, 3, 6, 7)
    assert torch.equal(loaded(x), model.eval()(x))
    unit = create_model("edsr-proposed", **kwargs).eval()  # today's default, the same weights
    unit.load_state_dict(model.state_dict())
    assert not torch.equal(unit(x), loaded(x))
    _rewrite(path, model={**model.config, "version": 99})
    with pytest.raises(
        ValueError,
        match=r"asks for a model binsr does not build: model config version 99 is not "
        r"valid; expected an integer in \[1, 3\]$",
    ):
        checkpoint.load_model(path)


# What each shipped checkpoint holds, written out: the files predate the config's version (their "model" has none,
# and names the sign's backward "backward"), so each loads through the migrations. Today's main computed these
# configs and state-dict keys, and the outputs below bit for bit, before binsr.nn.config existed.
_BBCU = {"k": None, "sign_backward": "approx", "alpha_mode": "mean", "weight_grad": "bbcu"}
_PROPOSED = {
    "k": None,
    "sign_backward": "approx",
    "alpha_mode": "learnable",
    "weight_grad": "bbcu",
    "gate": "2sigmoid",
    "gate_init": 1.0,
    "a1_init": 1.0,
    "a2_init": 1.0,
}


def _small(scale: int) -> dict:
    return {"scale": scale, "n_feats": 32, "n_blocks": 8}


SHIPPED = {
    "edsr-fp-x2": ("edsr-fp", {**_small(2), "res_scale": 1.0}),
    "edsr-fp-x4": ("edsr-fp", {**_small(4), "res_scale": 1.0}),
    "edsr-bbcu-x2": ("edsr-bbcu", {**_small(2), **_BBCU}),
    "edsr-bbcu-x4": ("edsr-bbcu", {**_small(4), **_BBCU}),
    "edsr-proposed-x2": (
        "edsr-proposed",
        {**_small(2), **_PROPOSED, "att_bin": "se", "att_res": "se", "gate_input": "amplified"},
    ),
    "edsr-proposed-x4": (
        "edsr-proposed",
        {**_small(4), **_PROPOSED, "att_bin": "se", "att_res": "se", "gate_input": "amplified"},
    ),
    "edsr-proposed-spatial-x2": (
        "edsr-proposed",
        {**_small(2), **_PROPOSED, "att_bin": "spatial", "att_res": "spatial", "gate_input": "amplified"},
    ),
    "edsr-proposed-pixel-x2": (
        "edsr-proposed",
        {**_small(2), **_PROPOSED, "att_bin": "pixel", "att_res": "pixel", "gate_input": "unit"},
    ),
    "edsr-proposed-pixel-x4": (
        "edsr-proposed",
        {**_small(4), **_PROPOSED, "att_bin": "pixel", "att_res": "pixel", "gate_input": "unit"},
    ),
}


def test_every_shipped_checkpoint_is_listed():
    assert set(SHIPPED) == set(checkpoint.read_manifest()["models"])


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_checkpoints_migrate_to_the_model_they_were_trained_as_bit_for_bit(name):
    model_name, kwargs = SHIPPED[name]
    entry = checkpoint.read_manifest()["models"][name]
    state = checkpoint.load(checkpoint.ASSETS / entry["file"])
    assert "version" not in state["model"]
    assert ("backward" in state["model"]["kwargs"]) == (model_name != "edsr-fp")
    expected = {"name": model_name, "kwargs": kwargs}
    assert complete_config(state["model"]) == expected == checkpoint.shipped_config(entry)
    loaded = checkpoint.pretrained(name)  # migrated, then a strict state-dict load
    assert loaded.config == expected
    rebuilt = create_model(model_name, **kwargs).eval()  # from the literal, no migration
    rebuilt.load_state_dict(state["state_dict"], strict=True)
    x = torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(loaded(x), rebuilt(x))


def test_weights_that_do_not_fit_the_architecture_are_refused_in_one_line(tmp_path):
    path = checkpoint.save(tmp_path / "m.pt", create_model("edsr-fp", **TINY))
    state = checkpoint.load(path)
    _rewrite(path, model={"name": "edsr-bbcu", "kwargs": {"scale": 2, **TINY}})
    with pytest.raises(ValueError, match=r"m\.pt asks for edsr-bbcu \{.*\}, 1,283 numbers, but holds 1,259; expected"):
        checkpoint.load_model(path)
    weights = {("head.w" if key == "head.weight" else key): value for key, value in state["state_dict"].items()}
    weights["tail.weight"] = weights["tail.weight"].reshape(4, 3, 3, 3)  # (3, 4, 3, 3) stored
    _rewrite(path, model=state["model"], state_dict=weights)
    expected = r"m\.pt does not fit edsr-fp \{.*\}: missing head\.weight; unexpected head\.w; other shape tail\.weight$"
    with pytest.raises(ValueError, match=expected):
        checkpoint.load_model(path)


def test_a_checkpoint_asking_for_a_large_model_is_refused_before_allocating(tmp_path):
    path = checkpoint.save(tmp_path / "m.pt", create_model("edsr-fp", **TINY))
    _rewrite(path, model={"name": "edsr-fp", "kwargs": {"n_feats": 256, "n_blocks": 1}})
    n = 256  # head 28n, a block 2 (9n^2 + n), body conv 9n^2 + n, x2 upsampler 36n^2 + 4n, tail 27n + 3
    wanted = 63 * n**2 + 62 * n + 3
    with pytest.raises(ValueError, match=rf"asks for edsr-fp .*, {wanted:,} numbers, but holds 1,259; expected"):
        checkpoint.load_model(path)


@pytest.mark.parametrize("kwargs,expected", [
    ({"n_blocks": 10**6}, "n_blocks=1000000 is not valid; expected an integer in [1, 32]"),
    ({"n_feats": 100_000}, "n_feats=100000 is not valid; expected an integer in [1, 256]"),
    ({"n_feats": -5}, "n_feats=-5 is not valid; expected an integer in [1, 256]"),
    ({"n_feats": "32"}, "n_feats='32' is not valid; expected an integer in [1, 256]"),
    ({"scale": -2}, "scale=-2 is not valid; expected one of 2, 3, 4"),
    ({"k": float("nan")}, "k=nan is not valid; expected a finite number in (0, inf) or None"),
    ({"alpha_mode": ["mean"]}, "alpha_mode=['mean'] is not valid; expected one of mean, learnable"),
])  # fmt: skip
def test_a_checkpoint_asking_for_what_binsr_does_not_build_is_one_line_within_a_second(tmp_path, deadline, kwargs,
                                                                                        expected):  # fmt: skip
    path = checkpoint.save(tmp_path / "m.pt", create_model("edsr-bbcu", **TINY))
    _rewrite(path, model={"name": "edsr-bbcu", "kwargs": {**TINY, **kwargs}})
    with deadline(1), pytest.raises(ValueError) as refused:  # a million blocks took over 150 s, 1 GB and growing
        checkpoint.load_model(path)
    assert str(refused.value) == f"checkpoint {path} asks for a model binsr does not build: {expected}"


def test_missing_state_dict_or_model_and_nan_weights_are_refused(tmp_path):
    model = create_model("edsr-fp", **TINY)
    path = checkpoint.save(tmp_path / "m.pt", model)
    _rewrite(path, state_dict=None)
    with pytest.raises(ValueError, match=r"m\.pt has no state_dict of tensors; expected the model's weights$"):
        checkpoint.load_model(path)
    _rewrite(path, state_dict=model.state_dict(), model={"name": "edsr-fp"})
    with pytest.raises(ValueError, match=r"m\.pt has no model \{name, kwargs\}"):
        checkpoint.load_model(path)
    model.head.weight.data[0, 0, 0, 0] = float("inf")
    model.tail.bias.data[0] = float("nan")
    path = checkpoint.save(tmp_path / "nan.pt", model)
    with pytest.raises(ValueError, match=r"nan\.pt has NaN or infinite values in head\.weight, tail\.bias; expected"):
        checkpoint.load_model(path)


def test_empty_or_malformed_manifests_are_one_line_errors(tmp_path):
    manifest = tmp_path / "manifest.json"
    for text, message in (("", "is not valid JSON"), ("{}", 'has no "models" table'), ("[]", 'has no "models"')):
        manifest.write_text(text)
        with pytest.raises(ValueError, match=message):
            checkpoint.pretrained("edsr-fp-x2", tmp_path)
    manifest.write_text('{"models": {"edsr-fp-x2": {"file": "x.pt"}}}')
    with pytest.raises(ValueError, match="entry 'edsr-fp-x2' .* lacks model, arguments, sha256; expected file, "):
        checkpoint.pretrained("edsr-fp-x2", tmp_path)


def test_load_any_takes_a_shipped_name_or_a_file(tmp_path):
    path = checkpoint.save(tmp_path / "m.pt", create_model("edsr-fp", scale=3, **TINY))
    assert checkpoint.load_any(str(path)).scale == 3
    with pytest.raises(ValueError, match="is for scale x3; expected x2"):
        checkpoint.load_any(str(path), expect_scale=2)
    with pytest.raises(FileNotFoundError, match=r"'nope' is neither a checkpoint file nor a shipped model; expected"):
        checkpoint.load_any("nope")
    shipped = sorted(checkpoint.read_manifest()["models"])
    if shipped:
        assert checkpoint.load_any(shipped[0]).config == checkpoint.pretrained(shipped[0]).config


def test_warm_start_carries_an_x2_model_into_x4_but_for_the_new_upsampling_stage(tmp_path):
    torch.manual_seed(0)
    x2 = create_model("edsr-bbcu", scale=2, n_feats=8, n_blocks=2)
    path = checkpoint.save(tmp_path / "x2.pt", x2)
    torch.manual_seed(1)
    x4 = create_model("edsr-bbcu", scale=4, n_feats=8, n_blocks=2)
    fresh = {key: value.clone() for key, value in x4.state_dict().items()}

    taken = checkpoint.warm_start(x4, path)

    assert set(x4.state_dict()) - set(taken) == {"upsampler.2.weight", "upsampler.2.bias"}
    for key, value in x4.state_dict().items():
        assert torch.equal(value, x2.state_dict()[key] if key in taken else fresh[key]), key


def test_warm_start_refuses_another_architecture_in_one_line(tmp_path):
    path = checkpoint.save(tmp_path / "x2.pt", create_model("edsr-bbcu", scale=2, n_feats=8, n_blocks=2))
    with pytest.raises(ValueError, match="expected edsr-bbcu with the arguments .*'n_feats': 16"):
        checkpoint.warm_start(create_model("edsr-bbcu", scale=4, n_feats=16, n_blocks=2), path)
    with pytest.raises(ValueError, match="expected edsr-fp"):
        checkpoint.warm_start(create_model("edsr-fp", scale=4, n_feats=8, n_blocks=2), path)


FUZZ_VALUES = [None, True, False, 0, -5, 1, 2, 3, 4, 7, 32, 33, 256, 257, 10**6, 10**400, 0.0, -1.0, 0.5, 1.0, 2.5,
               float("nan"), float("inf"), float("-inf"), 1e308, "", "32", "se", "pixel", "mean", "learnable",
               "2sigmoid", "unit", "x" * 1000, [], [1], {}, {"n_feats": 4}]  # fmt: skip


@pytest.fixture(scope="module")
def tiny_checkpoints(tmp_path_factory) -> dict:
    import torch._dynamo  # noqa: F401 -- the first meta-device build of a learnable alpha imports it: seconds, once

    folder = tmp_path_factory.mktemp("tiny")
    return {name: checkpoint.save(folder / f"{name}.pt", create_model(name, **TINY)) for name in MODELS}


@pytest.mark.parametrize("seed", range(2))
def test_fuzz_checkpoint_arguments_are_one_line_or_a_model_within_a_second(seed, tiny_checkpoints, deadline, tmp_path):
    """Every argument of every registry model, then a few together, set to random values of random types: each
    checkpoint loads within a second as a one-line error naming it, or as the model it asks for."""
    rng = random.Random(seed)
    trials = [(name, [key]) for name in MODELS for key in model_arguments(name)]
    trials += [(name, rng.sample(sorted(model_arguments(name)), 3)) for name in rng.choices(list(MODELS), k=10)]
    path = tmp_path / "fuzzed.pt"
    for name, keys in trials:
        state = torch.load(tiny_checkpoints[name], weights_only=True)
        kwargs = state["model"]["kwargs"]
        kwargs.update({key: rng.choice(FUZZ_VALUES) for key in keys})
        torch.save(state, path)
        with deadline(1):
            try:
                model = checkpoint.load_model(path)
            except ValueError as error:
                assert str(error).startswith(f"checkpoint {path} ") and "\n" not in str(error), (name, kwargs)
            else:
                assert model.config == complete_config({"name": name, "kwargs": kwargs})
