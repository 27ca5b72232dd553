"""Fixtures from the exporters users run: each writes NAME.onnx, NAME.csv and
NAME.expected.csv (see common.write_fixture). Committed, so tests need no exporter.

    python3 -m venv /tmp/exp && /tmp/exp/bin/pip install -r requirements-sklearn-torch.txt
    /tmp/exp/bin/python make.py sklearn torch
    python3 -m venv /tmp/keras && /tmp/keras/bin/pip install -r requirements-keras.txt
    /tmp/keras/bin/python make.py keras
"""
import sys

import numpy as np

from common import split, write_fixture

WINE = ["barolo", "grignolino", "barbera"]


def sklearn_fixtures():
    from skl2onnx import to_onnx
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    Xtr, Xte, ytr, yte = split("iris")
    mlp = MLPClassifier((8,), max_iter=3000, random_state=0).fit(Xtr, ytr)
    for zipmap in (False, True):
        onx = to_onnx(mlp, Xtr[:1], target_opset=13, options={id(mlp): {"zipmap": zipmap}})
        write_fixture(f"skl_iris_zipmap_{'on' if zipmap else 'off'}", onx.SerializeToString(), Xte, yte)

    # Two classes with labels 1 and 2: Sigmoid, 1 - p, Concat.
    Xtr, Xte, ytr, yte = split("iris", binary=True)
    mlp = MLPClassifier((6,), max_iter=3000, random_state=0).fit(Xtr, ytr)
    for zipmap in (False, True):
        onx = to_onnx(mlp, Xtr[:1], target_opset=13, options={id(mlp): {"zipmap": zipmap}})
        write_fixture(f"skl_binary_zipmap_{'on' if zipmap else 'off'}", onx.SerializeToString(), Xte, yte)

    # The usual tabular model: a Pipeline with a scaler, string labels, ZipMap on; raw units
    # (wine's proline is in the hundreds).
    Xtr, Xte, ytr, yte = split("wine")
    names = np.array(WINE)
    pipe = Pipeline([("scale", StandardScaler()), ("mlp", MLPClassifier((8,), max_iter=3000, random_state=0))])
    pipe.fit(Xtr, names[ytr])
    onx = to_onnx(pipe, Xtr[:1], target_opset=13)
    write_fixture("skl_pipeline_wine", onx.SerializeToString(), Xte, names[yte])


def torch_fixtures():
    import io

    import torch

    torch.manual_seed(0)
    Xtr, Xte, ytr, yte = split("wine")
    mean, std = Xtr.mean(0), Xtr.std(0)
    Xtr, Xte = (Xtr - mean) / std, (Xte - mean) / std  # users standardise before torch
    model = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(13, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)
    )
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    X, y = torch.tensor(Xtr), torch.tensor(ytr)
    for _ in range(300):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(X), y).backward()
        opt.step()
    model.eval()
    example = (torch.tensor(Xte[:1]),)
    for dynamo in (False, True):
        buf = io.BytesIO()
        kwargs = dict(input_names=["features"], output_names=["logits"],
                      dynamic_axes={"features": {0: "batch"}, "logits": {0: "batch"}})
        if dynamo:
            program = torch.onnx.export(model, example, dynamo=True, input_names=["features"],
                                        output_names=["logits"],
                                        dynamic_shapes=({0: torch.export.Dim("batch")},))
            onnx_bytes = program.model_proto.SerializeToString()
        else:
            torch.onnx.export(model, example, buf, dynamo=False, opset_version=17, **kwargs)
            onnx_bytes = buf.getvalue()
        write_fixture(f"torch_{'dynamo' if dynamo else 'torchscript'}", onnx_bytes, Xte, yte)


def keras_fixture():
    import keras
    import tensorflow as tf
    import tf2onnx
    import tf2onnx.convert

    keras.utils.set_random_seed(0)
    Xtr, Xte, ytr, yte = split("iris")
    model = keras.Sequential([
        keras.Input((4,), name="features"),
        keras.layers.Dense(8, activation="relu"),
        keras.layers.Dense(3, activation="softmax"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss="sparse_categorical_crossentropy")
    model.fit(Xtr, ytr, epochs=200, verbose=0)
    # tf2onnx 1.17's from_keras does not know Keras 3 models; converting the model's call as a
    # tf.function is what works (Keras' own model.export(format="onnx") does the same).
    spec = (tf.TensorSpec((None, 4), tf.float32, name="features"),)
    call = tf.function(lambda x: model(x, training=False), input_signature=spec)
    proto, _ = tf2onnx.convert.from_function(call, input_signature=spec, opset=13)
    write_fixture("keras_tf2onnx", proto.SerializeToString(), Xte, yte)


if __name__ == "__main__":
    for which in sys.argv[1:] or ["sklearn", "torch", "keras"]:
        {"sklearn": sklearn_fixtures, "torch": torch_fixtures, "keras": keras_fixture}[which]()
