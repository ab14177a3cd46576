"""Imports every built-in module so that its ``@register`` runs."""

import lift3d.backgrounds.neural_environment_map  # noqa: F401
import lift3d.backgrounds.solid_color  # noqa: F401
import lift3d.backgrounds.textured_background  # noqa: F401
import lift3d.data.random_camera  # noqa: F401
import lift3d.data.single_image  # noqa: F401
import lift3d.geometry.implicit_volume  # noqa: F401
import lift3d.geometry.tetrahedra_sdf_grid  # noqa: F401
import lift3d.geometry.volume_grid  # noqa: F401
import lift3d.guidance.sds  # noqa: F401
import lift3d.guidance.sjc  # noqa: F401
import lift3d.guidance.vsd  # noqa: F401
import lift3d.guidance.zero123  # noqa: F401
import lift3d.materials.diffuse_with_point_light  # noqa: F401
import lift3d.materials.no_material  # noqa: F401
import lift3d.prompts.diffusers_prompt_processor  # noqa: F401
import lift3d.renderers.mesh_rasterize  # noqa: F401
import lift3d.renderers.volume  # noqa: F401
import lift3d.systems.dreamfusion  # noqa: F401
import lift3d.systems.magic123  # noqa: F401
import lift3d.systems.magic3d  # noqa: F401
import lift3d.systems.prolificdreamer  # noqa: F401
import lift3d.systems.zero123  # noqa: F401
