// Fused CPU kernels of cage_games.torch (see cage_games/torch/_native.py for the build and
// cage_games/_newton_spec.py for the method). Compiled with -DCG_T=float|double, -DCG_DOUBLE,
// -DCG_M (principals) and -DCG_CAPS; the Python side checks cg_abi_version() before any call
// and passes the method's constants in a CgSpec whose version and size are checked here.
#include <cstdint>
#include <cstring>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <type_traits>
#include <omp.h>
#if defined(__SSE__)
#include <immintrin.h>
#endif

typedef CG_T T;
constexpr int M = CG_M;
constexpr bool CAPS = CG_CAPS;
// Vector width: the widest the target has natively (GCC expands wider generic vectors
// piecewise, element by element: an AVX2 machine ran a 64-byte build 40 times slower).
#if defined(__AVX512F__)
#define CG_VB 64
#elif defined(__AVX__)
#define CG_VB 32
#else
#define CG_VB 16
#endif
constexpr int W = CG_VB / (int)sizeof(T);
typedef T vT __attribute__((vector_size(CG_VB)));
typedef double vD __attribute__((vector_size(CG_VB)));
#if CG_DOUBLE
typedef int64_t I;
#else
typedef int32_t I;
typedef float vH __attribute__((vector_size(CG_VB / 2)));
#endif
typedef I vI __attribute__((vector_size(CG_VB)));
// ABI of every exported function; bumped with any signature or struct change (Python checks
// it before the first call and refuses a library that answers anything else).
#define CG_ABI_VERSION 2

// The constants of the Newton state machine (cage_games._newton_spec.NewtonSpec) and the call's
// numerics, filled in by Python from SPEC at every call (never retyped here).
struct CgSpec {
  int64_t abi;           // CG_ABI_VERSION
  int64_t size;          // sizeof(CgSpec)
  int64_t spec_version;  // NewtonSpec.version (the state machine this source implements)
  int64_t dtype_size;    // sizeof(T)
  int64_t m;             // M
  int64_t caps;          // CAPS
  double armijo;
  int64_t max_halvings;
  double to_boundary;
  double box_tiny;
  double tiny_step;
  int64_t tiny_steps;
  double lm_mu;
  double s_min;
  double gap;
  int64_t n_iter;
  int64_t nthreads;
};
#define CG_SPEC_VERSION 2

constexpr int64_t CH = 1024;                 // actions per task (a multiple of BL * W)
constexpr int64_t BL = 8;                    // vectors summed in T before widening to double
constexpr int K = 1 + 5 * M + 2 * M * M;     // moments per row (layout in n_moments)
constexpr int KS = 1 + M;                    // set-up moments per row
constexpr T NEG_INF = -std::numeric_limits<T>::infinity();
constexpr T POS_INF = std::numeric_limits<T>::infinity();
// exp(x) is flushed to 0 below this (the smallest normal number is exp(-87.33) in float32)
constexpr T EXP_LO = sizeof(T) == 4 ? (T)-87.0 : (T)-708.0;

static inline vT ld(const T* p) { vT v; std::memcpy(&v, p, sizeof v); return v; }
static inline void st(T* p, vT v) { std::memcpy(p, &v, sizeof v); }
// a > b ? a : b and a < b ? a : b: exactly what vmaxps / vminps compute (the second operand
// where either is NaN), one instruction, where GCC made a compare and a blend or an and of
// the generic form.
static inline vT vmax(vT a, vT b) {
#if CG_VB == 32
  if constexpr (sizeof(T) == 4) return (vT)_mm256_max_ps((__m256)a, (__m256)b);
  else return (vT)_mm256_max_pd((__m256d)a, (__m256d)b);
#elif CG_VB == 64
  if constexpr (sizeof(T) == 4) return (vT)_mm512_max_ps((__m512)a, (__m512)b);
  else return (vT)_mm512_max_pd((__m512d)a, (__m512d)b);
#else
  return a > b ? a : b;
#endif
}
static inline vT vmin(vT a, vT b) {
#if CG_VB == 32
  if constexpr (sizeof(T) == 4) return (vT)_mm256_min_ps((__m256)a, (__m256)b);
  else return (vT)_mm256_min_pd((__m256d)a, (__m256d)b);
#elif CG_VB == 64
  if constexpr (sizeof(T) == 4) return (vT)_mm512_min_ps((__m512)a, (__m512)b);
  else return (vT)_mm512_min_pd((__m512d)a, (__m512d)b);
#else
  return a < b ? a : b;
#endif
}
static inline T hsumT(vT a) {
  T s = 0;
  for (int l = 0; l < W; ++l) s += a[l];
  return s;
}
static inline T hmax(vT a) {
  T s = a[0];
  for (int l = 1; l < W; ++l) s = a[l] > s ? a[l] : s;
  return s;
}
static inline T hmin(vT a) {
  T s = a[0];
  for (int l = 1; l < W; ++l) s = a[l] < s ? a[l] : s;
  return s;
}

// Lane masks and masked accumulation (AVX-512 mask registers where available).
#if defined(__AVX512F__)
typedef std::conditional_t<sizeof(T) == 4, __mmask16, __mmask8> Mask;
static inline Mask gt(vT a, vT b) {
  if constexpr (sizeof(T) == 4) return _mm512_cmp_ps_mask((__m512)a, (__m512)b, _CMP_GT_OQ);
  else return _mm512_cmp_pd_mask((__m512d)a, (__m512d)b, _CMP_GT_OQ);
}
static inline Mask mand(Mask a, Mask b) { return a & b; }
static inline vT madd(vT acc, Mask k, vT x) {
  if constexpr (sizeof(T) == 4)
    return (vT)_mm512_mask_add_ps((__m512)acc, k, (__m512)acc, (__m512)x);
  else
    return (vT)_mm512_mask_add_pd((__m512d)acc, k, (__m512d)acc, (__m512d)x);
}
#else
// Without mask registers a mask is a vector of 0.0 / 1.0 and a masked sum one FMA (a blend
// and an add cost twice as much on AVX2).
typedef vT Mask;
static inline Mask gt(vT a, vT b) { return (vT)((a > b) & (vI)((vT){} + (T)1)); }
static inline Mask mand(Mask a, Mask b) { return a * b; }
static inline vT madd(vT acc, Mask k, vT x) { return acc + k * x; }
#endif

