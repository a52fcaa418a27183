"""Few-shot meta-learning: MAML, first-order MAML, Reptile, the Meta-LSTM learner, pre-training.

Every method returns a :class:`FewShotLearner` (``init``, ``update``, ``adapt``, ``evaluate``)
for any model ``apply(params, x)`` and any inner optimizer (a learning rate, an optax
transformation, or a learned optimizer).

Example:
    >>> import jax.numpy as jnp
    >>> import learned_opt as lo
    >>> apply = lambda params, x: x * params["w"]  # a one-parameter model
    >>> learner = lo.fewshot.maml(apply, "mse", inner=0.1)
    >>> state = learner.init({"w": jnp.zeros(())})
    >>> x = jnp.ones((3, 4, 1))  # 3 tasks of 4 points, every target 1
    >>> episodes = lo.fewshot.Episodes(support=(x, x), query=(x, x))
    >>> state, loss = learner.update(state, episodes)
    >>> learner.evaluate(state, episodes, num_steps=2).shape  # query loss after 0, 1, 2 steps
    (3, 3)
"""

from learned_opt.fewshot.base import LOSSES as LOSSES
from learned_opt.fewshot.base import Episodes as Episodes
from learned_opt.fewshot.base import FewShotLearner as FewShotLearner
from learned_opt.fewshot.base import FewShotState as FewShotState
from learned_opt.fewshot.base import accuracy as accuracy
from learned_opt.fewshot.base import cross_entropy as cross_entropy
from learned_opt.fewshot.base import inner_loop as inner_loop
from learned_opt.fewshot.base import mse as mse
from learned_opt.fewshot.data import EpisodeFamily as EpisodeFamily
from learned_opt.fewshot.data import sample_episodes as sample_episodes
from learned_opt.fewshot.data import split_support_query as split_support_query
from learned_opt.fewshot.maml import first_order_maml as first_order_maml
from learned_opt.fewshot.maml import maml as maml
from learned_opt.fewshot.meta_lstm import meta_lstm as meta_lstm
from learned_opt.fewshot.pretrain import pretrain as pretrain
from learned_opt.fewshot.reptile import reptile as reptile
from learned_opt.fewshot.training import fit as fit
