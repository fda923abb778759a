/* Optimizer updates in C: no Python per parameter.
 *
 * Each update first computes every new value without writing anything, and writes only
 * if no finite parameter would become inf or NaN: a learning rate of 1e308 is refused,
 * not turned into a model of infinities.  The same updates run over nodes (an optimizer
 * on its own) and over a replay plan's arrays (Graph.step), bit for bit alike. */
#include <float.h>
#include <math.h>
#include "cgrad.h"
#include "cpu.h"

#ifdef CG_X86_COPIES
int cg_vector_limit = CG_VECTORS_AVX512;
#endif

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

/* Adam's moments, then the new value: g is the gradient with weight decay added. */
#define ADAM_MOMENTS(r, g, m, v)                                                      \
    do {                                                                              \
        (m) = (r).beta1 * (m) + (1.0 - (r).beta1) * (g);                              \
        (v) = (r).beta2 * (v) + (1.0 - (r).beta2) * (g) * (g);                        \
    } while (0)
#define ADAM_STEP(r, data, m, v) ((data) - (r).step_size * (m) / (sqrt(v) / (r).bias2_sqrt + (r).eps))

/* New values of a block of parameters (data d, gradients g with decay added) into out;
 * their moments are not written.  Whether some new value is not finite. */
#define ADAM_BLOCK_BODY                                                               \
    int not_finite = 0;                                                               \
    for (size_t k = 0; k < len; k++) {                                                \
        double mk = m[k], vk = v[k];                                                  \
        ADAM_MOMENTS(r, g[k], mk, vk);                                                \
        out[k] = ADAM_STEP(r, d[k], mk, vk);                                          \
    }                                                                                 \
    for (size_t k = 0; k < len; k++)                                                  \
        not_finite |= !(fabs(out[k]) <= DBL_MAX);                                     \
    return not_finite;

static int adam_block_baseline(const double *restrict d, const double *restrict g,
                               const double *restrict m, const double *restrict v,
                               size_t len, adam_rates r, double *restrict out)
{
    ADAM_BLOCK_BODY
}

#ifdef CG_X86_COPIES
CG_TARGET_AVX2 static int adam_block_avx2(const double *restrict d, const double *restrict g,
                                          const double *restrict m, const double *restrict v,
                                          size_t len, adam_rates r, double *restrict out)
{
    ADAM_BLOCK_BODY
}
#endif

static int adam_block(const double *d, const double *g, const double *m, const double *v,
                      size_t len, adam_rates r, double *out)
{
#ifdef CG_X86_COPIES
    if (cg_has_avx2())
        return adam_block_avx2(d, g, m, v, len, r, out);
#endif
    return adam_block_baseline(d, g, m, v, len, r, out);
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

/* Pass one keeps each parameter's new value and its decayed gradient in scratch; pass
 * two writes the values and recomputes the moments from the gradients kept (the same
 * arithmetic, so the same bits: cheaper than keeping the moments too). */
static long adam(cg_node **params, double *val, const double *grad, const uint32_t *slot,
                 size_t n, const adam_rates *r, double *m, double *v, double *scratch)
{
    double *new_data = scratch, *decayed = scratch + n;
    adam_rates rates = *r;
    FOR_EACH_BLOCK(n, i0, len, d, g, {
        for (size_t k = 0; k < len; k++)
            decayed[i0 + k] = rates.weight_decay != 0.0 ? g[k] + rates.weight_decay * d[k]
                                                        : g[k];
        int not_finite = adam_block(d, decayed + i0, m + i0, v + i0, len, rates,
                                    new_data + i0);
        long broken = first_broken(i0, len, d, g, new_data + i0, not_finite);
        if (broken >= 0)
            return broken;
    })
    for (size_t i = 0; i < n; i++) {
        SET(i, new_data[i]);
        ADAM_MOMENTS(rates, decayed[i], m[i], v[i]);
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
