"""The one training path's pieces: ``checkpoint_dir`` in every method's interface, the training-image rules."""

from __future__ import annotations

import inspect

import pytest
from conftest import blob_sample

from cellbench.errors import DataError
from cellbench.methods import METHODS, get_method
from cellbench.methods.base import Method
from cellbench.methods.training import select_training, training_classes


def test_the_interface_names_checkpoint_dir():
    parameter = inspect.signature(Method.train).parameters["checkpoint_dir"]
    assert parameter.kind is inspect.Parameter.KEYWORD_ONLY and parameter.default is None


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_takes_checkpoint_dir(name):
    try:
        cls = get_method(name)
    except DataError:
        pytest.skip(f"{name} is not installed here")
    parameter = inspect.signature(cls.train).parameters.get("checkpoint_dir")
    assert parameter is not None and parameter.kind is inspect.Parameter.KEYWORD_ONLY and parameter.default is None


def test_select_training_rules():
    samples = [blob_sample(k, shape=(32, 32), n=1, name=name) for k, name in enumerate("dcba")]
    assert [s.name for s in select_training(samples, 2)] == ["d", "c"]  # cellbench train --images: the first N
    drawn = [s.name for s in select_training(samples, 2, seed=1)]
    assert drawn == sorted(drawn) and drawn == [s.name for s in select_training(samples[::-1], 2, seed=1)]
    assert [s.name for s in select_training(samples, None, seed=0)] == ["a", "b", "c", "d"]
    with pytest.raises(DataError, match="asks for 5"):
        select_training(samples, 5, seed=0)
    with pytest.raises(DataError, match="at least 1"):
        select_training(samples, 0)
    with pytest.raises(DataError, match="no training images"):
        select_training([], None)


def test_training_classes_are_shared_by_every_sample():
    import dataclasses

    a, b = blob_sample(1, shape=(32, 32), n=1, name="a"), blob_sample(2, shape=(32, 32), n=1, name="b")
    assert training_classes("maskrcnn", [a, b]) == a.instances.classes
    other = dataclasses.replace(b, instances=b.instances.remap_classes({"cell": "nucleus"}, ("nucleus",)))
    with pytest.raises(DataError, match=r"maskrcnn: training image 'b' has classes \['nucleus'\], 'a' has \['cell'\]"):
        training_classes("maskrcnn", [a, other])
    with pytest.raises(DataError, match="mask2former: no training images"):
        training_classes("mask2former", [])
