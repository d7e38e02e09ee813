#include <cstdint>
#include <cstring>
#include <vector>
// Red-black SOR for one batch slice, in a compacted layout: each colour's pixels of a
// row are stored contiguously (pixel k of colour c in row i is j = ((i + c) & 1) + 2k),
// so both half-sweeps are unit-stride, branch-free loops the compiler vectorises.
// The neighbours of (i, k) in the other colour are k + j0 - 1 (left), k + j0 (right)
// and k in rows i - 1 and i + 1; the other colour's arrays carry a zero border.
template <typename T>
static void sor(int B, int H, int W, int n_sweeps, double omega_d, T* du, T* dv,
                const T* wr, const T* wd, const T* bu, const T* bv, const T* ixy,
                const T* inv_u, const T* inv_v) {
    const T omega = (T)omega_d, keep = (T)1 - omega;
    const int Wc = (W + 1) / 2, Wp = Wc + 2;
    const int64_t n = (int64_t)H * Wc, np = (int64_t)(H + 2) * Wp;
    std::vector<T> coef(2 * 9 * n), dd(2 * 2 * np);
    for (int b = 0; b < B; ++b) {
        const int64_t off = (int64_t)b * H * W;
        std::fill(coef.begin(), coef.end(), (T)0);
        std::fill(dd.begin(), dd.end(), (T)0);
        for (int c = 0; c < 2; ++c) {
            T* q = coef.data() + (int64_t)c * 9 * n;
            for (int i = 0; i < H; ++i) {
                const int j0 = (i + c) & 1;
                for (int k = 0; k < Wc; ++k) {
                    const int j = j0 + 2 * k;
                    if (j >= W) break;
                    const int64_t p = off + (int64_t)i * W + j, e = (int64_t)i * Wc + k;
                    q[0 * n + e] = j > 0 ? wr[p - 1] : (T)0;
                    q[1 * n + e] = wr[p];
                    q[2 * n + e] = i > 0 ? wd[p - W] : (T)0;
                    q[3 * n + e] = wd[p];
                    q[4 * n + e] = bu[p];
                    q[5 * n + e] = bv[p];
                    q[6 * n + e] = ixy[p];
                    q[7 * n + e] = omega * inv_u[p];
                    q[8 * n + e] = omega * inv_v[p];
                }
            }
        }
        for (int s = 0; s < n_sweeps; ++s) {
            for (int c = 0; c < 2; ++c) {
                const T* q = coef.data() + (int64_t)c * 9 * n;
                T* __restrict__ mu = dd.data() + (int64_t)c * 2 * np;
                T* __restrict__ mv = mu + np;
                const T* __restrict__ ou = dd.data() + (int64_t)(1 - c) * 2 * np;
                const T* __restrict__ ov = ou + np;
                for (int i = 0; i < H; ++i) {
                    const int j0 = (i + c) & 1;
                    const int64_t e = (int64_t)i * Wc, r = (int64_t)(i + 1) * Wp + 1;
                    const T* __restrict__ wl_ = q + e;
                    const T* __restrict__ wr_ = q + n + e;
                    const T* __restrict__ wu_ = q + 2 * n + e;
                    const T* __restrict__ wd_ = q + 3 * n + e;
                    const T* __restrict__ bu_ = q + 4 * n + e;
                    const T* __restrict__ bv_ = q + 5 * n + e;
                    const T* __restrict__ xy_ = q + 6 * n + e;
                    const T* __restrict__ cu_ = q + 7 * n + e;
                    const T* __restrict__ cv_ = q + 8 * n + e;
                    const T* __restrict__ lu = ou + r + j0 - 1;
                    const T* __restrict__ lv = ov + r + j0 - 1;
                    const T* __restrict__ uu = ou + r - Wp;
                    const T* __restrict__ uv = ov + r - Wp;
                    const T* __restrict__ du_ = ou + r + Wp;
                    const T* __restrict__ dv_ = ov + r + Wp;
                    T* __restrict__ xu = mu + r;
                    T* __restrict__ xv = mv + r;
                    for (int k = 0; k < Wc; ++k) {
                        const T su = wl_[k] * lu[k] + wr_[k] * lu[k + 1] + wu_[k] * uu[k] + wd_[k] * du_[k];
                        const T sv = wl_[k] * lv[k] + wr_[k] * lv[k + 1] + wu_[k] * uv[k] + wd_[k] * dv_[k];
                        const T u = keep * xu[k] + cu_[k] * (bu_[k] + su - xy_[k] * xv[k]);
                        xu[k] = u;
                        xv[k] = keep * xv[k] + cv_[k] * (bv_[k] + sv - xy_[k] * u);
                    }
                }
            }
        }
        for (int c = 0; c < 2; ++c) {
            const T* mu = dd.data() + (int64_t)c * 2 * np;
            const T* mv = mu + np;
            for (int i = 0; i < H; ++i) {
                const int j0 = (i + c) & 1;
                for (int k = 0; k < Wc && j0 + 2 * k < W; ++k) {
                    const int64_t p = off + (int64_t)i * W + j0 + 2 * k, r = (int64_t)(i + 1) * Wp + 1 + k;
                    du[p] = mu[r];
                    dv[p] = mv[r];
                }
            }
        }
    }
}
extern "C" {
void liu_sor_f32(int B, int H, int W, int n, double omega, float* du, float* dv, const float* wr,
                 const float* wd, const float* bu, const float* bv, const float* ixy,
                 const float* inv_u, const float* inv_v) {
    sor<float>(B, H, W, n, omega, du, dv, wr, wd, bu, bv, ixy, inv_u, inv_v);
}
void liu_sor_f64(int B, int H, int W, int n, double omega, double* du, double* dv, const double* wr,
                 const double* wd, const double* bu, const double* bv, const double* ixy,
                 const double* inv_u, const double* inv_v) {
    sor<double>(B, H, W, n, omega, du, dv, wr, wd, bu, bv, ixy, inv_u, inv_v);
}
}
