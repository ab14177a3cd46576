// Fused CPU kernels of lift3d's multiresolution hash encoding (Instant-NGP).
//
// The same encoding as the pure-PyTorch reference in hash_grid.py, computed point by point
// without (8, N) intermediates: corner rows, trilinear weights and the table reads happen in
// registers. Compiled on first use (see hash_grid_cpp.py); tested against the PyTorch reference
// forward, backward and double backward.
//
// Level l is a row of `levels` (L, 4) int64: resolution, table size, dense (0/1), offset of its
// first row in the table. Corner c takes the upper cell side on axis d when bit d of c is set.
// Hashed levels use (x * 1) ^ (y * 2654435761) ^ (z * 805459861) mod size in uint32
// arithmetic, which equals the reference's int32 wrap-around products.
//
// The table reads of a fine level are cache misses (the hash scatters neighbouring cells over
// the table). Points are taken in blocks: a block is located and its rows prefetched before any
// of them is used, so that the misses overlap instead of being waited for one at a time.
//
// Scatters into the table run one level per task, so no two threads write the same row: the
// result is deterministic and needs no atomics.

#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

namespace {

struct Level {
  int64_t res;
  int64_t size;
  bool dense;
  int64_t offset;
};

std::vector<Level> read_levels(const torch::Tensor& levels) {
  TORCH_CHECK(levels.dim() == 2 && levels.size(1) == 4 && levels.scalar_type() == torch::kInt64,
              "levels must be an (L, 4) int64 tensor");
  auto l = levels.contiguous();
  auto a = l.accessor<int64_t, 2>();
  std::vector<Level> out;
  for (int64_t i = 0; i < l.size(0); ++i) out.push_back({a[i][0], a[i][1], a[i][2] != 0, a[i][3]});
  return out;
}

// The cell of one point on one level: corner rows (level offset included) and fractions.
template <typename scalar_t>
struct Cell {
  int64_t row[8];
  scalar_t frac[3];
  scalar_t lo[3];  // 1 - frac
};

template <typename scalar_t>
inline void locate(const scalar_t* x, const Level& lv, Cell<scalar_t>& cell) {
  const scalar_t scale = static_cast<scalar_t>(lv.res - 1);
  const int64_t top = lv.res - 2;
  int64_t p0[3];
  for (int d = 0; d < 3; ++d) {
    const scalar_t pos = x[d] * scale;
    // truncation, then the clamp: equal to the reference's floor-then-clamp for every pos
    // (they differ only below 0, where both clamp to 0), and no libm call on baseline x86-64
    const int64_t cell_index = std::min(std::max(static_cast<int64_t>(pos), int64_t(0)), top);
    p0[d] = cell_index;
    cell.frac[d] = pos - static_cast<scalar_t>(cell_index);
    cell.lo[d] = 1 - cell.frac[d];
  }
  if (lv.dense) {
    const int64_t r = lv.res, rr = lv.res * lv.res;
    const int64_t base = lv.offset + p0[0] + p0[1] * r + p0[2] * rr;
    for (int c = 0; c < 8; ++c) cell.row[c] = base + (c & 1) + ((c >> 1) & 1) * r + ((c >> 2) & 1) * rr;
  } else {
    const uint32_t mask = static_cast<uint32_t>(lv.size - 1);
    const uint32_t primes[3] = {1u, 2654435761u, 805459861u};
    uint32_t h[3][2];
    for (int d = 0; d < 3; ++d) {
      h[d][0] = static_cast<uint32_t>(p0[d]) * primes[d];
      h[d][1] = h[d][0] + primes[d];
    }
    for (int c = 0; c < 8; ++c) {
      const uint32_t v = h[0][c & 1] ^ h[1][(c >> 1) & 1] ^ h[2][(c >> 2) & 1];
      cell.row[c] = lv.offset + static_cast<int64_t>(v & mask);
    }
  }
}

// The trilinear weights of the 8 corners: w_c = factor_x(c) factor_y(c) factor_z(c), with factor
// frac on the corner's upper side and 1 - frac on its lower side.
template <typename scalar_t>
inline void corner_weights(const Cell<scalar_t>& cell, scalar_t* w) {
  const scalar_t ax[2] = {cell.lo[0], cell.frac[0]}, ay[2] = {cell.lo[1], cell.frac[1]}, az[2] = {cell.lo[2], cell.frac[2]};
  for (int c = 0; c < 8; ++c) w[c] = ax[c & 1] * ay[(c >> 1) & 1] * az[(c >> 2) & 1];
}

template <typename scalar_t>
inline scalar_t lerp(scalar_t a, scalar_t b, scalar_t t) {
  return a + t * (b - a);
}

// sum_c v_c dw_c/dfrac for corner values v: along each axis, the difference of the corner values
// across that axis interpolated bilinearly over the other two (fewer operations than the sum).
template <typename scalar_t>
inline void trilinear_gradient(const scalar_t* v, const Cell<scalar_t>& cell, scalar_t* out) {
  const scalar_t fx = cell.frac[0], fy = cell.frac[1], fz = cell.frac[2];
  out[0] = lerp(lerp(v[1] - v[0], v[3] - v[2], fy), lerp(v[5] - v[4], v[7] - v[6], fy), fz);
  out[1] = lerp(lerp(v[2] - v[0], v[3] - v[1], fx), lerp(v[6] - v[4], v[7] - v[5], fx), fz);
  out[2] = lerp(lerp(v[4] - v[0], v[5] - v[1], fx), lerp(v[6] - v[2], v[7] - v[3], fx), fy);
}

// s_c = (res - 1) * sum_d u_d dw_c/dfrac_d for all 8 corners: how each corner's weight moves
// along the direction u. dw_c/dfrac_x = sign_x(c) * factor_y(c) * factor_z(c), and so on.
template <typename scalar_t>
inline void directional_weights(const Cell<scalar_t>& cell, const scalar_t* u, scalar_t scale, scalar_t* s) {
  const scalar_t ax[2] = {cell.lo[0], cell.frac[0]}, ay[2] = {cell.lo[1], cell.frac[1]}, az[2] = {cell.lo[2], cell.frac[2]};
  const scalar_t ux[2] = {-u[0] * scale, u[0] * scale}, uy[2] = {-u[1] * scale, u[1] * scale}, uz[2] = {-u[2] * scale, u[2] * scale};
  for (int c = 0; c < 8; ++c) {
    const int bx = c & 1, by = (c >> 1) & 1, bz = (c >> 2) & 1;
    s[c] = ux[bx] * ay[by] * az[bz] + uy[by] * ax[bx] * az[bz] + uz[bz] * ax[bx] * ay[by];
  }
}

// H u for the Hessian H (in frac) of the trilinear interpolant of corner values v: its diagonal is
// 0, and the mixed derivative of two axes is the double difference across them, interpolated
// along the third.
template <typename scalar_t>
inline void trilinear_hessian_times(const scalar_t* v, const Cell<scalar_t>& cell, const scalar_t* u, scalar_t* out) {
  const scalar_t fx = cell.frac[0], fy = cell.frac[1], fz = cell.frac[2];
  const scalar_t hxy = lerp(v[3] - v[2] - v[1] + v[0], v[7] - v[6] - v[5] + v[4], fz);
  const scalar_t hxz = lerp(v[5] - v[4] - v[1] + v[0], v[7] - v[6] - v[3] + v[2], fy);
  const scalar_t hyz = lerp(v[6] - v[4] - v[2] + v[0], v[7] - v[5] - v[3] + v[1], fx);
  out[0] = hxy * u[1] + hxz * u[2];
  out[1] = hxy * u[0] + hyz * u[2];
  out[2] = hxz * u[0] + hyz * u[1];
}

constexpr int64_t kPointGrain = 512;
constexpr int64_t kBlock = 32;

// Calls body(i, cell) for every point of [begin, end) on level lv, a prefetched block at a time.
template <typename scalar_t, typename Body>
inline void for_each_cell(const scalar_t* xp, const scalar_t* rows, int64_t f, const Level& lv, int64_t begin,
                          int64_t end, Body body) {
  Cell<scalar_t> cells[kBlock];
  for (int64_t b0 = begin; b0 < end; b0 += kBlock) {
    const int64_t bn = std::min<int64_t>(kBlock, end - b0);
    for (int64_t j = 0; j < bn; ++j) {
      locate(xp + 3 * (b0 + j), lv, cells[j]);
      // corners 2k and 2k+1 differ by one row (the x prime is 1), mostly in one cache line
      for (int c = 0; c < 8; c += 2) __builtin_prefetch(rows + cells[j].row[c] * f);
    }
    for (int64_t j = 0; j < bn; ++j) body(b0 + j, cells[j]);
  }
}

// Calls fn(std::integral_constant<int64_t, F>) for the feature count f: a compile-time F keeps
// the per-point accumulators in registers (with a run-time count the compiler must assume they
// alias the table and goes through memory for every corner).
template <typename Fn>
inline void dispatch_features(int64_t f, Fn fn) {
  switch (f) {
    case 1: fn(std::integral_constant<int64_t, 1>{}); break;
    case 2: fn(std::integral_constant<int64_t, 2>{}); break;
    case 4: fn(std::integral_constant<int64_t, 4>{}); break;
    case 8: fn(std::integral_constant<int64_t, 8>{}); break;
    default: TORCH_CHECK(false, "the hash grid's C++ kernels take 1, 2, 4 or 8 features per level, not ", f);
  }
}

}  // namespace

