"""The occupancy grid's threshold, update, decay and dilation rules, and that it cannot empty itself."""

import torch

from lift3d.renderers.occupancy_grid import OccupancyGrid


def _cell_centres(grid: OccupancyGrid) -> torch.Tensor:
    r = grid.resolution
    ii = torch.stack(torch.meshgrid(*[torch.arange(r)] * 3, indexing="ij"), dim=-1).reshape(-1, 3)
    return ((ii + 0.5) / r * 2 - 1) * grid.radius


def test_a_field_below_the_threshold_everywhere_keeps_its_densest_cells():
    grid = OccupancyGrid(radius=1.0, resolution=8, threshold=1.0, decay=0.95)
    # a faint blob: every density is far below the absolute threshold 1.0
    grid.update(lambda p: 1e-3 * torch.exp(-(p.norm(dim=-1) / 0.3) ** 2))
    occupied = grid.occupied
    assert grid.density.max() < grid.threshold
    assert occupied.any(), "the grid switched every cell off"
    # the cells kept are the dense ones: the centre is in, a corner is out
    centre = grid.query(torch.zeros(1, 3))
    corner = grid.query(torch.full((1, 3), 0.95))
    assert bool(centre) and not bool(corner)
    assert grid.effective_threshold() < grid.threshold


def test_a_uniform_field_keeps_every_cell():
    grid = OccupancyGrid(radius=1.0, resolution=6, threshold=0.5, decay=0.95)
    grid.update(lambda p: torch.zeros(p.shape[0]))
    assert grid.occupied.all()


def test_before_the_first_update_every_cell_is_occupied():
    grid = OccupancyGrid(radius=1.0, resolution=5, threshold=0.5, decay=0.95)
    assert grid.occupied.all()


def test_update_takes_the_max_of_decayed_old_and_new():
    grid = OccupancyGrid(radius=1.0, resolution=4, threshold=0.5, decay=0.9)
    grid.update(lambda p: torch.full((p.shape[0],), 2.0))
    torch.testing.assert_close(grid.density, torch.full((4, 4, 4), 2.0))
    grid.update(lambda p: torch.full((p.shape[0],), 0.5))
    torch.testing.assert_close(grid.density, torch.full((4, 4, 4), 1.8))  # 2.0 * 0.9 beats 0.5
    grid.update(lambda p: torch.where(p[:, 0] > 0, 3.0, 0.0))
    expected = torch.full((4, 4, 4), 1.62)
    expected[2:] = 3.0
    torch.testing.assert_close(grid.density, expected)
    assert int(grid.updates) == 3


def test_one_dense_cell_dilates_to_its_27_neighbours():
    r = 9
    grid = OccupancyGrid(radius=1.0, resolution=r, threshold=0.5, decay=0.95)
    target = torch.tensor([4, 4, 4])

    def field(p):
        idx = ((p + 1) * 0.5 * r).long().clamp(0, r - 1)
        return torch.where((idx == target).all(-1), 10.0, 0.0)

    grid.update(field)
    occupied = grid.occupied
    assert int(occupied.sum()) == 27
    assert occupied[3:6, 3:6, 3:6].all()
    # queries agree with the cell layout
    inside = grid.query(_cell_centres(grid)).reshape(r, r, r)
    assert torch.equal(inside, occupied)


def test_renderer_keeps_learning_when_the_whole_field_is_faint():
    """Regression: with an absolute threshold, a field below it got zero samples and zero gradient forever."""
    from tests.test_volume_renderer import ConstantSphere, front_batch, make_renderer

    class ScaledSphere(ConstantSphere):
        def forward_density(self, points):
            return super().forward_density(points) * (1 + self.dummy)

    geo = ScaledSphere(ConstantSphere.Config(sigma=0.05, r=0.5))
    renderer, _ = make_renderer(32, "occgrid", geometry=geo)
    assert renderer.occupancy.threshold > 0.05  # the whole field is below the nominal threshold
    renderer.train()
    renderer.update_step(0)
    out = renderer(front_batch(16))
    assert out.samples_evaluated > 0
    out.opacity.sum().backward()
    assert geo.dummy.grad is not None and float(geo.dummy.grad) > 1.0  # d(opacity)/d(density scale)
