// One pyramid level of Ce Liu's SmoothFlowSOR for a batch of image pairs, on the CPU.
//
// The algorithm and the order of its floating-point operations are those of the torch
// path in liu.py (_smooth_flow_sor, _warp, _filter_axis, _sor_sweeps_torch), so the two
// agree to rounding. Per warp: warp image 2's features by the flow (bilinear, points
// outside take image 1's value), smooth them, take the derivatives of the 0.4/0.6 blend,
// build the IRLS system (Charbonnier data and smoothness weights) and solve it with
// red-black SOR. Each pair is computed by one thread in a fixed order (deterministic for
// any thread count); the pairs of the batch are spread over `threads` std::threads.
//
// SOR layout: each colour's pixels of a row are stored contiguously (pixel k of colour c
// in row i is j = ((i + c) & 1) + 2k), so both half-sweeps are unit-stride loops the
// compiler vectorises. Neighbours of (i, k) in the other colour are k + j0 - 1 (left),
// k + j0 (right) and k in rows i - 1 and i + 1; the flow increments and the smoothness
// weights w = alpha * phi carry a zero border, which makes the border masks implicit
// (an edge leaving the image always meets a zero increment). The sweeps are run as a
// wavefront: half-sweep h works on row t - 2h at step t, which reads exactly the values
// the plain sweep order would, so the result is bit-identical, but a block of sweeps
// passes over memory once with a working set of a few rows (in L2) instead of once per
// half-sweep: without it the sweeps are memory-bound.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <exception>
#include <thread>
#include <vector>

