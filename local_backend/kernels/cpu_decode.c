/* The fp32 CPU decode in C, compiled at engine start (cpu_kernels.py).
 *
 * At batch 1 a step reads every weight once, and each small torch op around the products costs more
 * than its arithmetic. So a whole Llama-family layer is one call here (decode_layer): RMS norm, the
 * q/k/v product, rope, the cache write, attention over the paged cache, the output product and
 * residual, the second norm, gate/up, SwiGLU, down and residual. In a batch, torch runs the products
 * and decode_attention serves the decode rows, reading each row's blocks in place.
 *
 * GEMV: one output row at a time, so the weights are read as a single sequential stream. On an
 * AVX-512 EPYC that reads at ~90% of torch.sum's rate, where MKL's GEMV (and a kernel that
 * interleaves four rows) reach half of it. Plain loops: -O3 -march=native vectorises them for
 * whatever the host has, and -fassociative-math lets the sums use vector partial sums.
 *
 * Matrices are row-major [out, in], as torch stores them; RMS norm gains are folded into the matrix
 * that follows the norm, so the norm itself is one scale of the product.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* y[n] = scale * (W[n, :] . x), added to y[n] when `accumulate`. */
static void gemv(const float *restrict W, const float *restrict x, float *restrict y, int64_t N, int64_t K,
                 float scale, int accumulate) {
  for (int64_t n = 0; n < N; n++) {
    const float *restrict w = W + n * K;
    float s = 0.f;
    for (int64_t k = 0; k < K; k++) s += w[k] * x[k];
    s *= scale;
    y[n] = accumulate ? y[n] + s : s;
  }
}

static float rms_scale(const float *restrict x, int64_t K, float eps) {
  float ss = 0.f;
  for (int64_t k = 0; k < K; k++) ss += x[k] * x[k];
  return 1.f / sqrtf(ss / (float)K + eps);
}

/* y = x @ W.T for one row: the lm_head. */
void gemv_f32(const float *restrict W, const float *restrict x, float *restrict y, int64_t N, int64_t K) {
  gemv(W, x, y, N, K, 1.f, 0);
}

struct attention {
  int64_t n_heads, n_kv, head_dim, block_size, ctx_len;
  float scale;
  const float *cis;           /* [head_dim / 2] (cos, sin) for the token's position */
  const int64_t *block_table; /* the sequence's blocks */
  float *k_cache, *v_cache;   /* [blocks, block_size, n_kv, head_dim] */
  float *scores;              /* scratch: [n_heads / n_kv, ctx_len] */
  int64_t *slots;             /* scratch: [ctx_len] */
};

/* qkv: the token's [q heads | k heads | v heads], each q/k head's halves interleaved (model.py
 * permutes the weights so), rotated here in place. Its k and v go to the cache at position
 * ctx_len - 1, then each query head attends to positions [0, ctx_len) of its kv head. */
static void attend(const struct attention *a, float *restrict qkv, float *restrict out) {
  int64_t hd = a->head_dim, group = a->n_heads / a->n_kv, row = a->n_kv * hd, ctx = a->ctx_len;
  for (int64_t h = 0; h < a->n_heads + a->n_kv; h++) {
    float *p = qkv + h * hd;
    for (int64_t i = 0; i < hd / 2; i++) {
      float x = p[2 * i], y = p[2 * i + 1], c = a->cis[2 * i], s = a->cis[2 * i + 1];
      p[2 * i] = x * c - y * s;
      p[2 * i + 1] = x * s + y * c;
    }
  }
  for (int64_t t = 0; t < ctx; t++)
    a->slots[t] = (a->block_table[t / a->block_size] * a->block_size + t % a->block_size) * row;
  memcpy(a->k_cache + a->slots[ctx - 1], qkv + a->n_heads * hd, sizeof(float) * row);
  memcpy(a->v_cache + a->slots[ctx - 1], qkv + (a->n_heads + a->n_kv) * hd, sizeof(float) * row);
  /* Per kv head, its `group` query heads share each key and value row as it is read. */
  for (int64_t g = 0; g < a->n_kv; g++) {
    const float *q0 = qkv + g * group * hd;
    for (int64_t t = 0; t < ctx; t++) {
      const float *k = a->k_cache + a->slots[t] + g * hd;
      for (int64_t j = 0; j < group; j++) {
        const float *q = q0 + j * hd;
        float s = 0.f;
        for (int64_t d = 0; d < hd; d++) s += q[d] * k[d];
        a->scores[j * ctx + t] = s * a->scale;
      }
    }
    for (int64_t j = 0; j < group; j++) {
      float *sc = a->scores + j * ctx, top = -INFINITY, total = 0.f;
      for (int64_t t = 0; t < ctx; t++) top = sc[t] > top ? sc[t] : top;
      for (int64_t t = 0; t < ctx; t++) total += sc[t] = expf(sc[t] - top);
      for (int64_t t = 0; t < ctx; t++) sc[t] /= total;
    }
    float *o0 = out + g * group * hd;
    memset(o0, 0, sizeof(float) * group * hd);
    for (int64_t t = 0; t < ctx; t++) {
      const float *v = a->v_cache + a->slots[t] + g * hd;
      for (int64_t j = 0; j < group; j++) {
        float w = a->scores[j * ctx + t], *o = o0 + j * hd;
        for (int64_t d = 0; d < hd; d++) o[d] += w * v[d];
      }
    }
  }
}