// exp(x) for x <= 0 (x = -inf allowed), 0 below EXP_LO: Cephes polynomials on
// x - n ln 2, times 2^n.
static inline vT vexp(vT x) {
  const vT zero = (vT){};
#if defined(__AVX512F__)
  if constexpr (sizeof(T) == 4) {
    __m512 xx = _mm512_max_ps((__m512)x, _mm512_set1_ps(-100.0f));
    __mmask16 ok = _mm512_cmp_ps_mask(xx, _mm512_set1_ps(EXP_LO), _CMP_GT_OQ);
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(xx, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), xx);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return (vT)_mm512_maskz_scalef_ps(ok, p, n);
  }
#endif
  if constexpr (sizeof(T) == 4) {
    vI ok = x > EXP_LO;
    x = vmax(x, zero - (T)100);  // (NaN -> -100: masked by ok all the same)
    // n = round(x / ln 2) by the 1.5 * 2^23 trick; its integer is in the low mantissa bits
    vT big = x * (T)1.44269504088896341 + (T)12582912.0;
    vT n = big - (T)12582912.0;
    vT r = x - n * (T)0.693359375;
    r = r + n * (T)2.12194440e-4;
    vT p = zero + (T)1.9875691500e-4;
    p = p * r + (T)1.3981999507e-3;
    p = p * r + (T)8.3334519073e-3;
    p = p * r + (T)4.1665795894e-2;
    p = p * r + (T)1.6666665459e-1;
    p = p * r + (T)5.0000001201e-1;
    p = p * (r * r) + r + (T)1;
    vI ni, magic;
    std::memcpy(&ni, &big, sizeof ni);
    magic = (vI){} + (I)0x4B400000;  // the bits of 12582912.0f
    vI bits = (ni - magic + 127) << 23;
    vT s; std::memcpy(&s, &bits, sizeof s);
    return ok ? p * s : zero;
  } else {
    vI ok = x > EXP_LO;
    x = vmax(x, zero - (T)740);
    vT big = x * (T)1.4426950408889634 + (T)6755399441055744.0;  // 1.5 * 2^52
    vT n = big - (T)6755399441055744.0;
    vT r = x - n * (T)6.93147180369123816490e-01;
    r = r - n * (T)1.90821492927058770002e-10;
    vT p = zero + (T)(1.0 / 6227020800.0);
    p = p * r + (T)(1.0 / 479001600.0);
    p = p * r + (T)(1.0 / 39916800.0);
    p = p * r + (T)(1.0 / 3628800.0);
    p = p * r + (T)(1.0 / 362880.0);
    p = p * r + (T)(1.0 / 40320.0);
    p = p * r + (T)(1.0 / 5040.0);
    p = p * r + (T)(1.0 / 720.0);
    p = p * r + (T)(1.0 / 120.0);
    p = p * r + (T)(1.0 / 24.0);
    p = p * r + (T)(1.0 / 6.0);
    p = p * r + (T)0.5;
    p = p * r + (T)1;
    p = p * r + (T)1;
    vI ni, magic;
    std::memcpy(&ni, &big, sizeof ni);
    magic = (vI){} + (I)0x4338000000000000LL;  // the bits of 6755399441055744.0
    vI bits = (ni - magic + 1023) << 52;
    vT s; std::memcpy(&s, &bits, sizeof s);
    return ok ? p * s : zero;
  }
}

// A float64 accumulator of W lanes (two native vectors when T = float).
struct Acc {
  vD a = (vD){}, b = (vD){};
  inline void add(vT x) {
#if CG_DOUBLE
    a += x;
#else
    vH lo, hi;
    std::memcpy(&lo, &x, sizeof lo);
    std::memcpy(&hi, reinterpret_cast<const char*>(&x) + sizeof lo, sizeof hi);
    a += __builtin_convertvector(lo, vD);
    b += __builtin_convertvector(hi, vD);
#endif
  }
  inline double sum() const {
    double s = 0;
    for (int l = 0; l < CG_VB / 8; ++l) s += a[l] + b[l];
    return s;
  }
};

// Denormal numbers flushed to zero inside the kernels (they only arise far below the
// shift, where they do not matter, and cost microcode assists on x86).
struct FlushDenormals {
#if defined(__SSE__)
  unsigned int saved;
  FlushDenormals() : saved(_mm_getcsr()) { _mm_setcsr(saved | 0x8040); }
  ~FlushDenormals() { _mm_setcsr(saved); }
#endif
};

// Load W actions from p + j, padding past L with `pad`. The element loop of the tail becomes
// a memcpy call, and a call inside a loop clobbers every vector register (all caller-saved):
// GCC then kept the loop's accumulators on the stack. So the sweeps run TAIL = false over the
// full vectors (a plain load) and TAIL = true at most once, for the last partial one.
template <bool TAIL = true>
static inline vT ldpad(const T* p, int64_t j, int64_t L, T pad) {
  if (!TAIL || j + W <= L) return ld(p + j);
  vT v = (vT){} + pad;
  for (int64_t l = 0; j + l < L; ++l) v[l] = p[j + l];
  return v;
}
// Store W actions at p + j, those before L only.
template <bool TAIL = true>
static inline void stpart(T* p, int64_t j, int64_t L, vT x) {
  if (!TAIL || j + W <= L) st(p + j, x);
  else for (int64_t l = 0; j + l < L; ++l) p[j + l] = x[l];
}
// for (j = a; j < b; j += W) f(j, TAIL) with TAIL = false where j + W <= b.
template <class F>
static inline void sweep(int64_t a, int64_t b, F&& f) {
  int64_t j = a;
  for (; j + W <= b; j += W) f(j, std::false_type{});
  if (j < b) f(j, std::true_type{});
}

struct Row {
  const T* u[M];
  const T* v;
  T* xo;  // where to store the log-weights of the chunk, or null
  vT g[M], k[M];
  T ib;
};

static inline Row row(const T* u, const T* v, int64_t n, int64_t b, int64_t a0,
                      const T* gamma, const T* kappa, T ib) {
  Row R;
  for (int i = 0; i < M; ++i) {
    R.u[i] = u + (b * M + i) * n + a0;
    R.g[i] = (vT){} + (gamma ? gamma[i] : (T)0);
    R.k[i] = (vT){} + (CAPS && kappa ? kappa[i] : POS_INF);
  }
  R.v = v + b * n + a0;
  R.xo = nullptr;
  R.ib = ib;
  return R;
}