// (N, 3) points in [0, 1], (T, F) table -> (N, L * F) features.
torch::Tensor forward(torch::Tensor x, torch::Tensor table, torch::Tensor levels) {
  x = x.contiguous();
  table = table.contiguous();
  const auto lv = read_levels(levels);
  const int64_t n = x.size(0), nl = static_cast<int64_t>(lv.size());
  auto out = torch::empty({n, nl * table.size(1)}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "hash_grid_forward", [&] {
    dispatch_features(table.size(1), [&](auto fc) {
      constexpr int64_t F = decltype(fc)::value;
      const scalar_t* xp = x.data_ptr<scalar_t>();
      const scalar_t* tp = table.data_ptr<scalar_t>();
      scalar_t* op = out.data_ptr<scalar_t>();
      at::parallel_for(0, n, kPointGrain, [&](int64_t begin, int64_t end) {
        for (int64_t l = 0; l < nl; ++l) {
          for_each_cell(xp, tp, F, lv[l], begin, end, [&](int64_t i, const Cell<scalar_t>& cell) {
            scalar_t w[8];
            corner_weights(cell, w);
            scalar_t acc[F] = {};
            for (int c = 0; c < 8; ++c) {
              const scalar_t* row = tp + cell.row[c] * F;
              for (int64_t k = 0; k < F; ++k) acc[k] += w[c] * row[k];
            }
            scalar_t* o = op + i * nl * F + l * F;
            for (int64_t k = 0; k < F; ++k) o[k] = acc[k];
          });
        }
      });
    });
  });
  return out;
}

