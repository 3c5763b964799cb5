/* SPDX-License-Identifier: GPL-2.0 */
/* Every map of Bordergate's programs, and the constants the hooks share. */
#ifndef BG_LIB_MAPS_H
#define BG_LIB_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "bordergate_abi.h"

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif
#define AF_PACKET 17
#define AF_VSOCK 40
#define AF_XDP 44
#define SOCK_STREAM 1
#define SOCK_DGRAM 2
/* what cgroup/setsockopt shows of a value, at most (the smallest page size) */
#define BG_PAGE_SIZE 4096

/* Context fields must be read 4 bytes at a time; without this clang merges neighbouring u32 loads
 * into one u64 load, which the verifier rejects as an invalid context access. */
#define CTX_U32(x) (*(volatile __u32 *)&(x))

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct bg_config);
} config SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct bg_proxy_netns);
} proxy_netns SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 4096);
    __type(key, __u64);
    __type(value, struct bg_cgroup_policy);
} guarded SEC(".maps");

/* Two pairs of region tries: the host fills the idle pair and then moves each cgroup over with one
 * update of `guarded`, so a reload never shows a half-loaded table. */
#define REGION_TRIE(name, keytype)                 \
    struct {                                       \
        __uint(type, BPF_MAP_TYPE_LPM_TRIE);       \
        __uint(max_entries, 2000000);              \
        __uint(map_flags, BPF_F_NO_PREALLOC);      \
        __type(key, keytype);                      \
        __type(value, __u32);                      \
    } name SEC(".maps")

REGION_TRIE(regions4_a, struct bg_lpm4_key);
REGION_TRIE(regions4_b, struct bg_lpm4_key);
REGION_TRIE(regions6_a, struct bg_lpm6_key);
REGION_TRIE(regions6_b, struct bg_lpm6_key);

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, BG_MAX_POLICY_SLOTS * BG_MAX_CLASSES);
    __type(key, __u32);
    __type(value, struct bg_policy_row);
} policy_rows SEC(".maps");

/* UDP events are rate-limited per socket and destination: one per second is an audit trail, one
 * per datagram would be a flood. */
struct bg_udp_key {
    __u64 cookie;
    __u8 addr[16];
    __u16 port;
    __u16 _pad0;
    __u32 _pad1;
};

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 16384);
    __type(key, struct bg_udp_key);
    __type(value, __u64);
} udp_seen SEC(".maps");

/* A redirected socket's original destination and who connected it: lives and dies with the socket. */
struct {
    __uint(type, BPF_MAP_TYPE_SK_STORAGE);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, int);
    __type(value, struct bg_orig);
} sock_state SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 65536);
    __type(key, struct bg_tuple_key);
    __type(value, struct bg_orig);
} orig_by_tuple SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 32768);
    __type(key, __u32);
    __type(value, struct bg_proc);
} procs SEC(".maps");

/* A generation per bucket of process ids, bumped after every exec and every new process (after
 * `procs` is written). The daemon caches what it learnt of a process for the connections that
 * follow and reads this array through a read-only mapping, so telling a cached description from
 * a stale one costs no system call. Buckets are shared, so a bump can only cause a needless miss. */
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(map_flags, BPF_F_MMAPABLE);
    __uint(max_entries, BG_PROC_GEN_BUCKETS);
    __type(key, __u32);
    __type(value, __u64);
} proc_gen SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, BG_STAT_MAX);
    __type(key, __u32);
    __type(value, __u64);
} stats SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 8 << 20);
} events SEC(".maps");

/* Refusals, apart from `events`: a flood of them fills only this ring (bordergate_abi.h). */
struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 2 << 20);
} refusals SEC(".maps");

/* Refusals per (cgroup, process, destination, second); LRU, so a scan of many destinations evicts
 * old keys instead of failing (the host sweeps a second's keys two seconds later). */
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 16384);
    __type(key, struct bg_refusal_key);
    __type(value, struct bg_refusal_count);
} refusals_seen SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 4096);
    __type(key, struct bg_refusal_budget_key);
    __type(value, struct bg_refusal_budget);
} refusal_budget SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, BG_DROP_MAX);
    __type(key, __u32);
    __type(value, __u64);
} event_drops SEC(".maps");

/* Packets of guarded cgroups dropped at egress for a source route (`bg_egress`), per-CPU; the
 * host reports each increase. */
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u64);
} skb_drops SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct bg_proxy_limits);
} proxy_limits SEC(".maps");

/* Live redirected sockets per cgroup and per user. A plain hash: an evicted count would reset a
 * limit; a full map refuses new redirects (fail closed). */
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 65536);
    __type(key, struct bg_live_key);
    __type(value, __u64);
} proxied_live SEC(".maps");

static __always_inline void count(__u32 which)
{
    __u64 *v = bpf_map_lookup_elem(&stats, &which);
    if (v)
        *v += 1;
}

static __always_inline void count_drop(__u32 which)
{
    __u64 *v = bpf_map_lookup_elem(&event_drops, &which);
    if (v)
        *v += 1;
}

static __always_inline struct bg_config *config_get(void)
{
    __u32 zero = 0;
    return bpf_map_lookup_elem(&config, &zero);
}

/* The proxy's network namespace; 0 (never a real cookie) until the loader sets it. */
static __always_inline __u64 proxy_netns_cookie(void)
{
    __u32 zero = 0;
    struct bg_proxy_netns *n = bpf_map_lookup_elem(&proxy_netns, &zero);
    return n ? n->cookie : 0;
}

#endif