// Log-weights x = v / beta + sum_i tau_i of W actions, with d_i = u_i / beta - gamma_i and
// tau_i = clip(d_i, 0, kappa_i).
template <bool TAIL = true>
static inline vT logw(const Row& R, int64_t j, int64_t L, vT* d, vT* tau) {
  vT x = ldpad<TAIL>(R.v, j, L, NEG_INF) * R.ib;
  for (int i = 0; i < M; ++i) {
    d[i] = ldpad<TAIL>(R.u[i], j, L, (T)0) * R.ib - R.g[i];
    tau[i] = vmax(d[i], (vT){});
    if constexpr (CAPS) tau[i] = vmin(tau[i], R.k[i]);
    x += tau[i];
  }
  return x;
}

// Without mask registers (AVX2 and older) the 2 m^2 + 2 m Jacobian sums of the fused sweep
// need about 25 accumulators for m = 4, against 16 vector registers: GCC spilled most of them
// (and the loop's constants) to the stack on every vector. There the sweep over the
// utilities stores e = exp(x - shift), d_i, e g_i (and e h_i) of each block of JB actions in
// L1-resident buffers, and the Jacobian sums come from two sweeps over the block: the first
// forms P, E[A] (and H) and stores the 0/1 masks A_j, the second sums the cross moments
// E[g_i A_j] (and E[h_i A_j]) with only those accumulators live. Per lane every sum is taken
// in the same order as in the fused sweep. With AVX-512's 32 registers and mask registers the
// fused sweep is faster.
constexpr int64_t JB = 256;  // actions per block (a multiple of BL * W)
#if defined(__AVX512F__)
constexpr bool JSPLIT = false;
#else
constexpr bool JSPLIT = true;
#endif
struct JacBuf {
  alignas(64) T e[JSPLIT ? JB : 1];
  alignas(64) T d[JSPLIT ? M : 1][JSPLIT ? JB : 1];
  alignas(64) T g[JSPLIT ? M : 1][JSPLIT ? JB : 1];  // e g_i
  alignas(64) T h[JSPLIT && CAPS ? M : 1][JSPLIT ? JB : 1];  // e h_i
  alignas(64) T a[JSPLIT ? M : 1][JSPLIT ? JB : 1];  // A_i as 0 / 1
};

#if !defined(__AVX512F__)
// The Jacobian sums of the nb actions of a block from its buffers.
static inline void jac_block(const Row& R, int64_t b0, int64_t nb, JacBuf& B, Acc* S, vT* bS,
                             vT* P, vT* EA, vT* H, vT (*GA)[M], vT (*HA)[M]) {
  const vT zero = (vT){};
  for (int64_t o = 0; o < nb; o += W) {
    vT e = ld(B.e + o);
    if constexpr (!CAPS)
      if ((b0 + o) % (BL * W) == 0 && b0 + o > 0)
        for (int i = 0; i < M; ++i) { S[i].add(bS[i]); bS[i] = zero; }
    for (int i = 0; i < M; ++i) {
      vT d = ld(B.d[i] + o);
      if constexpr (!CAPS) {
        // e g_i and S_i here, not in the utility sweep (fewer registers live there)
        vT eg = e * vmax(zero - d, zero);
        bS[i] += eg;
        st(B.g[i] + o, eg);
      }
      P[i] = madd(P[i], gt(zero, d), e);  // unpaid: d < 0
      Mask A = gt(d, zero);
      if constexpr (CAPS) {
        A = mand(A, gt(R.k[i], d));
        H[i] = madd(H[i], gt(d, R.k[i]), e);
      }
      EA[i] = madd(EA[i], A, e);
      st(B.a[i] + o, A);
    }
  }
  auto cross = [&](const T (*src)[JB], vT (*acc)[M]) {
    for (int64_t o = 0; o < nb; o += W) {
      vT A[M];
      for (int jj = 0; jj < M; ++jj) A[jj] = ld(B.a[jj] + o);
      for (int i = 0; i < M; ++i) {
        vT x = ld(src[i] + o);
        for (int jj = 0; jj < M; ++jj)
          if (jj != i) acc[i][jj] = madd(acc[i][jj], A[jj], x);
      }
    }
  };
  cross(B.g, GA);
  if constexpr (CAPS) cross(B.h, HA);
}
#else
static inline void jac_block(const Row&, int64_t, int64_t, JacBuf&, Acc*, vT*, vT*, vT*, vT*,
                             vT (*)[M], vT (*)[M]) {}
#endif