// Gradient of the table for the output gradient grad_out (N, L * F): (table_rows, F).
torch::Tensor backward_table(torch::Tensor x, torch::Tensor grad_out, int64_t table_rows, torch::Tensor levels) {
  x = x.contiguous();
  grad_out = grad_out.contiguous();
  const auto lv = read_levels(levels);
  const int64_t n = x.size(0), nl = static_cast<int64_t>(lv.size());
  auto grad_table = torch::zeros({table_rows, grad_out.size(1) / nl}, grad_out.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "hash_grid_backward_table", [&] {
    dispatch_features(grad_table.size(1), [&](auto fc) {
      constexpr int64_t F = decltype(fc)::value;
      const scalar_t* xp = x.data_ptr<scalar_t>();
      const scalar_t* gp = grad_out.data_ptr<scalar_t>();
      scalar_t* tp = grad_table.data_ptr<scalar_t>();
      at::parallel_for(0, nl, 1, [&](int64_t lbegin, int64_t lend) {
        for (int64_t l = lbegin; l < lend; ++l) {
          for_each_cell(xp, static_cast<const scalar_t*>(tp), F, lv[l], 0, n, [&](int64_t i, const Cell<scalar_t>& cell) {
            scalar_t g[F];
            for (int64_t k = 0; k < F; ++k) g[k] = gp[i * nl * F + l * F + k];
            scalar_t w[8];
            corner_weights(cell, w);
            for (int c = 0; c < 8; ++c) {
              scalar_t* row = tp + cell.row[c] * F;
              for (int64_t k = 0; k < F; ++k) row[k] += w[c] * g[k];
            }
          });
        }
      });
    });
  });
  return grad_table;
}

