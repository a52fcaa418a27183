"""Learned optimizer architectures."""

from learned_opt.optimizers.base import LearnedOptimizer as LearnedOptimizer
from learned_opt.optimizers.learned_rule import LearnedRule as LearnedRule
from learned_opt.optimizers.learned_rule import LearnedRuleState as LearnedRuleState
from learned_opt.optimizers.lstm import LSTMOptimizer as LSTMOptimizer
from learned_opt.optimizers.lstm import LSTMOptimizerState as LSTMOptimizerState
from learned_opt.optimizers.meta_lstm import MetaLSTMOptimizer as MetaLSTMOptimizer
from learned_opt.optimizers.meta_lstm import MetaLSTMState as MetaLSTMState
