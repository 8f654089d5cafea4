// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * ringgen: many io_uring rings, unpaced, through raw syscalls (no
 * liburing): a ring-creation flood, or rings held open at once.
 *
 *   ringgen [-g] [-k] [-r] RINGS
 *
 * Each ring has one entry and gets one IORING_OP_NOP, waited for; its
 * mappings are then unmapped. -r registers a personality on each too. Without -k each ring is closed before the
 * next is made; with -k all stay open until a byte on stdin, after "held
 * N" is printed, then all are closed: held by child processes, each as
 * many as its RLIMIT_NOFILE, raised to the hard limit, lets it. -g
 * waits for a byte on stdin first, so a tracer can be attached. Prints one
 * JSON line: rings made and NOPs completed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define NR_io_uring_setup 425
#define NR_io_uring_enter 426
#define NR_io_uring_register 427
#define REGISTER_PERSONALITY 9
#define OFF_SQ_RING 0ULL
#define OFF_CQ_RING 0x8000000ULL
#define OFF_SQES 0x10000000ULL
#define ENTER_GETEVENTS 1

struct sqe {                  /* struct io_uring_sqe: 64 bytes, NOP is opcode 0 */
	uint64_t w[8];
};

struct params {               /* struct io_uring_params */
	uint32_t sq_entries, cq_entries, flags, sq_thread_cpu, sq_thread_idle;
	uint32_t features, wq_fd, resv[3];
	uint32_t sq_off[10], cq_off[10];
};

static int personality;      /* -r */

static void die(const char *what)
{
	fprintf(stderr, "ringgen: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void wait_byte(const char *why)
{
	if (syscall(SYS_read, 0, &(char){ 0 }, 1) != 1)
		die(why);
}

/* A ring of one entry, one NOP through it completed; returns its fd. */
static int ring_with_nop(void)
{
	struct params p = { 0 };
	size_t sq_len, cq_len;
	char *sq, *cq;
	struct sqe *sqes;
	uint32_t *tail;
	int fd = syscall(NR_io_uring_setup, 1, &p);

	if (fd < 0)
		die("io_uring_setup");
	sq_len = p.sq_off[6] + p.sq_entries * 4;
	cq_len = p.cq_off[5] + p.cq_entries * 16;
	sq = mmap(NULL, sq_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, OFF_SQ_RING);
	cq = mmap(NULL, cq_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, OFF_CQ_RING);
	sqes = mmap(NULL, sizeof(*sqes), PROT_READ | PROT_WRITE, MAP_SHARED, fd, OFF_SQES);
	if (sq == MAP_FAILED || cq == MAP_FAILED || sqes == MAP_FAILED)
		die("mmap");
	memset(sqes, 0, sizeof(*sqes));
	((uint32_t *)(sq + p.sq_off[6]))[0] = 0;
	tail = (uint32_t *)(sq + p.sq_off[1]);
	__atomic_store_n(tail, *tail + 1, __ATOMIC_RELEASE);
	if (syscall(NR_io_uring_enter, fd, 1, 1, ENTER_GETEVENTS, NULL, 0) != 1)
		die("io_uring_enter");
	munmap(sq, sq_len);
	munmap(cq, cq_len);
	munmap(sqes, sizeof(*sqes));
	if (personality && syscall(NR_io_uring_register, fd, REGISTER_PERSONALITY, NULL, 0) < 1)
		die("registering a personality");
	return fd;
}

/* Rings a process may hold: its RLIMIT_NOFILE raised to the hard limit,
 * less room for stdio and the pipes. */
static long room(void)
{
	struct rlimit r;

	if (getrlimit(RLIMIT_NOFILE, &r))
		die("getrlimit");
	r.rlim_cur = r.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &r))
		die("raising RLIMIT_NOFILE");
	return (long)r.rlim_cur > 64 ? (long)r.rlim_cur - 64 : 1;
}

/* A child holding n rings: says so on `held`, keeps them until `release`
 * reads end of file. */
static void holder(long n, int held, int release)
{
	long i;

	for (i = 0; i < n; i++)
		ring_with_nop();
	if (write(held, "x", 1) != 1)
		die("write");
	while (read(release, &(char){ 0 }, 1) > 0)
		;
	_exit(0);
}

/* rings held open by children, until a byte on stdin. */
static void hold(long rings)
{
	long per = room(), made, i, n, kids = 0;
	int held[2], release[2], status;

	if (pipe(held) || pipe(release))
		die("pipe");
	for (made = 0; made < rings; made += n, kids++) {
		n = rings - made < per ? rings - made : per;
		pid_t pid = fork();

		if (pid < 0)
			die("fork");
		if (!pid) {
			close(release[1]);
			holder(n, held[1], release[0]);
		}
	}
	close(release[0]);
	for (i = 0; i < kids; i++)
		if (read(held[0], &(char){ 0 }, 1) != 1)
			die("a holder failed");
	printf("held %ld\n", rings);
	fflush(stdout);
	wait_byte("waiting for the close byte on stdin");
	close(release[1]);
	while (wait(&status) > 0)
		if (!WIFEXITED(status) || WEXITSTATUS(status))
			die("a holder failed");
}

int main(int argc, char **argv)
{
	int c, gate = 0, keep = 0;
	long rings, i;

	while ((c = getopt(argc, argv, "gkr")) != -1) {
		switch (c) {
		case 'g': gate = 1; break;
		case 'k': keep = 1; break;
		case 'r': personality = 1; break;
		default: goto usage;
		}
	}
	if (optind != argc - 1 || (rings = atol(argv[optind])) < 1)
		goto usage;
	if (gate)
		wait_byte("waiting for the go byte on stdin");
	if (keep)
		hold(rings);
	else
		for (i = 0; i < rings; i++)
			close(ring_with_nop());
	printf("{\"rings\":%ld,\"ops\":%ld}\n", rings, rings);
	return 0;
usage:
	fprintf(stderr, "usage: ringgen [-g] [-k] [-r] RINGS\n");
	return 2;
}
