"""lift3d: text- and image-to-3D by score distillation, CPU-first, with bundled priors.

Set ``LIFT3D_TYPECHECK=1`` (the tests do) to check every jaxtyping shape annotation at run time.
"""

import os

from lift3d.utils import timing as _timing  # noqa: F401  (records when the process started)

__version__ = "0.1.0"

if os.environ.get("LIFT3D_TYPECHECK") == "1":
    from jaxtyping import install_import_hook

    install_import_hook("lift3d", "beartype.beartype")
