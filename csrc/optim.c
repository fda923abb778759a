/* Optimizer updates in C: no Python per parameter.
 *
 * Each update first computes every new value without writing anything, and writes only
 * if no finite parameter would become inf or NaN: a learning rate of 1e308 is refused,
 * not turned into a model of infinities. */
#include <math.h>
#include "cgrad.h"

/* A finite parameter with a finite gradient that would not stay finite. */
static int breaks(const cg_node *p, double updated)
{
    return !isfinite(updated) && isfinite(p->data) && isfinite(p->grad);
}

static double sgd_update(const cg_node *p, double lr, double momentum, double weight_decay,
                         double *velocity)
{
    double g = p->grad;
    if (weight_decay != 0.0)
        g = g + weight_decay * p->data;
    if (momentum != 0.0) {
        *velocity = momentum * *velocity + g;
        g = *velocity;
    }
    return p->data - lr * g;
}

long cg_sgd_step(cg_node **params, size_t n, double lr, double momentum,
                 double weight_decay, double *velocity)
{
    for (size_t i = 0; i < n; i++) {
        double v = velocity[i];
        if (breaks(params[i], sgd_update(params[i], lr, momentum, weight_decay, &v)))
            return (long)i;
    }
    for (size_t i = 0; i < n; i++)
        params[i]->data = sgd_update(params[i], lr, momentum, weight_decay, &velocity[i]);
    return -1;
}

typedef struct {
    double beta1, beta2, eps, weight_decay, step_size, bias2_sqrt;
} adam_rates;

static double adam_update(const cg_node *p, const adam_rates *r, double *m, double *v)
{
    double g = p->grad;
    if (r->weight_decay != 0.0)
        g = g + r->weight_decay * p->data;
    *m = r->beta1 * *m + (1.0 - r->beta1) * g;
    *v = r->beta2 * *v + (1.0 - r->beta2) * g * g;
    return p->data - r->step_size * *m / (sqrt(*v) / r->bias2_sqrt + r->eps);
}

long cg_adam_step(cg_node **params, size_t n, double lr, double beta1, double beta2,
                  double eps, double weight_decay, long step, double *m, double *v)
{
    adam_rates r = {beta1, beta2, eps, weight_decay, lr / (1.0 - pow(beta1, (double)step)),
                    sqrt(1.0 - pow(beta2, (double)step))};
    for (size_t i = 0; i < n; i++) {
        double mi = m[i], vi = v[i];
        if (breaks(params[i], adam_update(params[i], &r, &mi, &vi)))
            return (long)i;
    }
    for (size_t i = 0; i < n; i++)
        params[i]->data = adam_update(params[i], &r, &m[i], &v[i]);
    return -1;
}

void cg_zero_grads(cg_node **params, size_t n)
{
    for (size_t i = 0; i < n; i++)
        params[i]->grad = 0.0;
}
