/* Products with bf16 weights in panels (included by cpu_decode.c).
 *
 * A matrix W [N, K] is stored as ceil(N / 16) panels of 16 output rows, each panel [K / 2][16][2]:
 * element (k2, j, e) is W[16 p + j][2 k2 + e] (cpu_kernels.py builds it; rows past N are zero). So a
 * panel is one sequential stream, as the fp32 GEMV's one-row-at-a-time reading was, and its 64-byte
 * rows give both kernels what they want:
 *  - one row (a batch-1 decode, bandwidth-bound): x stays fp32; a 32-bit lane holds two bf16 weights,
 *    and `lane << 16` and `lane & 0xffff0000` are them as fp32, each multiplied by its x.
 *  - several rows (batched decode, prefill: compute-bound): x is rounded to bf16 once per call, and
 *    AVX512-BF16's vdpbf16ps multiplies a lane's pair by x's pair, 32 products an instruction, into
 *    fp32 sums. A tile of panels x rows keeps its sums in registers while each 64-byte panel row is
 *    loaded once for all the tile's rows. Without AVX512-BF16, fp32 products of the same bf16-rounded x
 *    give the same sums up to their order. Those fp32 tiles also serve rows that must not be rounded
 *    (a prompt's last row, whose logits pick the answer's first token).
 * Three builds, by what the compiler targets (-march=native):
 *  - AVX-512: intrinsics for one row, for the AVX512-BF16 tiles and for the fp32 tiles (see tile_f32).
 *    Where the CPU has AMX too, its tiles take the rounded rows (below). One row prefetches 2 KB
 *    ahead: on a 2-core Xeon its two threads read 26-28 GB/s of SmolLM2's lm_head, 23-25 without (a
 *    distance of 512 B read 22-25, of 4 KB 23-25), where torch.sum reads 28-31.
 *  - AVX2 + FMA without AVX-512 (MATMUL_AVX2: Zen 1-3, Haswell to Comet Lake): intrinsics for one row
 *    and for the fp32 tiles. gcc 12 vectorised the plain loops of both badly there (across k, with
 *    permutes and spills): one row read 7.4 GB/s against 14.5 with intrinsics, and 16 rows ran at 32
 *    GFLOP/s a core against 72 (peak: 2 FMA units of 8 lanes, 78 GFLOP/s at 2.45 GHz).
 *  - anything else: plain C.
 */
#include <stdint.h>
#include <string.h>
#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#include <immintrin.h>
#endif
#if !defined(__AVX512F__) && defined(__AVX2__) && defined(__FMA__)
#define MATMUL_AVX2 1
#endif

#define PANEL 16
#define GEMV_PREFETCH 2048

