/* The CPU decode in C, compiled at engine start (cpu_kernels.py).
 *
 * A decode step reads every weight once, and each small torch op around the products costs more than
 * its arithmetic. So a whole Llama-family layer is one call here (decode_layer), for one decode row or a
 * batch of them: RMS norm, the q/k/v product, rope, the cache write, attention over the paged cache, the
 * output product and residual, the second norm, gate/up, SwiGLU, down and residual. Batches with
 * prompt rows call the products (matmul_bf16) and the decode rows' attention (decode_attention) from
 * torch's side, which keeps the prompt rows' attention.
 *
 * Weights are bf16 panels (matmul.h): one row is multiplied in fp32 against them; several rows are
 * rounded to bf16 first, as bf16 inference on a GPU does, which halves the arithmetic but can flip a
 * near-tie (the bundled model's first token for "What is the capital of France?" is one: 0.08 nats in
 * fp32), so matmul_bf16 keeps the rows it is told (prompts' last rows) in fp32. fp32 weights, [out, in]
 * row-major as torch stores them, serve one row only (the exact mode; torch runs its batches).
 * Activations are fp32; the KV cache is fp32 or bf16. RMS norm gains are folded into the matrix after
 * the norm, so the norm itself is one scale per row.
 *
 * The products and attention run on the pool's threads (pool.h). Nothing here checks its arguments:
 * cpu_kernels.py checks shapes, dtypes and bounds once per model, per step or per call.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "matmul.h"
#include "pool.h"

struct model_shape { /* cpu_kernels.py: _Shape */
  int64_t hidden, inter, n_heads, n_kv, head_dim, block_size;
  float eps, scale;
  int32_t bf16_weights, bf16_cache;
};

struct layer_weights { /* cpu_kernels.py: _Weights; bqkv may be NULL */
  const void *wqkv;
  const float *bqkv;
  const void *wo, *wgu, *wd;
};

struct decode_rows { /* cpu_kernels.py: _Rows */
  const float *cis;          /* [n_rows][head_dim / 2] (cos, sin) for each row's position */
  const int64_t *tables;     /* [n_rows][width] each row's blocks */
  int64_t width;
  const int64_t *ctx_lens;   /* [n_rows] tokens in the cache once this step's token is written */
  int64_t n_rows, max_ctx;
};

/* ---- products ---------------------------------------------------------------------------------- */

/* fp32 weights [N, K], one row: y[n] = scale * (W[n, :] . x) (+ y[n]). One output row at a time, so
 * the matrix is read as one sequential stream (reading four rows at once halved the rate on an AVX-512
 * EPYC, as MKL's GEMV did). */
static void gemv_rows(const float *restrict W, const float *restrict x, float *restrict y, int64_t N,
                      int64_t K, float scale, int accumulate) {
  for (int64_t n = 0; n < N; n++) {
    const float *restrict w = W + n * K;
    float s = 0.f;
    for (int64_t k = 0; k < K; k++) s += w[k] * x[k];
    s *= scale;
    y[n] = accumulate ? y[n] + s : s;
  }
}

static int64_t rows_padded(int64_t rows) { return (rows + GEMM_ROW_PAD - 1) / GEMM_ROW_PAD * GEMM_ROW_PAD; }

struct product { /* several rows, bf16 panels */
  const uint16_t *W;
  int64_t N;
  struct gemm_x xs, exact; /* rows rounded to bf16; rows that are not (none when exact.rows is 0) */
  struct gemm_y out, exact_out;
};

static void gemm_item(void *arg, int64_t item, int tid) {
  (void)tid;
  const struct product *m = arg;
  int64_t p = item * TILE_PANELS, left = (m->N + PANEL - 1) / PANEL - p;
  int np = left < TILE_PANELS ? (int)left : TILE_PANELS;
  if (m->xs.rows) gemm_panels(m->W, &m->xs, p, np, &m->out);
  if (m->exact.rows) gemm_panels(m->W, &m->exact, p, np, &m->exact_out);
}

/* Rows x [rows][K] (scaled by scales[r] when given) into buf: rounded to bf16 (pairs or flat, as the
 * tiles read them), or as they are; zeros up to rows_padded(rows). */
