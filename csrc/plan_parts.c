/* A plan's work split over its threads (Graph(threads=N)), for the passes that are not
 * layer kernels: how many parts a piece of work is worth, and an optimizer's update.
 * Each part writes its own numbers, each computed as one thread computes it: the bits
 * do not depend on the number of parts. */
#include "cgrad.h"
#include "layer_kernels.h"
#include "plan.h"
#include "threads.h"

/* Handing a part to a sleeping worker and waiting for it costs ~20-50 us on this kind of
 * VM (measured: threads=2 made small models 5-20x slower when every kernel was split);
 * 1.5M multiply-adds (the default) are ~60 us of kernel time.  Measured against 4M
 * (benchmarks/threads_vs_one.py, Zen 4): 784-wide steps at batch 32-64 13-23% faster
 * with two threads, the rest level; beside a busy loop, both 0.92-1.0x of one thread. */
static size_t work_per_part = (size_t)3 << 19;

size_t cg_set_work_per_part(size_t work)
{
    size_t old = work_per_part;
    work_per_part = work ? work : 1;
    return old;
}

size_t cg_plan_parts(const cg_plan *p, size_t work)
{
    size_t parts = work / work_per_part;
    return parts < 1 ? 1 : (parts < p->threads ? parts : p->threads);
}

size_t cg_part_start(size_t count, size_t unit, size_t part, size_t n)
{
    size_t units = (count + unit - 1) / unit, start = units * part / n * unit;
    return start < count ? start : count;
}

/* ---- an optimizer's update (cgrad.h: cg_update), both of its passes in parts: a
 * parameter costs about as much as this many of a kernel's multiply-adds (~3-4 ns: a
 * square root and a division); parts at multiples of 64 parameters (optim.c's blocks) */
enum { UPDATE_WORK = 96 };

typedef struct {
    const cg_update *u;
    double *val;
    const double *grad;
    int write;
    long broken[CG_MAX_THREADS];
} update_job;

static void update_part(void *arg, size_t part, size_t n)
{
    update_job *j = arg;
    size_t i0 = cg_part_start(j->u->n, 64, part, n);
    size_t i1 = cg_part_start(j->u->n, 64, part + 1, n);
    if (j->write)
        cg_update_write(j->u, j->val, j->grad, i0, i1);
    else
        j->broken[part] = cg_update_check(j->u, j->val, j->grad, i0, i1);
}

long cg_plan_update(cg_plan *p, const cg_update *u)
{
    update_job job = {u, p->val, p->grad, 0, {0}};
    size_t parts = cg_plan_parts(p, u->n * UPDATE_WORK);
    cg_plan_keep_weights(p);   /* what input gradients not yet computed read */
    cg_run_parts(parts, update_part, &job);
    for (size_t part = 0; part < parts; part++)   /* the first broken, as in one pass */
        if (job.broken[part] >= 0)
            return job.broken[part];
    job.write = 1;
    cg_run_parts(parts, update_part, &job);
    return -1;
}