static inline float bf16_lo(uint32_t lane) {
  uint32_t u = lane << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

static inline float bf16_hi(uint32_t lane) {
  uint32_t u = lane & 0xffff0000u;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

/* fp32 -> bf16, round to nearest even (the inputs here are finite). */
static inline uint16_t to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

/* y[n] = scale * (W[n, :] . x) (+ y[n] when accumulate) for the panels [p0, p1), one fp32 row x. */
static void gemv_panels(const uint16_t *restrict W, const float *restrict x, float *restrict y, int64_t N,
                        int64_t K, int64_t p0, int64_t p1, float scale, int accumulate) {
  int64_t k2 = K / 2;
  for (int64_t p = p0; p < p1; p++) {
    const uint32_t *restrict w = (const uint32_t *)(W + p * K * PANEL);
    float sums[PANEL];
#if defined(__AVX512F__)
    __m512i hi_mask = _mm512_set1_epi32((int)0xffff0000u);
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 1 < k2; i += 2) {
      _mm_prefetch((const char *)(w + i * PANEL) + GEMV_PREFETCH, _MM_HINT_T0);
      _mm_prefetch((const char *)(w + i * PANEL) + GEMV_PREFETCH + 64, _MM_HINT_T0);
      __m512i v0 = _mm512_loadu_si512(w + i * PANEL), v1 = _mm512_loadu_si512(w + (i + 1) * PANEL);
      a0 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(v0, 16)), _mm512_set1_ps(x[2 * i]), a0);
      a1 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_and_si512(v0, hi_mask)), _mm512_set1_ps(x[2 * i + 1]),
                           a1);
      a2 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(v1, 16)), _mm512_set1_ps(x[2 * i + 2]), a2);
      a3 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_and_si512(v1, hi_mask)), _mm512_set1_ps(x[2 * i + 3]),
                           a3);
    }
    if (i < k2) {
      __m512i v0 = _mm512_loadu_si512(w + i * PANEL);
      a0 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(v0, 16)), _mm512_set1_ps(x[2 * i]), a0);
      a1 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_and_si512(v0, hi_mask)), _mm512_set1_ps(x[2 * i + 1]),
                           a1);
    }
    _mm512_storeu_ps(sums, _mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
#elif defined(MATMUL_AVX2)
    /* Half a panel row (8 lanes) a register: 8 sums, 2 steps of k2 per turn so that 8 FMA chains overlap. */
    const __m256i hi_mask = _mm256_set1_epi32((int)0xffff0000u);
    __m256 e0 = _mm256_setzero_ps(), o0 = e0, e1 = e0, o1 = e0, e2 = e0, o2 = e0, e3 = e0, o3 = e0;
    const __m256i *v = (const __m256i *)w;
    int64_t i = 0;
    for (; i + 1 < k2; i += 2) {
      __m256i v0 = _mm256_loadu_si256(v + 2 * i), v1 = _mm256_loadu_si256(v + 2 * i + 1);
      __m256i v2 = _mm256_loadu_si256(v + 2 * i + 2), v3 = _mm256_loadu_si256(v + 2 * i + 3);
      __m256 x0 = _mm256_broadcast_ss(x + 2 * i), x1 = _mm256_broadcast_ss(x + 2 * i + 1);
      __m256 x2 = _mm256_broadcast_ss(x + 2 * i + 2), x3 = _mm256_broadcast_ss(x + 2 * i + 3);
      e0 = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(v0, 16)), x0, e0);
      o0 = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_and_si256(v0, hi_mask)), x1, o0);
      e1 = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(v1, 16)), x0, e1);
      o1 = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_and_si256(v1, hi_mask)), x1, o1);
      e2 = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(v2, 16)), x2, e2);
      o2 = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_and_si256(v2, hi_mask)), x3, o2);
      e3 = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(v3, 16)), x2, e3);
      o3 = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_and_si256(v3, hi_mask)), x3, o3);
    }
    if (i < k2) {
      __m256i v0 = _mm256_loadu_si256(v + 2 * i), v1 = _mm256_loadu_si256(v + 2 * i + 1);
      __m256 x0 = _mm256_broadcast_ss(x + 2 * i), x1 = _mm256_broadcast_ss(x + 2 * i + 1);
      e0 = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(v0, 16)), x0, e0);
      o0 = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_and_si256(v0, hi_mask)), x1, o0);
      e1 = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(v1, 16)), x0, e1);
      o1 = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_and_si256(v1, hi_mask)), x1, o1);
    }
    _mm256_storeu_ps(sums, _mm256_add_ps(_mm256_add_ps(e0, o0), _mm256_add_ps(e2, o2)));
    _mm256_storeu_ps(sums + 8, _mm256_add_ps(_mm256_add_ps(e1, o1), _mm256_add_ps(e3, o3)));
#else
    float even[PANEL] = {0}, odd[PANEL] = {0};
    for (int64_t i = 0; i < k2; i++) {
      float x0 = x[2 * i], x1 = x[2 * i + 1];
      for (int j = 0; j < PANEL; j++) {
        even[j] += bf16_lo(w[i * PANEL + j]) * x0;
        odd[j] += bf16_hi(w[i * PANEL + j]) * x1;
      }
    }
    for (int j = 0; j < PANEL; j++) sums[j] = even[j] + odd[j];
