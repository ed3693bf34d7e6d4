/* The products, a layer and the sampler with every buffer ending at an unreadable page: a read past
 * any of them is a segfault here rather than, as once in the engine, about one run in ten
 * (test_kernel_bounds.py). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define PAGE 4096

/* n bytes that end where an unreadable page starts; the mapping's size is kept in the page before them. */
static void *guarded_malloc(size_t n) {
  size_t len = (n + PAGE - 1) / PAGE * PAGE, total = len + 2 * PAGE;
  char *p = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED || mprotect(p + PAGE + len, PAGE, PROT_NONE)) return NULL;
  *(size_t *)p = total;
  return p + PAGE + len - n;
}

static void guarded_free(void *ptr) {
  if (ptr == NULL) return;
  char *p = (char *)((uintptr_t)ptr / PAGE * PAGE) - PAGE;
  munmap(p, *(size_t *)p);
}

#define malloc guarded_malloc
#define free guarded_free
#include "../../local_backend/kernels/cpu_decode.c"

#include <stdio.h>

static uint16_t *panels(int64_t N, int64_t K) {
  size_t n = ((N + PANEL - 1) / PANEL) * PANEL * K;
  uint16_t *w = malloc(2 * n);
  for (size_t i = 0; i < n; i++) w[i] = (uint16_t)(0x3c00 + i % 5); /* small bf16 values */
  return w;
}

/* matmul_bf16: every tile size, rows kept in fp32 or not, K / 2 odd and even; gemv_f32 (N 0 too). */
static int products(void) {
  for (int64_t K = 32; K <= 608; K += K < 96 ? 2 : 64) {
    int64_t N = 50;
    uint16_t *W = panels(N, K);
    float *x = malloc(sizeof(float) * 40 * K), *y = malloc(sizeof(float) * 40 * N);
    for (int64_t i = 0; i < 40 * K; i++) x[i] = (float)(i % 7) - 3.f;
    for (int64_t rows = 1; rows <= 40; rows++) {
      float *xs = x + (40 - rows) * K, *ys = y + (40 - rows) * N; /* the last rows: end at the guard */
      for (int64_t n_exact = 0; n_exact <= rows && n_exact <= 20; n_exact++) {
        int64_t *exact = malloc(sizeof(int64_t) * (n_exact ? n_exact : 1));
        for (int64_t i = 0; i < n_exact; i++) exact[i] = rows - n_exact + i;
        if (matmul_bf16(W, xs, ys, rows, N, K, NULL, n_exact ? exact : NULL, n_exact)) return 2;
        free(exact);
      }
    }
    for (int64_t n = 0; n <= N; n++) {
      float *w32 = malloc(sizeof(float) * (n ? n : 1) * K);
      for (int64_t i = 0; i < n * K; i++) w32[i] = 0.5f;
      gemv_f32(w32, x + 39 * K, y + (40 - 1) * N + (N - n), n, K);
      free(w32);
    }
    free(W);
    free(x);
    free(y);
  }
  return 0;
}

/* decode_layers for 1-20 rows, hidden sizes a multiple of 32 (AMX) and not: the layer's scratch, the
 * products with scales and accumulation, attention over a bf16 cache. */
static int layers(void) {
  int64_t hiddens[] = {64, 96, 48, 80};
  for (int h = 0; h < 4; h++) {
    struct model_shape s = {.hidden = hiddens[h], .inter = hiddens[h] + 32, .n_heads = 4, .n_kv = 2,
                            .head_dim = 16, .block_size = 4, .eps = 1e-5f, .scale = 0.25f,
                            .bf16_weights = 1, .bf16_cache = 1};
    int64_t n_qkv = (s.n_heads + 2 * s.n_kv) * s.head_dim, n_q = s.n_heads * s.head_dim;
    struct layer_weights w = {.wqkv = panels(n_qkv, s.hidden), .wo = panels(s.hidden, n_q),
                              .wgu = panels(2 * s.inter, s.hidden), .wd = panels(s.hidden, s.inter)};
    for (int64_t R = 1; R <= 20; R++) {
      int64_t width = 3, ctx = 9;
      float *x = malloc(sizeof(float) * R * s.hidden), *cis = malloc(sizeof(float) * R * s.head_dim);
      int64_t *tables = malloc(sizeof(int64_t) * R * width), *lens = malloc(sizeof(int64_t) * R);
      for (int64_t i = 0; i < R * s.hidden; i++) x[i] = (float)(i % 7) * 0.1f;
      for (int64_t i = 0; i < R * s.head_dim; i++) cis[i] = 0.5f;
      for (int64_t i = 0; i < R * width; i++) tables[i] = i;
      for (int64_t r = 0; r < R; r++) lens[r] = ctx;
      size_t cache = 2 * R * width * s.block_size * s.n_kv * s.head_dim;
      void *k = malloc(cache), *v = malloc(cache);
      memset(k, 0, cache);
      memset(v, 0, cache);
      struct decode_rows rows = {.cis = cis, .tables = tables, .width = width, .ctx_lens = lens,
                                 .n_rows = R, .max_ctx = ctx};
      void *ks[1] = {k}, *vs[1] = {v};
      if (decode_layers(x, &s, &w, 1, &rows, ks, vs)) return 2;
      free(x);
      free(cis);
      free(tables);
      free(lens);
      free(k);
      free(v);
    }
  }
  return 0;
}

/* Argument "no-amx": the AVX512-BF16 tiles where the CPU has AMX too. */
int main(int argc, char **argv) {
  pool_start(2);
  if (argc < 2 || strcmp(argv[1], "no-amx") != 0) amx_start();
  if (products() || layers()) return 2;
  float *logits = malloc(sizeof(float) * 3 * 1000), *inv_temp = malloc(sizeof(float) * 3);
  float *u = malloc(sizeof(float) * 3);
  int64_t *out = malloc(sizeof(int64_t) * 3);
  for (int i = 0; i < 3000; i++) logits[i] = (float)(i % 13);
  for (int r = 0; r < 3; r++) inv_temp[r] = (float)r, u[r] = 0.5f;
  if (sample_rows(logits, 3, 1000, inv_temp, u, out)) return 2;
  printf("ok\n");
  return 0;
}
