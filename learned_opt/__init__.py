"""learned_opt: learned optimizers in JAX, meta-trained and exported as optax transformations."""

from learned_opt import evaluation as evaluation
from learned_opt import fewshot as fewshot
from learned_opt import io as io
from learned_opt import tasks as tasks
from learned_opt.compilation_cache import enable_compilation_cache as enable_compilation_cache
from learned_opt.hub import list_pretrained as list_pretrained
from learned_opt.hub import load_pretrained as load_pretrained
from learned_opt.hub import pretrained as pretrained
from learned_opt.hub import scale_by_learned as scale_by_learned
from learned_opt.io import load as load
from learned_opt.io import save as save
from learned_opt.meta.checkpoint import CheckpointError as CheckpointError
from learned_opt.meta.estimators import PES as PES
from learned_opt.meta.estimators import GradientEstimator as GradientEstimator
from learned_opt.meta.estimators import TruncatedBackprop as TruncatedBackprop
from learned_opt.meta.state import MetaTrainState as MetaTrainState
from learned_opt.meta.trainer import MetaTrainer as MetaTrainer
from learned_opt.meta.trainer import MetaTrainingError as MetaTrainingError
from learned_opt.meta.trainer import MetaTrainingWarning as MetaTrainingWarning
from learned_opt.optimizers import LearnedOptimizer as LearnedOptimizer
from learned_opt.optimizers import LearnedRule as LearnedRule
from learned_opt.optimizers import LearnedRuleState as LearnedRuleState
from learned_opt.optimizers import LSTMOptimizer as LSTMOptimizer
from learned_opt.optimizers import LSTMOptimizerState as LSTMOptimizerState
from learned_opt.optimizers import MetaLSTMOptimizer as MetaLSTMOptimizer
from learned_opt.optimizers import MetaLSTMState as MetaLSTMState

__version__ = "0.1.0"
