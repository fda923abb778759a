/* A small pool of worker threads for replay's layer kernels (Graph(..., threads=N)).
 * The work is split into parts that write disjoint outputs, each computed exactly as
 * one thread would: the bits do not depend on the number of threads. */
#ifndef CGRAD_THREADS_H
#define CGRAD_THREADS_H

#include <stddef.h>

typedef void (*cg_task)(void *arg, size_t part, size_t n_parts);

/* Run task(arg, part, n_parts) for every part in [0, n_parts): part 0 on the calling
 * thread, the others on workers (started on first use).  Returns when all are done.  If
 * workers cannot be started, or the pool is busy with another caller, every part runs
 * on the calling thread, one after another. */
void cg_run_parts(size_t n_parts, cg_task task, void *arg);

#endif