/* Attention for decode rows, each its own token of its own sequence. Row r of qkv
 * [n_rows, (n_heads + 2 n_kv) head_dim] is roped in place by row r of cis [n_rows, head_dim / 2]
 * (cos, sin), its k and v go to position ctx_lens[r] - 1 of its block table (row r of block_tables
 * [n_rows, width]), and its attention lands in row r of out. Returns 0, or -1 when the scratch could
 * not be allocated (nothing written). */
int decode_attention(float *restrict qkv, const float *cis, const int64_t *block_tables, int64_t width,
                     const int64_t *ctx_lens, int64_t n_rows, int64_t block_size, int64_t n_heads,
                     int64_t n_kv, int64_t head_dim, float scale, float *k_cache, float *v_cache,
                     float *restrict out) {
  int64_t max_ctx = 0, n_qkv = (n_heads + 2 * n_kv) * head_dim;
  for (int64_t r = 0; r < n_rows; r++) max_ctx = ctx_lens[r] > max_ctx ? ctx_lens[r] : max_ctx;
  float *scores = malloc(sizeof(float) * (n_heads / n_kv) * max_ctx);
  int64_t *slots = malloc(sizeof(int64_t) * max_ctx);
  if (scores == NULL || slots == NULL) {
    free(scores);
    free(slots);
    return -1;
  }
  for (int64_t r = 0; r < n_rows; r++) {
    struct attention a = {.n_heads = n_heads, .n_kv = n_kv, .head_dim = head_dim,
                          .block_size = block_size, .ctx_len = ctx_lens[r], .scale = scale,
                          .cis = cis + r * head_dim, .block_table = block_tables + r * width,
                          .k_cache = k_cache, .v_cache = v_cache, .scores = scores, .slots = slots};
    attend(&a, qkv + r * n_qkv, out + r * n_heads * head_dim);
  }
  free(scores);
  free(slots);
  return 0;
}

/* One layer for one decode token; x [hidden] is the residual stream, updated in place. bqkv may be
 * NULL (Qwen2 has q/k/v biases, Llama none). Returns 0, or -1 when scratch could not be allocated
 * (then nothing is written). */
int decode_layer(float *restrict x, const float *wqkv, const float *bqkv, const float *wo,
                 const float *wgu, const float *wd, int64_t hidden, int64_t inter, float eps,
                 int64_t n_heads, int64_t n_kv, int64_t head_dim, float scale, const float *cis,
                 const int64_t *block_table, int64_t ctx_len, int64_t block_size, float *k_cache,
                 float *v_cache) {
  int64_t n_qkv = (n_heads + 2 * n_kv) * head_dim, n_q = n_heads * head_dim;
  float *scratch = malloc(sizeof(float) * (n_qkv + n_q + 2 * inter));
  if (scratch == NULL) return -1;
  float *qkv = scratch, *attn = qkv + n_qkv, *gu = attn + n_q;
  gemv(wqkv, x, qkv, n_qkv, hidden, rms_scale(x, hidden, eps), 0);
  if (bqkv != NULL)
    for (int64_t i = 0; i < n_qkv; i++) qkv[i] += bqkv[i];
  /* One row; its table's width is never read. Fails before the cache or x is written. */
  if (decode_attention(qkv, cis, block_table, 0, &ctx_len, 1, block_size, n_heads, n_kv, head_dim, scale,
                       k_cache, v_cache, attn)) {
    free(scratch);
    return -1;
  }
  gemv(wo, attn, x, hidden, n_q, 1.f, 1);
  gemv(wgu, x, gu, 2 * inter, hidden, rms_scale(x, hidden, eps), 0);
  for (int64_t i = 0; i < inter; i++) gu[i] = gu[i] / (1.f + expf(-gu[i])) * gu[inter + i];
  gemv(wd, gu, x, hidden, inter, 1.f, 1);
  free(scratch);
  return 0;
}
