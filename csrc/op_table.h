/* The op table expanded (ops.def): the op codes, their names, arity and flags, and
 * the status an op's math returns.  Plain C99; nothing about nodes or graphs. */
#ifndef CGRAD_OP_TABLE_H
#define CGRAD_OP_TABLE_H

/* The ops: one row each in ops.def, the one place an op is defined (its names, how
 * many kids it takes, its flags, and for a one-input op its math).  Codes are internal:
 * pickles store the key. */
typedef enum {
#define CG_OP(NAME, key, symbol, min_kids, max_kids, flags, derivative) CG_##NAME,
#define CG_UNARY(NAME, key, symbol, flags, domain, forward, backward, py_forward, derivative) \
    CG_##NAME,
#include "ops.def"
    CG_N_OPS
} cg_op;

enum {
    CG_OPF_CANNOT_FAIL = 1,  /* finite in, finite value and contributions out */
    CG_OPF_NO_MATH = 2,      /* nothing to compute or differentiate (leaf, row, opaque) */
    CG_OPF_GIVEN_DATA = 4,   /* data given when built, never computed (local) */
    CG_OPF_HAS_ARG = 8,      /* the node's `arg` word holds the op's constant */
    CG_OPF_UNARY_MATH = 16   /* a CG_UNARY row: its math is in ops.def */
};

typedef struct {
    const char *key;         /* stable name: what pickles store */
    const char *symbol;      /* what Value._op shows */
    int min_kids, max_kids;  /* max -1: any number */
    unsigned flags;          /* CG_OPF_* */
    const char *py_forward;  /* the value in Python (NULL: written by hand) */
    const char *derivative;  /* the derivative as a recipe over ops ("": none) */
} cg_op_info;

static const cg_op_info CG_OP_INFO[CG_N_OPS] = {
#define CG_OP(NAME, key, symbol, min_kids, max_kids, flags, derivative) \
    [CG_##NAME] = {key, symbol, min_kids, max_kids, flags, NULL, derivative},
#define CG_UNARY(NAME, key, symbol, flags, domain, forward, backward, py_forward, derivative) \
    [CG_##NAME] = {key, symbol, 1, 1, (flags) | CG_OPF_UNARY_MATH, py_forward, derivative},
#include "ops.def"
};

typedef enum {
    CG_OK = 0,
    CG_ERR_OVERFLOW,   /* a finite input gave an infinite or NaN result */
    CG_ERR_ZERODIV,    /* zero to a negative power */
    CG_ERR_DOMAIN,     /* log of a non-positive number, fractional power of a negative */
    CG_ERR_NOMEM,
    CG_ERR_PYTHON      /* a Python `_backward` raised: its exception is set */
} cg_status;

#endif