#endif
    int64_t n0 = p * PANEL, n = N - n0 < PANEL ? N - n0 : PANEL;
    for (int64_t j = 0; j < n; j++) y[n0 + j] = accumulate ? y[n0 + j] + scale * sums[j] : scale * sums[j];
  }
}

/* The rows of a multi-row product. With `pairs` (AVX512-BF16 builds) they are rounded to bf16 and
 * packed two to a 32-bit lane; else `flat` holds them as fp32 values, rounded to bf16 or not: the
 * plain tile multiplies in fp32 whatever it is given. Rows are padded with zeros to GEMM_ROW_PAD. */
struct gemm_x {
  const uint32_t *pairs; /* [rows][K / 2] */
  const float *flat;     /* [rows][K] */
  int64_t rows, K;
};

/* Where a product's sums go: y[r][n] = sum (+ bias[n]) (+ y[r][n] when accumulate), n < N. */
struct gemm_y {
  float *y;
  int64_t ldy, N;
  const float *bias;
  int accumulate;
};

static inline void gemm_store(const struct gemm_y *o, int64_t row, int64_t n0, const float *sums) {
  float *y = o->y + row * o->ldy;
  int64_t n = o->N - n0 < PANEL ? o->N - n0 : PANEL;
  for (int64_t j = 0; j < n; j++) {
    float s = sums[j] + (o->bias ? o->bias[n0 + j] : 0.f);
    y[n0 + j] = o->accumulate ? y[n0 + j] + s : s;
  }
}

/* One function per tile size, each with compile-time sizes so its sums stay in registers, and each
 * small: gcc's RTL passes grow faster than linearly with a function's size (one function holding every
 * size took seconds to compile). */
typedef void (*gemm_tile_fn)(const uint16_t *, const struct gemm_x *, int64_t, int64_t, int64_t,
                             const struct gemm_y *);

#if !defined(MATMUL_AVX2)
/* Sums of one panel p for rows [r, r + nr) of flat x, the first `keep` rows stored: fp32 products.
 * gcc 12 at -O3 vectorised the plain loop of the 4-row tile into code that read x up to 6 KB past the
 * tile's last row (every K tried, AVX-512 and SSE2 builds alike): harmless inside the heap, a segfault
 * about one bench run in ten where the rows' buffer ended the heap. So AVX-512 builds use intrinsics
 * (one row's sum does not depend on the tile's size), and the plain loop is not vectorised. */