// Moments of one chunk relative to exp(shift); shift NaN = the chunk's own maximum (two
// passes), otherwise a given upper bound of x (one pass).
template <bool JAC>
static void eval_task(const Row& R, int64_t L, T shift, double* part, double* cmax,
                      double* xmax) {
  const vT zero = (vT){};
  vT d[M], tau[M];
  for (int k = 0; k < K; ++k) part[k] = 0.0;
  T cm = shift;
  if (!(shift == shift)) {
    vT mx = zero + NEG_INF;
    sweep(0, L, [&](int64_t j, auto tail) {
      mx = vmax(mx, logw<decltype(tail)::value>(R, j, L, d, tau));
    });
    cm = hmax(mx);
  }
  *cmax = (double)cm;
  *xmax = (double)cm;
  if (!(cm > NEG_INF)) return;
  constexpr bool J1 = JAC && !JSPLIT;  // Jacobian sums in this sweep
  constexpr bool SJ = JAC && JSPLIT && !CAPS;  // S_i summed in the Jacobian sweep
  JacBuf jb;
  Acc Z, S[M], O[M];
  vT P[M], EA[M], GA[M][M], H[M], HA[M][M];
  vT bZ = zero, bS[M], bO[M], mx = zero + NEG_INF;
  for (int i = 0; i < M; ++i) {
    P[i] = zero; EA[i] = zero; H[i] = zero; bS[i] = zero; bO[i] = zero;
    for (int j = 0; j < M; ++j) { GA[i][j] = zero; HA[i][j] = zero; }
  }
  for (int64_t b0 = 0; b0 < L; b0 += JB) {
    const int64_t b1 = b0 + JB < L ? b0 + JB : L;
    sweep(b0, b1, [&](int64_t j, auto tail) {
      constexpr bool TAIL = decltype(tail)::value;
      if (j % (BL * W) == 0 && j > 0) {
        Z.add(bZ); bZ = zero;
        for (int i = 0; i < M; ++i) {
          if constexpr (!SJ) { S[i].add(bS[i]); bS[i] = zero; }
          if constexpr (CAPS) { O[i].add(bO[i]); bO[i] = zero; }
        }
      }
      vT x = logw<TAIL>(R, j, L, d, tau);
      mx = vmax(mx, x);
      if (R.xo) stpart<TAIL>(R.xo, j, L, x);
      vT e = vexp(x - cm);
      if constexpr (JAC && JSPLIT) st(jb.e + (j - b0), e);
      bZ += e;
      vT eg[M], eh[M];
      Mask A[M];
      for (int i = 0; i < M; ++i) {
        // g = (gamma_i - r_i)_+ = tau_i - d_i when uncapped
        vT g = CAPS ? vmax(zero - d[i], zero) : tau[i] - d[i];
        eg[i] = e * g;
        if constexpr (!SJ) bS[i] += eg[i];
        if constexpr (CAPS) {
          eh[i] = e * vmax(d[i] - R.k[i], zero);
          bO[i] += eh[i];
        }
        if constexpr (JAC && JSPLIT) {
          st(jb.d[i] + (j - b0), d[i]);
          if constexpr (!SJ) st(jb.g[i] + (j - b0), eg[i]);
          if constexpr (CAPS) st(jb.h[i] + (j - b0), eh[i]);
        }
        if constexpr (J1) {
          P[i] = madd(P[i], gt(zero, d[i]), e);  // unpaid: d < 0
          A[i] = gt(d[i], zero);
          if constexpr (CAPS) {
            A[i] = mand(A[i], gt(R.k[i], d[i]));
            H[i] = madd(H[i], gt(d[i], R.k[i]), e);
          }
          EA[i] = madd(EA[i], A[i], e);
        }
      }
      if constexpr (J1) {
        for (int i = 0; i < M; ++i)
          for (int jj = 0; jj < M; ++jj) {
            if (jj == i) continue;
            GA[i][jj] = madd(GA[i][jj], A[jj], eg[i]);
            if constexpr (CAPS) HA[i][jj] = madd(HA[i][jj], A[jj], eh[i]);
          }
      }
    });
    if constexpr (JAC && JSPLIT) jac_block(R, b0, b1 - b0, jb, S, bS, P, EA, H, GA, HA);
  }
  if (shift == shift) *xmax = (double)hmax(mx);
  Z.add(bZ);
  for (int i = 0; i < M; ++i) { S[i].add(bS[i]); O[i].add(bO[i]); }
  // layout: Z, S[M], O[M], P[M], EA[M], GA[M*M], H[M], HA[M*M]
  part[0] = Z.sum();
  for (int i = 0; i < M; ++i) {
    part[1 + i] = S[i].sum();
    part[1 + M + i] = O[i].sum();
    if constexpr (JAC) {
      part[1 + 2 * M + i] = hsumT(P[i]);
      part[1 + 3 * M + i] = hsumT(EA[i]);
      part[1 + 4 * M + M * M + i] = hsumT(H[i]);
      for (int jj = 0; jj < M; ++jj) {
        part[1 + 4 * M + i * M + jj] = hsumT(GA[i][jj]);
        part[1 + 5 * M + M * M + i * M + jj] = hsumT(HA[i][jj]);
      }
    }
  }
}

// Per row: out = sum_c part_c exp(cmax_c - shift), shift = max_c cmax_c, xmax = max_c xm_c.
static void combine(int64_t R, int64_t nc, int k, const double* part, const double* cmax,
                    const double* xm, double* out, double* shift, double* xmax, int nthreads) {
  #pragma omp parallel for schedule(static) num_threads(nthreads)
  for (int64_t r = 0; r < R; ++r) {
    const double ninf = -std::numeric_limits<double>::infinity();
    double cm = ninf, mx = ninf;
    for (int64_t c = 0; c < nc; ++c) {
      cm = cmax[r * nc + c] > cm ? cmax[r * nc + c] : cm;
      if (xm) mx = xm[r * nc + c] > mx ? xm[r * nc + c] : mx;
    }
    for (int q = 0; q < k; ++q) out[r * k + q] = 0.0;
    shift[r] = cm;
    if (xmax) xmax[r] = mx;
    if (!(cm > ninf)) continue;
    for (int64_t c = 0; c < nc; ++c) {
      double w = std::exp(cmax[r * nc + c] - cm);
      if (w == 0.0) continue;
      const double* p = part + (r * nc + c) * k;
      for (int q = 0; q < k; ++q) out[r * k + q] += w * p[q];
    }
  }
}

// G, F and dF/dgamma of one row from its moments (cage_games.torch._kernel._form).
static void form(const double* mom, double s_min, bool jac, T* G, T* F, T* J) {
  double q[K];
  for (int k = 0; k < K; ++k) q[k] = mom[k] / mom[0];
  double se[M], fac[M];
  for (int i = 0; i < M; ++i) {
    double s = q[1 + i], o = q[1 + M + i];
    G[i] = (T)(s - o - 1.0);
    se[i] = s > s_min ? s : s_min;
    double lr = std::log(se[i]) + (s - se[i]) / se[i];
    if (CAPS) lr -= std::log1p(o);
    double f = lr > 0.0 ? std::expm1(lr < 80.0 ? lr : 80.0) : lr;
    F[i] = (T)f;
    fac[i] = lr > 0.0 ? 1.0 + f : 1.0;
  }
  if (!jac) return;
  const double* pu = q + 1 + 2 * M;
  const double* ea = q + 1 + 3 * M;
  const double* ga = q + 1 + 4 * M;
  const double* h = q + 1 + 4 * M + M * M;
  const double* ha = q + 1 + 5 * M + M * M;
  for (int i = 0; i < M; ++i) {
    double s = q[1 + i], o = q[1 + M + i];
    for (int j = 0; j < M; ++j) {
      double v = (s / se[i]) * ea[j] - ga[i * M + j] / se[i];
      if (CAPS) v += (ha[i * M + j] - o * ea[j]) / (1.0 + o);
      if (j == i) {
        v += pu[i] / se[i];
        if (CAPS) v += h[i] / (1.0 + o);
      }
      J[(i * M) + j] = (T)(v * fac[i]);
    }
  }
}