// Gradient of the input: (N, 3), the sum over levels of (res - 1) sum_c (table_c . g) dw_c/dfrac.
torch::Tensor input_grad(torch::Tensor x, torch::Tensor table, torch::Tensor grad_out, torch::Tensor levels) {
  x = x.contiguous();
  table = table.contiguous();
  grad_out = grad_out.contiguous();
  const auto lv = read_levels(levels);
  const int64_t n = x.size(0), nl = static_cast<int64_t>(lv.size());
  auto grad_x = torch::empty({n, 3}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "hash_grid_input_grad", [&] {
    dispatch_features(table.size(1), [&](auto fc) {
      constexpr int64_t F = decltype(fc)::value;
      const scalar_t* xp = x.data_ptr<scalar_t>();
      const scalar_t* tp = table.data_ptr<scalar_t>();
      const scalar_t* gp = grad_out.data_ptr<scalar_t>();
      scalar_t* gx = grad_x.data_ptr<scalar_t>();
      at::parallel_for(0, n, kPointGrain, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) gx[3 * i] = gx[3 * i + 1] = gx[3 * i + 2] = 0;
        for (int64_t l = 0; l < nl; ++l) {
          const scalar_t scale = static_cast<scalar_t>(lv[l].res - 1);
          for_each_cell(xp, tp, F, lv[l], begin, end, [&](int64_t i, const Cell<scalar_t>& cell) {
            scalar_t g[F];
            for (int64_t k = 0; k < F; ++k) g[k] = gp[i * nl * F + l * F + k];
            scalar_t dfeat[8];
            for (int c = 0; c < 8; ++c) {
              const scalar_t* row = tp + cell.row[c] * F;
              dfeat[c] = 0;
              for (int64_t k = 0; k < F; ++k) dfeat[c] += row[k] * g[k];
            }
            scalar_t grad[3];
            trilinear_gradient(dfeat, cell, grad);
            for (int d = 0; d < 3; ++d) gx[3 * i + d] += grad[d] * scale;
          });
        }
      });
    });
  });
  return grad_x;
}

