"""Fixtures from the exporters users run: each writes NAME.onnx, NAME.csv and
NAME.expected.csv (see common.write_fixture). Committed, so tests need no exporter.

    python3 -m venv /tmp/exp && /tmp/exp/bin/pip install -r requirements-sklearn-torch.txt
    /tmp/exp/bin/python make.py sklearn torch idioms
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
    skl_default_opset_fixture()


def skl_default_opset_fixture():
    """skl2onnx's defaults, as most users export: no target_opset (skl2onnx 1.20 writes opset
    22 for this pipeline), a MinMaxScaler (exported as Cast, Mul, Add rather than Scaler),
    ZipMap on."""
    from skl2onnx import to_onnx
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import MinMaxScaler

    Xtr, Xte, ytr, yte = split("wine")
    pipe = Pipeline([("scale", MinMaxScaler()), ("mlp", MLPClassifier((8,), max_iter=3000, random_state=0))])
    pipe.fit(Xtr, ytr)
    write_fixture("skl_default_opset", to_onnx(pipe, Xtr[:1]).SerializeToString(), Xte, yte)


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


def idiom_fixtures():
    """Hand-built graphs (onnx.helper) with the idioms exporters mix: a weight behind a
    Transpose of a constant, BatchNormalization after a dense layer, Gemm with alpha/beta and
    transB, a Cast, a dynamic batch; at the oldest and newest opsets. Plus graphs that must be
    refused (refused_*.onnx): a head that is not a function of the logits keeping their argmax,
    ArgMax ties to the last index."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)
    Xtr, Xte, ytr, yte = split("iris")
    mean, std = Xtr.mean(0), Xtr.std(0)

    def init(name, a):
        return numpy_helper.from_array(np.asarray(a, dtype=np.float32), name)

    def model(nodes, inits, outputs, opset):
        graph = helper.make_graph(
            nodes, "idioms",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
            outputs, inits)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        m.ir_version = 7 if opset < 15 else 10
        onnx.checker.check_model(m)
        return m.SerializeToString()

    inits = [
        init("mean", mean), init("std", std),
        init("w0t", rng.normal(size=(8, 4))),  # [out, in]: MatMul needs it transposed
        init("bn_scale", rng.uniform(0.5, 1.5, 8)), init("bn_b", rng.normal(size=8) * 0.1),
        init("bn_mean", rng.normal(size=8) * 0.2), init("bn_var", rng.uniform(0.5, 2.0, 8)),
        init("w1", rng.normal(size=(3, 8))), init("b1", rng.normal(size=3) * 0.1),
    ]
    nodes = [
        helper.make_node("Cast", ["x"], ["xc"], to=TensorProto.FLOAT),
        helper.make_node("Sub", ["xc", "mean"], ["xs"]),
        helper.make_node("Div", ["xs", "std"], ["xn"]),
        helper.make_node("Transpose", ["w0t"], ["w0"], perm=[1, 0]),
        helper.make_node("MatMul", ["xn", "w0"], ["h0"]),
        helper.make_node("BatchNormalization", ["h0", "bn_scale", "bn_b", "bn_mean", "bn_var"], ["h1"],
                         epsilon=1e-3),
        helper.make_node("Relu", ["h1"], ["h2"]),
        helper.make_node("Gemm", ["h2", "w1", "b1"], ["logits"], alpha=0.5, beta=2.0, transB=1),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    out = [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 3])]
    # The oldest opset accepted, the one most tools wrote until 2024, and the newest the pinned
    # onnx knows.
    for opset in (9, 21, 28):
        onnx_bytes = model(nodes, inits, out, opset)
        session_labels = None
        import onnxruntime as ort
        session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
        session_labels = session.run(None, {"x": Xte})[0].argmax(1)
        # The "true" labels are the graph's own: these fixtures test translation, not training.
        write_fixture(f"idioms_opset{opset}", onnx_bytes, Xte, session_labels)

    def refused(name, head_nodes, head_out):
        nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["logits"], transB=1)] + head_nodes
        inits = [init("w", rng.normal(size=(3, 4))), init("b", np.zeros(3)), init("c", [0.0, 5.0, 0.0])]
        out = [helper.make_tensor_value_info(head_out, TensorProto.FLOAT, ["batch", 3])]
        with open(f"refused_{name}.onnx", "wb") as f:
            f.write(model(nodes, inits, out, 13))

    refused("shifted_scores", [helper.make_node("Softmax", ["logits"], ["p"], axis=1),
                               helper.make_node("Add", ["p", "c"], ["q"])], "q")
    refused("argmax_last", [helper.make_node("ArgMax", ["logits"], ["k"], axis=1, select_last_index=1)], "k")


if __name__ == "__main__":
    for which in sys.argv[1:] or ["sklearn", "torch", "keras", "idioms"]:
        {"sklearn": sklearn_fixtures, "torch": torch_fixtures, "keras": keras_fixture,
         "idioms": idiom_fixtures, "skl_default_opset": skl_default_opset_fixture}[which]()
