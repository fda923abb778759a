/* Optimizer updates in C: no Python per parameter.
 *
 * Each update first computes every new value without writing anything, and writes only
 * if no finite parameter would become inf or NaN: a learning rate of 1e308 is refused,
 * not turned into a model of infinities.  The same updates run over nodes (an optimizer
 * on its own) and over a replay plan's arrays (Graph.step), bit for bit alike. */
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

/* Pass one computes every new value into scratch (and stops at the first that breaks),
 * pass two writes them: the math runs once per parameter, and nothing is written if any
 * update is refused. */
static long sgd(cg_node **params, double *val, const double *grad, const uint32_t *slot,
                size_t n, double lr, double momentum, double weight_decay, double *velocity,
                double *scratch)
{
    double *new_data = scratch, *new_velocity = scratch + n;
    for (size_t i = 0; i < n; i++) {
        double data = DATA(i), g = GRAD(i);
        new_velocity[i] = velocity[i];
        new_data[i] = sgd_update(data, g, lr, momentum, weight_decay, &new_velocity[i]);
        if (breaks(data, g, new_data[i]))
            return (long)i;
    }
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
    for (size_t i = 0; i < n; i++) {
        double data = DATA(i), g = GRAD(i);
        new_m[i] = m[i];
        new_v[i] = v[i];
        new_data[i] = adam_update(data, g, r, &new_m[i], &new_v[i]);
        if (breaks(data, g, new_data[i]))
            return (long)i;
    }
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
