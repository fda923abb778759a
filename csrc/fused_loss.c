/* Softmax cross-entropy rows of a plan, each run as one step.
 *
 * cgrad.losses.cross_entropy over a row of targets t and logits z builds, per example,
 *     d = dot(t, z),  mp = d * c  (c = -1: -d),  a_j = z_j + mp (j < m),  l = logsumexp(a)
 * m + 3 steps.  Run one by one, each goes through the generic step loop, reading its
 * step record and kid list: after the layer kernels have streamed megabytes these are
 * cache misses.  Here a row's steps run as one, from one compact record: the same
 * functions on the same numbers in the same order, every slot written as its step
 * writes it, so the same bits.  A row that meets a number not finite runs its steps one
 * by one instead (plan_run.c), which reports errors as they always are.
 *
 * Running a row's steps together moves them within the schedule (sorted by level: every
 * row's dot comes before any row's negation, and so on).  That changes no number when
 * nothing outside the row reads what the row reads or computes, which is checked here
 * by counting readers: then each slot's contributions still arrive in the same order. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "op_math.h"
#include "plan.h"

/* Rows wider than this run step by step (the row's numbers sit in arrays on the stack;
 * mp's m readers are counted in a byte). */
enum { MAX_CLASSES = 128 };

/* Whether steps l - m - 2 .. l are a row's d, mp, a_0 .. a_{m-1}, l (the order recording
 * lists them in); fills r's slots (but `at`). */
static int is_row(const cg_plan *p, size_t l, cg_loss_row *r)
{
    const cg_step *L = &p->steps[l];
    uint32_t m = L->n_kids;
    if (L->op != CG_LOGSUMEXP || L->batch == CG_IN_LAYER || m < 1 || m > MAX_CLASSES
        || l < (size_t)m + 2)
        return 0;
    const cg_step *D = &p->steps[l - m - 2], *MP = &p->steps[l - m - 1];
    if (D->op != CG_DOT || D->batch == CG_IN_LAYER || (D->flags & CG_FLAG_HAS_BIAS)
        || cg_step_dot_length(D) != m || MP->op != CG_MUL || MP->n_kids != 2
        || cg_step_kid(p, MP, 0) != D->out)
        return 0;
    for (uint32_t j = 0; j < m; j++) {
        const cg_step *A = &p->steps[l - m + j];
        if (A->op != CG_ADD || cg_step_kid(p, L, j) != A->out
            || cg_step_kid(p, A, 0) != cg_step_kid(p, D, m + j)
            || cg_step_kid(p, A, 1) != MP->out)
            return 0;
    }
    r->m = m;
    r->d = D->out;
    r->mp = MP->out;
    r->c = cg_step_kid(p, MP, 1);
    r->l = L->out;
    r->l_step = (uint32_t)l;
    return 1;
}

static void count(uint8_t *reads, uint32_t slot)
{
    if (reads[slot] < UINT8_MAX)
        reads[slot]++;
}

/* How many steps and layers read each slot (saturating at 255). */
static uint8_t *count_readers(const cg_plan *p)
{
    uint8_t *reads = calloc(p->n_slots + 1, 1);
    if (!reads)
        return NULL;
    for (size_t e = 0; e < p->n_forward_entries; e++) {
        cg_entry entry = p->forward_schedule[e];
        if (entry < 0) {
            const cg_layer *l = &p->layers[-1 - entry];
            for (uint32_t j = 0; j < l->K; j++)
                for (uint32_t i = 0; i < l->m + (uint32_t)(l->has_bias != 0); i++)
                    count(reads, l->w_run[j] + i);
            for (uint32_t b = 0; b < l->B; b++)
                for (uint32_t i = 0; i < l->m; i++)
                    count(reads, l->x_run[b] + i);
            continue;
        }
        const cg_step *s = &p->steps[entry];
        if (CG_OP_INFO[s->op].flags & CG_OPF_NO_MATH)
            continue;   /* rows, opaque nodes: they neither read numbers nor pass gradients */
        for (uint32_t i = 0; i < s->n_kids; i++)
            count(reads, cg_step_kid(p, s, i));
    }
    return reads;
}