// Evaluation of the rows sel[0..nsel) (local indices r; rows[r] indexes u and v) at scaled
// thresholds gamma[r]: G, F (M), J = dF/dgamma (M x M, if jac), lse and xmax of the
// log-weights x, and the raw moments mom[r] (K) relative to exp(shift[r]). shift_in[r] is
// an upper bound of x in that row (one pass) or NaN (the exact maximum, two passes); a row
// whose bound exceeds the maximum by more than gap is redone with the exact maximum. With
// xout, the log-weights x of row r are also stored in xout[r] (n).
static int eval_rows(const T* u, const T* v, int64_t n, const int64_t* rows, int64_t nsel,
                     const int64_t* sel, const T* gamma, const T* ib, const T* kappa,
                     const T* shift_in, bool jac, double s_min, double gap, int nthreads,
                     double* mom, double* shift, T* G, T* F, T* J, T* lse, T* xmax,
                     T* xout = nullptr) {
  if (nsel == 0) return 0;
  int64_t nc = (n + CH - 1) / CH;
  double* part = (double*)std::malloc(sizeof(double) * nsel * nc * (K + 2));
  T* sh = (T*)std::malloc(sizeof(T) * nsel);
  int64_t* todo = (int64_t*)std::malloc(sizeof(int64_t) * nsel);
  if (!part || !sh || !todo) { std::free(part); std::free(sh); std::free(todo); return 1; }
  double* cmax = part + nsel * nc * K;
  double* xm = cmax + nsel * nc;
  int64_t nt = nsel;
  for (int64_t q = 0; q < nsel; ++q) { sh[q] = shift_in[sel[q]]; todo[q] = q; }
  for (int attempt = 0; attempt < 2 && nt > 0; ++attempt) {
    #pragma omp parallel num_threads(nthreads)
    {
      FlushDenormals ftz;
      #pragma omp for schedule(static)
      for (int64_t t = 0; t < nt * nc; ++t) {
        int64_t q = todo[t / nc], c = t % nc, a0 = c * CH, r = sel[q];
        int64_t L = n - a0 < CH ? n - a0 : CH;
        Row Rw = row(u, v, n, rows[r], a0, gamma + r * M, CAPS ? kappa + r * M : nullptr, ib[r]);
        if (xout) Rw.xo = xout + r * n + a0;
        int64_t tt = q * nc + c;
        if (jac) eval_task<true>(Rw, L, sh[q], part + tt * K, cmax + tt, xm + tt);
        else eval_task<false>(Rw, L, sh[q], part + tt * K, cmax + tt, xm + tt);
      }
    }
    int64_t nt2 = 0;
    for (int64_t w = 0; w < nt; ++w) {
      int64_t q = todo[w], r = sel[q];
      double xr;
      combine(1, nc, K, part + q * nc * K, cmax + q * nc, xm + q * nc, mom + r * K, shift + r,
              &xr, 1);
      xmax[r] = (T)xr;
      if (sh[q] == sh[q] && !(shift[r] - xr <= gap)) { sh[q] = NAN; todo[nt2++] = q; }
    }
    nt = nt2;
  }
  for (int64_t q = 0; q < nsel; ++q) {
    int64_t r = sel[q];
    form(mom + r * K, s_min, jac, G + r * M, F + r * M, jac ? J + r * M * M : nullptr);
    lse[r] = (T)(shift[r] + std::log(mom[r * K]));
  }
  std::free(part); std::free(sh); std::free(todo);
  return 0;
}

// p = -J^{-1} F (Gaussian elimination with partial pivoting, in double); false where J is
// singular (a zero pivot) or the result is not finite (p = 0 then).
static bool solve1(const T* J, const T* F, T* p) {
  double a[M][M + 1];
  for (int i = 0; i < M; ++i) {
    for (int j = 0; j < M; ++j) a[i][j] = J[i * M + j];
    a[i][M] = -(double)F[i];
  }
  bool good = true;
  for (int c = 0; c < M && good; ++c) {
    int piv = c;
    for (int i = c + 1; i < M; ++i) if (std::fabs(a[i][c]) > std::fabs(a[piv][c])) piv = i;
    if (!(a[piv][c] != 0.0)) { good = false; break; }
    if (piv != c)
      for (int j = 0; j <= M; ++j) { double t = a[c][j]; a[c][j] = a[piv][j]; a[piv][j] = t; }
    for (int i = c + 1; i < M; ++i) {
      double f = a[i][c] / a[c][c];
      for (int j = c; j <= M; ++j) a[i][j] -= f * a[c][j];
    }
  }
  T x[M];
  for (int i = M - 1; i >= 0 && good; --i) {
    double s = a[i][M];
    for (int j = i + 1; j < M; ++j) s -= a[i][j] * (double)x[j];
    x[i] = (T)(s / a[i][i]);
    if (!std::isfinite(x[i])) good = false;
  }
  for (int i = 0; i < M; ++i) p[i] = good ? x[i] : (T)0;
  return good;
}

// Levenberg-Marquardt direction -(J^T J + mu I)^{-1} J^T F, mu = lm_mu tr(J^T J) / M (as
// cage_games.torch._kernel._direction); non-finite entries become 0.
static void lm1(const T* J, const T* F, T* p, double lm_mu) {
  T h[M * M], g[M];
  double tr = 0.0;
  for (int i = 0; i < M; ++i) {
    double gi = 0.0;
    for (int k = 0; k < M; ++k) gi += (double)J[k * M + i] * F[k];
    g[i] = (T)gi;
    for (int j = 0; j < M; ++j) {
      double hij = 0.0;
      for (int k = 0; k < M; ++k) hij += (double)J[k * M + i] * J[k * M + j];
      h[i * M + j] = (T)hij;
    }
    tr += h[i * M + i];
  }
  double scale = tr / M;
  if (!(scale > (double)std::numeric_limits<T>::min())) scale = std::numeric_limits<T>::min();
  for (int i = 0; i < M; ++i) h[i * M + i] = (T)(h[i * M + i] + lm_mu * scale);
  solve1(h, g, p);
  for (int i = 0; i < M; ++i) if (!std::isfinite(p[i])) p[i] = 0;
}

static bool spec_ok(const CgSpec* s) {
  return s && s->abi == CG_ABI_VERSION && s->size == (int64_t)sizeof(CgSpec) &&
         s->spec_version == CG_SPEC_VERSION && s->dtype_size == (int64_t)sizeof(T) &&
         s->m == M && s->caps == (int64_t)CAPS;
}

// Decision codes of the trace (cage_games._newton_spec.Code).
enum : int8_t { C_ACCEPT = 1, C_BACKTRACK = 2, C_CONVERGED = 10 };