static struct gemm_x gemm_rows(const float *x, int64_t rows, int64_t K, const float *scales, int round,
                               void *buf) {
  memset(buf, 0, sizeof(float) * K * rows_padded(rows));
  int pairs = 0;
#if defined(__AVX512BF16__)
  pairs = round;
#endif
  for (int64_t r = 0; r < rows; r++) {
    float s = scales ? scales[r] : 1.f;
    const float *xr = x + r * K;
    if (pairs) {
      uint32_t *out = (uint32_t *)buf + r * (K / 2);
      for (int64_t i = 0; i < K / 2; i++)
        out[i] = (uint32_t)to_bf16(s * xr[2 * i]) | (uint32_t)to_bf16(s * xr[2 * i + 1]) << 16;
    } else if (round) {
      float *out = (float *)buf + r * K;
      for (int64_t k = 0; k < K; k++) {
        uint32_t u = (uint32_t)to_bf16(s * xr[k]) << 16;
        memcpy(out + k, &u, 4);
      }
    } else {
      float *out = (float *)buf + r * K;
      for (int64_t k = 0; k < K; k++) out[k] = s * xr[k];
    }
  }
  return (struct gemm_x){.pairs = pairs ? buf : NULL, .flat = buf, .rows = rows, .K = K};
}

/* One row's product in GEMV_SPLIT contiguous pieces a thread, claimed by the pool's threads: one core
 * does not fill the memory bandwidth everywhere (a 2-core Xeon read 13 GB/s from one core, 27 from two;
 * a 2-core EPYC 9.6 ms a step on one thread, 9.0 on two). Two pieces a thread read faster than one
 * (25.0 against 22.6 GB/s on the lm_head), and a thread another process holds delays only its piece;
 * fixed 64 KB-1 MB pieces read 17-25 (docs/perf/local-backend.md). */
#define GEMV_SPLIT 2
struct gemv_job {
  const void *W;
  int bf16, accumulate;
  const float *x;
  float *y;
  int64_t N, K, per_item; /* panels (bf16) or rows (fp32) an item */
  float scale;
};

static void gemv_item(void *arg, int64_t item, int tid) {
  (void)tid;
  const struct gemv_job *g = arg;
  int64_t lo = item * g->per_item;
  if (g->bf16) {
    int64_t panels = (g->N + PANEL - 1) / PANEL, hi = lo + g->per_item < panels ? lo + g->per_item : panels;
    gemv_panels(g->W, g->x, g->y, g->N, g->K, lo, hi, g->scale, g->accumulate);
  } else {
    int64_t n = lo + g->per_item < g->N ? g->per_item : g->N - lo;
    gemv_rows((const float *)g->W + lo * g->K, g->x, g->y + lo, n, g->K, g->scale, g->accumulate);
  }
}

static void gemv(const void *W, int bf16, int64_t N, int64_t K, const float *x, float scale, float *y,
                 int accumulate) {
  int64_t units = bf16 ? (N + PANEL - 1) / PANEL : N;
  if (units == 0) return;
  int64_t per_item = (units + GEMV_SPLIT * pool.n - 1) / (GEMV_SPLIT * pool.n);
  struct gemv_job g = {.W = W, .bf16 = bf16, .accumulate = accumulate, .x = x, .y = y, .N = N, .K = K,
                       .per_item = per_item, .scale = scale};
  pool_run(gemv_item, &g, (units + per_item - 1) / per_item);
}

/* y[r] = (scales[r] x[r]) @ W.T (+ bias) (+ y[r]) for rows x [rows][K] (scales may be NULL: 1). `buf`
 * holds the rows rounded, K floats' room a row for rows_padded(rows). One fp32-weight row only. One row
 * is bound by memory bandwidth, several by arithmetic. */
static void product(const void *W, int bf16, int64_t N, int64_t K, const float *x, int64_t rows,
                    const float *scales, const float *bias, float *y, int accumulate, void *buf) {
  if (rows == 1) {
    gemv(W, bf16, N, K, x, scales ? scales[0] : 1.f, y, accumulate);
    if (bias)
      for (int64_t n = 0; n < N; n++) y[n] += bias[n];
    return;
  }
  struct product m = {.W = W, .N = N, .xs = gemm_rows(x, rows, K, scales, 1, buf),
                      .out = {.y = y, .ldy = N, .N = N, .bias = bias, .accumulate = accumulate}};
  pool_run(gemm_item, &m, ((N + PANEL - 1) / PANEL + TILE_PANELS - 1) / TILE_PANELS);
}

