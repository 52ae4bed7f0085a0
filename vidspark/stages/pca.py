"""Spark ML ``PCA`` with a fast fit: the covariance is summed over the partitions with numpy and
eigen-decomposed on the driver with numpy's LAPACK.

Spark's own fit takes a full SVD of the d x d covariance in the JVM, which without a native
BLAS (the usual case: pip's pyspark ships none) runs in pure Java: about 15 s for the 2,048
embedding values, on every fold of every appearance candidate of the sweep. This fit takes
under a second there and gives the same components (up to their signs: Spark's are whatever
its SVD returns, these have their largest loading positive). The model is Spark's
``PCAModel``: applied, saved (MLflow) and loaded exactly as one fitted by Spark.
"""
from __future__ import annotations

import numpy as np
from pyspark.ml.common import _py2java
from pyspark.ml.feature import PCA, PCAModel
from pyspark.ml.functions import vector_to_array
from pyspark.ml.linalg import DenseMatrix, DenseVector
from pyspark.sql import DataFrame

_ROWS_PER_BLOCK = 512


def _blocks(rows):
    block = []
    for row in rows:
        block.append(row[0])
        if len(block) == _ROWS_PER_BLOCK:
            yield np.asarray(block, dtype=np.float64)
            block = []
    if block:
        yield np.asarray(block, dtype=np.float64)


def _partial_sums(rows):
    """(rows, column sums, X^T X) of one partition, a block of rows at a time; nothing for an
    empty partition."""
    sums = None
    for x in _blocks(rows):
        sums = _add(sums, (x.shape[0], x.sum(axis=0), x.T @ x))
    if sums is not None:
        yield sums


def _add(a, b):
    """Two partial sums added; None is nothing yet."""
    if a is None or b is None:
        return b if a is None else a
    return a[0] + b[0], a[1] + b[1], a[2] + b[2]


def components(n: int, total: np.ndarray, gram: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``k`` principal components (d x k, by decreasing variance) and the share of the
    variance each explains, from the row count, column sums and Gram matrix of the data (the
    sample covariance, as Spark's ``RowMatrix.computeCovariance``). Each component's sign is
    fixed so that its largest loading is positive: the same data gives the same model whatever
    sign the LAPACK build returns."""
    mean = total / n
    cov = (gram - n * np.outer(mean, mean)) / max(n - 1, 1)
    values, vectors = np.linalg.eigh((cov + cov.T) / 2)
    order = np.argsort(values)[::-1][:k]
    pc = vectors[:, order]
    pc *= np.where(pc[np.abs(pc).argmax(axis=0), np.arange(k)] < 0, -1.0, 1.0)
    explained = np.abs(values[order]) / np.abs(values).sum()
    return pc, explained


class EigenPCA(PCA):
    """``pyspark.ml.feature.PCA`` (same parameters, same model) fitted through numpy."""

    def _fit(self, dataset: DataFrame) -> PCAModel:
        k = self.getK()
        column = self.getInputCol()
        rows = dataset.select(vector_to_array(column, "float64")).rdd
        sums = rows.mapPartitions(_partial_sums).treeAggregate(None, _add, _add, depth=2)
        if sums is None:
            raise ValueError(f"PCA: no rows to fit on in column {column}")
        n, total, gram = sums
        d = gram.shape[0]
        if not 0 < k <= d:
            raise ValueError(f"PCA: k={k} must be between 1 and the {d} input values")
        pc, explained = components(n, total, gram, k)
        sc = dataset.sparkSession.sparkContext
        java_model = sc._jvm.org.apache.spark.ml.feature.PCAModel(
            self.uid, _py2java(sc, DenseMatrix(d, k, pc.flatten(order="F").tolist())),
            _py2java(sc, DenseVector(explained)))
        return self._copyValues(self._create_model(java_model))
