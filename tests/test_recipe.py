"""The paper's training recipe for Part S (App. A of S at our scale): the SmallCNN's normalisations
and bias-free head, SGD-Nesterov with a cosine schedule, one stream per draw (seeds and data), and
the seed-batched trainer agreeing with the loop."""
import math

import numpy as np
import pytest
import torch

from tasknb.data import DATA_DRAWS, data_draw_seed, draw_per_class, draw_subset, load_task_images, training_images
from tasknb.device import generator
from tasknb.networks.cnn import NORMS, SmallCNN, init_cnn
from tasknb.readout import PredictionSet, prediction_set
from tasknb.trajectories import (PAPER_RECIPE, RunConfig, batch_seed, init_seed, load_trajectories, make_optimizer,
                                 make_schedule, record_run, record_trajectories, run_config, save_trajectories,
                                 train_supervised_seeds)

TINY = dict(classes=(1, 7, 9), n_seeds=2, steps=8, checkpoints=[0, 3, 8], n_test=60, n_train=300, batch_size=16,
            device="cpu")


def images(n, seed=0):
    return torch.rand(n, 1, 28, 28, generator=generator(seed))


# ----------------------------------------------------------------------------- the network
def n_weights(m):
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("channels, n_classes, head_bias", [((8, 16), 10, True), ((16, 32), 10, False),
                                                             ((16, 32), 2, False), ((3, 5), 4, True)])
@pytest.mark.parametrize("norm", NORMS)
def test_weight_count_follows_the_formula_and_norms_add_none(channels, n_classes, head_bias, norm):
    c1, c2 = channels
    expected = 25 * c1 + c1 + 9 * c1 * c2 + c2 + 16 * c2 * n_classes + (n_classes if head_bias else 0)
    m = SmallCNN(n_classes, channels, norm=norm, head_bias=head_bias)
    assert n_weights(m) == expected
    assert (m.head.bias is None) == (not head_bias)
    assert m(images(3)).shape == (3, n_classes)


def test_default_network_is_unchanged_and_the_quick_width_has_10176_weights():
    assert n_weights(SmallCNN(10)) == 3946
    assert n_weights(SmallCNN(10, (16, 32), norm="layer", head_bias=False)) == 10176


@pytest.mark.parametrize("norm", ["layer", "layer_conv1"])
def test_layer_norm_gives_rows_of_mean_0_and_variance_1(norm):
    f = init_cnn(10, (4, 8), seed=3, device="cpu", norm=norm).features(images(5))
    assert f.shape == (5, 128)
    torch.testing.assert_close(f.mean(-1), torch.zeros(5), atol=1e-5, rtol=0)
    torch.testing.assert_close(f.var(-1, unbiased=False), torch.ones(5), atol=1e-2, rtol=0)   # v / (v + 1e-5)


def test_penultimate_layer_norm_is_the_formula_on_the_unnormalised_features():
    """phi = (h - mean(h)) / sqrt(var(h) + 1e-5) over the 16*c2 entries of a row, no gain, no shift;
    h the features of the same seed without a norm (the norm draws nothing)."""
    x = images(6, 2)
    h = init_cnn(10, (4, 8), seed=3, device="cpu").features(x).double()
    phi = init_cnn(10, (4, 8), seed=3, device="cpu", norm="layer").features(x).double()
    ref = (h - h.mean(-1, keepdim=True)) / torch.sqrt(h.var(-1, unbiased=False, keepdim=True) + 1e-5)
    torch.testing.assert_close(phi, ref, atol=1e-4, rtol=1e-4)


def _scaled(model, layer, a):
    with torch.no_grad():
        getattr(model, layer).weight.mul_(a)
        getattr(model, layer).bias.mul_(a)
    return model


@pytest.mark.parametrize("norm, layer, invariant", [
    ("none", "conv2", False), ("layer", "conv2", True), ("layer_conv1", "conv2", True),
    ("layer", "conv1", False), ("layer_conv1", "conv1", True),
])
def test_normalised_features_do_not_see_the_scale_of_the_layers_below(norm, layer, invariant):
    """No affine part: scaling a conv layer by a > 0 leaves the features unchanged where a norm
    sits above it (ReLU is positively homogeneous), and changes them where none does."""
    x = images(4, 1)
    with torch.no_grad():
        ref = init_cnn(10, (4, 8), seed=1, device="cpu", norm=norm).features(x)
        scaled = _scaled(init_cnn(10, (4, 8), seed=1, device="cpu", norm=norm), layer, 3.0).features(x)
    change = float((ref - scaled).abs().max() / ref.abs().max())
    assert (change < 1e-2) if invariant else (change > 0.1), change    # not exactly 0: LayerNorm's eps = 1e-5