// Backward of input_grad for its upstream gradient gg (N, 3): the gradients w.r.t. its x, table
// and grad_out, in that order; one not asked for comes back undefined.
std::vector<torch::Tensor> input_grad_backward(torch::Tensor x, torch::Tensor table, torch::Tensor grad_out,
                                               torch::Tensor gg, torch::Tensor levels, bool need_x, bool need_table,
                                               bool need_grad_out) {
  x = x.contiguous();
  table = table.contiguous();
  grad_out = grad_out.contiguous();
  gg = gg.contiguous();
  const auto lv = read_levels(levels);
  const int64_t n = x.size(0), nl = static_cast<int64_t>(lv.size());
  torch::Tensor gx, gtable, ggo;
  if (need_x) gx = torch::zeros({n, 3}, x.options());
  if (need_grad_out) ggo = torch::empty({n, nl * table.size(1)}, x.options());
  if (need_table) gtable = torch::zeros_like(table);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "hash_grid_input_grad_backward", [&] {
    dispatch_features(table.size(1), [&](auto fc) {
      constexpr int64_t F = decltype(fc)::value;
      const scalar_t* xp = x.data_ptr<scalar_t>();
      const scalar_t* tp = table.data_ptr<scalar_t>();
      const scalar_t* gp = grad_out.data_ptr<scalar_t>();
      const scalar_t* ggp = gg.data_ptr<scalar_t>();
      if (need_x || need_grad_out) {
        scalar_t* gxp = need_x ? gx.data_ptr<scalar_t>() : nullptr;
        scalar_t* ggop = need_grad_out ? ggo.data_ptr<scalar_t>() : nullptr;
        at::parallel_for(0, n, kPointGrain, [&](int64_t begin, int64_t end) {
          for (int64_t l = 0; l < nl; ++l) {
            const scalar_t scale = static_cast<scalar_t>(lv[l].res - 1);
            for_each_cell(xp, tp, F, lv[l], begin, end, [&](int64_t i, const Cell<scalar_t>& cell) {
              scalar_t g[F];
              for (int64_t k = 0; k < F; ++k) g[k] = gp[i * nl * F + l * F + k];
              const scalar_t u[3] = {ggp[3 * i], ggp[3 * i + 1], ggp[3 * i + 2]};
              scalar_t sw[8];
              if (ggop) directional_weights(cell, u, scale, sw);
              scalar_t out_acc[F] = {};
              scalar_t dfeat[8];
              for (int c = 0; c < 8; ++c) {
                const scalar_t* row = tp + cell.row[c] * F;
                if (ggop) for (int64_t k = 0; k < F; ++k) out_acc[k] += sw[c] * row[k];
                if (gxp) {
                  dfeat[c] = 0;
                  for (int64_t k = 0; k < F; ++k) dfeat[c] += row[k] * g[k];
                }
              }
              if (ggop) for (int64_t k = 0; k < F; ++k) ggop[i * nl * F + l * F + k] = out_acc[k];
              if (gxp) {
                scalar_t hu[3];
                trilinear_hessian_times(dfeat, cell, u, hu);
                for (int e = 0; e < 3; ++e) gxp[3 * i + e] += hu[e] * scale * scale;
              }
            });
          }
        });
      }
      if (need_table) {
        scalar_t* gtp = gtable.data_ptr<scalar_t>();
        at::parallel_for(0, nl, 1, [&](int64_t lbegin, int64_t lend) {
          for (int64_t l = lbegin; l < lend; ++l) {
            const scalar_t scale = static_cast<scalar_t>(lv[l].res - 1);
            for_each_cell(xp, static_cast<const scalar_t*>(gtp), F, lv[l], 0, n, [&](int64_t i, const Cell<scalar_t>& cell) {
              scalar_t g[F];
              for (int64_t k = 0; k < F; ++k) g[k] = gp[i * nl * F + l * F + k];
              const scalar_t u[3] = {ggp[3 * i], ggp[3 * i + 1], ggp[3 * i + 2]};
              scalar_t sw[8];
              directional_weights(cell, u, scale, sw);
              for (int c = 0; c < 8; ++c) {
                scalar_t* row = gtp + cell.row[c] * F;
                for (int64_t k = 0; k < F; ++k) row[k] += sw[c] * g[k];
              }
            });
          }
        });
      }
    });
  });
  return {gx, gtable, ggo};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &forward, "hash grid forward");
  m.def("backward_table", &backward_table, "hash grid table gradient");
  m.def("input_grad", &input_grad, "hash grid input gradient");
  m.def("input_grad_backward", &input_grad_backward, "backward of the input gradient");
}
