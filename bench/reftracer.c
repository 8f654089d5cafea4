// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * reftracer: the native reference tracer of the benchmark suite. Loads
 * reftracer.bpf.o (embedded by its skeleton), attaches both tracepoints,
 * drains the ring buffer every 50 ms (or on the kernel's threshold wakeup)
 * and only counts records. With --completions it also attaches an empty
 * program to io_uring_complete. With --floor it loads the floor programs
 * instead of ref_enter and ref_exit, with the listed promises' least work
 * (reftracer.h, bench/floors.py). On SIGINT/SIGTERM it drains what is left and
 * prints one JSON line of counts on stdout.
 */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "reftracer.h"
#include "reftracer.skel.h"

#define DRAIN_MS 50           /* as uringwatch's flush interval */

static volatile sig_atomic_t stopping;
static unsigned long long received, short_records;

static void on_signal(int sig)
{
	(void)sig;
	stopping = 1;
}

static int count_record(void *ctx, void *data, size_t size)
{
	(void)ctx;
	(void)data;
	if (size < sizeof(struct ref_event))
		short_records++;
	else
		received++;
	return 0;
}

/* Sums one per-CPU counter over all CPUs. */
static unsigned long long counter(int map_fd, __u32 key)
{
	int ncpu = libbpf_num_possible_cpus(), i;
	unsigned long long sum = 0;
	__u64 vals[ncpu > 0 ? ncpu : 1];

	if (ncpu <= 0 || bpf_map_lookup_elem(map_fd, &key, vals))
		return 0;
	for (i = 0; i < ncpu; i++)
		sum += vals[i];
	return sum;
}

static void print_counts(struct reftracer *skel)
{
	int fd = bpf_map__fd(skel->maps.counters);

	printf("{\"received\":%llu,\"short\":%llu,\"emitted\":%llu,\"ring_full\":%llu,"
	       "\"no_enter\":%llu,\"stash_full\":%llu,\"read_fault\":%llu}\n",
	       received, short_records, counter(fd, REF_EMITTED), counter(fd, REF_RING_FULL),
	       counter(fd, REF_NO_ENTER), counter(fd, REF_STASH_FULL),
	       counter(fd, REF_READ_FAULT));
	fflush(stdout);
}

static int trace(struct reftracer *skel)
{
	struct ring_buffer *rb;
	int err = 0;

	rb = ring_buffer__new(bpf_map__fd(skel->maps.events), count_record, NULL, NULL);
	if (!rb) {
		fprintf(stderr, "reftracer: ring_buffer__new: %s\n", strerror(errno));
		return 1;
	}
	fprintf(stderr, "reftracer: attached\n");
	while (!stopping) {
		err = ring_buffer__poll(rb, DRAIN_MS);
		if (err < 0 && err != -EINTR) {
			fprintf(stderr, "reftracer: ring_buffer__poll: %s\n", strerror(-err));
			break;
		}
		err = 0;
	}
	/* detach first, so nothing arrives after the final drain */
	reftracer__detach(skel);
	ring_buffer__consume(rb);
	ring_buffer__free(rb);
	print_counts(skel);
	return err ? 1 : 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: reftracer [--completions] [--floor[=hook,reread,context,carry]]\n"
		"  runs until SIGINT/SIGTERM\n");
}

/* --floor[=LIST]: the floor programs, with the listed promises' work. */
static bool parse_floor(const char *list, bool *hook, bool *reread, bool *context,
			bool *carry)
{
	char buf[64], *tok, *save;

	if (!*list)
		return true;
	if (*list++ != '=' || strlen(list) >= sizeof(buf))
		return false;
	strcpy(buf, list);
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (!strcmp(tok, "hook"))
			*hook = true;
		else if (!strcmp(tok, "reread"))
			*reread = true;
		else if (!strcmp(tok, "context"))
			*context = true;
		else if (!strcmp(tok, "carry"))
			*carry = true;
		else
			return false;
	}
	return true;
}

int main(int argc, char **argv)
{
	bool completions = false, floor = false, hook = false, reread = false, context = false;
	bool carry = false;
	struct reftracer *skel;
	int err, i;

	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--completions"))
			completions = true;
		else if (!strncmp(argv[i], "--floor", 7) &&
			 parse_floor(argv[i] + 7, &hook, &reread, &context, &carry))
			floor = true;
		else {
			usage();
			return 2;
		}
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	skel = reftracer__open();
	if (skel) {
		bpf_program__set_autoload(skel->progs.ref_complete, completions);
		bpf_program__set_autoload(skel->progs.ref_enter, !floor);
		bpf_program__set_autoload(skel->progs.ref_exit, !floor);
		bpf_program__set_autoload(skel->progs.ref_floor_enter, floor);
		bpf_program__set_autoload(skel->progs.ref_floor_exit, floor);
		bpf_program__set_autoload(skel->progs.ref_floor_register, hook);
		skel->rodata->floor_reread = reread;
		skel->rodata->floor_context = context;
		skel->rodata->floor_carry = carry;
	}
	err = skel ? reftracer__load(skel) : -errno;
	if (skel && err) {
		reftracer__destroy(skel);
		skel = NULL;
		errno = -err;
	}
	if (!skel) {
		fprintf(stderr, "reftracer: loading the BPF object: %s\n", strerror(errno));
		return 1;
	}
	err = reftracer__attach(skel);
	if (err)
		fprintf(stderr, "reftracer: attaching: %s\n", strerror(-err));
	else
		err = trace(skel);
	reftracer__destroy(skel);
	return err ? 1 : 0;
}
