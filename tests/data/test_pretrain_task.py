"""The generated classification task: deterministic, new images every epoch, every class drawn."""

import numpy as np
import pytest

from vwe.data.pretrain_task import (
    HUES,
    SHAPES,
    TEXTURES,
    VAL_STREAM,
    PretrainTask,
    render_task_image,
    task_classes,
)


def test_the_classes_are_distinct_triples_chosen_by_the_seed():
    classes = task_classes(96, seed=0)
    assert len(set(classes)) == 96
    assert task_classes(96, seed=0) == classes and task_classes(96, seed=1) != classes
    assert len(task_classes(len(SHAPES) * len(TEXTURES) * HUES, 0)) == 384
    with pytest.raises(ValueError):
        task_classes(385, 0)


def test_an_image_is_a_function_of_seed_stream_and_number():
    classes = task_classes(8, seed=0)
    task = PretrainTask(classes, side=48, length=4, seed=3)
    first = task[1]
    assert first["image"].shape == (3, 48, 48) and 0 <= first["label"] < 8
    assert np.array_equal(task[1]["image"], first["image"])
    task.set_epoch(1)  # epoch 1 draws images 4..7: none of epoch 0's
    assert not np.array_equal(task[1]["image"], first["image"])
    held_out = PretrainTask(classes, side=48, length=4, seed=3, stream=VAL_STREAM)
    assert not np.array_equal(held_out[1]["image"], first["image"])


@pytest.mark.parametrize("shape", SHAPES)
def test_every_shape_draws_an_object_of_its_colour(shape):
    cls = task_classes(384, 0)[[c.shape for c in task_classes(384, 0)].index(shape)]
    rng = np.random.default_rng(0)
    image = render_task_image(cls, 64, rng)
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    saturation = image.max(axis=2).astype(int) - image.min(axis=2)
    assert (saturation > 80).mean() > 0.05  # the object is vivid, the background muted