/* y = x @ W.T (+ bias) for x [rows][K] and bf16 panels W [N, K]: one row in fp32, several rounded to
 * bf16, except rows `exact` (n_exact of them, ascending), which are multiplied in fp32. Returns 0, or
 * -1 when scratch could not be allocated (nothing written). */
int matmul_bf16(const uint16_t *W, const float *x, float *y, int64_t rows, int64_t N, int64_t K,
                const float *bias, const int64_t *exact, int64_t n_exact) {
  if (rows == 1 || n_exact == 0) {
    void *buf = malloc(sizeof(float) * rows_padded(rows) * K);
    if (buf == NULL) return -1;
    product(W, 1, N, K, x, rows, NULL, bias, y, 0, buf);
    free(buf);
    return 0;
  }
  /* The other rows first, then the exact ones: gathered in, computed in one pass over the weights
   * (each panel serves both while in cache), scattered back. */
  int64_t bulk = rows - n_exact, prepared = rows_padded(bulk) + rows_padded(n_exact);
  float *gathered = malloc(sizeof(float) * rows * K), *sums = malloc(sizeof(float) * rows * N);
  void *buf = malloc(sizeof(float) * prepared * K);
  if (gathered == NULL || sums == NULL || buf == NULL) {
    free(gathered);
    free(sums);
    free(buf);
    return -1;
  }
  for (int64_t r = 0, e = 0, b = 0; r < rows; r++) {
    int is_exact = e < n_exact && exact[e] == r;
    memcpy(gathered + (is_exact ? bulk + e++ : b++) * K, x + r * K, sizeof(float) * K);
  }
  struct product m = {
      .W = W,
      .N = N,
      .xs = gemm_rows(gathered, bulk, K, NULL, 1, buf),
      .exact = gemm_rows(gathered + bulk * K, n_exact, K, NULL, 0, (float *)buf + rows_padded(bulk) * K),
      .out = {.y = sums, .ldy = N, .N = N, .bias = bias},
      .exact_out = {.y = sums + bulk * N, .ldy = N, .N = N, .bias = bias}};
  pool_run(gemm_item, &m, ((N + PANEL - 1) / PANEL + TILE_PANELS - 1) / TILE_PANELS);
  for (int64_t r = 0, e = 0, b = 0; r < rows; r++) {
    int is_exact = e < n_exact && exact[e] == r;
    memcpy(y + r * N, sums + (is_exact ? bulk + e++ : b++) * N, sizeof(float) * N);
  }
  free(gathered);
  free(sums);
  free(buf);
  return 0;
}

/* y = x @ W.T for one row and fp32 W [N, K]: the exact mode's lm_head. */
void gemv_f32(const float *W, const float *x, float *y, int64_t N, int64_t K) {
  product(W, 0, N, K, x, 1, NULL, NULL, y, 0, NULL);
}

/* ---- attention --------------------------------------------------------------------------------- */

/* e^x, within 2 ulp for x in [-87, 88] (clamped there; callers pass x <= 0 or a SiLU argument):
 * Cephes' expf polynomial. Plain arithmetic, so the loops over it vectorise; glibc's expf does not. */
static inline float exp_approx(float x) {
  x = x < -87.f ? -87.f : x > 88.f ? 88.f : x;
  float n = rintf(x * 1.44269504f);
  float r = x - n * 0.693359375f + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.f;
  uint32_t bits = (uint32_t)((int32_t)n + 127) << 23;
  float scale;
  memcpy(&scale, &bits, 4);
  return p * scale;
}

static inline float dot(const float *restrict a, const float *restrict b, int64_t n) {
  float s = 0.f;
  for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
  return s;
}

static inline void axpy(float *restrict y, float w, const float *restrict x, int64_t n) {
  for (int64_t i = 0; i < n; i++) y[i] += w * x[i];
}

