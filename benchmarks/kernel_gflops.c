/* The layer kernels alone, at the shapes of the replay-at-scale workloads: GFLOP/s of
 * the forward dots (cg_dot_tiles) and of a rank update (cg_rank_update: weight
 * gradients; input gradients are the same kernel with the roles swapped), best of 10,
 * thread CPU time, for every copy this CPU runs (exact: portable, AVX2, AVX-512; and
 * exact=False's FMA copies).
 *
 *   gcc -O3 -ffp-contract=off -Icsrc benchmarks/kernel_gflops.c csrc/layer_kernels.c csrc/optim.c \
 *       -lm -o /tmp/kernel_gflops && /tmp/kernel_gflops
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "cpu.h"
#include "layer_kernels.h"

static double cpu_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double uniform(void) { return (double)rand() / RAND_MAX - 0.5; }

static void measure(int exact, size_t K, size_t B, size_t m)
{
    double *W = malloc(K * (m + 1) * sizeof *W), *G = calloc(K * (m + 1), sizeof *G);
    double *X = malloc(B * m * sizeof *X), *out = malloc(K * B * sizeof *out);
    double *coef = malloc(K * B * sizeof *coef), *saved = malloc(K * (m + 1) * sizeof *saved);
    double *panel = malloc(CG_KERNEL_PANEL * sizeof *panel);
    const double **w = malloc(K * sizeof *w), **x = malloc(B * sizeof *x);
    double **grads = malloc(K * sizeof *grads), **saves = malloc(K * sizeof *saves);
    for (size_t i = 0; i < K * (m + 1); i++)
        W[i] = uniform();
    for (size_t i = 0; i < B * m; i++)
        X[i] = uniform();
    for (size_t i = 0; i < K * B; i++)
        coef[i] = uniform();
    for (size_t j = 0; j < K; j++) {
        w[j] = W + j * (m + 1);
        grads[j] = G + j * (m + 1);
        saves[j] = saved + j * (m + 1);
    }
    for (size_t b = 0; b < B; b++)
        x[b] = X + b * m;
    double best_dot = 1e30, best_rank = 1e30;
    for (int r = 0; r < 10; r++) {
        double t = cpu_seconds();
        cg_dot_tiles(exact, w, K, W, x, B, m, out, panel);
        t = cpu_seconds() - t;
        best_dot = t < best_dot ? t : best_dot;
        t = cpu_seconds();
        cg_rank_update(exact, grads, K, x, B, coef, B, 1, m, saves, panel);
        t = cpu_seconds() - t;
        best_rank = t < best_rank ? t : best_rank;
    }
    double flops = 2.0 * (double)K * (double)B * (double)m;
    printf("| %s | %zu | %zu | %zu | %.1f | %.1f |\n", cg_kernel_path(exact), K, B, m,
           flops / best_dot / 1e9, flops / best_rank / 1e9);
    free(W), free(G), free(X), free(out), free(coef), free(saved), free(panel);
    free(w), free(x), free(grads), free(saves);
}

int main(void)
{
    printf("| copy | neurons K | batch B | inputs m | forward dots GFLOP/s "
           "| rank update GFLOP/s |\n");
    printf("|---|---|---|---|---|---|\n");
    const size_t shapes[][3] = {{128, 32, 784}, {128, 128, 784}, {256, 128, 784},
                                {256, 512, 784}, {128, 512, 256}, {10, 512, 128}, {64, 30, 37}, {256, 100, 250}};
    const char *last = "";
    for (int limit = CG_VECTORS_PORTABLE; limit <= CG_VECTORS_AVX512; limit++)
        for (int exact = 1; exact >= 0; exact--) {
            cg_vector_limit = limit;
            if (strcmp(cg_kernel_path(exact), last) == 0)   /* this CPU stops short */
                continue;
            last = cg_kernel_path(exact);
            for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
                measure(exact, shapes[i][0], shapes[i][1], shapes[i][2]);
        }
    return 0;
}
