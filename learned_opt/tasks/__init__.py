"""Task families: distributions over training problems for meta-training learned optimizers."""

from learned_opt.tasks.base import Task as Task
from learned_opt.tasks.base import TaskFamily as TaskFamily
from learned_opt.tasks.conv import ConvNet as ConvNet
from learned_opt.tasks.datasets import load_dataset as load_dataset
from learned_opt.tasks.glyphs import Glyphs as Glyphs
from learned_opt.tasks.ill_conditioned import Rosenbrock as Rosenbrock
from learned_opt.tasks.ill_conditioned import ScaledQuadratic as ScaledQuadratic
from learned_opt.tasks.mlp import MLP as MLP
from learned_opt.tasks.quadratic import Quadratic as Quadratic
from learned_opt.tasks.registry import FAMILIES as FAMILIES
from learned_opt.tasks.registry import family_options as family_options
from learned_opt.tasks.registry import get_family as get_family
from learned_opt.tasks.scaled import ScaledLoss as ScaledLoss
from learned_opt.tasks.sinusoid import Sinusoid as Sinusoid