/* Cache row `at` (n values) as fp32: in place for an fp32 cache, widened into buf for a bf16 one. */
static inline const float *cache_row(const void *cache, int64_t at, int64_t n, int bf16, float *restrict buf) {
  if (!bf16) return (const float *)cache + at;
  const uint16_t *src = (const uint16_t *)cache + at;
  for (int64_t i = 0; i < n; i++) {
    uint32_t u = (uint32_t)src[i] << 16;
    memcpy(buf + i, &u, 4);
  }
  return buf;
}

/* A step's cache rows come from DRAM (the weights' stream has evicted them since the last step), and
 * each block is a jump the hardware prefetchers do not foresee: ask for positions a few ahead. */
#define PREFETCH_AHEAD 4
static inline void prefetch(const void *cache, int64_t at, int bf16, int64_t bytes) {
  const char *p = (const char *)cache + at * (bf16 ? 2 : 4);
  for (int64_t i = 0; i < bytes; i += 64) __builtin_prefetch(p + i);
}

struct attention {
  const struct model_shape *s;
  const struct decode_rows *rows;
  const float *qkv; /* [n_rows][(H + 2 Hkv) D], roped */
  const void *k_cache, *v_cache;
  float *out;    /* [n_rows][H D] */
  char *scratch; /* per thread: scores [H][max_ctx], a widened slot [Hkv D] (floats), slots [max_ctx] */
  int64_t scratch_bytes;
};

/* Item: one row, all its heads, attending to positions [0, ctx_len) of its sequence. A position's keys
 * (or values) for all kv heads are adjacent in the cache, and a block's positions too, so the row's
 * reads run through each block in order (what the prefetchers follow: its cache rows are in DRAM by
 * now, evicted by the weights' stream), each read once and widened once for a bf16 cache, and shared
 * by the `group` query heads of its kv head. `hd` is a compile-time constant in the common head sizes,
 * so the loops over a head unroll. */
static inline __attribute__((always_inline)) void attend_row(const struct attention *a, int64_t r, int tid,
                                                             int64_t hd) {
  const struct model_shape *s = a->s;
  int64_t n_kv = s->n_kv, group = s->n_heads / n_kv, kv_row = n_kv * hd, bs = s->block_size;
  int64_t ctx = a->rows->ctx_lens[r];
  int kb = s->bf16_cache;
  const int64_t *table = a->rows->tables + r * a->rows->width;
  float *scores = (float *)(a->scratch + tid * a->scratch_bytes), *wide = scores + s->n_heads * a->rows->max_ctx;
  int64_t *slots = (int64_t *)(wide + kv_row);
  for (int64_t t = 0, b = 0; t < ctx; b++)
    for (int64_t i = 0, base = table[b] * bs; i < bs && t < ctx; i++, t++) slots[t] = (base + i) * kv_row;
  const float *q = a->qkv + r * (s->n_heads + 2 * n_kv) * hd;
  int64_t bytes = kv_row * (kb ? 2 : 4);
  for (int64_t t = 0; t < ctx; t++) {
    if (t + PREFETCH_AHEAD < ctx) prefetch(a->k_cache, slots[t + PREFETCH_AHEAD], kb, bytes);
    const float *k = cache_row(a->k_cache, slots[t], kv_row, kb, wide);
    for (int64_t h = 0; h < s->n_heads; h++) scores[h * ctx + t] = dot(q + h * hd, k + h / group * hd, hd) * s->scale;
  }
  for (int64_t h = 0; h < s->n_heads; h++) {
    float *sc = scores + h * ctx, top = -INFINITY, total = 0.f;
    for (int64_t t = 0; t < ctx; t++) top = sc[t] > top ? sc[t] : top;
    for (int64_t t = 0; t < ctx; t++) {
      sc[t] = exp_approx(sc[t] - top);
      total += sc[t];
    }
    for (int64_t t = 0; t < ctx; t++) sc[t] /= total;
  }
  float *o = a->out + r * s->n_heads * hd;
  memset(o, 0, sizeof(float) * s->n_heads * hd);
  for (int64_t t = 0; t < ctx; t++) {
    if (t + PREFETCH_AHEAD < ctx) prefetch(a->v_cache, slots[t + PREFETCH_AHEAD], kb, bytes);
    const float *v = cache_row(a->v_cache, slots[t], kv_row, kb, wide);
    for (int64_t h = 0; h < s->n_heads; h++) axpy(o + h * hd, scores[h * ctx + t], v + h / group * hd, hd);
  }
}

