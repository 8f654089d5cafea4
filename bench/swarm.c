// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * swarm: floods of io_uring_register(2) junk from many short-lived
 * processes or threads, the attacks on fairness a per-process budget
 * alone can't stop (tests/test_fairness.py).
 *
 *   swarm [-g] [-d SECONDS] [-j PARALLEL] [-n CALLS] [-u UID] MODE
 *
 * Modes: procs (children, PARALLEL at a time, each making CALLS distinct
 * junk calls, `io_uring_register(ring, 9999, arg=i, 0)`, then exiting, until
 * SECONDS have passed), threads (the same with threads of this process),
 * once (CALLS children one after another, PARALLEL at a time, each making
 * one call). -u UID: child i runs as UID + i (root only; procs and once).
 * Prints one JSON line: {"register_calls": every call made, "workers": N}.
 * -g waits for a byte on stdin before the first call.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NR_io_uring_setup 425
#define NR_io_uring_register 427
#define OPCODE_INVALID 9999
#define MAX_PARALLEL 64

static int ring_fd;
static long calls = 5000, parallel = 8, uid_base = -1;
static double seconds = 1;
static atomic_long *made;      /* shared with the children */

static void die(const char *what)
{
	fprintf(stderr, "swarm: %s: %s\n", what, strerror(errno));
	exit(1);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* n distinct junk calls: arg differs, so no call repeats the one before */
static void junk(long n)
{
	long i;

	for (i = 0; i < n; i++)
		syscall(NR_io_uring_register, ring_fd, OPCODE_INVALID, (void *)(i + 1), 0);
	atomic_fetch_add(made, n);
}

static void *junk_thread(void *n)
{
	junk((long)n);
	return NULL;
}

/* One child: as uid_base + k when asked, n calls, gone. */
static pid_t spawn(long k, long n)
{
	pid_t pid = fork();

	if (pid < 0)
		die("fork");
	if (pid)
		return pid;
	if (uid_base >= 0 && setuid(uid_base + k))
		die("setuid");
	junk(n);
	_exit(0);
}

/* Children PARALLEL at a time: until the deadline (total 0), or total of them. */
static long run_procs(long n, long total, double deadline)
{
	long started = 0, running = 0;

	for (;;) {
		while (running < parallel && (total ? started < total : now() < deadline)) {
			spawn(started++, n);
			running++;
		}
		if (!running)
			return started;
		if (wait(NULL) > 0)
			running--;
	}
}

static long run_threads(double deadline)
{
	pthread_t th[MAX_PARALLEL];
	long started = 0, i;

	while (now() < deadline) {
		for (i = 0; i < parallel; i++)
			if (pthread_create(&th[i], NULL, junk_thread, (void *)calls))
				die("pthread_create");
		for (i = 0; i < parallel; i++)
			pthread_join(th[i], NULL);
		started += parallel;
	}
	return started;
}

int main(int argc, char **argv)
{
	static char params[120];
	int c, gate = 0;
	long workers;

	while ((c = getopt(argc, argv, "gd:j:n:u:")) != -1) {
		switch (c) {
		case 'g': gate = 1; break;
		case 'd': seconds = atof(optarg); break;
		case 'j': parallel = atol(optarg); break;
		case 'n': calls = atol(optarg); break;
		case 'u': uid_base = atol(optarg); break;
		default: goto usage;
		}
	}
	if (optind != argc - 1 || parallel < 1 || parallel > MAX_PARALLEL || calls < 1)
		goto usage;
	made = mmap(NULL, sizeof(*made), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
		    -1, 0);
	if (made == MAP_FAILED)
		die("mmap");
	ring_fd = syscall(NR_io_uring_setup, 8, params);
	if (ring_fd < 0)
		die("io_uring_setup");
	if (gate && read(0, &(char){ 0 }, 1) != 1)
		die("waiting for the go byte on stdin");
	if (!strcmp(argv[optind], "procs"))
		workers = run_procs(calls, 0, now() + seconds);
	else if (!strcmp(argv[optind], "threads"))
		workers = run_threads(now() + seconds);
	else if (!strcmp(argv[optind], "once"))
		workers = run_procs(1, calls, 0);
	else
		goto usage;
	printf("{\"register_calls\":%ld,\"workers\":%ld}\n", atomic_load(made), workers);
	return 0;
usage:
	fprintf(stderr, "usage: swarm [-g] [-d SECONDS] [-j PARALLEL] [-n CALLS] [-u UID] "
		"procs|threads|once\n");
	return 2;
}
