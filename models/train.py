#!/usr/bin/env python3
"""Trains ceg4n's bundled models and writes them, their data and test fixtures.

The outputs are committed, so building and testing ceg4n needs no Python; rerun this only to
change the models:

    python3 -m pip install scikit-learn==1.* onnx==1.*
    python3 models/train.py

Each model is exported in a different style that real exporters use, to keep the importer
honest:
  iris_mlp    4-10-8-3 ReLU MLP, PyTorch style: Flatten, Gemm(transB=1); MinMax-scaled inputs.
              The bundled default model.
  digits_mlp  64-16-10 ReLU MLP on scikit-learn's 8x8 digits (raw pixels 0..16), Keras/TF style:
              Div(16) on the input, MatMul + Add, trailing Softmax.
  wine_mlp    13-12-3 ReLU MLP on raw wine features, normalisation in the graph: Sub(mean),
              Div(std), Gemm(transB=0, alpha, beta), trailing ArgMax.
Fixtures (tests/fixtures): unsupported ops (Sigmoid, Conv) and a net ending in Relu at opset 21.
"""
import json
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from sklearn.datasets import load_digits, load_iris, load_wine
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import MinMaxScaler, StandardScaler

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "generator", "tests", "fixtures")
SEED = 7


def f32(a):
    return np.asarray(a, dtype=np.float32)


def save_model(graph, name, opset=13, folder=HERE):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="ceg4n models/train.py")
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = os.path.join(folder, name)
    onnx.save(model, path)
    return path


def write_csv(path, x, y):
    with open(path, "w") as f:
        f.write(",".join([f"x{i}" for i in range(x.shape[1])] + ["label"]) + "\n")
        for row, label in zip(x, y):
            f.write(",".join(repr(float(v)) for v in f32(row)) + f",{int(label)}\n")


def forward(clf, x):
    a = f32(x).astype(np.float64)
    for i, (w, b) in enumerate(zip(clf.coefs_, clf.intercepts_)):
        a = a @ w + b
        if i < len(clf.coefs_) - 1:
            a = np.maximum(a, 0)
    return a


def write_properties(path, clf, x, lo, hi, radii, count):
    """CEG4N-style property boxes around the first `count` points, clipped to [lo, hi]."""
    props = []
    for r_index, r in enumerate(radii):
        for i in range(count):
            c = f32(x[i])
            props.append({
                "id": f"{i + 1}.{r_index}",
                "ball_size": r,
                "x": [c.tolist()],
                "lower_bounds": [f32(np.clip(c - r, lo, hi)).tolist()],
                "upper_bounds": [f32(np.clip(c + r, lo, hi)).tolist()],
                "input_shape": [1, len(c)],
                "output_shape": [1, len(clf.classes_)],
                "y": [forward(clf, c[None, :])[0].tolist()],
            })
    with open(path, "w") as f:
        json.dump(props, f, indent=1)


def train(x, y, hidden):
    clf = MLPClassifier(hidden_layer_sizes=hidden, activation="relu", solver="lbfgs",
                        max_iter=4000, alpha=1e-3, random_state=SEED)
    clf.fit(x, y)
    return clf


def iris():
    data = load_iris()
    x_train, x_test, y_train, y_test = train_test_split(
        data.data, data.target, test_size=0.2, random_state=SEED, stratify=data.target)
    scaler = MinMaxScaler().fit(x_train)
    x_train, x_test = f32(scaler.transform(x_train)), f32(scaler.transform(x_test))
    clf = train(x_train, y_train, (10, 8))
    inits, nodes, prev = [], [helper.make_node("Flatten", ["input"], ["flat"], axis=1)], "flat"
    for i, (w, b) in enumerate(zip(clf.coefs_, clf.intercepts_)):
        inits += [numpy_helper.from_array(f32(w.T), f"fc{i}.weight"),
                  numpy_helper.from_array(f32(b), f"fc{i}.bias")]
        out = f"fc{i}" if i < len(clf.coefs_) - 1 else "logits"
        nodes.append(helper.make_node("Gemm", [prev, f"fc{i}.weight", f"fc{i}.bias"], [out],
                                      transB=1, name=f"/fc{i}/Gemm"))
        prev = out
        if i < len(clf.coefs_) - 1:
            nodes.append(helper.make_node("Relu", [out], [f"relu{i}"], name=f"/relu{i}/Relu"))
            prev = f"relu{i}"
    graph = helper.make_graph(
        nodes, "iris_mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])], inits)
    save_model(graph, "iris_mlp.onnx", opset=13)
    write_csv(os.path.join(HERE, "iris_train.csv"), x_train, y_train)
    write_csv(os.path.join(HERE, "iris_test.csv"), x_test, y_test)
    # The default boxes: one test point per class whose 0.05-box the float network classifies
    # uniformly (test rows 1, 3, 4; `ceg4n verify --bits 16 --act-bits 16` proves all nine), so
    # refinement can prove them. The first four rows, one of them on a decision boundary, are
    # kept as a fixture with counterexamples at every width.
    write_properties(os.path.join(HERE, "iris_props.json"), clf, x_test[[1, 3, 4]], 0.0, 1.0,
                     [0.01, 0.03, 0.05], 3)
    write_properties(os.path.join(HERE, "iris_boundary_props.json"), clf, x_test, 0.0, 1.0,
                     [0.01, 0.03, 0.05], 4)
    return clf.score(x_test, y_test)


def digits():
    data = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        data.data, data.target, test_size=0.2, random_state=SEED, stratify=data.target)
    clf = train(x_train / 16.0, y_train, (16,))
    inits = [numpy_helper.from_array(f32([16.0]), "scale")]
    nodes = [helper.make_node("Div", ["pixels", "scale"], ["x"], name="normalise")]
    prev = "x"
    for i, (w, b) in enumerate(zip(clf.coefs_, clf.intercepts_)):
        inits += [numpy_helper.from_array(f32(w), f"dense{i}/kernel"),
                  numpy_helper.from_array(f32(b), f"dense{i}/bias")]
        nodes += [helper.make_node("MatMul", [prev, f"dense{i}/kernel"], [f"mm{i}"]),
                  helper.make_node("Add", [f"mm{i}", f"dense{i}/bias"], [f"z{i}"])]
        prev = f"z{i}"
        if i < len(clf.coefs_) - 1:
            nodes.append(helper.make_node("Relu", [prev], [f"a{i}"]))
            prev = f"a{i}"
    nodes.append(helper.make_node("Softmax", [prev], ["probabilities"], axis=-1))
    graph = helper.make_graph(
        nodes, "digits_mlp",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, [1, 64])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [1, 10])], inits)
    save_model(graph, "digits_mlp.onnx", opset=11)
    write_csv(os.path.join(HERE, "digits_test.csv"), x_test, y_test)
    write_properties(os.path.join(HERE, "digits_props.json"), clf, x_test / 16.0, 0.0, 1.0,
                     [0.01, 0.03], 5)
    # The property boxes are in normalised units; the graph takes raw pixels.
    with open(os.path.join(HERE, "digits_props.json")) as f:
        props = json.load(f)
    for p in props:
        for key in ("x", "lower_bounds", "upper_bounds"):
            p[key] = [(f32(p[key][0]) * 16.0).tolist()]
    with open(os.path.join(HERE, "digits_props.json"), "w") as f:
        json.dump(props, f, indent=1)
    return clf.score(x_test / 16.0, y_test)


