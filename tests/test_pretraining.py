"""The small ResNet, brightness labels, target tasks, the training loop and the pre-training cache."""
import math

import numpy as np
import pytest
import torch

from tasknb import pretraining as pt
from tasknb.networks.resnet import RESNET_MODULES, SmallResNet, init_resnet
from tasknb.tasks import brightness_labels


def test_resnet_has_the_slides_module_names_and_counts():
    net = init_resnet(10, 8, seed=0, device="cpu")
    assert [n for n, _ in net.named_children()] == list(RESNET_MODULES)
    counts = {n: sum(p.numel() for p in c.parameters()) for n, c in net.named_children()}
    assert counts == {"conv1": 88, "layer1": 1184, "layer2": 3680, "layer3": 14528, "layer4": 57728, "fc": 650}
    assert not list(net.buffers()), "GroupNorm keeps no running statistics"
    assert net(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    assert net.features(torch.rand(3, 1, 28, 28)).shape == (3, 64)


def test_init_resnet_depends_on_the_seed_only_and_leaves_the_global_rng():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = init_resnet(5, 4, seed=7, device="cpu")
    after = torch.rand(1)
    b = init_resnet(5, 4, seed=7, device="cpu")
    c = init_resnet(5, 4, seed=8, device="cpu")
    assert torch.equal(before, after)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.fc.weight, c.fc.weight)


@pytest.mark.parametrize("kw, msg", [({"width": 1}, "width must be an integer >= 2"),
                                     ({"norm": "batch"}, "norm must be one of 'group', 'none'"),
                                     ({"n_classes": 1}, "n_classes must be an integer >= 2")])
def test_resnet_validates(kw, msg):
    with pytest.raises(ValueError, match=msg):
        SmallResNet(**kw)


def test_brightness_labels_are_equally_frequent_monotone_and_reusable():
    g = torch.Generator().manual_seed(0)
    X = torch.rand(400, 1, 4, 4, generator=g) * torch.rand(400, 1, 1, 1, generator=g)
    y, edges = brightness_labels(X, 4)
    assert torch.bincount(y, minlength=4).tolist() == [100, 100, 100, 100]
    mean = X.mean(dim=(1, 2, 3))
    order = torch.argsort(mean)
    assert bool((y[order][1:] >= y[order][:-1]).all()), "a brighter image never gets a lower level"
    y2, _ = brightness_labels(X[:50] * 0 + 1.0, 4, edges=edges)
    assert set(y2.tolist()) == {3}
    with pytest.raises(ValueError, match="edges must be 3 increasing numbers"):
        brightness_labels(X, 4, edges=[0.3, 0.1, 0.5])
    with pytest.raises(ValueError, match="n_levels must be an integer >= 2"):
        brightness_labels(X, 1)


def test_target_tasks_share_fashion_images_and_transform_them():
    a = pt.target_images("fashion_classes", "train", 300, seed=3)
    b = pt.target_images("fashion_inverted", "train", 300, seed=3)
    c = pt.target_images("fashion_brightness", "train", 300, seed=3)
    d = pt.target_images("digits", "test", 100, seed=3)
    assert a.X.shape == (300, 1, 28, 28) and a.n_classes == 5 and int(a.y.max()) <= 4
    assert torch.allclose(b.X, 1 - a.X) and torch.equal(a.y, b.y)
    assert torch.equal(c.X, a.X) and c.n_classes == 4 and not torch.equal(c.y, a.y)
    assert d.X.shape == (100, 1, 28, 28) and d.n_classes == 10
    e = pt.target_images("fashion_classes", "train", 300, seed=4)
    assert not torch.equal(e.X, a.X), "another seed draws other images"
    s = pt.target_images("fashion_classes", "train", 300, seed=3, block_size=7)
    assert torch.equal(s.y, a.y) and not torch.equal(s.X, a.X)
    assert torch.allclose(torch.sort(s.X.flatten(1), 1).values, torch.sort(a.X.flatten(1), 1).values)
    src = pt.source_images("test", 50, seed=0)
    assert src.n_classes == 5 and src.X.shape == (50, 1, 28, 28)
    with pytest.raises(ValueError, match="target must be one of"):
        pt.target_images("cifar", "train", 10)
    with pytest.raises(ValueError, match="block_size must divide the image side 28"):
        pt.target_images("digits", "train", 10, block_size=5)


def _tiny_task(n=64):
    g = torch.Generator().manual_seed(1)
    X = torch.rand(n, 1, 28, 28, generator=g)
    y = (X.mean(dim=(1, 2, 3)) > X.mean()).long()
    return X, y


def test_train_network_learns_is_deterministic_and_keeps_checkpoints():
    X, y = _tiny_task()
    spec = pt.TrainSpec(steps=40, batch_size=16, lr=0.05, eval_every=10)
    runs = []
    for _ in range(2):
        net = init_resnet(2, 4, seed=0, device="cpu")
        runs.append(pt.train_network(net, X, y, spec, batch_seed=5, eval_sets={"train": (X, y)}, checkpoints=(0, 20)))
    r = runs[0]
    assert r.steps.tolist() == [0, 10, 20, 30, 40]
    assert r.metrics["train"]["loss"][-1] < r.metrics["train"]["loss"][0]
    assert sorted(r.states) == [0, 20]
    assert all(torch.equal(r.final[k], runs[1].final[k]) for k in r.final)
    assert torch.equal(r.states[0]["fc.weight"], init_resnet(2, 4, seed=0, device="cpu").fc.weight.detach())
    other = pt.train_network(init_resnet(2, 4, seed=0, device="cpu"), X, y, spec, batch_seed=6)
    assert not torch.equal(other.final["fc.weight"], r.final["fc.weight"]), "the batch order matters"
    assert pt.steps_to_threshold(r, "train", 2.0) == math.inf
    assert pt.steps_to_threshold(r, "train", 0.0) == 0.0
    assert pt.steps_to_threshold(r, "train", 10.0, metric="loss") == 0.0
    with pytest.raises(ValueError, match="checkpoints must be steps in"):
        pt.train_network(init_resnet(2, 4, seed=0, device="cpu"), X, y, spec, batch_seed=5, checkpoints=(50,))
    with pytest.raises(ValueError, match="eval_set must be one of"):
        pt.steps_to_threshold(r, "test", 0.5)


