"""Task families refuse nonsense options with one error naming the option (type and range).

Each case: the constructor, its options, and the exact message (``re:`` marks a pattern).
"""

import re
from collections.abc import Callable
from typing import Any, cast

import pytest

import learned_opt as lo
from learned_opt import tasks

QUAD = tasks.Quadratic(dim=2)

CASES: dict[str, tuple[Callable[..., Any], dict[str, Any], str]] = {
    "quadratic_dim_str": (
        tasks.Quadratic,
        {"dim": "four"},
        "dim: expected an integer >= 1, got 'four'",
    ),
    "quadratic_dim_bool": (
        tasks.Quadratic,
        {"dim": True},
        "dim: expected an integer >= 1, got True",
    ),
    "quadratic_dim_float": (
        tasks.Quadratic,
        {"dim": 4.0},
        "dim: expected an integer >= 1, got 4.0",
    ),
    "quadratic_dim_zero": (tasks.Quadratic, {"dim": 0}, "dim: expected an integer >= 1, got 0"),
    "quadratic_init_scale_none": (
        tasks.Quadratic,
        {"init_scale": None},
        "init_scale: expected a finite number >= 0.0, got None",
    ),
    "quadratic_init_scale_nan": (
        tasks.Quadratic,
        {"init_scale": float("nan")},
        "init_scale: expected a finite number >= 0.0, got nan",
    ),
    "mlp_hidden_sizes_str": (
        tasks.MLP,
        {"hidden_sizes": "20,20"},
        "hidden_sizes: expected positive integers, got '20,20'",
    ),
    "mlp_hidden_sizes_zero": (
        tasks.MLP,
        {"hidden_sizes": (20, 0)},
        "hidden_sizes: expected positive integers, got (20, 0)",
    ),
    "mlp_activation_list": (
        tasks.MLP,
        {"activation": ["relu"]},
        r"re:activation: expected one of \(.*'sigmoid'.*\), got \['relu'\]",
    ),
    "mlp_init_scale_zero": (
        tasks.MLP,
        {"init_scale": 0},
        "init_scale: expected a finite number > 0.0, got 0.0",
    ),
    "mlp_batch_size_float": (
        tasks.MLP,
        {"batch_size": 12.5},
        "batch_size: expected an integer >= 1, got 12.5",
    ),
    "mlp_permute_labels_str": (
        tasks.MLP,
        {"permute_labels": "yes"},
        "permute_labels: expected True or False, got 'yes'",
    ),
    "mlp_dataset_unknown": (
        tasks.MLP,
        {"dataset": "cifar10"},
        "re:dataset: expected one of .*, got 'cifar10'",
    ),
    "mlp_data_dir_int": (tasks.MLP, {"data_dir": 3}, "data_dir: expected a folder path, got 3"),
    "conv_channels_negative": (
        tasks.ConvNet,
        {"channels": (8, -1)},
        "channels: expected positive integers, got (8, -1)",
    ),
    "scaled_quadratic_rotate_int": (
        tasks.ScaledQuadratic,
        {"rotate": 1},
        "rotate: expected True or False, got 1",
    ),
    "scaled_quadratic_condition_negative": (
        tasks.ScaledQuadratic,
        {"log10_condition": -1.0},
        "log10_condition: expected a finite number >= 0.0, got -1.0",
    ),
    "rosenbrock_dim_one": (tasks.Rosenbrock, {"dim": 1}, "dim: expected an integer >= 2, got 1"),
    "rosenbrock_box_str": (
        tasks.Rosenbrock,
        {"box": ("a", "b")},
        "box: expected (low, high), got ('a', 'b')",
    ),
    "rosenbrock_box_reversed": (
        tasks.Rosenbrock,
        {"box": (1.0, -1.0)},
        "box: need low <= high, got (1.0, -1.0)",
    ),
    "sinusoid_eval_size_zero": (
        tasks.Sinusoid,
        {"eval_size": 0},
        "eval_size: expected an integer >= 1, got 0",
    ),
    "sinusoid_range_inf": (
        tasks.Sinusoid,
        {"input_range": (0.0, float("inf"))},
        "input_range: expected finite values, got (0.0, inf)",
    ),
    "scaled_loss_scale_zero": (
        lambda **kw: tasks.ScaledLoss(QUAD, **kw),
        {"scale": 0.0},
        "scale: expected a finite number > 0.0, got 0.0",
    ),
    "scaled_loss_not_a_family": (
        lambda **kw: tasks.ScaledLoss(cast(Any, "quadratic"), **kw),
        {},
        "family: expected a TaskFamily, got str",
    ),
    "random_scaling_negative": (
        lambda **kw: tasks.RandomScaling(QUAD, **kw),
        {"max_log_scale": -1.0},
        "max_log_scale: expected a finite number >= 0.0, got -1.0",
    ),
}


@pytest.mark.fault("refused")
@pytest.mark.parametrize("case", sorted(CASES))
def test_a_nonsense_family_option_is_refused_naming_it(case):
    make, options, message = CASES[case]
    with pytest.raises((TypeError, ValueError)) as error:
        make(**options)
    if message.startswith("re:"):
        assert re.fullmatch(message[3:], str(error.value)), str(error.value)
    else:
        assert str(error.value) == message


@pytest.mark.fault("refused")
@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("cnn", {}, r"task family: unknown 'cnn'; known: \['autoencoder', "),
        ("quadratic", {"size": 3}, r"task family 'quadratic': unknown option\(s\) \['size'\]"),
    ],
)
def test_get_family_refuses_unknown_names_and_options(name, options, message):
    with pytest.raises(ValueError, match=f"^{message}"):
        lo.tasks.get_family(name, **options)