def test_norm_and_head_bias_do_not_change_the_draws_of_a_seed():
    base = init_cnn(10, (4, 8), seed=5, device="cpu")
    for norm in NORMS:
        m = init_cnn(10, (4, 8), seed=5, device="cpu", norm=norm, head_bias=False)
        for name in ("conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "head.weight"):
            assert torch.equal(m.state_dict()[name], base.state_dict()[name]), name


@pytest.mark.parametrize("kw, message", [
    (dict(norm="batch"), r"norm must be one of 'none', 'layer', 'layer_conv1'"),
    (dict(head_bias=1), r"head_bias must be True or False"),
    (dict(channels=(4, 8, 16)), r"channels must be a pair"),
])
def test_bad_network_arguments_name_the_parameter(kw, message):
    with pytest.raises(ValueError, match=message):
        SmallCNN(10, **kw)


# ----------------------------------------------------------------------------- optimizer and schedule
def test_nesterov_is_sgd_only_and_needs_momentum():
    p = [torch.zeros(2, requires_grad=True)]
    assert make_optimizer(p, "sgd", 0.1, 0.9, nesterov=True).param_groups[0]["nesterov"] is True
    assert make_optimizer(p, "sgd", 0.1, 0.9).param_groups[0]["nesterov"] is False
    with pytest.raises(ValueError, match="nesterov=True needs optimizer='sgd' with momentum > 0"):
        make_optimizer(p, "adam", 0.1, nesterov=True)
    with pytest.raises(ValueError, match="nesterov=True needs optimizer='sgd' with momentum > 0"):
        make_optimizer(p, "sgd", 0.1, 0.0, nesterov=True)
    with pytest.raises(ValueError, match="nesterov must be True or False"):
        make_optimizer(p, "sgd", 0.1, 0.9, nesterov="yes")


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_record_run_steps_the_schedule_after_every_step(schedule):
    """The lr seen by step s is lr (1 + cos(pi s / steps)) / 2 for the cosine schedule (App. A of S)."""
    model = init_cnn(3, (2, 2), seed=0, device="cpu")
    opt = make_optimizer(model.parameters(), "sgd", 0.2, 0.9, nesterov=True)
    steps, seen = 6, []
    pset = PredictionSet(X=images(5), labels=torch.zeros(5, dtype=torch.long), classes=[0, 1, 2])
    def step(_s):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
    record_run(model, step, steps, [0, steps], pset, schedule=make_schedule(opt, steps, schedule))
    expected = [0.2 * (0.5 * (1 + math.cos(math.pi * s / steps)) if schedule == "cosine" else 1.0)
                for s in range(steps)]
    np.testing.assert_allclose(seen, expected, rtol=1e-12)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0 if schedule == "cosine" else 0.2, abs=1e-12)


def test_schedule_and_record_run_validate_by_name():
    opt = make_optimizer([torch.zeros(1, requires_grad=True)])
    with pytest.raises(ValueError, match="schedule must be one of 'constant', 'cosine'"):
        make_schedule(opt, 10, "step")
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        make_schedule(opt, 0, "cosine")
    with pytest.raises(ValueError, match="optimizer must be a torch.optim.Optimizer"):
        make_schedule("sgd", 10)
    pset = PredictionSet(X=images(2), labels=torch.zeros(2, dtype=torch.long), classes=[0, 1, 2])
    with pytest.raises(ValueError, match="schedule must be None or a learning-rate scheduler"):
        record_run(init_cnn(3, (2, 2), device="cpu"), lambda s: None, 2, [0, 2], pset, schedule="cosine")


def test_a_diverging_run_warns_instead_of_returning_silent_nans():
    model = init_cnn(3, (2, 2), seed=0, device="cpu")
    pset = PredictionSet(X=images(5), labels=torch.zeros(5, dtype=torch.long), classes=[0, 1, 2])

    def blow_up(_s):
        with torch.no_grad():
            model.head.weight.fill_(float("nan"))
    with pytest.warns(RuntimeWarning, match="not finite: training diverged"):
        record_run(model, blow_up, 1, [0, 1], pset)


# ----------------------------------------------------------------------------- RunConfig and the recipe
def test_new_run_fields_are_validated_by_name():
    for kw, name in [(dict(nesterov=1), "nesterov"), (dict(nesterov=True, optimizer="adam"), "nesterov"),
                     (dict(nesterov=True, momentum=0.0), "nesterov"), (dict(schedule="linear"), "schedule"),
                     (dict(norm="batch"), "norm"), (dict(head_bias="no"), "head_bias")]:
        with pytest.raises(ValueError, match=name):
            RunConfig(**kw)
        with pytest.raises(ValueError, match=name):
            record_trajectories(**{**TINY, **kw})


def test_paper_recipe_is_a_valid_config_of_the_paper_choices():
    c = run_config(None, PAPER_RECIPE)
    assert (c.optimizer, c.nesterov, c.momentum, c.schedule, c.norm, c.head_bias) == \
        ("sgd", True, 0.9, "cosine", PAPER_RECIPE["norm"], False)
    assert c.norm != "none" and c.weight_decay > 0 and c.channels == tuple(PAPER_RECIPE["channels"])
    d = c.to_dict()
    assert {k: d[k] for k in ("nesterov", "schedule", "norm", "head_bias")} == \
        {"nesterov": True, "schedule": "cosine", "norm": PAPER_RECIPE["norm"], "head_bias": False}
    assert RunConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}) == c