extern "C" {

int cg_abi_version() { return CG_ABI_VERSION; }
int cg_spec_size() { return (int)sizeof(CgSpec); }
int cg_moments() { return K; }

// One evaluation of R rows (see eval_rows).
int cg_eval(const T* u, const T* v, int64_t n, int64_t R, const int64_t* rows,
            const T* gamma, const T* ib, const T* kappa, const T* shift_in, int jac,
            double s_min, double gap, int nthreads, double* mom, double* shift, T* G, T* F,
            T* J, T* lse, T* xmax) {
  int64_t* sel = (int64_t*)std::malloc(sizeof(int64_t) * (R > 0 ? R : 1));
  if (!sel) return 1;
  for (int64_t r = 0; r < R; ++r) sel[r] = r;
  int rc = eval_rows(u, v, n, rows, R, sel, gamma, ib, kappa, shift_in, jac != 0, s_min, gap,
                     nthreads, mom, shift, G, F, J, lse, xmax);
  std::free(sel);
  return rc;
}

// Newton directions of R rows: p = -J^{-1} F, ok[r] = 0 where J is singular or p not finite.
int cg_solve(int64_t R, const T* J, const T* F, T* p, int32_t* ok) {
  for (int64_t r = 0; r < R; ++r) ok[r] = solve1(J + r * M * M, F + r * M, p + r * M);
  return 0;
}

// The Newton phase of cage_games.torch._kernel._fast (steps S1-S3, S6, S7 and D of
// cage_games._newton_spec), in place on the state arrays, for up to spec->n_iter iterations:
// per running row (not done, not stalled) one trial point clip(gamma + alpha t p, lo, hi), t
// the step to the box backed off by to_boundary, accepted on the Armijo test on ||F||^2 or
// when max |G| <= tol; a rejected step halves. Stops before an iteration in which some row's
// line search fails (more than max_halvings halvings) or creeps (tiny_steps accepted steps
// shorter than tiny_step in a row), leaving the state as it was before that iteration
// (*failed = 1). The log-weights of every trial are stored in xout; xok[r] is set when a row
// converges (then xout[r] holds its final ones). With trace (R x n_iter int8), the decision
// code of iteration k of row r goes to trace[r * n_iter + k]. Returns the iterations done,
// -1 on an allocation failure, -2 if spec does not match this library.
int cg_newton(const CgSpec* spec, const T* u, const T* v, int64_t n, int64_t R,
              const int64_t* rows, const T* ib, const T* beta, const T* umin, const T* umax,
              const T* kappa, const T* tol, T* gamma, T* G, T* F, T* J, T* lse, T* xmax, T* f,
              T* p, T* alpha, int64_t* halvings, bool* done, const bool* stalled, int64_t* nit,
              int64_t* creep, T* xout, bool* xok, int8_t* trace, int32_t* failed) {
  if (!spec_ok(spec)) return -2;
  *failed = 0;
  const double s_min = spec->s_min, gap = spec->gap, armijo = spec->armijo;
  const int64_t n_iter = spec->n_iter;
  const int nthreads = (int)spec->nthreads;
  size_t nb = (size_t)(R > 0 ? R : 1);
  int64_t* sel = (int64_t*)std::malloc(sizeof(int64_t) * nb);
  T* buf = (T*)std::malloc(sizeof(T) * nb * (5 * M + M * M + 5));
  double* dbuf = (double*)std::malloc(sizeof(double) * nb * (K + 1));
  if (!sel || !buf || !dbuf) { std::free(sel); std::free(buf); std::free(dbuf); return -1; }
  T* trial = buf;
  T* Gt = trial + nb * M;
  T* Ft = Gt + nb * M;
  T* Jt = Ft + nb * M;
  T* lset = Jt + nb * M * M;
  T* xmt = lset + nb;
  T* shift = xmt + nb;
  T* tstep = shift + nb;
  T* ft = tstep + nb;
  T* lo = ft + nb;  // the box, M per row
  T* hi = lo + nb * M;
  double* mom = dbuf;
  for (int64_t r = 0; r < R; ++r)
    for (int i = 0; i < M; ++i) {
      // (divisions, as cage_games.torch._kernel.box computes them)
      lo[r * M + i] = umin[r * M + i] / beta[r];
      hi[r * M + i] = umax[r * M + i] / beta[r] + (T)1;
    }
  double* shd = dbuf + nb * K;
  int64_t k = 0;
  int rc = 0;
  // the per-row decision of S3 on the evaluated trial
  auto decide = [&](int64_t r, bool& ok, bool& accept, bool& fail, int64_t& creep_new) {
    T res = 0;
    bool finite = std::isfinite(ft[r]);
    for (int i = 0; i < M; ++i) {
      T a = std::fabs(Gt[r * M + i]);
      res = a > res ? a : res;
      if (!std::isfinite(Gt[r * M + i])) finite = false;
    }
    ok = finite && res <= tol[r];
    accept = finite && (ft[r] <= ((T)1 - (T)armijo * tstep[r]) * f[r] || ok);
    creep_new = accept ? ((double)tstep[r] < spec->tiny_step ? creep[r] + 1 : 0) : creep[r];
    fail = (!accept && halvings[r] + 1 > spec->max_halvings) ||
           (accept && !ok && spec->tiny_steps > 0 && creep_new >= spec->tiny_steps);
  };
  for (; k < n_iter; ++k) {
    int64_t ns = 0;
    for (int64_t r = 0; r < R; ++r) if (!done[r] && !stalled[r]) sel[ns++] = r;
    if (ns == 0) break;
    for (int64_t q = 0; q < ns; ++q) {
      int64_t r = sel[q];
      const T *g = gamma + r * M, *d = p + r * M, *l = lo + r * M, *h = hi + r * M;
      T t = std::numeric_limits<T>::infinity();
      for (int i = 0; i < M; ++i) {
        T room = d[i] < 0 ? (g[i] - l[i]) / -d[i] : (h[i] - g[i]) / d[i];
        if (d[i] == 0) room = std::numeric_limits<T>::infinity();
        t = room < t ? room : t;
      }
      t = (t >= (T)1 || t <= (T)spec->box_tiny) ? (T)1 : (T)(spec->to_boundary * t);
      t = alpha[r] * t;
      tstep[r] = t;
      T bound = xmax[r];
      for (int i = 0; i < M; ++i) {
        T x = g[i] + t * d[i];
        x = x > l[i] ? x : l[i];
        x = x < h[i] ? x : h[i];
        trial[r * M + i] = x;
        T drop = g[i] - x > 0 ? g[i] - x : (T)0;
        if (CAPS) drop = drop < kappa[r * M + i] ? drop : kappa[r * M + i];
        bound += drop;
      }
      shift[r] = bound;
    }
    if (eval_rows(u, v, n, rows, ns, sel, trial, ib, kappa, shift, true, s_min, gap, nthreads,
                  mom, shd, Gt, Ft, Jt, lset, xmt, xout)) { rc = -1; break; }
    bool any_fail = false;
    for (int64_t q = 0; q < ns; ++q) {
      int64_t r = sel[q];
      T fsum = 0;
      for (int i = 0; i < M; ++i) fsum += Ft[r * M + i] * Ft[r * M + i];
      ft[r] = fsum;
      bool ok, accept, fail;
      int64_t cn;
      decide(r, ok, accept, fail, cn);
      if (fail) any_fail = true;
    }
    if (any_fail) { *failed = 1; break; }
    for (int64_t r = 0, q = 0; r < R; ++r) {
      bool running = q < ns && sel[q] == r;
      if (!running) { alpha[r] = 1; halvings[r] = 0; continue; }
      ++q;
      nit[r] += 1;
      bool ok, accept, fail;
      int64_t cn;
      decide(r, ok, accept, fail, cn);
      creep[r] = cn;
      if (!accept) {
        halvings[r] += 1;
        alpha[r] = (T)0.5 * alpha[r];
        if (trace) trace[r * n_iter + k] = C_BACKTRACK;
        continue;
      }
      if (trace) trace[r * n_iter + k] = ok ? C_CONVERGED : C_ACCEPT;
      halvings[r] = 0;
      alpha[r] = 1;
      for (int i = 0; i < M; ++i) {
        gamma[r * M + i] = trial[r * M + i];
        G[r * M + i] = Gt[r * M + i];
        F[r * M + i] = Ft[r * M + i];
      }
      lse[r] = lset[r];
      xmax[r] = xmt[r];
      f[r] = ft[r];
      if (ok) {
        done[r] = true;
        xok[r] = true;  // xout[r] holds the log-weights of this, the final, point
        continue;
      }
      for (int i = 0; i < M * M; ++i) J[r * M * M + i] = Jt[r * M * M + i];
      if (!solve1(J + r * M * M, F + r * M, p + r * M))
        lm1(J + r * M * M, F + r * M, p + r * M, spec->lm_mu);
    }
  }
  std::free(sel); std::free(buf); std::free(dbuf);
  return rc ? -1 : (int)k;
}

// The starting state of cage_games.torch._kernel._start from the set-up's moments mom0
// (R, 1 + M) and row maxima vmax (R) of v / beta: gamma = the "nobody pays" root
// E_p0[u_i] / beta + 1 projected into the box [umin / beta, umax / beta + 1], its evaluation
// (G, F, J, lse, xmax; one pass where the bound vmax + sum_i min((max r_i - gamma_i)_+,
// kappa_i) is within gap of the maximum), f = ||F||^2, done = max |G| <= tol,
// stalled = max |G| not finite, and the Newton (or Levenberg-Marquardt) direction p; the
// log-weights at gamma in xout (R, n), xok = done (xout holds the final ones).
int cg_start(const CgSpec* spec, const T* u, const T* v, int64_t n, int64_t R,
             const int64_t* rows, const T* ib,
             const T* kappa, const T* tol, const double* mom0, const double* vmax,
             const T* umin, const T* umax, T* gamma,
             T* G, T* F, T* J, T* lse, T* xmax, T* f, T* p, bool* done, bool* stalled,
             T* xout, bool* xok) {
  if (!spec_ok(spec)) return -2;
  const double s_min = spec->s_min, gap = spec->gap;
  const int nthreads = (int)spec->nthreads;
  size_t nb = (size_t)(R > 0 ? R : 1);
  int64_t* sel = (int64_t*)std::malloc(sizeof(int64_t) * nb);
  T* shift = (T*)std::malloc(sizeof(T) * nb);
  double* dbuf = (double*)std::malloc(sizeof(double) * nb * (K + 1));
  if (!sel || !shift || !dbuf) { std::free(sel); std::free(shift); std::free(dbuf); return 1; }
  for (int64_t r = 0; r < R; ++r) {
    sel[r] = r;
    double rise = 0.0;
    for (int i = 0; i < M; ++i) {
      T lo = umin[r * M + i] * ib[r], hi = umax[r * M + i] * ib[r] + (T)1;
      T g = (T)(mom0[r * (1 + M) + 1 + i] / mom0[r * (1 + M)]) * ib[r] + (T)1;
      g = g > lo ? g : lo;
      g = g < hi ? g : hi;
      gamma[r * M + i] = g;
      T up = hi - (T)1 - g > 0 ? hi - (T)1 - g : (T)0;
      if (CAPS) up = up < kappa[r * M + i] ? up : kappa[r * M + i];
      rise += up;
    }
    shift[r] = rise <= gap ? (T)(vmax[r] + rise) : (T)NAN;
  }
  int rc = eval_rows(u, v, n, rows, R, sel, gamma, ib, kappa, shift, true, s_min, gap,
                     nthreads, dbuf, dbuf + nb * K, G, F, J, lse, xmax, xout);
  for (int64_t r = 0; r < R && rc == 0; ++r) {
    T fs = 0, res = 0;
    for (int i = 0; i < M; ++i) {
      fs += F[r * M + i] * F[r * M + i];
      T a = std::fabs(G[r * M + i]);
      res = (a > res || a != a) ? a : res;
    }
    f[r] = fs;
    done[r] = res <= tol[r];
    xok[r] = done[r];
    stalled[r] = !std::isfinite(res);
    if (!solve1(J + r * M * M, F + r * M, p + r * M))
      lm1(J + r * M * M, F + r * M, p + r * M, spec->lm_mu);
  }
  std::free(sel); std::free(shift); std::free(dbuf);
  return rc;
}

// Set-up: out (R, 1 + M) = [sum_a e_a, sum_a e_a u_i(a)] with e = exp(v / beta - shift),
// umin/umax (R, M) over the allowed actions (v > -inf).
// bad[r]: bit 0 = u has a NaN or infinite entry in that row (masked actions included),
// bit 1 = v has a NaN or +inf entry.
int cg_setup(const T* u, const T* v, int64_t n, int64_t R, const int64_t* rows, const T* ib,
             int nthreads, double* out, double* shift, T* umin, T* umax, int32_t* bad) {
  int64_t nc = (n + CH - 1) / CH;
  double* part = (double*)std::malloc(sizeof(double) * R * nc * (KS + 1));
  T* mins = (T*)std::malloc(sizeof(T) * R * nc * M * 2);
  int32_t* flags = (int32_t*)std::malloc(sizeof(int32_t) * R * nc);
  if (!part || !mins || !flags) { std::free(part); std::free(mins); std::free(flags); return 1; }
  double* cmax = part + R * nc * KS;
  #pragma omp parallel num_threads(nthreads)
  {
    FlushDenormals ftz;
    #pragma omp for schedule(static)
    for (int64_t t = 0; t < R * nc; ++t) {
      int64_t r = t / nc, c = t % nc, a0 = c * CH;
      int64_t L = n - a0 < CH ? n - a0 : CH;
      Row Rw = row(u, v, n, rows[r], a0, nullptr, nullptr, ib[r]);
      const vT zero = (vT){};
      vT mx = zero + NEG_INF;
      vI masked = (vI){}, badv = (vI){};
      sweep(0, L, [&](int64_t j, auto tail) {
        constexpr bool TAIL = decltype(tail)::value;
        vT vv = ldpad<TAIL>(Rw.v, j, L, NEG_INF);
        if (!TAIL) masked |= vv == NEG_INF;
        badv |= (vv != vv) | (vv == POS_INF);
        mx = vmax(mx, vv * Rw.ib);
      });
      bool any_masked = L % W != 0;
      for (int l = 0; l < W; ++l) any_masked = any_masked || masked[l] != 0;
      T cm = hmax(mx);
      cmax[t] = (double)cm;
      Acc Z, EU[M];
      int any_nf = 0;
      vT lo[M], hi[M], bZ = zero, bE[M];
      for (int i = 0; i < M; ++i) { bE[i] = zero; lo[i] = zero + POS_INF; hi[i] = zero + NEG_INF; }
      if (!(cm > NEG_INF)) {
        // every action of the chunk is masked: only the finiteness of u is needed
        vI nf = (vI){};
        for (int64_t j = 0; j < L; j += W)
          for (int i = 0; i < M; ++i) {
            vT ui = ldpad(Rw.u[i], j, L, (T)0);
            nf |= (ui - ui) != zero;
          }
        for (int l = 0; l < W; ++l) any_nf |= nf[l] != 0;
      } else {
        auto pass = [&](auto masked_tag) {
          constexpr bool MASKED = decltype(masked_tag)::value;
          sweep(0, L, [&](int64_t j, auto tail) {
            constexpr bool TAIL = decltype(tail)::value;
            if (j % (BL * W) == 0 && j > 0) {
              Z.add(bZ); bZ = zero;
              for (int i = 0; i < M; ++i) { EU[i].add(bE[i]); bE[i] = zero; }
            }
            vT nu = ldpad<TAIL>(Rw.v, j, L, NEG_INF) * Rw.ib;
            vT e = vexp(nu - cm);
            vI ok = nu > NEG_INF;
            bZ += e;
            for (int i = 0; i < M; ++i) {
              vT ui = ldpad<TAIL>(Rw.u[i], j, L, (T)0);
              bE[i] += e * ui;  // NaN or infinite if u is (0 * inf = NaN where e = 0)
              if constexpr (MASKED) {
                lo[i] = vmin(lo[i], ok ? ui : zero + POS_INF);
                hi[i] = vmax(hi[i], ok ? ui : zero + NEG_INF);
              } else {
                lo[i] = vmin(lo[i], ui);
                hi[i] = vmax(hi[i], ui);
              }
            }
          });
        };
        if (any_masked) pass(std::true_type{});
        else pass(std::false_type{});
      }
      Z.add(bZ);
      for (int i = 0; i < M; ++i) {
        EU[i].add(bE[i]);
        if (!std::isfinite(EU[i].sum())) any_nf = 1;
      }
      for (int l = 0; l < W; ++l) if (badv[l] != 0) any_nf |= 2;
      flags[t] = any_nf;
      double* p = part + t * KS;
      p[0] = Z.sum();
      for (int i = 0; i < M; ++i) {
        p[1 + i] = EU[i].sum();
        mins[(t * M + i) * 2] = hmin(lo[i]);
        mins[(t * M + i) * 2 + 1] = hmax(hi[i]);
      }
    }
  }
  combine(R, nc, KS, part, cmax, nullptr, out, shift, nullptr, nthreads);
  for (int64_t r = 0; r < R; ++r)
    for (int i = 0; i < M; ++i) {
      T lo = POS_INF, hi = NEG_INF;
      for (int64_t c = 0; c < nc; ++c) {
        T a = mins[((r * nc + c) * M + i) * 2], b = mins[((r * nc + c) * M + i) * 2 + 1];
        lo = a < lo ? a : lo;
        hi = b > hi ? b : hi;
      }
      umin[r * M + i] = lo;
      umax[r * M + i] = hi;
    }
  for (int64_t r = 0; r < R; ++r) {
    int32_t b = 0;
    for (int64_t c = 0; c < nc; ++c) b |= flags[r * nc + c];
    bad[r] = b;
  }
  std::free(part); std::free(mins); std::free(flags);
  return 0;
}

// Log policy: out (R, n) = x(a) - lse[r] at scaled thresholds gamma (R, M).
int cg_policy(const T* u, const T* v, int64_t n, int64_t R, const int64_t* rows,
              const T* gamma, const T* ib, const T* kappa, const T* lse, int nthreads, T* out) {
  int64_t nc = (n + CH - 1) / CH;
  #pragma omp parallel for schedule(static) num_threads(nthreads)
  for (int64_t t = 0; t < R * nc; ++t) {
    int64_t r = t / nc, c = t % nc, a0 = c * CH;
    int64_t L = n - a0 < CH ? n - a0 : CH;
    Row Rw = row(u, v, n, rows[r], a0, gamma + r * M, CAPS ? kappa + r * M : nullptr, ib[r]);
    vT d[M], tau[M];
    T* o = out + r * n + a0;
    sweep(0, L, [&](int64_t j, auto tail) {
      constexpr bool TAIL = decltype(tail)::value;
      stpart<TAIL>(o, j, L, logw<TAIL>(Rw, j, L, d, tau) - lse[r]);
    });
  }
  return 0;
}

}  // extern "C"
