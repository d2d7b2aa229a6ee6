// PASA's softmax and weighted subsampling fused into one pass over memory (CPU).
//
// The padded input is never built: every tap reads the unpadded input through a
// per-tap index table that applies the padding mode, so a border pixel costs a
// table lookup and an interior pixel a strided load. Forward normalises the
// filter logits and sums the k*k taps of each output pixel in one sweep per
// output row; backward gives the input gradient and the logit gradient (softmax
// backward included) in one sweep per (image, group), so no two threads write
// the same memory.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/utils/pybind.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

namespace {

enum PadMode : int64_t { kReflect = 0, kReplicate = 1, kZeros = 2 };

// The per-row workers are compiled for AVX-512, AVX2 and baseline x86-64; the
// loader picks the best the CPU has (GCC function multi-versioning).
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define PASA_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define PASA_CLONES
#endif

// exp(x) for x <= 0 (softmax arguments) as plain arithmetic, so the compiler can
// vectorise it: x = n ln2 + r with |r| <= ln2 / 2, exp(r) by its degree-7 Taylor
// polynomial (relative error < 2e-7, about one float ulp), 2^n built in the
// exponent bits. Below -87 the result is clamped to exp(-87) ~ 1.6e-38.
inline float exp_nonpositive(float x) {
  x = std::max(x, -87.0f);
  const float round = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const float n = (x * 1.44269504f + round) - round;
  const float r = (x - n * 0.693145752f) - n * 1.42860677e-6f;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

inline double exp_nonpositive(double x) { return std::exp(x); }

// Where tap offset d of output index o reads along one axis: table[d * out + o]
// is the input index, or -1 for a zero (zero padding). [lo, hi) are the outputs
// whose taps all read in range, at o * stride + d - pad.
struct TapIndex {
  std::vector<int64_t> table;
  int64_t lo = 0, hi = 0;
};

TapIndex tap_index(int64_t size, int64_t out, int64_t k, int64_t stride, int64_t mode) {
  const int64_t pad = k / 2;
  TapIndex t;
  t.table.resize(k * out);
  std::vector<bool> direct(out, true);
  for (int64_t d = 0; d < k; ++d) {
    for (int64_t o = 0; o < out; ++o) {
      int64_t v = o * stride + d - pad;
      if (v < 0 || v >= size) {
        direct[o] = false;
        if (mode == kZeros) {
          v = -1;
        } else if (mode == kReplicate) {
          v = std::min(std::max<int64_t>(v, 0), size - 1);
        } else {
          v = v < 0 ? -v : 2 * (size - 1) - v;
        }
      }
      t.table[d * out + o] = v;
    }
  }
  t.lo = std::find(direct.begin(), direct.end(), true) - direct.begin();
  t.hi = t.lo;
  while (t.hi < out && direct[t.hi]) ++t.hi;
  return t;
}

struct Geometry {
  int64_t n, c, h, w, ho, wo, k, stride, group, segment;
  int64_t taps() const { return k * k; }
  int64_t channels_per_group() const { return c / group; }
};

// softmax over each run of `segment` channels at every pixel of one output row.
// `logits` and `weights` point at channel 0 of that row; their channels are
// `plane` and `w_plane` apart.
template <typename scalar_t>
inline void softmax_row(const scalar_t* logits, scalar_t* weights, int64_t channels,
                        int64_t segment, int64_t plane, int64_t w_plane, int64_t width,
                        scalar_t* peak, scalar_t* total) {
  for (int64_t s0 = 0; s0 < channels; s0 += segment) {
    std::fill(peak, peak + width, -std::numeric_limits<scalar_t>::infinity());
    std::fill(total, total + width, scalar_t(0));
    for (int64_t ch = s0; ch < s0 + segment; ++ch) {
      const scalar_t* l = logits + ch * plane;
      for (int64_t b = 0; b < width; ++b) peak[b] = std::max(peak[b], l[b]);
    }
    for (int64_t ch = s0; ch < s0 + segment; ++ch) {
      const scalar_t* __restrict l = logits + ch * plane;
      scalar_t* __restrict e = weights + ch * w_plane;
      for (int64_t b = 0; b < width; ++b) e[b] = exp_nonpositive(l[b] - peak[b]);
      for (int64_t b = 0; b < width; ++b) total[b] += e[b];
    }
    for (int64_t b = 0; b < width; ++b) total[b] = scalar_t(1) / total[b];
    for (int64_t ch = s0; ch < s0 + segment; ++ch) {
      scalar_t* e = weights + ch * w_plane;
      for (int64_t b = 0; b < width; ++b) e[b] *= total[b];
    }
  }
}

// acc[b] += w[b] * x[cols(b)] over one output row; stride 2 is the common case
// and gets a compile-time stride so the interior loop vectorises.
template <typename scalar_t, int64_t kStride>
inline void tap_accumulate(scalar_t* __restrict acc, const scalar_t* __restrict w,
                           const scalar_t* __restrict x, const int64_t* cols, int64_t lo,
                           int64_t hi, int64_t width, int64_t offset, int64_t stride) {
  const int64_t s = kStride > 0 ? kStride : stride;
  for (int64_t b = 0; b < lo; ++b)
    if (cols[b] >= 0) acc[b] += w[b] * x[cols[b]];
  for (int64_t b = lo; b < hi; ++b) acc[b] += w[b] * x[b * s + offset];
  for (int64_t b = hi; b < width; ++b)
    if (cols[b] >= 0) acc[b] += w[b] * x[cols[b]];
}

// Backward of one tap over one output row: gw[b] += g[b] * x[cols(b)] and
// gx[cols(b)] += w[b] * g[b].
template <typename scalar_t, int64_t kStride>
inline void tap_backward(scalar_t* __restrict gw, scalar_t* __restrict gx,
                         const scalar_t* __restrict w, const scalar_t* __restrict g,
                         const scalar_t* __restrict x, const int64_t* cols, int64_t lo, int64_t hi,
                         int64_t width, int64_t offset, int64_t stride) {
  const int64_t s = kStride > 0 ? kStride : stride;
  auto border = [&](int64_t b) {
    const int64_t col = cols[b];
    if (col < 0) return;
    gw[b] += g[b] * x[col];
    gx[col] += w[b] * g[b];
  };
  for (int64_t b = 0; b < lo; ++b) border(b);
  for (int64_t b = lo; b < hi; ++b) gw[b] += g[b] * x[b * s + offset];
  for (int64_t b = lo; b < hi; ++b) gx[b * s + offset] += w[b] * g[b];
  for (int64_t b = hi; b < width; ++b) border(b);
}

// Forward for output row `a` of image `n`: the filters' softmax, then every
// channel. The filters go to `weights` (kept for backward) or, if that is
// null, to the thread's `scratch` of G*k*k rows.
template <typename scalar_t, int64_t kStride>
PASA_CLONES void forward_row(const Geometry& G, const TapIndex& rows, const TapIndex& cols,
                             const scalar_t* x, const scalar_t* logits, scalar_t* weights,
                             scalar_t* y, int64_t n, int64_t a, scalar_t* scratch, scalar_t* peak,
                             scalar_t* total) {
  const int64_t plane_in = G.h * G.w, plane_out = G.ho * G.wo, kk = G.taps();
  const int64_t pad = G.k / 2, cg = G.channels_per_group(), gk = G.group * kk;
  const int64_t row_offset = n * gk * plane_out + a * G.wo;
  scalar_t* w_row = weights ? weights + row_offset : scratch;
  const int64_t w_plane = weights ? plane_out : G.wo;
  softmax_row(logits + row_offset, w_row, gk, G.segment, plane_out, w_plane, G.wo, peak, total);
  for (int64_t c = 0; c < G.c; ++c) {
    const scalar_t* w_group = w_row + (c / cg) * kk * w_plane;
    const scalar_t* x_plane = x + (n * G.c + c) * plane_in;
    scalar_t* acc = y + (n * G.c + c) * plane_out + a * G.wo;
    std::fill(acc, acc + G.wo, scalar_t(0));
    for (int64_t i = 0; i < G.k; ++i) {
      const int64_t r = rows.table[i * G.ho + a];
      if (r < 0) continue;
      for (int64_t j = 0; j < G.k; ++j) {
        tap_accumulate<scalar_t, kStride>(acc, w_group + (i * G.k + j) * w_plane, x_plane + r * G.w,
                                          cols.table.data() + j * G.wo, cols.lo, cols.hi, G.wo,
                                          j - pad, G.stride);
      }
    }
  }
}

// Input and filter-weight gradients of group `g` of image `n`: this task alone
// writes those channels of grad_x and those taps of grad_w.
template <typename scalar_t, int64_t kStride>
PASA_CLONES void backward_group(const Geometry& G, const TapIndex& rows, const TapIndex& cols,
                                const scalar_t* grad_y, const scalar_t* x, const scalar_t* weights,
                                scalar_t* grad_x, scalar_t* grad_w, int64_t n, int64_t g) {
  const int64_t plane_in = G.h * G.w, plane_out = G.ho * G.wo, kk = G.taps();
  const int64_t pad = G.k / 2, cg = G.channels_per_group(), gk = G.group * kk;
  const int64_t tap0 = (n * gk + g * kk) * plane_out;
  for (int64_t c = g * cg; c < (g + 1) * cg; ++c) {
    const scalar_t* x_plane = x + (n * G.c + c) * plane_in;
    scalar_t* gx_plane = grad_x + (n * G.c + c) * plane_in;
    for (int64_t a = 0; a < G.ho; ++a) {
      const scalar_t* g_row = grad_y + (n * G.c + c) * plane_out + a * G.wo;
      for (int64_t i = 0; i < G.k; ++i) {
        const int64_t r = rows.table[i * G.ho + a];
        if (r < 0) continue;
        for (int64_t j = 0; j < G.k; ++j) {
          const int64_t t = tap0 + (i * G.k + j) * plane_out + a * G.wo;
          tap_backward<scalar_t, kStride>(grad_w + t, gx_plane + r * G.w, weights + t, g_row,
                                          x_plane + r * G.w, cols.table.data() + j * G.wo, cols.lo,
                                          cols.hi, G.wo, j - pad, G.stride);
        }
      }
    }
  }
}

// Softmax backward over output row `a` of image `n`, in place:
// d_logit = w * (d_w - sum over the segment of w * d_w).
template <typename scalar_t>
PASA_CLONES void softmax_backward_row(const Geometry& G, const scalar_t* weights, scalar_t* grad,
                                      int64_t n, int64_t a, scalar_t* dot) {
  const int64_t plane_out = G.ho * G.wo, gk = G.group * G.taps();
  const int64_t row_offset = n * gk * plane_out + a * G.wo;
  for (int64_t s0 = 0; s0 < gk; s0 += G.segment) {
    std::fill(dot, dot + G.wo, scalar_t(0));
    for (int64_t ch = s0; ch < s0 + G.segment; ++ch) {
      const scalar_t* w = weights + row_offset + ch * plane_out;
      const scalar_t* d = grad + row_offset + ch * plane_out;
      for (int64_t b = 0; b < G.wo; ++b) dot[b] += w[b] * d[b];
    }
    for (int64_t ch = s0; ch < s0 + G.segment; ++ch) {
      const scalar_t* w = weights + row_offset + ch * plane_out;
      scalar_t* d = grad + row_offset + ch * plane_out;
      for (int64_t b = 0; b < G.wo; ++b) d[b] = w[b] * (d[b] - dot[b]);
    }
  }
}

template <typename scalar_t, int64_t kStride>
void forward_impl(const Geometry& G, const TapIndex& rows, const TapIndex& cols, const scalar_t* x,
                  const scalar_t* logits, scalar_t* weights, scalar_t* y) {
  at::parallel_for(0, G.n * G.ho, 1, [&](int64_t begin, int64_t end) {
    std::vector<scalar_t> peak(G.wo), total(G.wo), scratch(weights ? 0 : G.group * G.taps() * G.wo);
    for (int64_t task = begin; task < end; ++task) {
      forward_row<scalar_t, kStride>(G, rows, cols, x, logits, weights, y, task / G.ho, task % G.ho,
                                     scratch.data(), peak.data(), total.data());
    }
  });
}

template <typename scalar_t, int64_t kStride>
void backward_impl(const Geometry& G, const TapIndex& rows, const TapIndex& cols,
                   const scalar_t* grad_y, const scalar_t* x, const scalar_t* weights,
                   scalar_t* grad_x, scalar_t* grad_logits) {
  at::parallel_for(0, G.n * G.group, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      backward_group<scalar_t, kStride>(G, rows, cols, grad_y, x, weights, grad_x, grad_logits,
                                        task / G.group, task % G.group);
    }
  });
  at::parallel_for(0, G.n * G.ho, 1, [&](int64_t begin, int64_t end) {
    std::vector<scalar_t> dot(G.wo);
    for (int64_t task = begin; task < end; ++task) {
      softmax_backward_row(G, weights, grad_logits, task / G.ho, task % G.ho, dot.data());
    }
  });
}