namespace {

const double kBlur[5] = {0.02, 0.11, 0.74, 0.11, 0.02};  // Liu's pre-derivative smoothing
const double kDeriv[5] = {1.0 / 12, -8.0 / 12, 0.0, 8.0 / 12, -1.0 / 12};  // offsets -2..2
const double kEps2 = 1e-3 * 1e-3;  // Charbonnier epsilon^2
const int64_t kSorCacheBytes = 1 << 18;  // working-set budget of one wavefront block

template <typename T>
inline T lerp(T a, T b, T w) {  // torch.lerp's formula (exact at w = 0 and w = 1)
    return std::abs(w) < T(0.5) ? a + w * (b - a) : b - (b - a) * (T(1) - w);
}

template <typename T>
inline T tap5(const T* t, T a, T b, T c, T d, T e) {  // summed in torch's order
    return t[0] * a + t[1] * b + t[2] * c + t[3] * d + t[4] * e;
}

// Correlate each row of an H x W plane with a 5-tap kernel, replicate borders.
template <typename T>
void filt_x(const T* s, T* d, int H, int W, const T* t) {
    const int lo = std::min(2, W), hi = std::max(lo, W - 2);
    for (int i = 0; i < H; ++i) {
        const T* r = s + (int64_t)i * W;
        T* o = d + (int64_t)i * W;
        auto at = [&](int q) { return r[std::min(std::max(q, 0), W - 1)]; };
        auto edge = [&](int j) { return tap5(t, at(j - 2), at(j - 1), at(j), at(j + 1), at(j + 2)); };
        for (int j = 0; j < lo; ++j) o[j] = edge(j);
        for (int j = lo; j < hi; ++j) o[j] = tap5(t, r[j - 2], r[j - 1], r[j], r[j + 1], r[j + 2]);
        for (int j = hi; j < W; ++j) o[j] = edge(j);
    }
}

// Correlate each column of an H x W plane with a 5-tap kernel, replicate borders.
template <typename T>
void filt_y(const T* s, T* d, int H, int W, const T* t) {
    for (int i = 0; i < H; ++i) {
        const T* r[5];
        for (int q = 0; q < 5; ++q) r[q] = s + (int64_t)std::min(std::max(i + q - 2, 0), H - 1) * W;
        T* o = d + (int64_t)i * W;
        for (int j = 0; j < W; ++j) o[j] = tap5(t, r[0][j], r[1][j], r[2][j], r[3][j], r[4][j]);
    }
}

// Bilinear sample of f2 (C planes) at x + (u, v); points outside the image copy f1.
template <typename T>
void warp(const T* f2, const T* f1, const T* u, const T* v, T* out, int C, int H, int W) {
    const int64_t N = (int64_t)H * W;
    for (int i = 0; i < H; ++i) {
        for (int j = 0; j < W; ++j) {
            const int64_t p = (int64_t)i * W + j;
            const T x = (T)j + u[p], y = (T)i + v[p];
            if (x < 0 || x > (T)(W - 1) || y < 0 || y > (T)(H - 1)) {
                for (int c = 0; c < C; ++c) out[c * N + p] = f1[c * N + p];
                continue;
            }
            const T x0 = std::floor(x), y0 = std::floor(y), fx = x - x0, fy = y - y0;
            const int xi = (int)x0, yi = (int)y0;
            const int64_t a = (int64_t)yi * W + xi, b = (int64_t)yi * W + std::min(xi + 1, W - 1);
            const int64_t dy = (int64_t)(std::min(yi + 1, H - 1) - yi) * W;
            for (int c = 0; c < C; ++c) {
                const T* f = f2 + c * N;
                out[c * N + p] = lerp(lerp(f[a], f[b], fx), lerp(f[a + dy], f[b + dy], fx), fy);
            }
        }
    }
}

// One colour's SOR update of one row (see the layout above); l = j0 - 1 offsets the left neighbour.
template <typename T>
void sor_row(int Wc, int Wp, int l, T keep, const T* __restrict ou, const T* __restrict ov,
             const T* __restrict ow, const T* __restrict ww, const T* __restrict bu, const T* __restrict bv,
             const T* __restrict xy, const T* __restrict cu, const T* __restrict cv, T* __restrict xu,
             T* __restrict xv) {
    for (int k = 0; k < Wc; ++k) {
        const T wl = ow[k + l], wr = ww[k], wu = ow[k - Wp], wd = ww[k];
        const T su = wl * ou[k + l] + wr * ou[k + l + 1] + wu * ou[k - Wp] + wd * ou[k + Wp];
        const T sv = wl * ov[k + l] + wr * ov[k + l + 1] + wu * ov[k - Wp] + wd * ov[k + Wp];
        const T nu = keep * xu[k] + cu[k] * (bu[k] + su - xy[k] * xv[k]);
        xu[k] = nu;
        xv[k] = keep * xv[k] + cv[k] * (bv[k] + sv - xy[k] * nu);
    }
}

// The red-black SOR system of one pair in the compacted layout, and its wavefront solver.
template <typename T>
struct Sor {
    int H = 0, W = 0, Wc = 0, Wp = 0;
    int64_t n = 0, np = 0;
    std::vector<T> pad, cmp;  // per colour: u, v, w (padded); bu, bv, xy, cu, cv (compact)

    void resize(int h, int w) {
        H = h, W = w, Wc = (w + 1) / 2, Wp = Wc + 2;
        n = (int64_t)H * Wc, np = (int64_t)(H + 2) * Wp;
        pad.assign(6 * np, T(0));
        cmp.assign(10 * n, T(0));
    }
    T* u(int c) { return pad.data() + (3 * c) * np; }
    T* v(int c) { return pad.data() + (3 * c + 1) * np; }
    T* w(int c) { return pad.data() + (3 * c + 2) * np; }
    T* q(int c, int which) { return cmp.data() + (5 * c + which) * n; }  // 0 bu, 1 bv, 2 xy, 3 cu, 4 cv
    int64_t padded(int i, int j) const { return (int64_t)(i + 1) * Wp + 1 + (j >> 1); }
    int64_t compact(int i, int j) const { return (int64_t)i * Wc + (j >> 1); }

    void half_row(int c, int i, T keep) {
        const int64_t e = (int64_t)i * Wc, r = (int64_t)(i + 1) * Wp + 1;
        sor_row(Wc, Wp, ((i + c) & 1) - 1, keep, u(1 - c) + r, v(1 - c) + r, w(1 - c) + r, w(c) + r,
                q(c, 0) + e, q(c, 1) + e, q(c, 2) + e, q(c, 3) + e, q(c, 4) + e, u(c) + r, v(c) + r);
    }