@pytest.mark.parametrize("kw, msg", [({"steps": 0}, "steps must be an integer >= 1"),
                                     ({"lr": -1.0}, "lr must be a finite number > 0"),
                                     ({"schedule": "step"}, "schedule must be one of")])
def test_train_spec_validates(kw, msg):
    with pytest.raises(ValueError, match=msg):
        pt.TrainSpec(**kw)


def test_pretrained_source_is_cached_by_configuration(tmp_path):
    cfg = pt.SourceConfig(width=2, n_train=64, n_test=32, spec=pt.TrainSpec(steps=6, batch_size=16, eval_every=3),
                          checkpoints=(3,), seed=1)
    assert cfg.checkpoints == (0, 3, 6)
    a = pt.pretrained_source(cfg, cache_dir=tmp_path, device="cpu")
    files = list(tmp_path.glob("source-*.pt"))
    assert not a.cached and len(files) == 1 and cfg.key() in files[0].name
    torch.load(files[0], weights_only=True)
    b = pt.pretrained_source(cfg, cache_dir=tmp_path, device="cpu")
    assert b.cached
    assert sorted(b.states) == [0, 3, 6]
    assert all(torch.equal(a.final[k], b.final[k]) for k in a.final)
    np.testing.assert_array_equal(a.accuracy, b.accuracy)
    assert not torch.equal(a.states[0]["fc.weight"], a.final["fc.weight"])
    cfg2 = pt.SourceConfig(width=2, n_train=64, n_test=32, spec=pt.TrainSpec(steps=6, batch_size=16, eval_every=3),
                           checkpoints=(3,), seed=2)
    assert cfg2.key() != cfg.key()
    net = b.model(3, device="cpu")
    assert torch.equal(net.fc.weight.detach(), b.states[3]["fc.weight"])
    with pytest.raises(ValueError, match="step must be one of the checkpoints"):
        b.model(4)


def test_start_states():
    source = pt.get_state(init_resnet(5, 4, seed=11, device="cpu"))
    p0 = pt.start_state("P", 10, 4, seed=0, k=0, source=source)
    p1 = pt.start_state("P", 10, 4, seed=0, k=1, source=source)
    r0 = pt.start_state("RI", 10, 4, seed=0, k=0)
    r1 = pt.start_state("RI", 10, 4, seed=0, k=1)
    assert all(torch.equal(p0[n], source[n]) for n in source if not n.startswith("fc."))
    assert p0["fc.weight"].shape == (10, 32)
    assert not torch.equal(p0["fc.weight"], p1["fc.weight"])
    assert not torch.equal(r0["layer1.conv_a.weight"], r1["layer1.conv_a.weight"])
    assert not torch.equal(r0["fc.weight"], p0["fc.weight"]), "the new head and the random net are other draws"
    assert torch.equal(pt.start_state("RI", 10, 4, seed=0, k=0)["fc.weight"], r0["fc.weight"])
    net = pt.load_state(SmallResNet(10, 4), p0)
    assert torch.equal(net.fc.weight.detach(), p0["fc.weight"])
    with pytest.raises(ValueError, match="source must be given"):
        pt.start_state("P", 10, 4, seed=0)
    with pytest.raises(ValueError, match="kind must be one of 'P', 'RI'"):
        pt.start_state("PT", 10, 4, seed=0)
    with pytest.raises(ValueError, match="state must hold exactly the model's parameters"):
        pt.load_state(SmallResNet(10, 4), {"fc.weight": p0["fc.weight"]})


def test_target_runs_pair_kinds_by_batch_order_and_same_start():
    X, y = _tiny_task(48)
    task = pt.TaskImages(X, y, 2, "tiny")
    source = pt.get_state(init_resnet(5, 2, seed=3, device="cpu"))
    spec = pt.TrainSpec(steps=4, batch_size=16, eval_every=2)
    runs = pt.target_runs(task, spec, 2, seed=0, source=source, width=2, eval_sets={"train": (X, y)}, device="cpu")
    assert runs.metric("P", "train").shape == (2, 3)
    assert not torch.equal(runs.starts["P"][0]["fc.weight"], runs.starts["P"][1]["fc.weight"])
    same = pt.target_runs(task, spec, 2, seed=0, source=source, width=2, same_start=True, device="cpu")
    assert all(torch.equal(same.starts["RI"][0][n], same.starts["RI"][1][n]) for n in same.starts["RI"][0])
    assert not torch.equal(same.finals("RI")[0]["fc.weight"], same.finals("RI")[1]["fc.weight"])
    with pytest.raises(ValueError, match="kinds must be one of 'P', 'RI'"):
        pt.target_runs(task, spec, 1, seed=0, kinds=("PT",))


def test_source_config_defaults_are_the_shared_source_model():
    assert pt.source_config() == pt.SourceConfig()
    c = pt.source_config(width=4, n_train=100, steps=200, seed=3)
    assert c.checkpoints == (0, 6, 20, 60, 200) and c.spec.eval_every == 10 and c.key() != pt.SourceConfig().key()
