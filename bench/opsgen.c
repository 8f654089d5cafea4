// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * opsgen: io_uring operations for the benchmark suite, through raw
 * syscalls (no liburing): batches of SQEs submitted with io_uring_enter,
 * each batch waited for, timed with CLOCK_MONOTONIC around the loop only.
 *
 *   opsgen [-n OPS] [-b BATCH] [-g] nop|read|pread|readfixed|openat
 *
 * nop: IORING_OP_NOP. read: a 64-byte IORING_OP_READ from /dev/zero
 * through registered-file slot 0 (IOSQE_FIXED_FILE); pread: the same READ
 * through its plain fd (the tracer looks its file up at each submission).
 * readfixed: the same as IORING_OP_READ_FIXED into registered buffer 0
 * through slot 0. openat: an
 * IORING_OP_OPENAT of /dev/null into fixed-file slot 0, each replacing
 * the last (no fd to close: the ring does it). -g waits for a byte
 * on stdin first, so a tracer can be attached to this process. Prints one
 * JSON line: operations timed and ns per operation.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define NR_io_uring_setup 425
#define NR_io_uring_enter 426
#define NR_io_uring_register 427
#define OFF_SQ_RING 0ULL
#define OFF_CQ_RING 0x8000000ULL
#define OFF_SQES 0x10000000ULL
#define ENTER_GETEVENTS 1
#define REGISTER_BUFFERS 0
#define REGISTER_FILES 2
#define OP_NOP 0
#define OP_READ 22
#define OP_READ_FIXED 4
#define OP_OPENAT 18
#define SQE_FIXED_FILE 1
#define WARMUP 4096

struct sqe {                  /* struct io_uring_sqe, the fields used */
	uint8_t opcode, flags;
	uint16_t ioprio;
	int32_t fd;
	uint64_t off, addr;
	uint32_t len, rw_flags;
	uint64_t user_data;
	uint64_t pad[3];
};

struct params {               /* struct io_uring_params */
	uint32_t sq_entries, cq_entries, flags, sq_thread_cpu, sq_thread_idle;
	uint32_t features, wq_fd, resv[3];
	uint32_t sq_off[10], cq_off[10];
};

static uint32_t *sq_tail, *sq_array, *cq_head, *cq_tail;
static struct sqe *sqes;
static int ring_fd, plain_fd = -1;
static char buf[64];

static void die(const char *what)
{
	fprintf(stderr, "opsgen: %s: %s\n", what, strerror(errno));
	exit(1);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static void *map(size_t len, uint64_t off)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
		       ring_fd, off);

	if (p == MAP_FAILED)
		die("mmap");
	return p;
}

/* The ring, its mappings, and batch SQEs that never change. */
enum mode { NOP, READ, OPENAT, READ_FIXED, PREAD };