    // n_sweeps sweeps from zero increments, red (i + j even) then black each sweep.
    void solve(int n_sweeps, T omega) {
        std::fill(pad.begin(), pad.begin() + 2 * np, T(0));
        std::fill(pad.begin() + 3 * np, pad.begin() + 5 * np, T(0));
        const T keep = T(1) - omega;
        const int block = (int)std::max<int64_t>(1, kSorCacheBytes / (32 * (int64_t)(W + 4) * sizeof(T)));
        for (int s0 = 0; s0 < n_sweeps; s0 += block) {
            const int nh = 2 * std::min(block, n_sweeps - s0);
            for (int t = 0; t < H + nh - 1; ++t) {
                for (int h = 0; h < nh && t - h >= 0; ++h) {
                    if (t - h < H) half_row(h & 1, t - h, keep);
                }
            }
        }
    }

    void unpack(T* du, T* dv) {
        for (int i = 0; i < H; ++i) {
            for (int j = 0; j < W; ++j) {
                const int c = (i + j) & 1;
                du[(int64_t)i * W + j] = u(c)[padded(i, j)];
                dv[(int64_t)i * W + j] = v(c)[padded(i, j)];
            }
        }
    }
};

struct Params {
    int C, H, W, n_outer, n_inner, n_sor;
    double alpha, omega;
};

// One pair's level: scratch planes reused across the pairs a thread computes. Planes
// named *p are zero-padded by one pixel ((H + 2) x (W + 2)), so the neighbour sums and
// forward differences need no border branches: torch's zero padding and 0/1 masks, as
// loops the compiler vectorises.
template <typename T>
struct Level {
    Params P;
    int64_t N, Wq;
    std::vector<T> f1s, ix1, iy1, warped, f2s, tmp, ix, iy, it, du, dv, fp, up, wp, mx, acc, row;
    Sor<T> sor;
    T blur[5], deriv[5];

    explicit Level(const Params& p) : P(p), N((int64_t)p.H * p.W), Wq(p.W + 2) {
        for (auto* v : {&f1s, &ix1, &iy1, &warped, &f2s, &ix, &iy, &it}) v->assign(P.C * N, T(0));
        for (auto* v : {&tmp, &du, &dv}) v->assign(N, T(0));
        const int64_t np = (P.H + 2) * Wq;
        fp.assign(2 * np, T(0)), up.assign(2 * np, T(0)), wp.assign(np, T(0));
        mx.assign(P.W, T(1)), mx[P.W - 1] = T(0);  // an edge to the right exists
        acc.assign(5 * (int64_t)P.W, T(0)), row.assign(6 * (int64_t)P.W, T(0));
        sor.resize(P.H, P.W);
        for (int t = 0; t < 5; ++t) blur[t] = (T)kBlur[t], deriv[t] = (T)kDeriv[t];
    }
    int64_t pp(int i) const { return (int64_t)(i + 1) * Wq + 1; }  // pixel (i, 0) in a padded plane

    void smooth(const T* s, T* d) {
        for (int c = 0; c < P.C; ++c) {
            filt_x(s + c * N, tmp.data(), P.H, P.W, blur);
            filt_y(tmp.data(), d + c * N, P.H, P.W, blur);
        }
    }

    // d/dx and d/dy of each channel of s, scaled by g, plus base (when given).
    void derivs(const T* s, T g, T* dx, T* dy, const T* bx, const T* by) {
        for (int c = 0; c < P.C; ++c) {
            filt_x(s + c * N, dx + c * N, P.H, P.W, deriv);
            filt_y(s + c * N, dy + c * N, P.H, P.W, deriv);
        }
        for (int64_t p = 0; p < P.C * N; ++p) {
            dx[p] = bx ? dx[p] * g + bx[p] : dx[p] * g;
            dy[p] = by ? dy[p] * g + by[p] : dy[p] * g;
        }
    }

