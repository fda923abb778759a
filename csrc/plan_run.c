/* Running a plan (replay.c builds it): forward and backward over its schedules, step
 * by step or a layer or a loss row at a time, and input gradients computed late.  The
 * math is op_math.h's, in the order of the node-by-node sweep: the results are a
 * rebuilt graph's, bit for bit. */
#include <stdlib.h>
#include <string.h>
#include "cgrad.h"
#include "node_ops.h"
#include "plan.h"

static cg_status forward_step(cg_plan *p, const cg_step *s)
{
    double *val = p->val;
    const uint32_t *k = p->kid_slots + s->kids;
    int has_bias = (s->flags & CG_FLAG_HAS_BIAS) != 0;
    uint32_t m = cg_step_dot_length(s);
    if (s->op == CG_DOT && s->dense) {
        return cg_dot_values(val + s->w, val + s->x, m, has_bias ? val[s->bias] : 0.0,
                             &val[s->out]);
    }
    if (cg_is_nary(s->op)) {
        double *v = p->scratch;
        for (uint32_t i = 0; i < s->n_kids; i++)
            v[i] = val[k[i]];
        if (s->op == CG_SUM)
            return cg_sum_values(v, s->n_kids, &val[s->out]);
        if (s->op == CG_LOGSUMEXP)
            return cg_logsumexp_values(v, s->n_kids, &val[s->out]);
        return cg_dot_values(v, v + m, m, has_bias ? v[2 * m] : 0.0, &val[s->out]);
    }
    if (CG_OP_INFO[s->op].flags & CG_OPF_NO_MATH) {
        val[s->out] = cg_plan_node(p, s->out)->data;
        return CG_OK;
    }
    return cg_forward_scalar(s->op, s->arg, val[k[0]], cg_is_binary(s->op) ? val[k[1]] : 0.0,
                             &val[s->out]);
}

/* The steps of a layer batch: its dots summed side by side, then its activations.  A
 * sum that is not finite leaves the batch undone (CG_ERR_OVERFLOW), and the caller runs
 * the steps one by one, which tells an overflow from an infinite input. */
static cg_status forward_batch(cg_plan *p, const cg_step *steps, size_t n)
{
    const cg_step *dots[CG_BATCH_DOTS];
    const double *w[CG_BATCH_DOTS];
    double sum[CG_BATCH_DOTS];
    double *val = p->val;
    int count = 0;
    for (size_t i = 0; i < n; i++)
        if (steps[i].op == CG_DOT)
            dots[count++] = &steps[i];
    int has_bias = (dots[0]->flags & CG_FLAG_HAS_BIAS) != 0;
    for (int d = 0; d < CG_BATCH_DOTS; d++) {  /* spare lanes redo the first dot */
        const cg_step *dot = dots[d < count ? d : 0];
        w[d] = val + dot->w;
        sum[d] = has_bias ? val[dot->bias] : 0.0;
    }
    const double *x = val + dots[0]->x;
    uint32_t m = cg_step_dot_length(dots[0]);
    cg_dot_values_side_by_side(w, x, m, sum);
    for (int d = 0; d < count; d++)
        if (!isfinite(sum[d]))
            return CG_ERR_OVERFLOW;
    for (int d = 0; d < count; d++)
        val[dots[d]->out] = sum[d];
    for (size_t i = 0; i < n; i++)
        if (steps[i].op != CG_DOT)
            forward_step(p, &steps[i]);  /* an activation that cannot fail */
    return CG_OK;
}

static cg_status backward_step(cg_plan *p, const cg_step *s);

/* The step of a layer's dot (j, b), as recording made it: a dense dot over the weight
 * row j (its bias after it) and the input row b. */
static cg_step layer_dot(const cg_layer *l, size_t cell)
{
    cg_step s;
    memset(&s, 0, sizeof s);
    uint32_t j = (uint32_t)(cell % l->K), b = (uint32_t)(cell / l->K);
    s.out = l->out[cell];
    s.op = CG_DOT;
    s.flags = (uint8_t)(CG_FLAG_ROWS | (l->has_bias ? CG_FLAG_HAS_BIAS : 0));
    s.dense = 1;
    s.n_kids = 2 * l->m + (uint32_t)(l->has_bias != 0);
    s.w = l->w_run[j];
    s.x = l->x_run[b];
    s.bias = l->w_run[j] + l->m;
    return s;
}

/* A layer's dots one by one, in sweep order (the fallback when the layer meets a
 * number not finite, so that errors are told as they always are); forward, then its
 * activation (whose backward ran before the dots': it never fails). */
