"""Camera distribution and shading that the bundled priors were trained under.

``configs/dreamfusion-bundled.yaml`` uses the same numbers (a test checks it), so renders
of a good 3D result are in-distribution for the priors.
"""

from __future__ import annotations

SCENE_RADIUS = 1.0
"""Objects lie inside the cube [-1, 1]^3."""
ELEVATION_RANGE = (-10.0, 60.0)
ELEVATION_SPHERE_PROB = 1.0
"""Elevations are drawn uniformly on the viewing sphere, never uniformly in degrees."""
CAMERA_PERTURB = CENTER_PERTURB = UP_PERTURB = 0.0
"""Cameras sit exactly on the sphere, look exactly at the origin, with +z up."""
AZIMUTH_RANGE = (-180.0, 180.0)
DISTANCE_RANGE = (2.2, 2.8)
FOVY_RANGE = (40.0, 50.0)
LIGHT_DISTANCE_RANGE = (1.5, 3.0)
LIGHT_POSITION_PERTURB = 1.0
AMBIENT = 0.35
"""Ambient light intensity (grey)."""
DIFFUSE = 0.65
"""Diffuse point-light intensity (grey)."""
RESOLUTION = 32
"""Image size of the bundled priors."""
UNLIT_FRACTION = 0.1
"""Fraction of training images shaded ambient-only (albedo), matching the material's warm-up."""
