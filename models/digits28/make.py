#!/usr/bin/env python3
"""A 784-256-256-10 ReLU MLP of our own, the scale of VNN-COMP's MNIST networks, for the
verifier's benchmark (`ceg4n bench verify --suite models/digits28`-style folders need the
suite layout, so the benchmark reads the files here directly).

scikit-learn's 8x8 digits are upsampled to 28x28 (bilinear, values in [0, 1]) and an MLP is
trained on them (Adam, early stopping, seed 7). Written next to this script:
  digits28_mlp.onnx     MatMul + Add + Relu, 784 inputs in [0, 1], 10 logits
  digits28_props.json   boxes of radius 0.015, 0.03 and 0.05 around 3 test inputs, clipped
                        to [0, 1] (CEG4N property format)

    /path/to/venv/bin/python models/digits28/make.py   # scikit-learn, scipy, onnx
"""
import os
import sys

import numpy as np
from onnx import TensorProto, helper, numpy_helper
from scipy.ndimage import zoom
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
from train import f32, save_model, write_properties  # noqa: E402

SEED = 7


def upsample(images):
    """8x8 images (0..16) to 28x28 in [0, 1], bilinear."""
    big = np.stack([zoom(im / 16.0, 3.5, order=1) for im in images])
    return f32(np.clip(big, 0.0, 1.0).reshape(len(images), -1))


def main():
    data = load_digits()
    x = upsample(data.images)
    x_train, x_test, y_train, y_test = train_test_split(
        x, data.target, test_size=0.25, random_state=SEED, stratify=data.target)
    clf = MLPClassifier(hidden_layer_sizes=(256, 256), activation="relu", solver="adam",
                        max_iter=200, alpha=1e-4, early_stopping=True, random_state=SEED)
    clf.fit(x_train, y_train)
    accuracy = clf.score(x_test, y_test)
    inits, nodes, prev = [], [], "input"
    for i, (w, b) in enumerate(zip(clf.coefs_, clf.intercepts_)):
        inits += [numpy_helper.from_array(f32(w), f"dense{i}.kernel"),
                  numpy_helper.from_array(f32(b), f"dense{i}.bias")]
        nodes.append(helper.make_node("MatMul", [prev, f"dense{i}.kernel"], [f"mm{i}"]))
        out = f"dense{i}" if i < len(clf.coefs_) - 1 else "logits"
        nodes.append(helper.make_node("Add", [f"mm{i}", f"dense{i}.bias"], [out]))
        prev = out
        if i < len(clf.coefs_) - 1:
            nodes.append(helper.make_node("Relu", [out], [f"relu{i}"]))
            prev = f"relu{i}"
    graph = helper.make_graph(
        nodes, "digits28_mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 784])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])], inits)
    save_model(graph, "digits28_mlp.onnx", opset=13, folder=HERE)
    write_properties(os.path.join(HERE, "digits28_props.json"), clf, x_test, 0.0, 1.0,
                     [0.015, 0.03, 0.05], 3)
    print("digits28 test accuracy", accuracy)


if __name__ == "__main__":
    main()