static void attention_item(void *arg, int64_t r, int tid) {
  const struct attention *a = arg;
  switch (a->s->head_dim) {
    case 64: attend_row(a, r, tid, 64); break;
    case 128: attend_row(a, r, tid, 128); break;
    default: attend_row(a, r, tid, a->s->head_dim);
  }
}

/* Each row of qkv [n_rows][(H + 2 Hkv) D] (each q/k head's halves interleaved: model.py permutes the
 * weights so) is roped in place, its k and v go to its sequence's cache at position ctx_len - 1, and
 * its attention lands in its row of out [n_rows][H D]. Returns 0, or -1 when the scratch could not be
 * allocated (nothing written). */
static int attend(const struct model_shape *s, const struct decode_rows *rows, float *qkv, void *k_cache,
                  void *v_cache, float *out) {
  int64_t hd = s->head_dim, n_qkv = (s->n_heads + 2 * s->n_kv) * hd, kv_row = s->n_kv * hd;
  int64_t bs = s->block_size;
  int64_t per_thread = (sizeof(float) * s->n_heads + sizeof(int64_t)) * rows->max_ctx + sizeof(float) * kv_row;
  per_thread = (per_thread + 63) / 64 * 64;
  char *scratch = malloc(per_thread * pool.n);
  if (scratch == NULL) return -1;
  for (int64_t r = 0; r < rows->n_rows; r++) {
    float *p = qkv + r * n_qkv;
    const float *cis = rows->cis + r * hd;
    for (int64_t h = 0; h < s->n_heads + s->n_kv; h++)
      for (int64_t i = 0; i < hd / 2; i++) {
        float x = p[h * hd + 2 * i], y = p[h * hd + 2 * i + 1], c = cis[2 * i], sn = cis[2 * i + 1];
        p[h * hd + 2 * i] = x * c - y * sn;
        p[h * hd + 2 * i + 1] = x * sn + y * c;
      }
    int64_t t = rows->ctx_lens[r] - 1, table_row = r * rows->width;
    int64_t slot = (rows->tables[table_row + t / bs] * bs + t % bs) * kv_row;
    const float *k = p + s->n_heads * hd, *v = k + kv_row;
    for (int64_t i = 0; i < kv_row; i++)
      if (s->bf16_cache) {
        ((uint16_t *)k_cache)[slot + i] = to_bf16(k[i]);
        ((uint16_t *)v_cache)[slot + i] = to_bf16(v[i]);
      } else {
        ((float *)k_cache)[slot + i] = k[i];
        ((float *)v_cache)[slot + i] = v[i];
      }
  }
  struct attention a = {.s = s, .rows = rows, .qkv = qkv, .k_cache = k_cache, .v_cache = v_cache,
                        .out = out, .scratch = scratch, .scratch_bytes = per_thread};
  pool_run(attention_item, &a, rows->n_rows); /* one row runs on the calling thread */
  free(scratch);
  return 0;
}

/* The decode rows of a batch whose products run in torch. See attend. */
int decode_attention(const struct model_shape *s, const struct decode_rows *rows, float *qkv,
                     void *k_cache, void *v_cache, float *out) {
  return attend(s, rows, qkv, k_cache, v_cache, out);
}

/* ---- a whole layer ----------------------------------------------------------------------------- */

static void rms_scales(const float *x, int64_t rows, int64_t K, float eps, float *scales) {
  for (int64_t r = 0; r < rows; r++) {
    float ss = 0.f;
    for (int64_t k = 0; k < K; k++) ss += x[r * K + k] * x[r * K + k];
    scales[r] = 1.f / sqrtf(ss / (float)K + eps);
  }
}