    void run(const T* f1, const T* f2, T* flow);
    void weights(const T* flow);
    void data_row(int i);
    void system_row(int i);
    void assemble(const T* flow);
};

// fp = flow, up = flow + (du, dv) (padded); wp = alpha * phi, phi = 0.5 / sqrt(|grad up|^2 + eps^2)
// with forward differences (zero across the last column / row).
template <typename T>
void Level<T>::weights(const T* flow) {
    const int H = P.H, W = P.W;
    const int64_t np = (H + 2) * Wq;
    for (int i = 0; i < H; ++i) {
        const int64_t o = (int64_t)i * W, q = pp(i);
        #pragma GCC ivdep
        for (int j = 0; j < W; ++j) {
            fp[q + j] = flow[o + j], fp[np + q + j] = flow[N + o + j];
            up[q + j] = flow[o + j] + du[o + j], up[np + q + j] = flow[N + o + j] + dv[o + j];
        }
    }
    const T alpha = (T)P.alpha, eps2 = (T)kEps2;
    for (int i = 0; i < H; ++i) {
        const T my = i < H - 1 ? T(1) : T(0);
        const T* __restrict U = up.data() + pp(i);
        const T* __restrict V = U + np;
        const T* __restrict m = mx.data();
        T* __restrict w = wp.data() + pp(i);
        for (int j = 0; j < W; ++j) {
            const T gxu = (U[j + 1] - U[j]) * m[j], gyu = (U[j + Wq] - U[j]) * my;
            const T gxv = (V[j + 1] - V[j]) * m[j], gyv = (V[j + Wq] - V[j]) * my;
            const T s = (gxu * gxu + gyu * gyu) + (gxv * gxv + gyv * gyv);
            w[j] = alpha * (T(0.5) / std::sqrt(s + eps2));
        }
    }
}

// Row i of the data term's channel sums: ix2, iy2, ixy, ixt, iyt (Charbonnier psi per channel).
template <typename T>
void Level<T>::data_row(int i) {
    const int W = P.W;
    const T eps2 = (T)kEps2;
    T* __restrict a = acc.data();
    std::fill(acc.begin(), acc.end(), T(0));
    const T* __restrict pdu = du.data() + (int64_t)i * W;
    const T* __restrict pdv = dv.data() + (int64_t)i * W;
    for (int c = 0; c < P.C; ++c) {
        const int64_t o = c * N + (int64_t)i * W;
        const T* __restrict x = ix.data() + o;
        const T* __restrict y = iy.data() + o;
        const T* __restrict t = it.data() + o;
        #pragma GCC ivdep
        for (int j = 0; j < W; ++j) {
            const T r = t[j] + x[j] * pdu[j] + y[j] * pdv[j];  // exactly t[j] while du = dv = 0
            const T psi = T(0.5) / std::sqrt(r * r + eps2);
            const T px = psi * x[j], py = psi * y[j];
            a[j] += px * x[j], a[W + j] += py * y[j], a[2 * W + j] += px * y[j];
            a[3 * W + j] += px * t[j], a[4 * W + j] += py * t[j];
        }
    }
}

// Row i of the system (after data_row(i)): w, bu, bv, ixy, omega/diag_u, omega/diag_v into row.
template <typename T>
void Level<T>::system_row(int i) {
    const int W = P.W;
    const T nc = (T)P.C, reg = (T)(0.05 * P.alpha), omega = (T)P.omega, my = i < P.H - 1 ? T(1) : T(0);
    const int64_t np = (P.H + 2) * Wq;
    const T* __restrict w = wp.data() + pp(i);
    const T* __restrict U = fp.data() + pp(i);
    const T* __restrict V = U + np;
    const T* __restrict m = mx.data();
    const T* __restrict a = acc.data();
    T* __restrict o = row.data();
    #pragma GCC ivdep
    for (int j = 0; j < W; ++j) {
        // edge weights: right/down edge of p has weight w[p] (masked), left/up are the neighbours'
        const T wl = w[j - 1], wr = w[j] * m[j], wu = w[j - Wq], wd = w[j] * my;
        const T wsum = wl + wr + wu + wd;
        const T nu = wl * U[j - 1] + wr * U[j + 1] + wu * U[j - Wq] + wd * U[j + Wq];
        const T nv = wl * V[j - 1] + wr * V[j + 1] + wu * V[j - Wq] + wd * V[j + Wq];
        o[j] = w[j];
        o[W + j] = -(a[3 * W + j] / nc) - (wsum * U[j] - nu);
        o[2 * W + j] = -(a[4 * W + j] / nc) - (wsum * V[j] - nv);
        o[3 * W + j] = a[2 * W + j] / nc;
        o[4 * W + j] = omega * (T(1) / (a[j] / nc + reg + wsum));
        o[5 * W + j] = omega * (T(1) / (a[W + j] / nc + reg + wsum));
    }
}

// The IRLS system of one inner iteration, written into the SOR layout row by row.
template <typename T>
void Level<T>::assemble(const T* flow) {
    const int W = P.W;
    weights(flow);
    for (int i = 0; i < P.H; ++i) {
        data_row(i);
        system_row(i);
        for (int c = 0; c < 2; ++c) {
            const int j0 = (i + c) & 1, nk = (W - j0 + 1) / 2;
            const T* __restrict r = row.data() + j0;
            T* __restrict sw = sor.w(c) + sor.padded(i, 0);
            for (int k = 0; k < nk; ++k) sw[k] = r[2 * k];
            for (int f = 0; f < 5; ++f) {
                T* __restrict d = sor.q(c, f) + sor.compact(i, 0);
                const T* __restrict rf = r + (int64_t)(f + 1) * W;
                for (int k = 0; k < nk; ++k) d[k] = rf[2 * k];
            }
        }
    }
}

template <typename T>
void Level<T>::run(const T* f1, const T* f2, T* flow) {
    smooth(f1, f1s.data());
    derivs(f1s.data(), T(0.4), ix1.data(), iy1.data(), nullptr, nullptr);
    for (int count = 0; count < P.n_outer; ++count) {
        warp(f2, f1, flow, flow + N, warped.data(), P.C, P.H, P.W);
        smooth(warped.data(), f2s.data());
        derivs(f2s.data(), T(0.6), ix.data(), iy.data(), ix1.data(), iy1.data());
        for (int64_t p = 0; p < P.C * N; ++p) it[p] = f2s[p] - f1s[p];
        std::fill(du.begin(), du.end(), T(0));
        std::fill(dv.begin(), dv.end(), T(0));
        for (int hh = 0; hh < P.n_inner; ++hh) {
            assemble(flow);
            sor.solve(P.n_sor, (T)P.omega);
            sor.unpack(du.data(), dv.data());
        }
        for (int64_t p = 0; p < N; ++p) flow[p] += du[p], flow[N + p] += dv[p];
    }
}

template <typename T>
int level(int B, const Params& P, int threads, const T* f1, const T* f2, T* flow) {
    const int64_t fs = (int64_t)P.C * P.H * P.W, vs = (int64_t)2 * P.H * P.W;
    threads = std::max(1, std::min(threads, B));
    std::vector<int> failed(threads, 0);
    auto work = [&](int t) {
        try {
            Level<T> lv(P);
            for (int b = (int64_t)B * t / threads; b < (int64_t)B * (t + 1) / threads; ++b)
                lv.run(f1 + b * fs, f2 + b * fs, flow + b * vs);
        } catch (const std::exception&) {
            failed[t] = 1;
        }
    };
    std::vector<std::thread> pool;
    for (int t = 1; t < threads; ++t) pool.emplace_back(work, t);
    work(0);
    for (auto& th : pool) th.join();
    return *std::max_element(failed.begin(), failed.end());
}

}  // namespace

extern "C" {
// f1, f2: (B, C, H, W) features of the two images; flow: (B, 2, H, W), refined in place.
// Returns 0, or 1 when a thread failed (out of memory).
int liu_level_f32(int B, int C, int H, int W, int n_outer, int n_inner, int n_sor, double alpha, double omega,
                  int threads, const float* f1, const float* f2, float* flow) {
    return level<float>(B, Params{C, H, W, n_outer, n_inner, n_sor, alpha, omega}, threads, f1, f2, flow);
}
int liu_level_f64(int B, int C, int H, int W, int n_outer, int n_inner, int n_sor, double alpha, double omega,
                  int threads, const double* f1, const double* f2, double* flow) {
    return level<double>(B, Params{C, H, W, n_outer, n_inner, n_sor, alpha, omega}, threads, f1, f2, flow);
}
}
