/* A small pool of worker threads for replay's layer kernels (Graph(..., threads=N)).
 * The work is split into parts that write disjoint outputs, each computed exactly as
 * one thread would: the bits do not depend on the number of threads. */
#ifndef CGRAD_THREADS_H
#define CGRAD_THREADS_H

#include <stddef.h>

typedef void (*cg_task)(void *arg, size_t part, size_t n_parts);

/* Run task(arg, part, n_parts) for every part in [0, n_parts), each part on whichever
 * thread claims it first: the calling thread or a worker (started on first use); the
 * caller runs whatever no worker has claimed.  Returns when all are done.  If no worker
 * can be started, or the pool is busy with another caller, every part runs on the
 * calling thread, one after another. */
void cg_run_parts(size_t n_parts, cg_task task, void *arg);

/* For tests: how long the caller spins for the others' parts before it sleeps
 * (default 200 us; 0: it sleeps at once); returns the previous setting. */
double cg_set_caller_spin(double seconds);

#endif