@pytest.fixture(scope="module")
def recipe_traj():
    return record_trajectories(**{**PAPER_RECIPE, **TINY, "channels": (4, 8)})


def test_recipe_run_saves_and_loads_with_weights_only(recipe_traj, tmp_path):
    save_trajectories(recipe_traj, tmp_path / "t.pt")
    back = load_trajectories(tmp_path / "t.pt")
    np.testing.assert_array_equal(back.probs, recipe_traj.probs)
    assert back.config == recipe_traj.config and back.config["schedule"] == "cosine"
    assert back.config["norm"] == PAPER_RECIPE["norm"] and back.config["head_bias"] is False


def test_the_recipe_fits_a_small_training_set():
    """Interpolation is what the recipe is for: 400 images, 300 steps, the quick width."""
    c = run_config(None, PAPER_RECIPE, classes=tuple(range(10)), n_train=400, steps=300, checkpoints=[0, 300],
                   n_seeds=1)
    Xtr, ytr = training_images(c.dataset, c.classes, c.n_train, c.data_seed)
    on_train = PredictionSet(X=Xtr, labels=ytr, classes=list(c.classes))
    probs, _ = train_supervised_seeds(Xtr, ytr, on_train, c)
    acc = (probs.argmax(-1) == ytr.numpy()).mean(-1)[0]
    assert acc[0] < 0.3 and acc[-1] >= 0.99, acc


# ----------------------------------------------------------------------------- one stream per draw
def test_seed_k_of_one_run_is_not_seed_0_of_another():
    """With ``seed + k`` seed 1 of a seed=0 run was seed 0 of a seed=1 run; the initialisations
    (checkpoint 0) now differ, while a seed's numbers do not depend on how many seeds run."""
    a = record_trajectories(**TINY, seed=0)
    b = record_trajectories(**{**TINY, "n_seeds": 1}, seed=1)
    assert not np.allclose(a.probs[1, 0], b.probs[0, 0])
    assert not np.allclose(a.probs[1], b.probs[0])
    again = record_trajectories(**{**TINY, "n_seeds": 1}, seed=0)
    np.testing.assert_array_equal(again.probs[0], a.probs[0])


def test_seed_streams_are_distinct_per_seed_index_and_purpose():
    inits = {init_seed(s, k) for s in range(20) for k in range(20)}
    batches = {batch_seed(s, k) for s in range(20) for k in range(20)}
    assert len(inits) == len(batches) == 400 and not inits & batches
    assert init_seed(3, 2) == init_seed(3, 2)
    with pytest.raises(ValueError, match="k must be an integer >= 0"):
        init_seed(0, -1)


def test_data_draws_have_their_own_streams_and_are_used():
    seeds = {data_draw_seed(d, draw) for d in range(30) for draw in DATA_DRAWS}
    assert len(seeds) == 30 * len(DATA_DRAWS)     # data_seed=1's training subset is not data_seed=0's imprinting draw
    with pytest.raises(ValueError, match="draw must be one of"):
        data_draw_seed(0, "validation")
    classes, d = (0, 3), 1
    X, y = load_task_images("fashion_mnist", "train", classes)
    Xs, ys = training_images("fashion_mnist", classes, 50, d)
    Xr, yr = draw_subset(X, y, 50, data_draw_seed(d, "training_subset"))
    assert torch.equal(Xs, Xr) and torch.equal(ys, yr)
    ps = prediction_set("fashion_mnist", classes, 30, readout="imprint", n_imprint=4, data_seed=d, device="cpu")
    Xt, yt = load_task_images("fashion_mnist", "test", classes)
    Xte, _ = draw_subset(Xt, yt, 30, data_draw_seed(d, "test_images"))
    assert torch.equal(ps.X, Xte)
    sel = draw_per_class(y, range(2), 4, generator(data_draw_seed(d, "imprint_images")), "n_imprint")
    assert torch.equal(ps.X_imprint, X[sel])
    # and another data_seed draws other images
    assert not torch.equal(training_images("fashion_mnist", classes, 50, 0)[0], Xs)


# ----------------------------------------------------------------------------- batched or not
def test_batched_and_loop_agree_for_the_recipe(recipe_traj):
    kw = {**PAPER_RECIPE, **TINY, "channels": (4, 8)}
    vmap_run = record_trajectories(**kw, batched=True)
    assert vmap_run.config["batched"] is True and "batched" not in recipe_traj.config   # auto = loop on CPU
    assert np.abs(vmap_run.probs - recipe_traj.probs).max() < 1e-4
    assert np.abs(vmap_run.probs[:, -1] - vmap_run.probs[:, 0]).max() > 1e-2    # it trained
    loop_run = record_trajectories(**kw, batched=False)
    np.testing.assert_array_equal(loop_run.probs, recipe_traj.probs)
    with pytest.raises(ValueError, match="batched must be one of 'auto', True, False"):
        record_trajectories(**kw, batched="yes")
