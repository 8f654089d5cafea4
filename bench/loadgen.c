// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * loadgen: io_uring_register(2) load for the benchmark suite, through raw
 * syscalls (no liburing), timed with CLOCK_MONOTONIC around the loop only.
 *
 *   loadgen [-n CALLS | -d SECONDS] [-c CPU] [-g] MODE [ARG]
 *
 * Modes: invalid (opcode 9999: the cheapest call), files N, buffers N,
 * race [N] (a writer thread flips the last fd while REGISTER_FILES runs),
 * flood T (T threads of invalid calls), getppid (an unrelated syscall),
 * mmap (an unrelated mmap and munmap of one anonymous page a round: the
 * buffer-ring tracking's programs run on every mmap).
 * Prints one JSON line: calls timed, ns per call, and `register_calls`, every
 * io_uring_register made including warm-up, which a tracer must account for.
 * -g waits for a byte on stdin before the first call, so a tracer can be
 * attached to this process id (uringwatch -p) before anything happens.
 * SIGINT or SIGTERM ends the run early; the counts are still printed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define NR_io_uring_setup 425
#define NR_io_uring_register 427

enum {
	REGISTER_BUFFERS = 0,
	UNREGISTER_BUFFERS = 1,
	REGISTER_FILES = 2,
	UNREGISTER_FILES = 3,
	OPCODE_INVALID = 9999,
};

#define WARMUP 1000
#define MAX_THREADS 256
#define MAX_ELEMS 1024

struct opts {
	const char *mode;
	long arg;             /* N for files/buffers/race, T for flood */
	long calls;           /* calls to time, or 0 with seconds */
	double seconds;
	int cpu;              /* -1: not pinned */
	int gate;             /* wait for stdin before starting */
};

/* What one thread did; summed over threads at the end. */
struct tally {
	long timed;           /* calls in the timed loop */
	long registers;       /* every io_uring_register made */
	long errors;          /* calls that failed when they should not */
};

static int ring_fd;
static volatile sig_atomic_t interrupted;   /* SIGINT/SIGTERM: stop early, still report */
static struct opts o = { .cpu = -1 };

static long uring_register(unsigned int opcode, void *arg, unsigned int nr)
{
	return syscall(NR_io_uring_register, ring_fd, opcode, arg, nr);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static void die(const char *what)
{
	fprintf(stderr, "loadgen: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void pin(int cpu)
{
	cpu_set_t set;

	if (cpu < 0)
		return;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set))
		die("sched_setaffinity");
}

/* One unit of work: returns how many io_uring_register calls it made. */
typedef int (*round_fn)(struct tally *t);

static int32_t fds[MAX_ELEMS];
static struct iovec iovs[MAX_ELEMS];

static int round_invalid(struct tally *t)
{
	/* EINVAL is the expected answer */
	if (uring_register(OPCODE_INVALID, NULL, 0) != -1 || errno != EINVAL)
		t->errors++;
	return 1;
}

/* Register o.arg elements of arg, then unregister them. */
static int register_pair(struct tally *t, unsigned reg, unsigned unreg, void *arg)
{
	if (uring_register(reg, arg, o.arg)) {
		t->errors++;
		return 1;
	}
	if (uring_register(unreg, NULL, 0))
		t->errors++;
	return 2;
}

static int round_files(struct tally *t)
{
	return register_pair(t, REGISTER_FILES, UNREGISTER_FILES, fds);
}

static int round_buffers(struct tally *t)
{
	return register_pair(t, REGISTER_BUFFERS, UNREGISTER_BUFFERS, iovs);
}

static int round_getppid(struct tally *t)
{
	(void)t;
	syscall(SYS_getppid);
	return 1;
}

static int round_mmap(struct tally *t)
{
	void *p = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	(void)t;
	if (p != MAP_FAILED)
		munmap(p, 4096);
	return 1;
}

static round_fn round_of(const char *mode)
{
	if (!strcmp(mode, "invalid") || !strcmp(mode, "flood"))
		return round_invalid;
	if (!strcmp(mode, "files") || !strcmp(mode, "race"))
		return round_files;
	if (!strcmp(mode, "buffers"))
		return round_buffers;
	if (!strcmp(mode, "getppid"))
		return round_getppid;
	if (!strcmp(mode, "mmap"))
		return round_mmap;
	return NULL;
}

/* Runs rounds until `calls` are made or the deadline passes; the clock is
 * read every 64 rounds so reading it costs nothing measurable. */
static void run_loop(round_fn fn, long calls, uint64_t deadline, struct tally *t)
{
	int io = fn != round_getppid && fn != round_mmap;
	long n = 0, i;

	for (;;) {
		for (i = 0; i < 64; i++) {
			if (calls && n >= calls)
				goto done;
			n += fn(t);
		}
		if (interrupted || (deadline && now_ns() >= deadline))
			break;
	}
done:
	t->timed += n;
	if (io)
		t->registers += n;
}

struct worker {
	pthread_t th;
	round_fn fn;
	long calls;
	uint64_t deadline;
	struct tally t;
};

static void *work(void *p)
{
	struct worker *w = p;

	pin(o.cpu);
	run_loop(w->fn, w->calls, w->deadline, &w->t);
	return NULL;
}

static atomic_int stop_writer;

/* The racing writer: flips the last fd between 0 and -1 (sparse), both
 * valid, so every REGISTER_FILES succeeds whichever value the kernel reads. */
static void *flip_last_fd(void *p)
{
	(void)p;
	while (!atomic_load_explicit(&stop_writer, memory_order_relaxed))
		__atomic_store_n(&fds[o.arg - 1], fds[o.arg - 1] ? 0 : -1, __ATOMIC_RELAXED);
	return NULL;
}

static void on_signal(int sig)
{
	(void)sig;
	interrupted = 1;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: loadgen [-n CALLS | -d SECONDS] [-c CPU] [-g] MODE [ARG]\n"
		"modes: invalid | files N | buffers N | race [N] | flood T | getppid | mmap\n"
		"examples:\n"
		"  loadgen -n 1000000 -c 1 invalid\n"
		"  loadgen -d 5 -c 1 files 8\n"
		"  loadgen -d 60 -c 1 flood 4\n");
	exit(2);
}

static void parse(int argc, char **argv)
{
	int c;

	while ((c = getopt(argc, argv, "n:d:c:gh")) != -1) {
		switch (c) {
		case 'n': o.calls = atol(optarg); break;
		case 'd': o.seconds = atof(optarg); break;
		case 'c': o.cpu = atoi(optarg); break;
		case 'g': o.gate = 1; break;
		default: usage();
		}
	}
	if (optind >= argc || !round_of(argv[optind]))
		usage();
	o.mode = argv[optind];
	o.arg = optind + 1 < argc ? atol(argv[optind + 1]) : 0;
	if (!strcmp(o.mode, "race") && !o.arg)
		o.arg = 256;
	if ((!strcmp(o.mode, "files") || !strcmp(o.mode, "buffers") ||
	     !strcmp(o.mode, "race")) && (o.arg < 1 || o.arg > MAX_ELEMS))
		usage();
	if (!strcmp(o.mode, "flood") && (o.arg < 1 || o.arg > MAX_THREADS))
		usage();
	if (!o.calls && o.seconds <= 0)
		o.calls = 1000000;
}

/* The ring, fd 0 (opened on /dev/null if closed) and the arrays. */
static void prepare(void)
{
	static char params[120];
	char *bufs;
	long i;

	ring_fd = syscall(NR_io_uring_setup, 8, params);
	if (ring_fd < 0)
		die("io_uring_setup");
	if (fcntl(0, F_GETFD) < 0 && open("/dev/null", O_RDONLY) != 0)
		die("opening /dev/null as fd 0");
	if (strcmp(o.mode, "buffers"))
		return;
	bufs = aligned_alloc(4096, 4096 * o.arg);
	if (!bufs)
		die("aligned_alloc");
	memset(bufs, 0, 4096 * o.arg);
	for (i = 0; i < o.arg; i++)
		iovs[i] = (struct iovec){ bufs + 4096 * i, 4096 };
}

int main(int argc, char **argv)
{
	static struct worker w[MAX_THREADS];
	long nthreads = 1, i;
	struct tally sum = { 0 };
	pthread_t writer;
	uint64_t t0, t1;
	round_fn fn;

	parse(argc, argv);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	prepare();
	if (o.gate && read(0, &(char){ 0 }, 1) != 1)
		die("waiting for the go byte on stdin");
	fn = round_of(o.mode);
	if (!strcmp(o.mode, "flood"))
		nthreads = o.arg;
	pin(o.cpu);
	if (!strcmp(o.mode, "race") && pthread_create(&writer, NULL, flip_last_fd, NULL))
		die("pthread_create");

	run_loop(fn, WARMUP, 0, &sum);   /* page in, fill caches; not timed */
	sum.timed = 0;
	t0 = now_ns();
	for (i = 0; i < nthreads; i++) {
		w[i].fn = fn;
		w[i].calls = o.calls ? (o.calls + nthreads - 1) / nthreads : 0;
		w[i].deadline = o.calls ? 0 : t0 + (uint64_t)(o.seconds * 1e9);
		if (pthread_create(&w[i].th, NULL, work, &w[i]))
			die("pthread_create");
	}
	for (i = 0; i < nthreads; i++) {
		pthread_join(w[i].th, NULL);
		sum.timed += w[i].t.timed;
		sum.registers += w[i].t.registers;
		sum.errors += w[i].t.errors;
	}
	t1 = now_ns();
	if (!strcmp(o.mode, "race")) {
		atomic_store(&stop_writer, 1);
		pthread_join(writer, NULL);
	}
	/* wall time per call: with T threads on one CPU, that CPU's cost per call */
	printf("{\"mode\":\"%s\",\"arg\":%ld,\"threads\":%ld,\"calls\":%ld,"
	       "\"register_calls\":%ld,\"errors\":%ld,\"elapsed_ns\":%llu,"
	       "\"ns_per_call\":%.1f}\n",
	       o.mode, o.arg, nthreads, sum.timed, sum.registers, sum.errors,
	       (unsigned long long)(t1 - t0),
	       sum.timed ? (double)(t1 - t0) / sum.timed : 0.0);
	return sum.errors ? 1 : 0;
}