static cg_status layer_steps(cg_plan *p, const cg_layer *l, int backward, cg_node **failed)
{
    size_t count = (size_t)l->K * l->B;
    for (size_t k = 0; k < count; k++) {
        cg_step dot = layer_dot(l, l->order[k]);
        cg_status st = backward ? backward_step(p, &dot) : forward_step(p, &dot);
        if (st != CG_OK) {
            *failed = cg_plan_node(p, dot.out);
            return st;
        }
    }
    for (size_t c = 0; c < count && l->act_out && !backward; c++)
        (void)cg_forward_scalar(l->act_op, l->act_arg, p->val[l->out[c]], 0.0,
                                &p->val[l->act_out[c]]);
    return CG_OK;
}

/* A loss row's steps one by one, in the order the sweep (or forward) meets them. */
static cg_status loss_row_steps(cg_plan *p, const cg_loss_row *r, int backward,
                                cg_node **failed)
{
    size_t first = r->l_step - r->m - 2, count = (size_t)r->m + 3;
    for (size_t k = 0; k < count; k++) {
        const cg_step *s = &p->steps[backward ? r->l_step - k : first + k];
        cg_status st = backward ? backward_step(p, s) : forward_step(p, s);
        if (st != CG_OK) {
            *failed = cg_plan_node(p, s->out);
            return st;
        }
    }
    return CG_OK;
}

/* Run a schedule of steps, loss rows and layers; a layer or row that meets a non-finite
 * number is run again step by step, which tells errors as they always are. */
static cg_status run_schedule(cg_plan *p, const cg_entry *schedule, size_t n, int backward,
                              cg_node **failed)
{
    cg_status st = CG_OK;
    for (size_t e = 0; e < n && st == CG_OK; e++) {
        cg_entry entry = schedule[e];
        if (entry >= CG_LOSS_ENTRY) {
            const cg_loss_row *r = &p->loss_rows[entry - CG_LOSS_ENTRY];
            if ((backward ? cg_loss_row_backward(p, r) : cg_loss_row_forward(p, r)) != 0)
                st = loss_row_steps(p, r, backward, failed);
        } else if (entry >= 0) {
            const cg_step *s = &p->steps[entry];
            st = backward ? backward_step(p, s) : forward_step(p, s);
            if (st != CG_OK)
                *failed = cg_plan_node(p, s->out);
        } else {
            cg_layer *l = &p->layers[-1 - entry];
            if ((backward ? cg_layer_backward(p, l) : cg_layer_forward(p, l)) != CG_OK) {
                p->fell_back |= backward;
                l->rows_zero &= !backward;
                st = layer_steps(p, l, backward, failed);  /* input gradients included */
            }
        }
    }
    return st;
}

cg_status cg_plan_forward(cg_plan *p, cg_node **failed)
{
    cg_status st = CG_OK;
    if (p->n_layers)
        return run_schedule(p, p->forward_schedule, p->n_forward_entries, 0, failed);
    for (size_t i = 0; i < p->n_steps; i++) {
        size_t batch = p->steps[i].batch;
        if (batch > 1 && forward_batch(p, &p->steps[i], batch) == CG_OK) {
            i += batch - 1;
            continue;
        }
        st = forward_step(p, &p->steps[i]);
        if (st != CG_OK) {
            *failed = cg_plan_node(p, p->steps[i].out);
            break;
        }
    }
    return st;
}

/* y[i] += x[i] * g for a run (y and x are in different arrays).  Returns 0, or NaN if
 * some contribution was inf or NaN (d - d is NaN exactly then).  The two accumulators
 * are the two lanes of a vector register, so the loop vectorizes without reordering
 * any floating-point sum. */
static double add_scaled(double *restrict y, const double *restrict x, uint32_t m, double g)
{
    double bad0 = 0.0, bad1 = 0.0;
    uint32_t i = 0;
    for (; i + 1 < m; i += 2) {
        double d0 = x[i] * g, d1 = x[i + 1] * g;
        y[i] += d0;
        y[i + 1] += d1;
        bad0 = bad0 + (d0 - d0);
        bad1 = bad1 + (d1 - d1);
    }
    if (i < m) {
        double d = x[i] * g;
        y[i] += d;
        bad0 = bad0 + (d - d);
    }
    return bad0 + bad1;
}

/* As cg_data_finite, over a step's slots: called on the error path only. */
static CG_NOINLINE int step_data_finite(const cg_plan *p, const cg_step *s)
{
    const double *val = p->val;
    if (!isfinite(val[s->out]))
        return 0;
    if (s->op == CG_DOT && s->dense) {
        uint32_t m = cg_step_dot_length(s);
        for (uint32_t i = 0; i < m; i++)
            if (!isfinite(val[s->w + i]) || !isfinite(val[s->x + i]))
                return 0;
        return !(s->flags & CG_FLAG_HAS_BIAS) || isfinite(val[s->bias]);
    }
    for (uint32_t i = 0; i < s->n_kids; i++)
        if (!isfinite(val[p->kid_slots[s->kids + i]]))
            return 0;
    return 1;
}

