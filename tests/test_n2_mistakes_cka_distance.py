"""N2's protocol: mistake sets and their held-out ambiguity, error overlap, CKA and l2 tables."""
import numpy as np
import pytest
import torch

from tasknb.chapters import n2_mistakes_cka_distance as n2
from tasknb.networks.resnet import init_resnet
from tasknb.pretraining import TaskImages, TrainSpec, get_state


def fake_study(probs_p, probs_r, y, width=2, n_classes=3, seed=0):
    K = probs_p.shape[0]
    st = lambda s: get_state(init_resnet(n_classes, width, s, "cpu"))  # noqa: E731
    finals = {"P": [st(100 + k) for k in range(K)], "RI": [st(200 + k) for k in range(K)]}
    starts = {"P": [st(300) for _ in range(K)], "RI": [st(400 + k) for k in range(K)]}
    X = torch.rand(len(y), 1, 28, 28, generator=torch.Generator().manual_seed(seed))
    return n2.TargetStudy("fake", n_classes, width, finals, starts, {"P": probs_p, "RI": probs_r}, X,
                          torch.as_tensor(y))


def onehot(labels, C=3, p=0.9):
    out = np.full((len(labels), C), (1 - p) / (C - 1))
    out[np.arange(len(labels)), labels] = p
    return out


def test_kappa_and_jaccard_known_values():
    a = np.array([1, 1, 0, 0, 0, 0, 0, 0], bool)
    assert n2.cohen_kappa(a, a) == pytest.approx(1.0)
    assert n2.jaccard(a, a) == 1.0
    b = np.array([0, 0, 1, 1, 0, 0, 0, 0], bool)
    # disjoint errors: agreement 4/8, expected 0.25^2 + 0.75^2 = 0.625 -> kappa = (0.5 - 0.625) / 0.375
    assert n2.cohen_kappa(a, b) == pytest.approx(-1 / 3)
    assert n2.jaccard(a, b) == 0.0
    assert n2.independent_jaccard(a, b) == pytest.approx(0.0625 / (0.5 - 0.0625))
    # independent errors at many images: kappa near 0, Jaccard near its independent value
    rng = np.random.default_rng(0)
    e1, e2 = rng.random(200_000) < 0.2, rng.random(200_000) < 0.3
    assert abs(n2.cohen_kappa(e1, e2)) < 0.01
    assert n2.jaccard(e1, e2) == pytest.approx(n2.independent_jaccard(e1, e2), abs=0.005)


def test_held_out_ambiguity_ignores_the_compared_pair():
    y = np.array([0, 1, 2, 0])
    K = 3
    P = np.stack([onehot(y) for _ in range(K)])
    R = np.stack([onehot(y) for _ in range(K)])
    # run 0 of both kinds is uniform on image 3: the ambiguity seen when comparing k = 0 must not change
    P[0, 3] = R[0, 3] = 1 / 3
    amb = n2.held_out_ambiguity(fake_study(P, R, y))
    assert amb.shape == (K, 4)
    assert amb[0, 3] == pytest.approx(amb[0, 0])
    assert amb[1, 3] > amb[1, 0] + 0.05          # but it does when k = 0 is held out
    assert np.all((amb >= 0) & (amb <= 1 + 1e-12))
    P[:, 0] = 1 / 3
    R[:, 0] = 1 / 3
    assert n2.held_out_ambiguity(fake_study(P, R, y))[2, 0] == pytest.approx(1.0)


def test_mistake_sets_partition_the_images():
    y = np.array([0, 1, 2, 0, 1, 2])
    pred_p = np.array([[1, 1, 2, 0, 0, 2], [0, 1, 2, 0, 1, 2], [0, 0, 2, 0, 1, 2]])
    pred_r = np.array([[0, 1, 0, 0, 0, 2], [0, 2, 2, 0, 1, 2], [0, 0, 2, 1, 1, 2]])
    P = np.stack([onehot(p) for p in pred_p])
    R = np.stack([onehot(p) for p in pred_r])
    ms = n2.mistake_sets(fake_study(P, R, y))
    assert ms.sizes["A"].tolist() == [1, 0, 0] and ms.sizes["B"].tolist() == [1, 1, 1]
    assert ms.sizes["both wrong"].tolist() == [1, 0, 1]
    total = sum(ms.sizes[n] for n in n2.SET_NAMES)
    assert total.tolist() == [6, 6, 6]
    assert ms.members["A"][0].tolist() == [0] and ms.members["B"][0].tolist() == [2]
    assert not ms.complete and np.isnan(ms.ambiguity["A"][1])


