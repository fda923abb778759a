/* The worker pool (see threads.h): workers sleep on a condition variable between jobs
 * (no spinning: the cores are shared with the rest of the program), a job is published
 * under the pool's mutex with a new generation number, and every thread, the caller
 * included, claims the job's parts one at a time until none is left; the caller then
 * waits for the parts others are still running.  So a worker that is slow to wake (its
 * core busy with another program) never holds the caller up: the caller runs the parts
 * nobody claimed, and the job takes no longer than on one thread.
 *
 * The caller's wait spins up to 200 us (caller_spin) before it sleeps: a worker's part usually
 * ends within tens of microseconds of the caller's, and waking a sleeping thread costs
 * about as much on a virtual machine (its idle core must be woken).  Measured
 * (`benchmarks/threads_vs_one.py`, Zen 4 VM): two threads against one at
 * MLP(784, [128, 10]) b32 1.30-1.37x (1.13x with a caller that sleeps at once), b128
 * 1.47-1.53x (1.43x); beside a busy loop 0.93-0.97x (0.94-0.99x).  Workers spinning for the next job as
 * well gained more alone (b32 1.43x) but fell to 0.75x beside a busy loop (a spinning
 * worker is a third runnable thread on two cores), and backing off to one thread when
 * a job's timing showed a lost core misfired on this VM's own noise.
 *
 * After fork() the child has no workers: the pool starts afresh (pthread_atfork). */
#define _POSIX_C_SOURCE 200809L
#include "threads.h"

#ifdef _WIN32
double cg_set_caller_spin(double seconds)
{
    (void)seconds;
    return 0.0;
}

void cg_run_parts(size_t n_parts, cg_task task, void *arg)
{
    for (size_t part = 0; part < n_parts; part++)
        task(arg, part, n_parts);
}
#else
#include <pthread.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

enum { MAX_WORKERS = 63 };
static double caller_spin = 200e-6;   /* seconds (tests set 0: cg_set_caller_spin) */

double cg_set_caller_spin(double seconds)
{
    double old = caller_spin;
    caller_spin = seconds < 0.0 ? 0.0 : seconds;
    return old;
}

static double seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static struct {
    pthread_mutex_t lock;
    pthread_cond_t start, done;
    pid_t pid;               /* the process the workers belong to */
    size_t n_workers;        /* started */
    unsigned long generation;
    int busy;                /* a job is running */
    cg_task task;
    void *arg;
    size_t n_parts;
    size_t next_part;        /* the next part nobody has claimed */
    size_t pending;          /* parts not finished yet (read unlocked while the caller spins) */
} pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER,
          0, 0, 0, 0, NULL, NULL, 0, 0, 0};

/* Claim and run the current job's parts until none is left (called and returning with
 * the lock held); signals the caller when the last part finishes. */
static void run_claimed_parts(void)
{
    while (pool.next_part < pool.n_parts) {
        size_t part = pool.next_part++, n_parts = pool.n_parts;
        cg_task task = pool.task;
        void *arg = pool.arg;
        pthread_mutex_unlock(&pool.lock);
        task(arg, part, n_parts);
        pthread_mutex_lock(&pool.lock);
        if (__atomic_sub_fetch(&pool.pending, 1, __ATOMIC_RELEASE) == 0)
            pthread_cond_signal(&pool.done);
    }
}

/* With the lock held: wait for the other threads' parts, spinning up to caller_spin
 * with the lock released before sleeping. */
static void wait_for_parts(void)
{
    if (pool.pending > 0) {
        pthread_mutex_unlock(&pool.lock);
        double until = seconds() + caller_spin;
        for (int i = 0; __atomic_load_n(&pool.pending, __ATOMIC_ACQUIRE) > 0; i++) {
            if ((i & 63) == 63 && seconds() > until)
                break;
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
#endif
        }
        pthread_mutex_lock(&pool.lock);
    }
    while (pool.pending > 0)
        pthread_cond_wait(&pool.done, &pool.lock);
}

/* The generation current when each worker was started: its first job is the next one
 * (the job being published as it starts, if any). */
static unsigned long born[MAX_WORKERS];

static void *work(void *index_as_pointer)
{
    size_t index = (size_t)(uintptr_t)index_as_pointer;
    pthread_mutex_lock(&pool.lock);
    unsigned long seen = born[index];
    for (;;) {
        while (pool.generation == seen)
            pthread_cond_wait(&pool.start, &pool.lock);
        seen = pool.generation;
        run_claimed_parts();
    }
    return NULL;
}

/* In the child of a fork: no workers, and the lock and conditions as new (the parent's
 * waiters are recorded in them; glibc can block on those). */
static void reset_after_fork(void)
{
    pthread_mutex_init(&pool.lock, NULL);
    pthread_cond_init(&pool.start, NULL);
    pthread_cond_init(&pool.done, NULL);
    pool.pid = getpid();
    pool.n_workers = 0;
    pool.busy = 0;
}

static pthread_once_t fork_handler = PTHREAD_ONCE_INIT;

static void register_fork_handler(void)
{
    pthread_atfork(NULL, NULL, reset_after_fork);
}

/* Workers for up to n_parts - 1 parts (under the lock): how many threads can run parts
 * at once, the caller included. */
static size_t enough_workers(size_t n_parts)
{
    if (pool.pid != getpid()) {   /* a fresh process */
        pool.pid = getpid();
        pool.n_workers = 0;
        pool.busy = 0;
    }
    while (pool.n_workers + 1 < n_parts && pool.n_workers < MAX_WORKERS) {
        pthread_t thread;
        pthread_attr_t attr;
        if (pthread_attr_init(&attr) != 0)
            break;
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        born[pool.n_workers] = pool.generation;
        int failed = pthread_create(&thread, &attr, work, (void *)(uintptr_t)pool.n_workers);
        pthread_attr_destroy(&attr);
        if (failed)
            break;
        pool.n_workers++;
    }
    return pool.n_workers + 1;
}

void cg_run_parts(size_t n_parts, cg_task task, void *arg)
{
    int parallel = 0;
    if (n_parts > 1) {
        pthread_once(&fork_handler, register_fork_handler);
        pthread_mutex_lock(&pool.lock);
        if (!pool.busy && enough_workers(n_parts) > 1) {
            parallel = 1;
            pool.busy = 1;
            pool.task = task;
            pool.arg = arg;
            pool.n_parts = n_parts;
            pool.next_part = 0;
            __atomic_store_n(&pool.pending, n_parts, __ATOMIC_RELAXED);
            pool.generation++;
            pthread_cond_broadcast(&pool.start);
            run_claimed_parts();
            wait_for_parts();
            pool.busy = 0;
        }
        pthread_mutex_unlock(&pool.lock);
    }
    if (!parallel)
        for (size_t part = 0; part < n_parts; part++)
            task(arg, part, n_parts);
}
#endif
