/* Optimizer updates in C: no Python per parameter. */
#include <math.h>
#include "cgrad.h"

void cg_sgd_step(cg_node **params, size_t n, double lr, double momentum,
                 double weight_decay, double *velocity)
{
    for (size_t i = 0; i < n; i++) {
        cg_node *p = params[i];
        double g = p->grad;
        if (weight_decay != 0.0)
            g = g + weight_decay * p->data;
        if (momentum != 0.0) {
            velocity[i] = momentum * velocity[i] + g;
            g = velocity[i];
        }
        p->data -= lr * g;
    }
}

void cg_adam_step(cg_node **params, size_t n, double lr, double beta1, double beta2,
                  double eps, double weight_decay, long step, double *m, double *v)
{
    double bias1 = 1.0 - pow(beta1, (double)step);
    double bias2_sqrt = sqrt(1.0 - pow(beta2, (double)step));
    double step_size = lr / bias1;
    for (size_t i = 0; i < n; i++) {
        cg_node *p = params[i];
        double g = p->grad;
        if (weight_decay != 0.0)
            g = g + weight_decay * p->data;
        m[i] = beta1 * m[i] + (1.0 - beta1) * g;
        v[i] = beta2 * v[i] + (1.0 - beta2) * g * g;
        p->data -= step_size * m[i] / (sqrt(v[i]) / bias2_sqrt + eps);
    }
}

void cg_zero_grads(cg_node **params, size_t n)
{
    for (size_t i = 0; i < n; i++)
        params[i]->grad = 0.0;
}
