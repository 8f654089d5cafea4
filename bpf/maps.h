/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The object's state: its load-time config, the slots calls are captured
 * into while in flight, the ring buffer, the filter sets, the counters.
 * Part of uringwatch.bpf.c's one translation unit; included there only.
 */
#ifndef URINGWATCH_MAPS_H
#define URINGWATCH_MAPS_H

/* Its own section, so the loader finds it as the whole of one map. */
SEC(".rodata.cfg") const volatile struct uw_config cfg = {
	.abi = UW_ABI_VERSION,
	.cap = UW_DEFAULT_CAP,
	.snap_bytes = UW_DEFAULT_SNAP_BYTES,
	.wakeup_bytes = UW_DEFAULT_WAKEUP_BYTES,
	.use_task_btf = 1,
	.targ_uid = (__u32)-1,
	.resolve = UW_RES_PROBE_READ,
};

/* inflight value for a call that got no slot (inflight_full) */
#define UW_SEEN 32      /* buckets of uw_slot.seen (a power of two) */
#define NO_SLOT 0xffffffff

/* A call in flight: its state, and its record as it will be sent: the
 * fixed part and parts, packed at exit to end in head[] where data[]
 * begins (uringwatch.bpf.c, pack_call), then the data. */
struct uw_slot {
	struct uw_call call;
	__u8 head[UW_CALL3_MAX];
	__u8 data[UW_DATA_MAX];
	__u64 scratch;        /* a kernel pointer read back as a number (identity.h) */
	__u64 vma_anon;       /* the buffer's mapping's anon_vma (identity.h, identity_check.h) */
	__u64 ring_ctx;       /* the io_ring_ctx the call acted on; 0: none found */
	__u64 enter_file[UW_FILES_MAX]; /* each uw_file's struct file at enter (identity_check.h) */
	__u64 fd_array;       /* the caller's fd table, read once per program run (identity.h) */
	__u32 fd_max;
	__u8 seen[UW_SEEN];   /* an entry resolved this call, by its file's hash (identity.h) */
	struct {              /* the last path walked to the root in this run (identity.h) */
		__u64 parent, mnt;    /* its file's parent dentry and mount */
		__u32 at;             /* its uw_file, at data[at] */
		__u16 start, len;     /* its path after the file's own name, to len */
	} dir;
	__u64 reread[32];     /* toctou.h's re-read of user memory: off the exit program's stack */
};

/* A __s32 or __u32 at data[at], 0 past the slot's data. keep(): one
 * register for the check and the load (the verifier saw clang check a copy
 * and load through another). */
static __always_inline __s32 data_s32(struct uw_slot *s, __u64 at)
{
	keep(at);
	if (at > UW_DATA_MAX - 4)
		return 0;
	keep(at);
	return *(__s32 *)&s->data[at];
}

static __always_inline __u64 data_u64(struct uw_slot *s, __u64 at)
{
	keep(at);
	if (at > UW_DATA_MAX - 8)
		return 0;
	keep(at);
	return *(__u64 *)&s->data[at];
}

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, UW_DEFAULT_RING_BYTES);
} events SEC(".maps");

/* Slots are big, so they live in an array and a tid maps to a slot index
 * taken from a free stack: no per-call allocation or value copy. Last in,
 * first out: the next call takes the slot the last one gave back, still
 * in cache (a queue cycled through every slot: up to 64 cold 256-byte
 * identity entries written per call). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, UW_DEFAULT_MAX_INFLIGHT);
	__type(key, __u32);
	__type(value, struct uw_slot);
} slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_STACK);
	__uint(max_entries, UW_DEFAULT_MAX_INFLIGHT);
	__type(value, __u32);
} free_slots SEC(".maps");

/* The action being built (bpf/targets.h; 1 KiB: not on the stack). Its
 * `file` is filled by identity.h's resolve_file as if it were a slot's:
 * slot index UW_ACT_SLOT. */
#define UW_ACT_SLOT 0xFFFFFFFFu
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct uw_action);
} act_scratch SEC(".maps");

/* An operation's record being built (bpf/rings.h, send_op; 408 bytes: not
 * on the stack). Its `file` is filled by resolve_file as a slot's, slot
 * index UW_OP_SLOT. */
#define UW_OP_SLOT 0xFFFFFFFEu
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct uw_op);
} op_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, UW_DEFAULT_MAX_INFLIGHT);   /* the loader sets 2x: no-slot markers too */
	__type(key, __u32);
	__type(value, __u32);
} inflight SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct uw_counters);
} counters SEC(".maps");

/* A new process's or aggregate's fairness state is built here, not on the
 * stack: the exit program's stack, with the identity checks' calls below
 * it, is at the verifier's 512-byte limit. */
union uw_fresh {
	struct uw_proc proc;
	struct uw_agg agg;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, union uw_fresh);
} fresh_state SEC(".maps");

/* Fairness state per process (bpf/fairness.h), keyed by tgid, freed as
 * the process ends. Not LRU: an eviction would lose a process's counts;
 * when full, calls of new processes are held to their aggregate's budget
 * alone and counted (procs_full). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct uw_proc);
} procs SEC(".maps");

/* Per aggregate (uid, cgroup): the budget its processes also spend, and
 * the counts of those that ended. Never freed; when full, new aggregates
 * share the overflow one, which user space makes before attaching. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, UW_DEFAULT_MAX_AGGS);
	__type(key, struct uw_agg_key);
	__type(value, struct uw_agg);
} aggs SEC(".maps");

/* Filter sets user space can change while tracing. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u8);
} pids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, __u8);
} cgroups SEC(".maps");

static __always_inline void bump(enum uw_counter c)
{
	__u32 zero = 0;
	struct uw_counters *cnt = bpf_map_lookup_elem(&counters, &zero);

	if (cnt && c < UW_CNT_MAX)
		cnt->n[c]++;
}

static __always_inline void bump_by(enum uw_counter c, __u64 n)
{
	__u32 zero = 0;
	struct uw_counters *cnt = bpf_map_lookup_elem(&counters, &zero);

	if (cnt && c < UW_CNT_MAX)
		cnt->n[c] += n;
}

/* Wakes the consumer only when a record of `size` crosses the threshold: a
 * consumer that lags stays above it, and waking it on every record cost
 * ~4.5 us per call (bench/run.py). */
static __always_inline __u64 wakeup_flag(__u64 size)
{
	__u64 queued = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);

	return queued < cfg.wakeup_bytes && queued + size >= cfg.wakeup_bytes ?
	       BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
}

/* Sends one record, counted as emitted or ring_full; true if sent. */
static __always_inline bool emit(void *rec, __u64 size)
{
	bool sent = !bpf_ringbuf_output(&events, rec, size, wakeup_flag(size));

	bump(sent ? UW_CNT_EMITTED : UW_CNT_RING_FULL);
	return sent;
}

#endif
