/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Which calls are traced: the filters user space set at load (rodata) or
 * while tracing (the pids and cgroups maps).
 * Part of uringwatch.bpf.c's one translation unit; included there only.
 */
#ifndef URINGWATCH_FILTERS_H
#define URINGWATCH_FILTERS_H

static __always_inline bool comm_allowed(const char *comm)
{
	int i;

	for (i = 0; i < UW_COMM_LEN; i++) {
		if (comm[i] != cfg.targ_comm[i])
			return false;
		if (!comm[i])
			break;
	}
	return true;
}

/* The filters that hold at both enter and exit. Checks compiled out by the
 * verifier when their knob is off (rodata is constant at load). */
static __always_inline bool task_allowed(__u64 pid_tgid)
{
	__u32 tgid = pid_tgid >> 32;

	if (cfg.targ_pids && !bpf_map_lookup_elem(&pids, &tgid))
		return false;
	if (cfg.targ_uid != (__u32)-1 && (__u32)bpf_get_current_uid_gid() != cfg.targ_uid)
		return false;
	if (cfg.targ_cgroups) {
		__u64 cg = bpf_get_current_cgroup_id();

		if (!bpf_map_lookup_elem(&cgroups, &cg))
			return false;
	}
	if (cfg.targ_comm[0]) {
		char comm[UW_COMM_LEN];

		bpf_get_current_comm(comm, sizeof(comm));
		return comm_allowed(comm);
	}
	return true;
}

/* The same filters for a process other than the current one. */
static __always_inline bool who_allowed(__u32 tgid, __u32 uid, __u64 cgroup_id,
					const char *comm)
{
	if (cfg.targ_pids && !bpf_map_lookup_elem(&pids, &tgid))
		return false;
	if (cfg.targ_uid != (__u32)-1 && uid != cfg.targ_uid)
		return false;
	if (cfg.targ_cgroups && !bpf_map_lookup_elem(&cgroups, &cgroup_id))
		return false;
	return !cfg.targ_comm[0] || comm_allowed(comm);
}

static __always_inline bool any_filter(void)
{
	return cfg.targ_pids || cfg.targ_cgroups || cfg.targ_uid != (__u32)-1 ||
	       cfg.targ_comm[0] || cfg.targ_opcodes;
}

static __always_inline bool opcode_allowed(__u32 opcode)
{
	__u32 op = opcode & ~IORING_REGISTER_USE_REGISTERED_RING;

	return !cfg.targ_opcodes || (op < 64 && (cfg.targ_opcodes >> op) & 1);
}

#endif