/* Scratch floats a layer takes for R rows. */
static int64_t layer_scratch(const struct model_shape *s, int64_t R) {
  int64_t inter = s->inter, n_qkv = (s->n_heads + 2 * s->n_kv) * s->head_dim, n_q = s->n_heads * s->head_dim;
  int64_t widest = s->hidden > inter ? s->hidden : inter;
  widest = widest > n_q ? widest : n_q;
  return R * (n_qkv + n_q + 3 * inter + 1) + rows_padded(R) * widest;
}

static int run_layer(float *x, const struct model_shape *s, const struct layer_weights *w,
                     const struct decode_rows *rows, void *k_cache, void *v_cache, float *scratch) {
  int64_t R = rows->n_rows, h = s->hidden, inter = s->inter;
  int64_t n_qkv = (s->n_heads + 2 * s->n_kv) * s->head_dim, n_q = s->n_heads * s->head_dim;
  float *qkv = scratch, *attn = qkv + R * n_qkv, *gu = attn + R * n_q, *act = gu + 2 * R * inter;
  float *scales = act + R * inter, *buf = scales + R;
  int bf = s->bf16_weights;
  rms_scales(x, R, h, s->eps, scales);
  product(w->wqkv, bf, n_qkv, h, x, R, scales, w->bqkv, qkv, 0, buf);
  if (attend(s, rows, qkv, k_cache, v_cache, attn)) return -1; /* fails before the cache or x is written */
  product(w->wo, bf, h, n_q, attn, R, NULL, NULL, x, 1, buf);
  rms_scales(x, R, h, s->eps, scales);
  product(w->wgu, bf, 2 * inter, h, x, R, scales, NULL, gu, 0, buf);
  for (int64_t r = 0; r < R; r++)
    for (int64_t i = 0; i < inter; i++) {
      float g = gu[r * 2 * inter + i];
      act[r * inter + i] = g / (1.f + exp_approx(-g)) * gu[r * 2 * inter + inter + i];
    }
  product(w->wd, bf, h, inter, act, R, NULL, NULL, x, 1, buf);
  return 0;
}

/* One layer for the decode rows x [n_rows][hidden] (the residual stream, updated in place). Returns 0,
 * or -1 when scratch could not be allocated (then nothing is written). */
int decode_layer(float *x, const struct model_shape *s, const struct layer_weights *w,
                 const struct decode_rows *rows, void *k_cache, void *v_cache) {
  float *scratch = malloc(sizeof(float) * layer_scratch(s, rows->n_rows));
  if (scratch == NULL) return -1;
  int failed = run_layer(x, s, w, rows, k_cache, v_cache, scratch);
  free(scratch);
  return failed;
}

/* The n_layers layers of a decode step in one call (w, k_caches and v_caches hold one entry a layer):
 * one call and one check a step instead of one a layer. Returns 0, or -1 when scratch could not be
 * allocated; then no layer, or (attention's scratch, after the first layer) not all, ran. */
int decode_layers(float *x, const struct model_shape *s, const struct layer_weights *w, int64_t n_layers,
                  const struct decode_rows *rows, void *const *k_caches, void *const *v_caches) {
  float *scratch = malloc(sizeof(float) * layer_scratch(s, rows->n_rows));
  if (scratch == NULL) return -1;
  int failed = 0;
  for (int64_t i = 0; i < n_layers && !failed; i++)
    failed = run_layer(x, s, w + i, rows, k_caches[i], v_caches[i], scratch);
  free(scratch);
  return failed;
}

/* ---- sampling ---------------------------------------------------------------------------------- */

struct draws {
  const float *logits; /* [rows][n] */
  int64_t n;
  const float *inv_temp, *u; /* [rows]: 0 for a greedy row; a uniform draw in [0, 1) */
  int64_t *out;
  float *scratch; /* per thread: n floats, then n / SAMPLE_BLOCK + 1 block sums */
  int64_t scratch_floats;
};

#define SAMPLE_BLOCK 64

/* The largest of n values (no NaN here); gcc does not vectorise the plain loop. */
static float max_of(const float *l, int64_t n) {
  float top = -INFINITY;
  int64_t i = 0;
#if defined(__AVX2__) || defined(__AVX512F__)
  __m256 m0 = _mm256_set1_ps(-INFINITY), m1 = m0;
  for (; i + 16 <= n; i += 16) {
    m0 = _mm256_max_ps(m0, _mm256_loadu_ps(l + i));
    m1 = _mm256_max_ps(m1, _mm256_loadu_ps(l + i + 8));
  }
  float lanes[8];
  _mm256_storeu_ps(lanes, _mm256_max_ps(m0, m1));
  for (int j = 0; j < 8; j++) top = lanes[j] > top ? lanes[j] : top;
#endif
  for (; i < n; i++) top = l[i] > top ? l[i] : top;
  return top;
}