Geometry check_and_describe(const at::Tensor& x, const at::Tensor& logits, int64_t k,
                            int64_t stride, int64_t group, bool joint, int64_t pad_mode) {
  TORCH_CHECK(x.device().is_cpu() && logits.device().is_cpu(),
              "pasa_det._C runs on CPU tensors only");
  TORCH_CHECK(x.dim() == 4 && logits.dim() == 4, "expected 4-D input and logits");
  TORCH_CHECK(x.scalar_type() == logits.scalar_type(), "input and logits must share a dtype");
  TORCH_CHECK(k >= 1 && k % 2 == 1 && stride >= 1, "kernel size must be odd and stride positive");
  TORCH_CHECK(group >= 1 && x.size(1) % group == 0, "group must divide the input channels");
  TORCH_CHECK(pad_mode >= kReflect && pad_mode <= kZeros, "unknown pad mode");
  TORCH_CHECK(pad_mode != kReflect || std::min(x.size(2), x.size(3)) > k / 2,
              "reflect padding needs every spatial size > k // 2");
  Geometry G{x.size(0), x.size(1), x.size(2), x.size(3), 0, 0, k, stride, group, 0};
  G.ho = (G.h - 1) / stride + 1;
  G.wo = (G.w - 1) / stride + 1;
  G.segment = joint ? group * k * k : k * k;
  TORCH_CHECK(logits.size(0) == G.n && logits.size(1) == group * k * k && logits.size(2) == G.ho &&
                  logits.size(3) == G.wo,
              "logits must be (N, group * k * k, ceil(H / stride), ceil(W / stride))");
  return G;
}

