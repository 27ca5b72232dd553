"""Shared by make.py's exporters: datasets, splits, and the files every fixture writes."""
import csv

import numpy as np
import onnxruntime as ort
from sklearn.datasets import load_iris, load_wine
from sklearn.model_selection import train_test_split


def split(name, binary=False):
    """Train/test split of a scikit-learn toy dataset, in raw units, float32."""
    X, y = (load_iris if name == "iris" else load_wine)(return_X_y=True)
    if binary:  # versicolor vs virginica: labels 1 and 2, not 0 and 1
        keep = y > 0
        X, y = X[keep], y[keep]
    return train_test_split(X.astype(np.float32), y, test_size=0.3, random_state=7, stratify=y)


def write_fixture(name, onnx_bytes, X_test, y_test, label_text=str):
    """NAME.onnx, NAME.csv (test rows: features, then the true label as the user writes it) and
    NAME.expected.csv (onnxruntime's numeric output per row, then its predicted label)."""
    with open(f"{name}.onnx", "wb") as f:
        f.write(onnx_bytes)
    features = X_test.shape[1]
    with open(f"{name}.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([f"x{i}" for i in range(features)] + ["label"])
        for x, y in zip(X_test, y_test):
            w.writerow([repr(float(v)) for v in x] + [label_text(y)])
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    names = [o.name for o in session.get_outputs()]
    rows = []
    for x in X_test:
        outs = dict(zip(names, session.run(None, {input_name: x[None, :]})))
        numeric, label = None, None
        for out_name, v in outs.items():
            if isinstance(v, list):  # ZipMap: [{label: probability}]
                numeric = numeric if numeric is not None else np.array(list(v[0].values()))
            elif v.dtype.kind in "iuUO" or v.dtype == np.int64:
                label = v.reshape(-1)[0]
            else:
                numeric = v.reshape(-1)
        if label is None:  # logits or probabilities only: the argmax (one logit: its sign)
            label = int(numeric[0] > 0) if len(numeric) == 1 else int(np.argmax(numeric))
        if isinstance(label, bytes):
            label = label.decode()
        rows.append([repr(float(v)) for v in numeric] + [label_text(label)])
    with open(f"{name}.expected.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([f"out{i}" for i in range(len(rows[0]) - 1)] + ["label"])
        w.writerows(rows)
    accuracy = np.mean([str(r[-1]) == label_text(y) for r, y in zip(rows, y_test)])
    print(f"{name}: onnxruntime label accuracy {accuracy:.4f} on {len(rows)} rows")
