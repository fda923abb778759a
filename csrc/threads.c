/* The worker pool (see threads.h): workers sleep on a condition variable between jobs
 * (no spinning: the cores are shared with the rest of the program), a job is published
 * under the pool's mutex with a new generation number, and every thread, the caller
 * included, claims the job's parts one at a time until none is left; the caller then
 * waits for the parts others are still running.  So a worker that is slow to wake (its
 * core busy with another program) never holds the caller up: the caller runs the parts
 * nobody claimed, and the job takes no longer than on one thread.  After fork() the
 * child has no workers: the pool starts afresh (pthread_atfork). */
#define _POSIX_C_SOURCE 200809L
#include "threads.h"

#ifdef _WIN32
void cg_run_parts(size_t n_parts, cg_task task, void *arg)
{
    for (size_t part = 0; part < n_parts; part++)
        task(arg, part, n_parts);
}
#else
#include <pthread.h>
#include <stdint.h>
#include <unistd.h>

enum { MAX_WORKERS = 63 };

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
    size_t pending;          /* parts not finished yet */
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
        if (--pool.pending == 0)
            pthread_cond_signal(&pool.done);
    }
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
            pool.pending = n_parts;
            pool.generation++;
            pthread_cond_broadcast(&pool.start);
            run_claimed_parts();
            while (pool.pending > 0)
                pthread_cond_wait(&pool.done, &pool.lock);
            pool.busy = 0;
        }
        pthread_mutex_unlock(&pool.lock);
    }
    if (!parallel)
        for (size_t part = 0; part < n_parts; part++)
            task(arg, part, n_parts);
}
#endif
