"""Task families: distributions over training problems for meta-training learned optimizers.

A :class:`TaskFamily` samples a task's arrays (``sample``), initialises its model (``init``),
draws minibatches (``batch``) and scores parameters (``loss``); a :class:`Task` is one draw.

Example:
    >>> import jax
    >>> import learned_opt as lo
    >>> family = lo.tasks.get_family("quadratic", dim=4)
    >>> task = family.task(jax.random.key(0))
    >>> params = task.init(jax.random.key(1))
    >>> params.shape, task.loss(params, task.batch(jax.random.key(2))).shape
    ((4,), ())
"""

from learned_opt.tasks.augment import RandomInitScale as RandomInitScale
from learned_opt.tasks.augment import RandomLossScale as RandomLossScale
from learned_opt.tasks.augment import RandomTensorScaling as RandomTensorScaling
from learned_opt.tasks.autoencoder import Autoencoder as Autoencoder
from learned_opt.tasks.base import Task as Task
from learned_opt.tasks.base import TaskFamily as TaskFamily
from learned_opt.tasks.conv import ConvNet as ConvNet
from learned_opt.tasks.datasets import load_dataset as load_dataset
from learned_opt.tasks.glyphs import Glyphs as Glyphs
from learned_opt.tasks.ill_conditioned import Rosenbrock as Rosenbrock
from learned_opt.tasks.ill_conditioned import ScaledQuadratic as ScaledQuadratic
from learned_opt.tasks.language import CharTransformer as CharTransformer
from learned_opt.tasks.mixture import Mixture as Mixture
from learned_opt.tasks.mlp import MLP as MLP
from learned_opt.tasks.quadratic import Quadratic as Quadratic
from learned_opt.tasks.registry import FAMILIES as FAMILIES
from learned_opt.tasks.registry import WRAPPERS as WRAPPERS
from learned_opt.tasks.registry import family_options as family_options
from learned_opt.tasks.registry import get_family as get_family
from learned_opt.tasks.regression import Regression as Regression
from learned_opt.tasks.scaled import RandomScaling as RandomScaling
from learned_opt.tasks.scaled import ScaledLoss as ScaledLoss
from learned_opt.tasks.sinusoid import Sinusoid as Sinusoid
