/* The products and the sampler with every buffer ending at an unreadable page: a read past any of them
 * is a segfault here rather than, as once in the engine, about one run in ten (test_kernel_bounds.py). */
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

int main(void) {
  pool_start(2);
  amx_start();
  for (int64_t K = 32; K <= 608; K += K < 96 ? 2 : 64) {
    int64_t N = 50;
    uint16_t *W = malloc(2 * ((N + PANEL - 1) / PANEL) * PANEL * K);
    float *x = malloc(sizeof(float) * 40 * K), *y = malloc(sizeof(float) * 40 * N);
    memset(W, 0, 2 * ((N + PANEL - 1) / PANEL) * PANEL * K);
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
    free(W);
    free(x);
    free(y);
  }
  float *logits = malloc(sizeof(float) * 3 * 1000), *inv_temp = malloc(sizeof(float) * 3);
  float *u = malloc(sizeof(float) * 3);
  int64_t *out = malloc(sizeof(int64_t) * 3);
  for (int i = 0; i < 3000; i++) logits[i] = (float)(i % 13);
  for (int r = 0; r < 3; r++) inv_temp[r] = (float)r, u[r] = 0.5f;
  if (sample_rows(logits, 3, 1000, inv_temp, u, out)) return 2;
  printf("ok\n");
  return 0;
}