def test_overlap_table_pairs_and_layer_slope():
    y = np.zeros(8, int)
    rng = np.random.default_rng(1)
    pred = rng.integers(0, 3, (4, 8))
    P = np.stack([onehot(p) for p in pred])
    ov = n2.overlap_table(fake_study(P, P.copy(), y))
    # identical P-T and RI-T runs: every pair type gives the same numbers
    for key in ("kappa", "jaccard"):
        np.testing.assert_allclose(ov["P-T & P-T"][key], ov["RI-T & RI-T"][key])
        np.testing.assert_allclose(ov["P-T & P-T"][key], ov["P-T & RI-T"][key])
    e = pred != 0
    assert ov["P-T & P-T"]["jaccard"][3] == pytest.approx(n2.jaccard(e[3], e[0]))
    per = {m: np.array([i * 2.0, -i * 1.0]) for i, m in enumerate(n2.CKA_LAYERS)}
    np.testing.assert_allclose(n2.layer_slope(per), [2.0, -1.0])


def test_distance_table_against_hand_computation():
    y = np.zeros(4, int)
    P = np.stack([onehot(y) for _ in range(3)])
    st = fake_study(P, P.copy(), y)
    dt = n2.distance_table(st)
    a, b = st.finals["RI"][1], st.finals["RI"][2]
    names = [n for n in a if n.startswith("layer2.")]
    raw = np.sqrt(sum(float(((a[n] - b[n]) ** 2).sum()) for n in names))
    assert dt["raw"]["2 RI-T"]["layer2"][1] == pytest.approx(raw)
    k = sum(a[n].numel() for n in names)
    assert dt["sizes"]["layer2"] == k
    assert dt["per_weight"]["2 RI-T"]["layer2"][1] == pytest.approx(raw / np.sqrt(k))
    na = np.sqrt(sum(float((a[n] ** 2).sum()) for n in names))
    nb = np.sqrt(sum(float((b[n] ** 2).sum()) for n in names))
    assert dt["relative"]["2 RI-T"]["layer2"][1] == pytest.approx(raw / (0.5 * (na + nb)))
    # P-T & P pairs run k with the P start k; here every P start is one network
    c = st.starts["P"][0]
    whole = np.sqrt(sum(float(((st.finals["P"][2][n] - c[n]) ** 2).sum()) for n in c))
    assert dt["raw"]["P-T & P"]["whole"][2] == pytest.approx(whole)


def test_cka_table_shapes_and_the_p_row():
    y = np.zeros(12, int)
    P = np.stack([onehot(y) for _ in range(3)])
    st = fake_study(P, P.copy(), y)
    st.finals["P"][1] = st.starts["P"][1]          # P-T run 1 never moved: CKA with P is 1 at every layer
    c = n2.cka_table(st, n_images=10)
    for est in ("biased", "debiased"):
        assert set(c[est]) == set(n2.CKA_ROWS) | {n2.CKA_CONTROL_ROW}
        assert all(v.shape == (3, 5) for v in c[est].values())
        np.testing.assert_allclose(c[est]["P-T & P"][1], 1.0, atol=1e-9)
        assert np.all(c[est]["P-T & RI-T"] < 1 - 1e-6)
    with pytest.raises(ValueError, match="n_images"):
        n2.cka_table(st, n_images=2)


def test_run_target_tiny_is_deterministic():
    g = torch.Generator().manual_seed(0)
    X = torch.rand(24, 1, 28, 28, generator=g)
    y = torch.arange(24) % 3
    task = TaskImages(X, y, 3, "tiny")
    source = get_state(init_resnet(3, 2, 7, "cpu"))
    spec = TrainSpec(steps=3, batch_size=8, eval_every=3)
    a = n2.run_target(task, task, spec, 3, 0, source, 2, device="cpu")
    b = n2.run_target(task, task, spec, 3, 0, source, 2, device="cpu")
    assert a.probs["P"].shape == (3, 24, 3)
    np.testing.assert_array_equal(a.probs["RI"], b.probs["RI"])
    np.testing.assert_allclose(a.probs["P"].sum(-1), 1.0)
    # the P-T runs start from the source body
    body = [n for n in source if not n.startswith("fc.")]
    assert body and all(torch.equal(a.starts["P"][0][n], source[n]) for n in body)
    with pytest.raises(ValueError, match="n_seeds"):
        n2.run_target(task, task, spec, 2, 0, source, 2, device="cpu")
