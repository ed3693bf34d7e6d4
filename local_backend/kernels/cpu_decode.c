/* The CPU decode step at batch 1: matrix-vector products and one token's attention, compiled at
 * engine start (cpu_kernels.py). At batch 1 each small torch op costs more than its arithmetic, so
 * what surrounds the products (the RMS norm, SwiGLU, the residual add, rope, the cache write, the
 * gather and the softmax) happens inside these two calls.
 *
 * GEMV: one output row at a time, so the weights are read as a single sequential stream: on an AVX-512
 * EPYC that reads at ~90% of torch.sum's rate, where MKL's GEMV (and a kernel that interleaves
 * four rows) reach half of it. Plain loops: -O3 -march=native vectorises them for whatever the host
 * has, and -fassociative-math lets the sums use vector partial sums.
 *
 * W is row-major [N, K] (torch's [out, in]). y[n] = W[n, :] . v, where v is x itself, x scaled by its
 * RMS (RMS_NORM: the norm's gain is folded into W), or silu(x[:K]) * x[K:] (SWIGLU, x has 2K values).
 * ACCUMULATE adds into y (the residual) instead of storing.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { ACCUMULATE = 1, RMS_NORM = 2, SWIGLU = 4 };

static void rows(const float *restrict W, const float *restrict v, float *restrict y, long N, long K,
                 float scale, int accumulate) {
  for (long n = 0; n < N; n++) {
    const float *restrict w = W + n * K;
    float s = 0.f;
    for (long k = 0; k < K; k++) s += w[k] * v[k];
    s *= scale;
    y[n] = accumulate ? y[n] + s : s;
  }
}

/* 0, or -1 when SWIGLU's scratch could not be allocated (y untouched). */
int gemv_f32(const float *restrict W, const float *restrict x, float *restrict y, long N, long K, int flags,
             float eps) {
  int accumulate = flags & ACCUMULATE;
  if (flags & SWIGLU) {
    float *h = malloc(sizeof(float) * K);
    if (h == NULL) return -1;
    for (long k = 0; k < K; k++) h[k] = x[k] / (1.f + expf(-x[k])) * x[K + k];
    rows(W, h, y, N, K, 1.f, accumulate);
    free(h);
    return 0;
  }
  float scale = 1.f;
  if (flags & RMS_NORM) {
    float ss = 0.f;
    for (long k = 0; k < K; k++) ss += x[k] * x[k];
    scale = 1.f / sqrtf(ss / (float)K + eps);
  }
  rows(W, x, y, N, K, scale, accumulate);
  return 0;
}

/* One decode token's attention over its paged cache, rope included, for a Llama-family layer.
 *
 * qkv: the token's [q heads | k heads | v heads] of head_dim each, q and k with each head's halves
 * interleaved (model.py permutes the weights so) and rotated here in place by cis ([head_dim/2] of
 * cos, sin). Its k and v are written to the cache slot of position ctx_len - 1, then every query head
 * attends to positions [0, ctx_len) of its kv head. Caches are [blocks, block_size, kv_heads, head_dim].
 * Returns 0, or -1 when the scores' scratch could not be allocated (nothing written).
 */
int decode_attention(float *restrict qkv, const float *restrict cis, float *restrict k_cache,
                     float *restrict v_cache, const long *restrict block_table, long ctx_len,
                     long block_size, long n_heads, long n_kv, long head_dim, float scale,
                     float *restrict out) {
  long group = n_heads / n_kv, half = head_dim / 2, row = n_kv * head_dim;
  float *scores = malloc(sizeof(float) * group * ctx_len);
  long *slots = malloc(sizeof(long) * ctx_len);
  if (scores == NULL || slots == NULL) {
    free(scores);
    free(slots);
    return -1;
  }
  for (long h = 0; h < n_heads + n_kv; h++) {
    float *p = qkv + h * head_dim;
    for (long i = 0; i < half; i++) {
      float a = p[2 * i], b = p[2 * i + 1], c = cis[2 * i], s = cis[2 * i + 1];
      p[2 * i] = a * c - b * s;
      p[2 * i + 1] = a * s + b * c;
    }
  }
  for (long t = 0; t < ctx_len; t++) slots[t] = (block_table[t / block_size] * block_size + t % block_size) * row;
  memcpy(k_cache + slots[ctx_len - 1], qkv + n_heads * head_dim, sizeof(float) * row);
  memcpy(v_cache + slots[ctx_len - 1], qkv + (n_heads + n_kv) * head_dim, sizeof(float) * row);
  /* Per kv head, its `group` query heads share each key and value row as it is read. */
  for (long g = 0; g < n_kv; g++) {
    const float *q0 = qkv + g * group * head_dim;
    for (long t = 0; t < ctx_len; t++) {
      const float *k = k_cache + slots[t] + g * head_dim;
      for (long j = 0; j < group; j++) {
        const float *q = q0 + j * head_dim;
        float s = 0.f;
        for (long d = 0; d < head_dim; d++) s += q[d] * k[d];
        scores[j * ctx_len + t] = s * scale;
      }
    }
    for (long j = 0; j < group; j++) {
      float *sc = scores + j * ctx_len, top = -INFINITY, total = 0.f;
      for (long t = 0; t < ctx_len; t++) top = sc[t] > top ? sc[t] : top;
      for (long t = 0; t < ctx_len; t++) total += sc[t] = expf(sc[t] - top);
      for (long t = 0; t < ctx_len; t++) sc[t] /= total;
    }
    float *o0 = out + g * group * head_dim;
    memset(o0, 0, sizeof(float) * group * head_dim);
    for (long t = 0; t < ctx_len; t++) {
      const float *v = v_cache + slots[t] + g * head_dim;
      for (long j = 0; j < group; j++) {
        float w = scores[j * ctx_len + t], *o = o0 + j * head_dim;
        for (long d = 0; d < head_dim; d++) o[d] += w * v[d];
      }
    }
  }
  free(scores);
  free(slots);
  return 0;
}