/* Whether the row's slots are read by its own steps alone, each as often as the row
 * reads it (so t, z and c are also distinct, and shared with no other row). */
static int row_alone(const cg_plan *p, const cg_loss_row *r, const uint8_t *reads)
{
    const uint32_t *t = p->loss_slots + r->at, *z = t + r->m, *a = z + r->m;
    if (reads[r->d] != 1 || reads[r->mp] != r->m || reads[r->c] != 1)
        return 0;
    for (uint32_t j = 0; j < r->m; j++)
        if (reads[t[j]] != 1 || reads[z[j]] != 2 || reads[a[j]] != 1)
            return 0;
    return 1;
}

/* Each plain step's place in a schedule rewritten: a row's entry where its first step
 * stood (d forward, l backward), its other steps dropped. */
static void rewrite(cg_entry *schedule, size_t *n, const uint32_t *row_of, const cg_plan *p,
                    int backward)
{
    size_t kept = 0;
    for (size_t e = 0; e < *n; e++) {
        cg_entry entry = schedule[e];
        if (entry >= 0 && row_of[entry]) {
            const cg_loss_row *r = &p->loss_rows[row_of[entry] - 1];
            size_t first = backward ? r->l_step : r->l_step - r->m - 2;
            if ((size_t)entry != first)
                continue;
            entry = CG_LOSS_ENTRY + (cg_entry)(row_of[entry] - 1);
        }
        schedule[kept++] = entry;
    }
    *n = kept;
}

size_t cg_plan_loss_row_count(const cg_plan *p)
{
    return p->n_loss_rows;
}

int cg_plan_fuse_losses(cg_plan *p)
{
    size_t n_rows = 0, n_slots = 0;
    cg_loss_row r;
    if (!p->n_layers)
        return 0;
    for (size_t e = 0; e < p->n_forward_entries; e++) {
        cg_entry entry = p->forward_schedule[e];
        if (entry >= 0 && is_row(p, (size_t)entry, &r)) {
            n_rows++;
            n_slots += 3 * (size_t)r.m;
        }
    }
    if (!n_rows)
        return 0;
    int result = -1;
    uint8_t *reads = NULL;
    uint32_t *row_of = NULL;
    p->loss_rows = malloc(n_rows * sizeof *p->loss_rows);
    p->loss_slots = malloc(n_slots * sizeof *p->loss_slots);
    if (!p->loss_rows || !p->loss_slots)
        goto done;
    size_t at = 0;
    for (size_t e = 0; e < p->n_forward_entries; e++) {
        cg_entry entry = p->forward_schedule[e];
        if (entry < 0 || !is_row(p, (size_t)entry, &r))
            continue;
        r.at = at;
        const cg_step *D = &p->steps[r.l_step - r.m - 2];
        for (uint32_t j = 0; j < r.m; j++) {
            p->loss_slots[at + j] = cg_step_kid(p, D, j);
            p->loss_slots[at + r.m + j] = cg_step_kid(p, D, r.m + j);
            p->loss_slots[at + 2 * r.m + j] = p->steps[r.l_step - r.m + j].out;
        }
        at += 3 * (size_t)r.m;
        p->loss_rows[p->n_loss_rows++] = r;
    }
    reads = count_readers(p);
    row_of = calloc(p->n_steps + 1, sizeof *row_of);   /* row + 1 of each step in one */
    if (!reads || !row_of)
        goto done;
    size_t kept = 0;
    for (size_t i = 0; i < p->n_loss_rows; i++) {
        r = p->loss_rows[i];
        if (!row_alone(p, &r, reads))
            continue;
        p->loss_rows[kept++] = r;
        for (size_t s = r.l_step - r.m - 2; s <= r.l_step; s++)
            row_of[s] = (uint32_t)kept;
    }
    p->n_loss_rows = kept;
    rewrite(p->forward_schedule, &p->n_forward_entries, row_of, p, 0);
    if (p->backward_schedule)
        rewrite(p->backward_schedule, &p->n_backward_entries, row_of, p, 1);
    result = 0;
done:
    free(reads);
    free(row_of);
    if (result < 0 || !p->n_loss_rows) {
        free(p->loss_rows);
        free(p->loss_slots);
        p->loss_rows = NULL;
        p->loss_slots = NULL;
        p->n_loss_rows = 0;
    }
    return result;
}