#define F32_ROWS 4
#if defined(__AVX512F__)
static inline __attribute__((always_inline)) void tile_f32(const uint16_t *W, const struct gemm_x *x,
                                                           int64_t p, int64_t r, int nr, int64_t keep,
                                                           const struct gemm_y *o) {
  int64_t K = x->K, k2 = K / 2;
  const __m512i *w = (const __m512i *)(W + p * K * PANEL);
  const float *xr = x->flat + r * K;
  const __m512i hi_mask = _mm512_set1_epi32((int)0xffff0000u);
  __m512 acc[F32_ROWS];
  for (int b = 0; b < nr; b++) acc[b] = _mm512_setzero_ps();
  for (int64_t i = 0; i < k2; i++) {
    __m512i v = _mm512_loadu_si512(w + i);
    __m512 lo = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
    __m512 hi = _mm512_castsi512_ps(_mm512_and_si512(v, hi_mask));
    for (int b = 0; b < nr; b++) {
      const float *xi = xr + b * K + 2 * i;
      acc[b] = _mm512_fmadd_ps(hi, _mm512_set1_ps(xi[1]), _mm512_fmadd_ps(lo, _mm512_set1_ps(xi[0]), acc[b]));
    }
  }
  float sums[PANEL];
  for (int b = 0; b < nr && b < keep; b++) {
    _mm512_storeu_ps(sums, acc[b]);
    gemm_store(o, r + b, p * PANEL, sums);
  }
}
#define F32_NO_VECTORIZE
#elif defined(__GNUC__) && !defined(__clang__)
#define F32_NO_VECTORIZE __attribute__((optimize("no-tree-vectorize")))
#else
#define F32_NO_VECTORIZE
#endif
#if !defined(__AVX512F__)
static inline __attribute__((always_inline)) void tile_f32(const uint16_t *W, const struct gemm_x *x,
                                                           int64_t p, int64_t r, int nr, int64_t keep,
                                                           const struct gemm_y *o) {
  int64_t K = x->K, k2 = K / 2;
  float acc[F32_ROWS][PANEL] = {{0}};
  const uint32_t *w = (const uint32_t *)(W + p * K * PANEL);
  const float *xr = x->flat + r * K;
  for (int64_t i = 0; i < k2; i++) {
    float lo[PANEL], hi[PANEL];
    for (int j = 0; j < PANEL; j++) {
      lo[j] = bf16_lo(w[i * PANEL + j]);
      hi[j] = bf16_hi(w[i * PANEL + j]);
    }
    for (int b = 0; b < nr; b++) {
      float x0 = xr[b * K + 2 * i], x1 = xr[b * K + 2 * i + 1];
      for (int j = 0; j < PANEL; j++) acc[b][j] += lo[j] * x0 + hi[j] * x1;
    }
  }
  for (int b = 0; b < nr && b < keep; b++) gemm_store(o, r + b, p * PANEL, acc[b]);
}
#endif

/* A run of rows shorter than a tile takes the next size up, on rows that x pads with zeros, and stores
 * only its own. */
#define F32_TILE_FN(NR)                                                                           \
  static __attribute__((noinline)) F32_NO_VECTORIZE void tile_f32_##NR(                           \
      const uint16_t *W, const struct gemm_x *x, int64_t p, int64_t r, int64_t keep, const struct gemm_y *o) { \
    tile_f32(W, x, p, r, NR, keep, o);                                                            \
  }
F32_TILE_FN(1) F32_TILE_FN(2) F32_TILE_FN(4)
static const gemm_tile_fn f32_tiles[3] = {tile_f32_1, tile_f32_2, tile_f32_4};

#endif

#if defined(MATMUL_AVX2)
#define AVX2_ROWS 4
/* The fp32 tile for AVX2: one panel and nr <= 4 rows of flat x (bf16-rounded or not). A 64-byte panel
 * row is two registers of 8 lanes, widened to 4 registers of fp32 weights (even and odd k of 8 outputs
 * each) once for all the tile's rows; each row then broadcasts its two x and adds 4 FMAs into its 2
 * registers of sums. 4 rows: 8 sums, 4 weights and 2 x in 14 of the 16 registers, 16 FMAs to 10
 * loads a step (6 rows, 12 sums, measured 13% slower; 3 rows with even and odd k in sums of their
 * own, no faster). A panel (18-48 KB here) stays in L1/L2 while the tiles of 4 rows take turns on it,
 * and the first tile asks for the next panel a 64-byte line a step (the matrices lie in the arena in
 * the order a step reads them, so past the last panel that is the next matrix): 16 rows 9% and 4 rows
 * 17% faster. Whole panels without a bias store their sums straight from the registers (5%). */
