"""Switch JAX to 64-bit floats, which likelihood fits need.

JAX computes in float32 unless ``jax_enable_x64`` is on, and the flag must be set
before arrays are created, so difflike sets it when it is imported. Arrays a user
creates afterwards default to float64 as well; code that wants float32 (a
surrogate network, say) asks for it with an explicit ``dtype``.
"""

import jax

if not jax.config.read("jax_enable_x64"):
    jax.config.update("jax_enable_x64", True)