static void setup(unsigned batch, enum mode mode)
{
	struct params p = { 0 };
	char *sq, *cq;
	unsigned i;

	ring_fd = syscall(NR_io_uring_setup, batch, &p);
	if (ring_fd < 0)
		die("io_uring_setup");
	sq = map(p.sq_off[6] + p.sq_entries * 4, OFF_SQ_RING);
	cq = map(p.cq_off[5] + p.cq_entries * 16, OFF_CQ_RING);
	sqes = map(p.sq_entries * sizeof(struct sqe), OFF_SQES);
	sq_tail = (uint32_t *)(sq + p.sq_off[1]);
	sq_array = (uint32_t *)(sq + p.sq_off[6]);
	cq_head = (uint32_t *)(cq + p.cq_off[0]);
	cq_tail = (uint32_t *)(cq + p.cq_off[1]);
	if (mode == PREAD && (plain_fd = open("/dev/zero", O_RDONLY)) < 0)
		die("opening /dev/zero");
	if (mode != NOP && mode != PREAD) {  /* slot 0: /dev/zero to read, or empty to open into */
		int32_t fd = mode != OPENAT ? open("/dev/zero", O_RDONLY) : -1;

		if ((mode != OPENAT && fd < 0) ||
		    syscall(NR_io_uring_register, ring_fd, REGISTER_FILES, &fd, 1))
			die("registering slot 0");
	}
	if (mode == READ_FIXED) {
		struct { void *base; size_t len; } iov = { buf, sizeof(buf) };

		if (syscall(NR_io_uring_register, ring_fd, REGISTER_BUFFERS, &iov, 1))
			die("registering buffer 0");
	}
	for (i = 0; i < p.sq_entries; i++) {
		sq_array[i] = i;
		if (mode == OPENAT)      /* file_index 1: slot 0 */
			sqes[i] = (struct sqe){ .opcode = OP_OPENAT, .fd = AT_FDCWD,
						.addr = (uintptr_t)"/dev/null", .rw_flags = O_RDONLY,
						.pad = { 1ULL << 32 } };
		else
			sqes[i] = (struct sqe){ .opcode = mode == READ || mode == PREAD ? OP_READ :
							  mode == READ_FIXED ? OP_READ_FIXED : OP_NOP,
						.flags = mode == READ || mode == READ_FIXED ?
							 SQE_FIXED_FILE : 0,
						.fd = mode == PREAD ? plain_fd : 0,
						.addr = (uintptr_t)buf,
						.len = mode != NOP ? sizeof(buf) : 0 };
	}
}

/* Submits `n` (<= the ring's entries) and waits for their completions. */
static void submit(unsigned n)
{
	uint32_t tail = __atomic_load_n(sq_tail, __ATOMIC_RELAXED);

	__atomic_store_n(sq_tail, tail + n, __ATOMIC_RELEASE);
	if (syscall(NR_io_uring_enter, ring_fd, n, n, ENTER_GETEVENTS, NULL, 0) != (long)n)
		die("io_uring_enter");
	__atomic_store_n(cq_head, __atomic_load_n(cq_tail, __ATOMIC_ACQUIRE), __ATOMIC_RELEASE);
}

int main(int argc, char **argv)
{
	long ops = 1000000, done = 0;
	unsigned batch = 64;
	int c, gate = 0;
	enum mode mode;
	uint64_t t0, t1;

	while ((c = getopt(argc, argv, "n:b:g")) != -1) {
		switch (c) {
		case 'n': ops = atol(optarg); break;
		case 'b': batch = atoi(optarg); break;
		case 'g': gate = 1; break;
		default: goto usage;
		}
	}
	if (optind >= argc || batch < 1 || batch > 4096 ||
	    (strcmp(argv[optind], "nop") && strcmp(argv[optind], "read") &&
	     strcmp(argv[optind], "pread") && strcmp(argv[optind], "readfixed") &&
	     strcmp(argv[optind], "openat")))
		goto usage;
	mode = !strcmp(argv[optind], "read") ? READ : !strcmp(argv[optind], "openat") ? OPENAT :
	       !strcmp(argv[optind], "readfixed") ? READ_FIXED :
	       !strcmp(argv[optind], "pread") ? PREAD : NOP;
	setup(batch, mode);
	if (gate && syscall(SYS_read, 0, &(char){ 0 }, 1) != 1)
		die("waiting for the go byte on stdin");
	for (done = 0; done < WARMUP; done += batch)
		submit(batch);
	t0 = now_ns();
	for (done = 0; done < ops; done += batch)
		submit(ops - done < batch ? ops - done : batch);
	t1 = now_ns();
	printf("{\"mode\":\"%s\",\"batch\":%u,\"ops\":%ld,\"warmup_ops\":%d,"
	       "\"elapsed_ns\":%llu,\"ns_per_op\":%.1f}\n", argv[optind], batch, done,
	       WARMUP, (unsigned long long)(t1 - t0), (double)(t1 - t0) / done);
	return 0;
usage:
	fprintf(stderr, "usage: opsgen [-n OPS] [-b BATCH] [-g] nop|read|pread|readfixed|openat\n");
	return 2;
}
