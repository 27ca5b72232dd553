#!/usr/bin/env python3
"""Fresh scikit-learn MLPs for the fidelity check (`scripts/fidelity-check.sh`).

Trained the way a user would, with nothing tuned for ceg4n: scikit-learn's MLPClassifier with
its defaults (ReLU, adam) and hidden layers (16,) and (16, 8), features MinMax-scaled to [0, 1]
on the training split, on three scikit-learn data sets (wine, breast cancer, digits). Each model
is written with its test split (scaled, the `--data` CSV) and 9 CEG4N boxes (radius 0.01, 0.03,
0.05 around the first 3 test rows, clipped to [0, 1]). The outputs are committed, so nothing
here needs Python; rerun this only to remake them:

    python3 -m pip install scikit-learn==1.* onnx==1.*
    python3 models/fidelity/train.py

A binary model (breast cancer) has one output unit in scikit-learn (class 1 when it is > 0); it
is exported as two logits (0, z), which argmax (lowest index on ties) decides the same way.
"""
import json
import os
import sys
import warnings

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from sklearn.datasets import load_breast_cancer, load_digits, load_wine
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import MinMaxScaler

HERE = os.path.dirname(os.path.abspath(__file__))
SEED = 0
RADII = [0.01, 0.03, 0.05]


def f32(a):
    return np.asarray(a, dtype=np.float32)


def logit_layers(clf):
    """Weights (in x out) and biases; a binary model's single unit becomes logits (0, z)."""
    ws, bs = [f32(w) for w in clf.coefs_], [f32(b) for b in clf.intercepts_]
    if ws[-1].shape[1] == 1:
        ws[-1] = np.concatenate([np.zeros_like(ws[-1]), ws[-1]], axis=1)
        bs[-1] = np.concatenate([np.zeros_like(bs[-1]), bs[-1]])
    return ws, bs


def forward(ws, bs, x):
    a = f32(x).astype(np.float64)
    for i, (w, b) in enumerate(zip(ws, bs)):
        a = a @ w.astype(np.float64) + b.astype(np.float64)
        if i < len(ws) - 1:
            a = np.maximum(a, 0)
    return a


def export(name, ws, bs):
    inits, nodes, prev = [], [], "features"
    for i, (w, b) in enumerate(zip(ws, bs)):
        inits += [numpy_helper.from_array(w, f"coefs_{i}"), numpy_helper.from_array(b, f"intercepts_{i}")]
        out = f"z{i}" if i < len(ws) - 1 else "logits"
        nodes.append(helper.make_node("Gemm", [prev, f"coefs_{i}", f"intercepts_{i}"], [out]))
        prev = out
        if i < len(ws) - 1:
            nodes.append(helper.make_node("Relu", [out], [f"a{i}"]))
            prev = f"a{i}"
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", ws[0].shape[0]])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", ws[-1].shape[1]])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="ceg4n models/fidelity/train.py")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, os.path.join(HERE, f"{name}.onnx"))


def write_csv(path, x, y):
    with open(path, "w") as f:
        f.write(",".join([f"x{i}" for i in range(x.shape[1])] + ["label"]) + "\n")
        for row, label in zip(x, y):
            f.write(",".join(repr(float(v)) for v in f32(row)) + f",{int(label)}\n")


def write_boxes(path, ws, bs, x):
    props = []
    for r_index, r in enumerate(RADII):
        for i in range(3):
            c = f32(x[i])
            props.append({
                "id": f"{i + 1}.{r_index}",
                "ball_size": r,
                "x": [c.tolist()],
                "lower_bounds": [f32(np.clip(c - r, 0.0, 1.0)).tolist()],
                "upper_bounds": [f32(np.clip(c + r, 0.0, 1.0)).tolist()],
                "input_shape": [1, len(c)],
                "output_shape": [1, ws[-1].shape[1]],
                "y": [forward(ws, bs, c[None, :])[0].tolist()],
            })
    with open(path, "w") as f:
        json.dump(props, f, indent=1)


def main():
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    sets = {"wine": load_wine(), "cancer": load_breast_cancer(), "digits": load_digits()}
    for data_name, data in sets.items():
        x_train, x_test, y_train, y_test = train_test_split(
            data.data, data.target, test_size=0.25, random_state=SEED, stratify=data.target)
        scaler = MinMaxScaler().fit(x_train)
        x_train, x_test = f32(scaler.transform(x_train)), f32(scaler.transform(x_test))
        write_csv(os.path.join(HERE, f"{data_name}_test.csv"), x_test, y_test)
        for hidden in [(16,), (16, 8)]:
            name = f"{data_name}_{'_'.join(map(str, hidden))}"
            clf = MLPClassifier(hidden_layer_sizes=hidden, activation="relu", max_iter=1000,
                                random_state=SEED).fit(x_train, y_train)
            ws, bs = logit_layers(clf)
            export(name, ws, bs)
            write_boxes(os.path.join(HERE, f"{name}_boxes.json"), ws, bs, x_test)
            ours = forward(ws, bs, x_test).argmax(axis=1)
            assert (ours == clf.predict(x_test)).all(), f"{name}: export disagrees with sklearn"
            print(f"{name}: test accuracy {clf.score(x_test, y_test):.4f}", file=sys.stderr)


if __name__ == "__main__":
    main()