std::vector<at::Tensor> pasa_forward(const at::Tensor& x_in, const at::Tensor& logits_in, int64_t k,
                                     int64_t stride, int64_t group, bool joint, int64_t pad_mode,
                                     bool keep_weights) {
  const Geometry G = check_and_describe(x_in, logits_in, k, stride, group, joint, pad_mode);
  const at::Tensor x = x_in.contiguous(), logits = logits_in.contiguous();
  at::Tensor weights = keep_weights ? at::empty_like(logits) : at::Tensor();
  at::Tensor y = at::empty({G.n, G.c, G.ho, G.wo}, x.options());
  const TapIndex rows = tap_index(G.h, G.ho, k, stride, pad_mode);
  const TapIndex cols = tap_index(G.w, G.wo, k, stride, pad_mode);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "pasa_forward", [&] {
    auto run = stride == 2 ? forward_impl<scalar_t, 2> : forward_impl<scalar_t, 0>;
    run(G, rows, cols, x.data_ptr<scalar_t>(), logits.data_ptr<scalar_t>(),
        keep_weights ? weights.data_ptr<scalar_t>() : nullptr, y.data_ptr<scalar_t>());
  });
  return {y, weights};
}

std::vector<at::Tensor> pasa_backward(const at::Tensor& grad_y_in, const at::Tensor& x_in,
                                      const at::Tensor& weights_in, int64_t k, int64_t stride,
                                      int64_t group, bool joint, int64_t pad_mode) {
  const Geometry G = check_and_describe(x_in, weights_in, k, stride, group, joint, pad_mode);
  const at::Tensor grad_y = grad_y_in.contiguous(), x = x_in.contiguous(),
                   weights = weights_in.contiguous();
  TORCH_CHECK(grad_y.sizes() == at::IntArrayRef({G.n, G.c, G.ho, G.wo}),
              "grad_output has the wrong shape");
  at::Tensor grad_x = at::zeros_like(x);
  at::Tensor grad_logits = at::zeros_like(weights);
  const TapIndex rows = tap_index(G.h, G.ho, k, stride, pad_mode);
  const TapIndex cols = tap_index(G.w, G.wo, k, stride, pad_mode);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "pasa_backward", [&] {
    auto run = stride == 2 ? backward_impl<scalar_t, 2> : backward_impl<scalar_t, 0>;
    run(G, rows, cols, grad_y.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(),
        weights.data_ptr<scalar_t>(), grad_x.data_ptr<scalar_t>(),
        grad_logits.data_ptr<scalar_t>());
  });
  return {grad_x, grad_logits};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "PASA's fused softmax and weighted subsampling on the CPU";
  m.def("pasa_forward", &pasa_forward,
        "(x, logits, k, stride, group, joint, pad_mode, keep_weights) -> (y, softmax weights or an "
        "undefined "
        "tensor); pad_mode 0 reflect, 1 replicate, 2 zeros");
  m.def("pasa_backward", &pasa_backward,
        "(grad_y, x, weights, k, stride, group, joint, pad_mode) -> (grad_x, "
        "grad_logits)");
}