def wine():
    data = load_wine()
    x_train, x_test, y_train, y_test = train_test_split(
        data.data, data.target, test_size=0.25, random_state=SEED, stratify=data.target)
    scaler = StandardScaler().fit(x_train)
    clf = train(f32(scaler.transform(x_train)), y_train, (12,))
    (w0, w1), (b0, b1) = clf.coefs_, clf.intercepts_
    inits = [numpy_helper.from_array(f32(scaler.mean_)[None, :], "mean"),
             numpy_helper.from_array(f32(scaler.scale_)[None, :], "std"),
             # Gemm with alpha/beta: weights stored at half scale, alpha=2 restores them.
             numpy_helper.from_array(f32(w0 / 2.0), "w0"), numpy_helper.from_array(f32(b0), "b0"),
             numpy_helper.from_array(f32(w1), "w1"), numpy_helper.from_array(f32(b1 / 4.0), "b1")]
    nodes = [helper.make_node("Sub", ["features", "mean"], ["centred"]),
             helper.make_node("Div", ["centred", "std"], ["scaled"]),
             helper.make_node("Gemm", ["scaled", "w0", "b0"], ["h"], alpha=2.0),
             helper.make_node("Relu", ["h"], ["h_relu"]),
             helper.make_node("Gemm", ["h_relu", "w1", "b1"], ["logits"], beta=4.0),
             helper.make_node("ArgMax", ["logits"], ["class"], axis=1, keepdims=1)]
    graph = helper.make_graph(
        nodes, "wine_mlp",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, 13])],
        [helper.make_tensor_value_info("class", TensorProto.INT64, [1, 1])], inits)
    save_model(graph, "wine_mlp.onnx", opset=13)
    write_csv(os.path.join(HERE, "wine_test.csv"), f32(x_test), y_test)
    return clf.score(f32(scaler.transform(x_test)), y_test)


def fixtures():
    os.makedirs(FIXTURES, exist_ok=True)
    rng = np.random.default_rng(SEED)
    w = numpy_helper.from_array(f32(rng.normal(size=(3, 4))), "w")
    b = numpy_helper.from_array(f32(rng.normal(size=3)), "b")
    io = ([helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])])
    save_model(helper.make_graph(
        [helper.make_node("Gemm", ["x", "w", "b"], ["z"], transB=1, name="fc"),
         helper.make_node("Sigmoid", ["z"], ["y"], name="squash")],
        "sigmoid", *io, [w, b]), "unsupported_sigmoid.onnx", folder=FIXTURES)
    k = numpy_helper.from_array(f32(rng.normal(size=(3, 1, 2))), "k")
    save_model(helper.make_graph(
        [helper.make_node("Conv", ["x3", "k"], ["y"], name="conv1")],
        "conv", [helper.make_tensor_value_info("x3", TensorProto.FLOAT, [1, 1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 3])], [k]),
        "unsupported_conv.onnx", folder=FIXTURES)
    save_model(helper.make_graph(
        [helper.make_node("Gemm", ["x", "w", "b"], ["z"], transB=1),
         helper.make_node("Relu", ["z"], ["y"])],
        "relu_tail", *io, [w, b]), "relu_after_last_opset21.onnx", opset=21, folder=FIXTURES)


if __name__ == "__main__":
    print("iris test accuracy", iris())
    print("digits test accuracy", digits())
    print("wine test accuracy", wine())
    fixtures()
