/* Optimizer updates in C: no Python per parameter.
 *
 * Each update first computes every new value without writing anything, and writes only
 * if no finite parameter would become inf or NaN: a learning rate of 1e308 is refused,
 * not turned into a model of infinities.  The same updates run over nodes (an optimizer
 * on its own) and over a replay plan's arrays (Graph.step), bit for bit alike. */
#include <float.h>
#include <math.h>
#include "cgrad.h"

/* A finite parameter with a finite gradient that would not stay finite. */
static int breaks(double data, double grad, double updated)
{
    return !isfinite(updated) && isfinite(data) && isfinite(grad);
}

static double sgd_update(double data, double grad, double lr, double momentum,
                         double weight_decay, double *velocity)
{
    double g = grad;
    if (weight_decay != 0.0)
        g = g + weight_decay * data;
    if (momentum != 0.0) {
        *velocity = momentum * *velocity + g;
        g = *velocity;
    }
    return data - lr * g;
}

typedef struct {
    double beta1, beta2, eps, weight_decay, step_size, bias2_sqrt;
} adam_rates;

static adam_rates rates(double lr, double beta1, double beta2, double eps,
                        double weight_decay, long step)
{
    return (adam_rates){beta1, beta2, eps, weight_decay,
                        lr / (1.0 - pow(beta1, (double)step)),
                        sqrt(1.0 - pow(beta2, (double)step))};
}

static double adam_update(double data, double grad, const adam_rates *r, double *m, double *v)
{
    double g = grad;
    if (r->weight_decay != 0.0)
        g = g + r->weight_decay * data;
    *m = r->beta1 * *m + (1.0 - r->beta1) * g;
    *v = r->beta2 * *v + (1.0 - r->beta2) * g * g;
    return data - r->step_size * *m / (sqrt(*v) / r->bias2_sqrt + r->eps);
}

/* The two storages: parameter i's data and grad live in a node, or in slot[i] of a
 * plan's arrays. */
#define DATA(i) (params ? params[i]->data : val[slot[i]])
#define GRAD(i) (params ? params[i]->grad : grad[slot[i]])
#define SET(i, x) (*(params ? &params[i]->data : &val[slot[i]]) = (x))

/* Pass one computes every new value into scratch, BLOCK parameters at a time: their
 * data and grads gathered first, so that the math runs as vector code (one sqrt and one
 * division per four parameters), and a block with a non-finite result checked exactly.
 * Pass two writes them: nothing is written if any update is refused. */
enum { BLOCK = 64 };

#define FOR_EACH_BLOCK(n, i0, len, d, g, ...)                                          \
    for (size_t i0 = 0; i0 < (n); i0 += BLOCK) {                                      \
        size_t len = (n) - i0 < BLOCK ? (n) - i0 : BLOCK;                             \
        double d[BLOCK], g[BLOCK];                                                    \
        for (size_t k = 0; k < len; k++) {                                            \
            d[k] = DATA(i0 + k);                                                      \
            g[k] = GRAD(i0 + k);                                                      \
        }                                                                             \
        __VA_ARGS__                                                                   \
    }

/* Whether some result of the block broke a parameter: its index, or -1. */
static long first_broken(size_t i0, size_t len, const double *d, const double *g,
                         const double *updated, int any_not_finite)
{
    if (any_not_finite)
        for (size_t k = 0; k < len; k++)
            if (breaks(d[k], g[k], updated[k]))
                return (long)(i0 + k);
    return -1;
}

static long sgd(cg_node **params, double *val, const double *grad, const uint32_t *slot,
                size_t n, double lr, double momentum, double weight_decay, double *velocity,
                double *scratch)
{
    double *new_data = scratch, *new_velocity = scratch + n;
    FOR_EACH_BLOCK(n, i0, len, d, g, {
        int not_finite = 0;
        double *restrict nd = new_data + i0, *restrict nv = new_velocity + i0;
        const double *restrict v0 = velocity + i0;
        for (size_t k = 0; k < len; k++) {
            double vk = v0[k];
            nd[k] = sgd_update(d[k], g[k], lr, momentum, weight_decay, &vk);
            nv[k] = vk;
        }
        for (size_t k = 0; k < len; k++)
            not_finite |= !(fabs(nd[k]) <= DBL_MAX);
        long broken = first_broken(i0, len, d, g, new_data + i0, not_finite);
        if (broken >= 0)
            return broken;
    })
    for (size_t i = 0; i < n; i++) {
        SET(i, new_data[i]);
        velocity[i] = new_velocity[i];
    }
    return -1;
}

static long adam(cg_node **params, double *val, const double *grad, const uint32_t *slot,
                 size_t n, const adam_rates *r, double *m, double *v, double *scratch)
{
    double *new_data = scratch, *new_m = scratch + n, *new_v = scratch + 2 * n;
    adam_rates rates = *r;
    FOR_EACH_BLOCK(n, i0, len, d, g, {
        int not_finite = 0;
        double *restrict nd = new_data + i0, *restrict nm = new_m + i0,
               *restrict nv = new_v + i0;
        const double *restrict m0 = m + i0, *restrict v0 = v + i0;
        for (size_t k = 0; k < len; k++) {
            double mk = m0[k], vk = v0[k];
            nd[k] = adam_update(d[k], g[k], &rates, &mk, &vk);
            nm[k] = mk;
            nv[k] = vk;
        }
        for (size_t k = 0; k < len; k++)
            not_finite |= !(fabs(nd[k]) <= DBL_MAX);
        long broken = first_broken(i0, len, d, g, new_data + i0, not_finite);
        if (broken >= 0)
            return broken;
    })
    for (size_t i = 0; i < n; i++) {
        SET(i, new_data[i]);
        m[i] = new_m[i];
        v[i] = new_v[i];
    }
    return -1;
}

long cg_sgd_step(cg_node **params, size_t n, double lr, double momentum,
                 double weight_decay, double *velocity)
{
    return sgd(params, NULL, NULL, NULL, n, lr, momentum, weight_decay, velocity,
               velocity + n);
}

long cg_sgd_step_slots(double *val, const double *grad, const uint32_t *slots, size_t n,
                       double lr, double momentum, double weight_decay, double *velocity)
{
    return sgd(NULL, val, grad, slots, n, lr, momentum, weight_decay, velocity, velocity + n);
}

long cg_adam_step(cg_node **params, size_t n, double lr, double beta1, double beta2,
                  double eps, double weight_decay, long step, double *m, double *v)
{
    adam_rates r = rates(lr, beta1, beta2, eps, weight_decay, step);
    return adam(params, NULL, NULL, NULL, n, &r, m, v, v + n);
}

long cg_adam_step_slots(double *val, const double *grad, const uint32_t *slots, size_t n,
                        double lr, double beta1, double beta2, double eps,
                        double weight_decay, long step, double *m, double *v)
{
    adam_rates r = rates(lr, beta1, beta2, eps, weight_decay, step);
    return adam(NULL, val, grad, slots, n, &r, m, v, v + n);
}

void cg_zero_grads(cg_node **params, size_t n)
{
    for (size_t i = 0; i < n; i++)
        params[i]->grad = 0.0;
}
