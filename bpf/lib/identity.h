/* SPDX-License-Identifier: GPL-2.0 */
/* Who is connecting: the current task's identity, its cgroup's policy, and the process table. */
#ifndef BG_LIB_IDENTITY_H
#define BG_LIB_IDENTITY_H

#include "maps.h"

/* Minimal CO-RE views of kernel structs: libbpf relocates the offsets against the running kernel's
 * BTF, so no vmlinux.h is needed at build time. */
struct task_struct {
    int pid;
    int tgid;
    struct task_struct *real_parent;
} __attribute__((preserve_access_index));

struct super_block {
    unsigned int s_dev; /* dev_t */
} __attribute__((preserve_access_index));

struct inode {
    unsigned long i_ino;
    struct super_block *i_sb;
} __attribute__((preserve_access_index));

struct file {
    struct inode *f_inode;
} __attribute__((preserve_access_index));

struct linux_binprm {
    struct file *file;
    const char *filename;
} __attribute__((preserve_access_index));

/* The deepest guarded ancestor (or self) of the current cgroup decides. */
static __always_inline struct bg_cgroup_policy *policy_for_current(void)
{
    struct bg_cgroup_policy *found = 0;
    for (int level = 0; level < BG_MAX_CGROUP_DEPTH; level++) {
        __u64 id = bpf_get_current_ancestor_cgroup_id(level);
        if (id == 0)
            break;
        struct bg_cgroup_policy *p = bpf_map_lookup_elem(&guarded, &id);
        if (p)
            found = p;
    }
    return found;
}

static __always_inline void fill_identity(struct bg_identity *id, __u64 cookie)
{
    __u64 pid_tgid = bpf_get_current_pid_tgid();
    __u64 uid_gid = bpf_get_current_uid_gid();
    id->pid = (__u32)pid_tgid;
    id->tgid = pid_tgid >> 32;
    id->uid = (__u32)uid_gid;
    id->gid = uid_gid >> 32;
    id->cgroup_id = bpf_get_current_cgroup_id();
    id->cookie = cookie;
    id->time_ns = bpf_ktime_get_ns();
    bpf_get_current_comm(id->comm, sizeof(id->comm));
}

static __always_inline void bump_proc_gen(__u32 tgid)
{
    __u32 k = tgid & (BG_PROC_GEN_BUCKETS - 1);
    __u64 *g = bpf_map_lookup_elem(&proc_gen, &k);
    if (g)
        __sync_fetch_and_add(g, 1); /* a full barrier: the `procs` write is visible first */
}

#endif
