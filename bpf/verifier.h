/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Hints for the BPF verifier, which checks the compiled code: bounds it must
 * see kept, bounds it must not trust dropped.
 * Part of uringwatch.bpf.c's one translation unit; included there only.
 */
#ifndef URINGWATCH_VERIFIER_H
#define URINGWATCH_VERIFIER_H

/* Makes the compiler keep a bounds check the verifier must see. */
#define keep(var) asm volatile("" : "+r"(var))

/* Makes the verifier forget what it knows of var (6.12 and older do not
 * track division), so the bounds check that follows starts clean. */
#define forget(var) asm volatile("%0 /= 1" : "+r"(var))

#endif