int cg_loss_row_forward(cg_plan *p, const cg_loss_row *r)
{
    double *val = p->val, t[MAX_CLASSES], z[MAX_CLASSES], a[MAX_CLASSES], d, mp, l;
    const uint32_t *ts = p->loss_slots + r->at, *zs = ts + r->m, *as = zs + r->m;
    uint32_t m = r->m;
    for (uint32_t j = 0; j < m; j++) {
        t[j] = val[ts[j]];
        z[j] = val[zs[j]];
    }
    cg_status st = cg_dot_values(t, z, m, 0.0, &d);
    if (st == CG_OK)
        st = cg_forward_scalar(CG_MUL, 0.0, d, val[r->c], &mp);
    for (uint32_t j = 0; j < m && st == CG_OK; j++)
        st = cg_forward_scalar(CG_ADD, 0.0, z[j], mp, &a[j]);
    if (st != CG_OK)
        return -1;
    (void)cg_logsumexp_values(a, m, &l);   /* never fails */
    val[r->d] = d;
    val[r->mp] = mp;
    for (uint32_t j = 0; j < m; j++)
        val[as[j]] = a[j];
    val[r->l] = l;
    return 0;
}

int cg_loss_row_backward(cg_plan *p, const cg_loss_row *r)
{
    double *val = p->val, *grad = p->grad, ga[MAX_CLASSES], gz[MAX_CLASSES], gt[MAX_CLASSES];
    const uint32_t *ts = p->loss_slots + r->at, *zs = ts + r->m, *as = zs + r->m;
    uint32_t m = r->m;
    double g = grad[r->l], out = val[r->l], gmp = grad[r->mp], dz, dmp;
    double bad = 0.0;   /* NaN once some contribution is inf or NaN (x - x is NaN then) */
    /* l: each a_j += softmax_j * g (cg_nary_backward's logsumexp) */
    for (uint32_t j = 0; j < m; j++) {
        double d = cg_logsumexp_partial(val[as[j]], out) * g;
        ga[j] = grad[as[j]] + d;
        bad = bad + (d - d);
        gz[j] = grad[zs[j]];
    }
    /* a_j = z_j + mp, swept from the last: both gain a_j's gradient */
    for (uint32_t j = m; j-- > 0;) {
        cg_add_mul_partials(0, val[zs[j]], val[r->mp], ga[j], &dz, &dmp);
        gz[j] += dz;
        gmp += dmp;
        bad = bad + (dz - dz) + (dmp - dmp);
    }
    /* mp = d * c */
    double dd, dc;
    cg_add_mul_partials(1, val[r->d], val[r->c], gmp, &dd, &dc);
    double gd = grad[r->d] + dd, gc = grad[r->c] + dc;
    bad = bad + (dd - dd) + (dc - dc);
    /* d = dot(t, z): each t_j += z_j * gd, each z_j += t_j * gd */
    for (uint32_t j = 0; j < m; j++) {
        double dt = val[zs[j]] * gd, dz2 = val[ts[j]] * gd;
        gt[j] = grad[ts[j]] + dt;
        gz[j] += dz2;
        bad = bad + (dt - dt) + (dz2 - dz2);
    }
    if (bad != 0.0)
        return -1;   /* the steps tell what overflowed, or that nothing did */
    for (uint32_t j = 0; j < m; j++) {
        grad[as[j]] = ga[j];
        grad[zs[j]] = gz[j];
        grad[ts[j]] = gt[j];
    }
    grad[r->mp] = gmp;
    grad[r->d] = gd;
    grad[r->c] = gc;
    return 0;
}
