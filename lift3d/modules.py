"""Imports every built-in module so that its ``@register`` runs."""

from lift3d.backgrounds import neural_environment_map, solid_color  # noqa: F401
from lift3d.data import random_camera, single_image  # noqa: F401
from lift3d.geometry import implicit_volume  # noqa: F401
from lift3d.guidance import sds, zero123  # noqa: F401
from lift3d.materials import diffuse_with_point_light, no_material  # noqa: F401
from lift3d.prompts import diffusers_prompt_processor  # noqa: F401
from lift3d.renderers import volume  # noqa: F401
from lift3d.systems import dreamfusion, zero123  # noqa: F401