/* cg_kid_access over lists of a plan's slots */
static inline double slot_value(void *ctx, const void *list, uint32_t i)
{
    return ((cg_plan *)ctx)->val[((const uint32_t *)list)[i]];
}

/* cg_bad_contribution for a slot: its node is looked at only for a number not finite */
static inline int bad_contribution(const cg_plan *p, uint32_t slot, double d)
{
    return !isfinite(d) && !(cg_plan_node(p, slot)->flags & CG_FLAG_CONSTANT);
}

static inline int slot_add(void *ctx, const void *list, uint32_t i, double d)
{
    cg_plan *p = ctx;
    uint32_t slot = ((const uint32_t *)list)[i];
    p->grad[slot] += d;
    return bad_contribution(p, slot, d);
}

static cg_status backward_step(cg_plan *p, const cg_step *s)
{
    double *val = p->val, *grad = p->grad, g = grad[s->out], da, db;
    const uint32_t *k = p->kid_slots + s->kids;
    int has_bias = (s->flags & CG_FLAG_HAS_BIAS) != 0, bad = 0;
    uint32_t m = cg_step_dot_length(s);
    if (CG_OP_INFO[s->op].flags & CG_OPF_NO_MATH)
        return CG_OK;
    if (s->op == CG_DOT && s->dense) {   /* two runs of slots: a vector loop each */
        double nan_if_bad = add_scaled(grad + s->w, val + s->x, m, g)
                          + add_scaled(grad + s->x, val + s->w, m, g);
        bad = nan_if_bad != 0.0;
        if (has_bias)
            grad[s->bias] += g;
    } else if (cg_is_nary(s->op)) {
        cg_nary_kids kids = {k, k, k + m, has_bias ? k + 2 * m : NULL, s->n_kids, m};
        bad = cg_nary_backward(s->op, &kids, val[s->out], g, NULL,
                               (cg_kid_access){p, slot_value, slot_add});
    } else {
        int binary = cg_is_binary(s->op);
        cg_status st = cg_backward_scalar(s->op, s->arg, val[k[0]], binary ? val[k[1]] : 0.0,
                                          val[s->out], g, &da, &db);
        if (st != CG_OK)
            return st;
        grad[k[0]] += da;
        bad |= bad_contribution(p, k[0], da);
        if (binary) {
            grad[k[1]] += db;
            bad |= bad_contribution(p, k[1], db);
        }
    }
    return (bad && isfinite(g) && step_data_finite(p, s)) ? CG_ERR_OVERFLOW : CG_OK;
}

cg_status cg_plan_backward(cg_plan *p, cg_node **failed)
{
    cg_status st = CG_OK;
    size_t nb = p->n_backward;
    if (nb == 0)
        return CG_OK;
    cg_plan_input_grads(p);   /* the last backward's, which this one's add to */
    for (size_t r = 0; r < p->n_interior_runs; r++)
        memset(p->grad + p->interior_runs[2 * r], 0,
               p->interior_runs[2 * r + 1] * sizeof *p->grad);
    p->grad[p->steps[nb - 1].out] = 1.0;
    p->fell_back = 0;
    if (p->n_layers) {
        st = run_schedule(p, p->backward_schedule, p->n_backward_entries, 1, failed);
    } else {
        for (size_t i = nb; i-- > 0;) {
            st = backward_step(p, &p->steps[i]);
            if (st != CG_OK) {
                *failed = cg_plan_node(p, p->steps[i].out);
                break;
            }
        }
    }
    const uint32_t *zeroed = p->fell_back ? p->gradless : p->written;
    size_t n_zeroed = p->fell_back ? p->n_gradless : p->n_written;
    for (size_t i = 0; i < n_zeroed; i++)  /* not computed, whatever path ran */
        p->grad[zeroed[i]] = 0.0;
    return st;
}

void cg_plan_keep_weights(cg_plan *p)
{
    for (size_t i = 0; i < p->n_layers; i++) {
        cg_layer *l = &p->layers[i];
        if (!l->inputs_pending || l->weights_kept)
            continue;
        for (size_t j = 0; j < l->K; j++)
            memcpy(l->kept_w + j * l->m, p->val + l->w_run[j], l->m * sizeof *l->kept_w);
        l->weights_kept = 1;
    }
}

void cg_plan_input_grads(cg_plan *p)
{
    for (size_t i = 0; i < p->n_layers; i++)
        if (p->layers[i].inputs_pending)
            cg_layer_input_grads(p, &p->layers[i]);
}