static inline __attribute__((always_inline)) void tile_avx2(const uint16_t *W, const struct gemm_x *x,
                                                            int64_t p, int64_t r, int nr, int64_t keep,
                                                            const struct gemm_y *o) {
  int64_t K = x->K, k2 = K / 2;
  const __m256i *w = (const __m256i *)(W + p * K * PANEL);
  const float *xr = x->flat + r * K;
  const __m256i hi_mask = _mm256_set1_epi32((int)0xffff0000u);
  /* Named sums (an array of them was kept on the stack too, a store per FMA pair). */
  __m256 s00 = _mm256_setzero_ps(), s01 = s00, s10 = s00, s11 = s00, s20 = s00, s21 = s00, s30 = s00,
         s31 = s00;
  const char *next = r == 0 ? (const char *)(w + 2 * k2) : NULL;
  for (int64_t i = 0; i < k2; i++) {
    if (next) _mm_prefetch(next + 64 * i, _MM_HINT_T0);
    __m256i v0 = _mm256_loadu_si256(w + 2 * i), v1 = _mm256_loadu_si256(w + 2 * i + 1);
    __m256 lo0 = _mm256_castsi256_ps(_mm256_slli_epi32(v0, 16));
    __m256 hi0 = _mm256_castsi256_ps(_mm256_and_si256(v0, hi_mask));
    __m256 lo1 = _mm256_castsi256_ps(_mm256_slli_epi32(v1, 16));
    __m256 hi1 = _mm256_castsi256_ps(_mm256_and_si256(v1, hi_mask));
    const float *xi = xr + 2 * i;
#define AVX2_ROW(B)                                                                      \
  if (nr > B) {                                                                          \
    __m256 x0 = _mm256_broadcast_ss(xi + B * K), x1 = _mm256_broadcast_ss(xi + B * K + 1); \
    s##B##0 = _mm256_fmadd_ps(lo0, x0, s##B##0);                                         \
    s##B##1 = _mm256_fmadd_ps(lo1, x0, s##B##1);                                         \
    s##B##0 = _mm256_fmadd_ps(hi0, x1, s##B##0);                                         \
    s##B##1 = _mm256_fmadd_ps(hi1, x1, s##B##1);                                         \
  }
    AVX2_ROW(0) AVX2_ROW(1) AVX2_ROW(2) AVX2_ROW(3)
#undef AVX2_ROW
  }
  float sums[PANEL];
  int whole = o->N - p * PANEL >= PANEL && o->bias == NULL;
#define AVX2_STORE(B)                                                           \
  if (nr > B && keep > B) {                                                     \
    float *y = o->y + (r + B) * o->ldy + p * PANEL;                             \
    if (whole && o->accumulate) {                                               \
      _mm256_storeu_ps(y, _mm256_add_ps(_mm256_loadu_ps(y), s##B##0));          \
      _mm256_storeu_ps(y + 8, _mm256_add_ps(_mm256_loadu_ps(y + 8), s##B##1));  \
    } else if (whole) {                                                         \
      _mm256_storeu_ps(y, s##B##0);                                             \
      _mm256_storeu_ps(y + 8, s##B##1);                                         \
    } else {                                                                    \
      _mm256_storeu_ps(sums, s##B##0);                                          \
      _mm256_storeu_ps(sums + 8, s##B##1);                                      \
      gemm_store(o, r + B, p * PANEL, sums);                                    \
    }                                                                           \
  }
  AVX2_STORE(0) AVX2_STORE(1) AVX2_STORE(2) AVX2_STORE(3)
#undef AVX2_STORE
}
#define AVX2_TILE_FN(NR)                                                                          \
  static __attribute__((noinline)) void tile_avx2_##NR(const uint16_t *W, const struct gemm_x *x, \
                                                       int64_t p, int64_t r, int64_t keep,        \
                                                       const struct gemm_y *o) {                  \
    tile_avx2(W, x, p, r, NR, keep, o);                                                           \
  }
AVX2_TILE_FN(1) AVX2_TILE_FN(2) AVX2_TILE_FN(3) AVX2_TILE_FN(4)
static const gemm_tile_fn avx2_tiles[AVX2_ROWS] = {tile_avx2_1, tile_avx2_2, tile_avx2_3, tile_avx2_4};
#endif

#if defined(__AVX512BF16__)
#define BF16_PANELS 3
#define BF16_ROWS 8
/* Sums of panels [p, p + np) for rows [r, r + nr) of paired x, the first `keep` rows stored. */
static inline __attribute__((always_inline)) void tile_bf16(const uint16_t *W, const struct gemm_x *x,
                                                            int64_t p, int np, int64_t r, int nr,
                                                            int64_t keep, const struct gemm_y *o) {
  int64_t k2 = x->K / 2;
  __m512 acc[BF16_PANELS][BF16_ROWS];
  for (int a = 0; a < np; a++)
    for (int b = 0; b < nr; b++) acc[a][b] = _mm512_setzero_ps();
  const __m512i *w = (const __m512i *)(W + p * x->K * PANEL);
  const uint32_t *xr = x->pairs + r * k2;
  for (int64_t i = 0; i < k2; i++) {
    __m512bh v[BF16_PANELS];
    for (int a = 0; a < np; a++) v[a] = (__m512bh)_mm512_loadu_si512(w + a * k2 + i);
    for (int b = 0; b < nr; b++) {
      __m512bh xv = (__m512bh)_mm512_set1_epi32((int)xr[b * k2 + i]);
      for (int a = 0; a < np; a++) acc[a][b] = _mm512_dpbf16_ps(acc[a][b], v[a], xv);
    }
  }
  float sums[PANEL];
  for (int b = 0; b < nr && b < keep; b++)
    for (int a = 0; a < np; a++) {
      _mm512_storeu_ps(sums, acc[a][b]);
      gemm_store(o, r + b, (p + a) * PANEL, sums);
    }
}
#define BF16_TILE_FN(NP, NR)                                                                          \
  static __attribute__((noinline)) void tile_bf16_##NP##_##NR(const uint16_t *W, const struct gemm_x *x, \
                                                              int64_t p, int64_t r, int64_t keep,        \
                                                              const struct gemm_y *o) {                  \
    tile_bf16(W, x, p, NP, r, NR, keep, o);                                                              \
  }
BF16_TILE_FN(3, 8) BF16_TILE_FN(3, 4) BF16_TILE_FN(3, 2) BF16_TILE_FN(3, 1)
BF16_TILE_FN(1, 8) BF16_TILE_FN(1, 4) BF16_TILE_FN(1, 2) BF16_TILE_FN(1, 1)
static const gemm_tile_fn bf16_tiles[2][4] = {{tile_bf16_1_1, tile_bf16_1_2, tile_bf16_1_4, tile_bf16_1_8},
                                              {tile_bf16_3_1, tile_bf16_3_2, tile_bf16_3_4, tile_bf16_3_8}};
#define TILE_PANELS BF16_PANELS /* panels a pool item takes */
#else
#define TILE_PANELS 1
#endif

#if defined(__AMX_TILE__) && defined(__AMX_BF16__) && defined(__AVX512BF16__)
/* AMX (Xeon since Sapphire Rapids): the panels' layout is already the tiles' pair layout, so a 64-byte
 * row of 16 panel rows is a B tile of 16 k pairs x 16 outputs (1 KB, contiguous), and 16 rows of paired
 * x 32 k wide are an A tile. One TDPBF16PS is 16 x 16 x 32 multiply-adds, the work of 16 vdpbf16ps, so
 * the rows of a batched decode cost about what one row costs: the step is bound by reading the weights
 * again. The same bf16 products are summed in fp32 with denormals flushed, as vdpbf16ps does; only the
 * order of each pair's two products differs. Used when Linux grants the process the tile state
 * (amx_start) and K is a multiple of 32; tiles tmm0-2 hold sums, tmm3 x, tmm4-6 weights. */
#define MATMUL_AMX 1
#define AMX_ROWS 16
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

static int amx_granted;

struct amx_config {
  uint8_t palette, start_row, reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};

/* Asks Linux for the tile state (ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA); 1 when granted. */
int amx_start(void) {
  if (!amx_granted) amx_granted = syscall(SYS_arch_prctl, 0x1023, 18) == 0;
  return amx_granted;
}

/* Every call loads the configuration: torch's oneDNN may have loaded its own on this thread. */
static inline void amx_configure(void) {
  struct amx_config c = {.palette = 1};
  for (int t = 0; t < 7; t++) {
    c.colsb[t] = 64;
    c.rows[t] = 16;
  }
  _tile_loadconfig(&c);
}

/* Sums of panels [p, p + np), np <= 3, for rows [r, r + 16) of paired x (padded with zero rows to a
 * multiple of 16), the first `keep` rows stored. */
static void tile_amx(const uint16_t *W, const struct gemm_x *x, int64_t p, int np, int64_t r, int64_t keep,
                     const struct gemm_y *o) {
  int64_t K = x->K, chunks = K / 32, panel_bytes = K * PANEL * 2;
  const char *a = (const char *)(x->pairs + r * (K / 2)), *w = (const char *)(W + p * K * PANEL);
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  for (int64_t c = 0; c < chunks; c++) {
    _tile_loadd(3, a + 64 * c, K * 2);
    _tile_loadd(4, w + 1024 * c, 64);
    _tile_dpbf16ps(0, 3, 4);
    if (np > 1) {
      _tile_loadd(5, w + panel_bytes + 1024 * c, 64);
      _tile_dpbf16ps(1, 3, 5);
    }
    if (np > 2) {
      _tile_loadd(6, w + 2 * panel_bytes + 1024 * c, 64);
      _tile_dpbf16ps(2, 3, 6);
    }
  }
  float sums[3][AMX_ROWS][PANEL];
  _tile_stored(0, sums[0], 64);
  if (np > 1) _tile_stored(1, sums[1], 64);
  if (np > 2) _tile_stored(2, sums[2], 64);
  for (int b = 0; b < AMX_ROWS && b < keep; b++)
    for (int a2 = 0; a2 < np; a2++) gemm_store(o, r + b, (p + a2) * PANEL, sums[a2][b]);
}
/* An A tile reads 16 rows: x's paired rows are padded with zeros to a multiple of 16 (their buffers
 * are sized for as many fp32 rows, twice what the pairs take, but the pad is what the tile relies on). */
#define GEMM_ROW_PAD AMX_ROWS
#else
#define GEMM_ROW_PAD 8
int amx_start(void) { return 0; }
#endif

/* Panels [p, p + np), np <= TILE_PANELS, for all of x's rows. */
static void gemm_panels(const uint16_t *W, const struct gemm_x *x, int64_t p, int np, const struct gemm_y *o) {
#if defined(MATMUL_AVX2)
  for (int64_t r = 0; r < x->rows;) { /* tiles of AVX2_ROWS rows, then one of the rows left */
    int64_t left = x->rows - r;
    int nr = left < AVX2_ROWS ? (int)left : AVX2_ROWS;
    for (int a = 0; a < np; a++) avx2_tiles[nr - 1](W, x, p + a, r, left, o);
    r += nr;
  }
#else
#if defined(MATMUL_AMX)
  if (x->pairs && amx_granted && x->K % 32 == 0) {
    amx_configure();
    for (int64_t r = 0; r < x->rows; r += AMX_ROWS) tile_amx(W, x, p, np, r, x->rows - r, o);
    _tile_release(); /* a thread without tile state is cheaper to switch out */
    return;
  }
#endif
  int most = F32_ROWS;
#if defined(__AVX512BF16__)
  if (x->pairs) most = BF16_ROWS;
#endif
  for (int64_t r = 0; r < x->rows;) {
    int64_t left = x->rows - r;
    int size = 0; /* the smallest tile of 1, 2, 4 or 8 rows that takes `left`, else the largest */
    while ((1 << size) < left && (1 << size) < most) size++;
#if defined(__AVX512BF16__)
    if (x->pairs && np == BF16_PANELS) {
      bf16_tiles[1][size](W, x, p, r, left, o);
    } else if (x->pairs) {
      for (int a = 0; a < np; a++) bf16_tiles[0][size](W, x, p + a, r, left, o);
    } else
#endif
      for (int a = 0; a < np; a++) f32_tiles[size](W, x, p + a, r, left, o);
    r += 1 << size;
  }
#endif
}
