"""Test configuration: strict JAX settings, as equinox does."""

import jax

jax.config.update("jax_numpy_rank_promotion", "raise")