/* The first largest value's index, as torch's argmax picks it. */
static int64_t argmax_row(const float *l, int64_t n) {
  float top = max_of(l, n);
  for (int64_t i = 0; i < n; i++)
    if (l[i] == top) return i;
  return 0;
}

/* Row r: greedy, or the first token whose running sum of exp((l - max) / T) passes u times the total
 * (inverse-CDF, as sampler.py's torch path draws it). A token at -inf (filtered out) weighs 0. The
 * weights are summed in blocks (vectorised, the same order for the total and the search), and within
 * the block that passes the target one at a time; if rounding leaves the target unpassed there, the
 * search goes on into the next blocks, and past the end it takes the last token with weight. */
static void draw_item(void *arg, int64_t r, int tid) {
  const struct draws *d = arg;
  const float *l = d->logits + r * d->n;
  int64_t n = d->n;
  if (d->inv_temp[r] == 0.f) {
    d->out[r] = argmax_row(l, n);
    return;
  }
  float *e = d->scratch + tid * d->scratch_floats, *sums = e + n;
  float top = max_of(l, n), it = d->inv_temp[r];
  for (int64_t i = 0; i < n; i++) e[i] = l[i] == -INFINITY ? 0.f : exp_approx((l[i] - top) * it);
  int64_t blocks = (n + SAMPLE_BLOCK - 1) / SAMPLE_BLOCK;
  float total = 0.f;
  for (int64_t b = 0; b < blocks; b++) {
    int64_t i0 = b * SAMPLE_BLOCK, i1 = i0 + SAMPLE_BLOCK < n ? i0 + SAMPLE_BLOCK : n;
    float s = 0.f;
    for (int64_t i = i0; i < i1; i++) s += e[i];
    sums[b] = s;
    total += s;
  }
  float target = d->u[r] * total * (1.f - 0x1p-22f), before = 0.f;
  int64_t last = -1;
  for (int64_t b = 0; b < blocks; b++) {
    if (before + sums[b] > target) {
      int64_t i0 = b * SAMPLE_BLOCK, i1 = i0 + SAMPLE_BLOCK < n ? i0 + SAMPLE_BLOCK : n;
      float run = before;
      for (int64_t i = i0; i < i1; i++) {
        run += e[i];
        if (e[i] > 0.f) last = i;
        if (run > target && e[i] > 0.f) {
          d->out[r] = i;
          return;
        }
      }
    } else if (sums[b] > 0.f) {
      int64_t i0 = b * SAMPLE_BLOCK, i1 = i0 + SAMPLE_BLOCK < n ? i0 + SAMPLE_BLOCK : n;
      for (int64_t i = i1 - 1; i >= i0; i--)
        if (e[i] > 0.f) {
          last = i;
          break;
        }
    }
    before += sums[b];
  }
  d->out[r] = last >= 0 ? last : argmax_row(l, n);
}

/* A token for each of `rows` rows of logits [rows][n]: the argmax where inv_temp[r] is 0, else a draw
 * with u[r] at temperature 1 / inv_temp[r] (draw_item). Rows run on the pool's threads. Returns 0, or
 * -1 when the scratch could not be allocated (nothing written). */
int sample_rows(const float *logits, int64_t rows, int64_t n, const float *inv_temp, const float *u,
                int64_t *out) {
  int64_t per_thread = (n + n / SAMPLE_BLOCK + 1 + 15) / 16 * 16;
  float *scratch = malloc(sizeof(float) * per_thread * pool.n);
  if (scratch == NULL) return -1;
  struct draws d = {.logits = logits, .n = n, .inv_temp = inv_temp, .u = u, .out = out,
                    .scratch = scratch, .scratch_floats = per_thread};
  pool_run(draw_item, &d, rows);
  free(scratch);
  return 0;
}
