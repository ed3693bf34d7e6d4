/* A small thread pool for the kernels' parallel loops (included by cpu_decode.c).
 *
 * torch's OpenMP pool cannot be reached through ctypes, and a second OpenMP runtime in the process
 * would spin against torch's. So: n - 1 workers of our own, and a job is `n_items` calls of one
 * function that the threads claim one item at a time (the caller's thread takes items too). A
 * descheduled thread (another process holds its core) then delays only the item it holds, not a fixed
 * share of the work. Workers spin briefly between jobs (the next one comes within microseconds inside
 * a layer) and then sleep on a condition variable.
 *
 * The state word is (generation << 32 | next item): a claim is a compare-and-swap that fails once the
 * job has moved on, so a worker that wakes late never takes an item of a job it did not see posted,
 * and it reads the job's fields only after a successful claim, when the job cannot finish without it.
 * Before it writes the next job's fields, the caller closes the finished generation (next item past
 * any count), so a claim that read a half-written count cannot succeed either.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sched.h>
#include <time.h>

#define POOL_MAX 64
#define POOL_SPIN_NS 50000

typedef void (*pool_fn)(void *arg, int64_t item, int tid);

static struct {
  int n; /* threads, the caller's included */
  _Atomic uint64_t state;
  _Atomic int64_t done;
  _Atomic int sleepers;
  pool_fn fn;
  void *arg;
  int64_t n_items;
  pthread_mutex_t lock;
  pthread_cond_t wake;
} pool = {.n = 1, .lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

static int64_t pool_now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static inline void pool_pause(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

/* Runs the items of generation `gen` that are left; returns when none is. */
static void pool_drain(uint32_t gen, int tid) {
  uint64_t s = atomic_load(&pool.state);
  for (;;) {
    if ((uint32_t)(s >> 32) != gen || (int64_t)(uint32_t)s >= pool.n_items) return;
    if (!atomic_compare_exchange_weak(&pool.state, &s, s + 1)) continue;
    pool.fn(pool.arg, (int64_t)(uint32_t)s, tid);
    atomic_fetch_add(&pool.done, 1);
    s = atomic_load(&pool.state);
  }
}

static void *pool_worker(void *arg) {
  int tid = (int)(intptr_t)arg;
  uint32_t seen = 0;
  for (;;) {
    int64_t start = pool_now_ns();
    int spins = 0;
    while ((uint32_t)(atomic_load(&pool.state) >> 32) == seen) {
      pool_pause();
      if (++spins % 256 || pool_now_ns() - start < POOL_SPIN_NS) continue;
      pthread_mutex_lock(&pool.lock);
      atomic_fetch_add(&pool.sleepers, 1);
      while ((uint32_t)(atomic_load(&pool.state) >> 32) == seen) pthread_cond_wait(&pool.wake, &pool.lock);
      atomic_fetch_sub(&pool.sleepers, 1);
      pthread_mutex_unlock(&pool.lock);
    }
    seen = (uint32_t)(atomic_load(&pool.state) >> 32);
    pool_drain(seen, tid);
  }
  return NULL;
}

/* Starts the workers once; returns the number of threads the pool has. */
int pool_start(int n) {
  if (pool.n > 1 || n <= 1) return pool.n;
  n = n > POOL_MAX ? POOL_MAX : n;
  for (int i = 1; i < n; i++) {
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 1 << 20);
    int failed = pthread_create(&t, &attr, pool_worker, (void *)(intptr_t)i);
    pthread_attr_destroy(&attr);
    if (failed) break;
    pool.n = i + 1;
  }
  return pool.n;
}

/* fn(arg, item, tid) for every item in [0, n_items), on all the pool's threads; returns when all are
 * done. tid is in [0, pool.n). Not reentrant: one caller thread at a time. */
static void pool_run(pool_fn fn, void *arg, int64_t n_items) {
  if (pool.n == 1 || n_items == 1) {
    for (int64_t i = 0; i < n_items; i++) fn(arg, i, 0);
    return;
  }
  uint32_t gen = (uint32_t)(atomic_load(&pool.state) >> 32) + 1;
  atomic_store(&pool.state, (uint64_t)(gen - 1) << 32 | UINT32_MAX);
  pool.fn = fn;
  pool.arg = arg;
  pool.n_items = n_items;
  atomic_store(&pool.done, 0);
  atomic_store(&pool.state, (uint64_t)gen << 32);
  if (atomic_load(&pool.sleepers) > 0) {
    pthread_mutex_lock(&pool.lock);
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);
  }
  pool_drain(gen, 0);
  for (int spins = 1; atomic_load(&pool.done) < n_items; spins++)
    if (spins % 4096) pool_pause();
    else sched_yield(); /* the thread with the last item may be waiting for this core */
}
